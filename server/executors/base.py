"""The executor interface: a spec (what the operator chose), and `ShardExecutor.map` over picklable tasks.

Tasks must be deterministic and idempotent (engine/shard_tasks.py): an executor may run one again after its
worker died, so a task writes only files whose names it derives from its inputs, and a rerun overwrites them
with the same bytes. `map` returns once every task has finished or is known dead, so no worker still writes
when the caller cleans up after a failure.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from forgetd.server.errors import InvalidConfig
from forgetd.server.vocabulary import EXECUTORS, INLINE_EXECUTOR, RAY_EXECUTOR

__all__ = ["ExecutorSpec", "ShardExecutor", "InlineExecutor", "default_workers"]

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ExecutorSpec:
    """Where shard tasks run. Not part of a store's config: the same store may be trained inline and served
    with Ray, and its digests do not change."""

    kind: str = INLINE_EXECUTOR  # vocabulary.EXECUTORS
    workers: int | None = None  # process: pool size; ray: num_cpus of a local Ray started for the run. None: cores
    ray_address: str | None = None  # ray: an existing cluster ("auto", "ray://host:10001"); None: start a local one
    retries: int = 2  # times a task whose worker died is run again before the map fails

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise InvalidConfig(f"executor is {self.kind!r}; choose one of {', '.join(EXECUTORS)}")
        if self.workers is not None and self.workers < 1:
            raise InvalidConfig(f"executor workers is {self.workers}; give 1 or more")
        if self.ray_address is not None and self.kind != RAY_EXECUTOR:
            raise InvalidConfig(f"a Ray address is given but the executor is {self.kind!r}; add --executor ray")
        if self.retries < 0:
            raise InvalidConfig(f"executor retries is {self.retries}; give 0 or more")

    @property
    def worker_count(self) -> int:
        return self.workers if self.workers is not None else default_workers()


class ShardExecutor(ABC):
    """Maps a top-level function over picklable inputs; results in input order."""

    kind: str
    restarts: int = 0  # times a dead worker made the executor run tasks again (observability, tests)

    @abstractmethod
    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        """[fn(t) for t in tasks]. The first task error is raised once every task has ended; a worker that died
        has its tasks run again up to the spec's retries, then ExecutorError."""

    @property
    def remote(self) -> bool:
        """Whether tasks run outside the caller's process (their inputs and results are pickled)."""
        return True

    def close(self) -> None:
        """Stop the workers this executor started; idempotent."""

    def __enter__(self) -> ShardExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InlineExecutor(ShardExecutor):
    """Today's behaviour: every task in the caller's thread, one after another."""

    kind = INLINE_EXECUTOR

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        return [fn(t) for t in tasks]

    @property
    def remote(self) -> bool:
        return False
