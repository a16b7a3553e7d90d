"""`process`: a local pool of spawned worker processes (concurrent.futures over the spawn context).

Spawn, not fork: the daemon holds threads, a SQLite connection and torch's thread pools, none of which survive a
fork cleanly. Each worker pins its math libraries to `threads` threads (one by default) before torch loads, so
two workers on two cores do not oversubscribe; training sets torch's own count to the same fixed number
(engine/training.deterministic), which is also what keeps the digests equal to an inline run's.

A worker that dies (SIGKILL, the OOM killer) breaks the whole pool: every task still in it is lost. The pool is
then shut down, which ends its other workers, and the tasks that had not returned run again in a fresh one,
up to the spec's retries; past them, ExecutorError. Tasks are idempotent, so a rerun is safe.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from forgetd.server.errors import ExecutorError
from forgetd.server.executors.base import ExecutorSpec, ShardExecutor
from forgetd.server.vocabulary import PROCESS_EXECUTOR

__all__ = ["ProcessExecutor", "WORKER_THREADS"]

log = logging.getLogger("forgetd.server")

T = TypeVar("T")
R = TypeVar("R")

WORKER_THREADS = 1  # math-library threads per worker process
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _init_worker(threads: int) -> None:
    # Runs in the fresh interpreter before any task's module (and so torch) is imported.
    for name in _THREAD_VARS:
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)


class ProcessExecutor(ShardExecutor):
    """Tasks in `spec.worker_count` spawned processes of this machine; the pool starts on the first map and
    lives until close."""

    kind = PROCESS_EXECUTOR

    def __init__(self, spec: ExecutorSpec, threads: int = WORKER_THREADS) -> None:
        self.spec = spec
        self._threads = threads
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _live_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(max_workers=self.spec.worker_count,
                                                 mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_init_worker, initargs=(self._threads,))
            return self._pool

    def worker_pids(self) -> list[int]:
        """The pids of the pool's worker processes now (empty before the first map)."""
        with self._lock:
            processes = getattr(self._pool, "_processes", None) or {}
            return sorted(int(pid) for pid in processes)

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        results: dict[int, R] = {}
        for attempt in range(self.spec.retries + 1):
            pool = self._live_pool()
            futures, refused = _submit(pool, fn, tasks, results)
            wait(futures.values())  # every task ended (or died) before anything is raised
            broken = _collect(futures, results) or refused
            if broken is None:
                return [results[i] for i in range(len(tasks))]
            self._discard(pool)
            if attempt == self.spec.retries:
                break
            self.restarts += 1
            log.warning("a shard worker died (%s); running %d task(s) again in a new pool (attempt %d of %d)",
                        broken, len(tasks) - len(results), attempt + 2, self.spec.retries + 1)
        raise ExecutorError(f"a shard worker process died {self.spec.retries + 1} time(s) running the same tasks; "
                            "nothing was published and the forget can be retried (is memory short? see the "
                            "kernel log for the OOM killer)")

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=True, cancel_futures=True)  # ends the broken pool's other workers

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _submit(pool: ProcessPoolExecutor, fn: Callable[[T], R], tasks: Sequence[T],
            results: dict[int, R]) -> tuple[dict[int, Future[R]], BrokenProcessPool | None]:
    """Submit the tasks without a result yet. A worker that died while the pool sat idle (the OOM killer between
    two forgets), or while the tasks went in, makes `submit` itself raise: that is returned as the breakage, so
    the map retries it like a death mid-task."""
    futures: dict[int, Future[R]] = {}
    try:
        for i, task in enumerate(tasks):
            if i not in results:
                futures[i] = pool.submit(fn, task)
    except BrokenProcessPool as exc:
        return futures, exc
    return futures, None


def _collect(futures: dict[int, Future[R]], results: dict[int, R]) -> BrokenProcessPool | None:
    """Move the finished futures' results into `results`; the pool's breakage if a worker died, and a task's own
    error raised as it is (after every task ended)."""
    broken: BrokenProcessPool | None = None
    failure: BaseException | None = None
    for i, f in futures.items():
        exc = f.exception()
        if exc is None:
            results[i] = f.result()
        elif isinstance(exc, BrokenProcessPool):
            broken = exc
        elif failure is None:
            failure = exc
    if failure is not None:
        raise failure
    return broken
