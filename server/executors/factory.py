"""`make_executor`: the executor a spec names."""

from __future__ import annotations

from forgetd.server.executors.base import ExecutorSpec, InlineExecutor, ShardExecutor
from forgetd.server.executors.local import ProcessExecutor
from forgetd.server.executors.ray_executor import RayExecutor
from forgetd.server.vocabulary import INLINE_EXECUTOR, PROCESS_EXECUTOR

__all__ = ["make_executor"]


def make_executor(spec: ExecutorSpec | None) -> ShardExecutor:
    """The executor `spec` names (inline for None). Ray missing: InvalidConfig naming the extra to install,
    raised here, before anything runs. Workers start on the first map."""
    if spec is None or spec.kind == INLINE_EXECUTOR:
        return InlineExecutor()
    if spec.kind == PROCESS_EXECUTOR:
        return ProcessExecutor(spec)
    return RayExecutor(spec)
