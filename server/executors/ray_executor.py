"""`ray`: shard tasks as Ray tasks, on a Ray cluster (`ray_address`) or on a local Ray started for the run.

Inputs travel through Ray's object store (a task's arrays are put once and read zero-copy by the worker on
the same node), the store's files through the store folder itself, which every node must see at the same
path (docs/architecture.md, "Executors"). Each task asks for one CPU; Ray then sets its worker's thread count
to one. A worker that dies is retried by Ray itself (`max_retries`, system failures only: a task that raises
is not run again); past that, ExecutorError.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from forgetd.server.errors import ExecutorError, InvalidConfig
from forgetd.server.executors.base import ExecutorSpec, ShardExecutor
from forgetd.server.vocabulary import RAY_EXECUTOR

__all__ = ["RayExecutor", "RAY_MISSING"]

log = logging.getLogger("forgetd.server")

T = TypeVar("T")
R = TypeVar("R")

RAY_MISSING = "the ray executor needs Ray, which is not installed: pip install 'forgetd[ray]'"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InvalidConfig(RAY_MISSING) from None
    return ray


class RayExecutor(ShardExecutor):
    """Tasks as Ray tasks of one CPU each. Joins the Ray this process already runs, else connects to
    `spec.ray_address`, else starts a local Ray of `spec.worker_count` CPUs (loopback only, no dashboard) and
    stops it on close."""

    kind = RAY_EXECUTOR

    def __init__(self, spec: ExecutorSpec) -> None:
        self.spec = spec
        self._ray = _import_ray()  # before anything runs: a missing Ray is a usage error, not a failed forget
        self._started = False
        self._remote: dict[Callable[..., Any], Any] = {}

    def _connect(self) -> None:
        ray = self._ray
        if ray.is_initialized():
            return
        if self.spec.ray_address is not None:
            ray.init(address=self.spec.ray_address, log_to_driver=False)
        else:
            # address="local": a new Ray even where RAY_ADDRESS names a cluster; it listens on loopback only.
            ray.init(address="local", num_cpus=self.spec.worker_count, include_dashboard=False, log_to_driver=False,
                     _node_ip_address="127.0.0.1")
        self._started = True

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        self._connect()
        ray = self._ray
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = ray.remote(num_cpus=1, max_retries=self.spec.retries)(fn)
        refs = [remote.remote(t) for t in tasks]
        ray.wait(refs, num_returns=len(refs))  # every task ended before anything is raised
        try:
            return list(ray.get(refs))
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError,
                ray.exceptions.RaySystemError) as exc:
            raise ExecutorError(f"a Ray worker running a shard task died past {self.spec.retries} retries ({exc}); "
                                "nothing was published and the forget can be retried") from None

    def round_trip(self) -> Callable[[], None]:
        """A call that runs one empty Ray task and waits for it: the bench's per-task overhead."""
        self._connect()
        ray = self._ray
        empty = ray.remote(num_cpus=1)(_empty)

        def once() -> None:
            ray.get(empty.remote())
        return once

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False
        self._remote.clear()


def _empty() -> None:
    return None
