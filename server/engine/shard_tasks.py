"""Per-shard work as tasks an executor (server/executors) may run in another process or on another node.

A task is a top-level function over a small frozen input. Inputs go by reference through the store folder
for everything a version already holds on disk (checkpoints, increments, the shard's index: the largest
files, which a worker maps from the shared folder rather than receiving), and by value for the rest: the
shard's training rows, its alive mask and the bookkeeping sets. The rows are sent, not written as a scratch
file, because a forgotten row must not outlive its erasure in any file; a task's inputs vanish when it ends.

A task writes only files whose names derive from its inputs (version v+1's increments of the steps it
retrains, or version 0's files when training), so a rerun after its worker died overwrites them with the
same bytes; it returns the shard's new state (checkpoints, sets, the new files' paths), never publishes: the
manifest, the ledger and the live model stay with the daemon, their one writer. The caller deletes the files
a failed map may have left (`forget_task_files`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from forgetd.server.config import EngineConfig
from forgetd.server.engine.checkpoints import ShardCheckpoints
from forgetd.server.engine.increments import ShardIncrements, ShardIndex, create_increments
from forgetd.server.engine.increments_codec import IncrementRows
from forgetd.server.engine.model import MLPShape
from forgetd.server.engine.newton import forget_by_influence
from forgetd.server.engine.planning import PlannedForget
from forgetd.server.engine.state import LoadedStore
from forgetd.server.engine.strategies import SampleRoute, ShardOutcome, ShardState, TrainParams, forget_shard
from forgetd.server.engine.training import ShardLayout, config_epochs, deterministic
from forgetd.server.store.layout import StorePaths, increments_artifact, optim_artifact, params_artifact, versioned_file
from forgetd.server.vocabulary import INFLUENCE

__all__ = ["ForgetTask", "forget_tasks", "run_forget_task", "forget_task_files", "TrainTask", "TrainedShard"]


@dataclass(frozen=True)
class ForgetTask:
    """One MLP shard's share of a planned forget, as strategies.forget_shard (or INFLUENCE) takes it."""

    root: str  # the store folder, as every worker sees it
    version: int  # the version the forget will publish: its new increments are named for it
    shard: int
    strategy: str  # the plan's resolved strategy
    routes: tuple[SampleRoute, ...]
    params: TrainParams
    precision: str  # EngineConfig.increments
    codec: str  # EngineConfig.increments_codec
    device: str
    layout: ShardLayout
    files: tuple[tuple[str, str], ...]  # this shard's live files: logical name -> file name (the manifest's)
    alive: np.ndarray  # (n_k,) bool
    subtracted: tuple[int, ...]
    influenced: tuple[int, ...]
    X: np.ndarray  # (n_k, F) float32: the shard's rows, forgotten ones zero
    y: np.ndarray  # (n_k,) int64


def _state(task: ForgetTask, paths: StorePaths) -> ShardState:
    files = dict(task.files)
    k, recorded = task.shard, task.layout.slices - task.params.m
    incs = ShardIncrements(task.layout, task.params.epochs, task.params.batch_size, recorded)
    for s in range(1, recorded + 1):
        incs.attach(s, paths.artifact(files[increments_artifact(k, s)]))
    dev = torch.device(task.device)
    return ShardState(
        shard=k, layout=task.layout, index=ShardIndex.load(paths.index(k)), increments=incs,
        checkpoints=ShardCheckpoints.load(paths.artifact(files[params_artifact(k)]),
                                          paths.artifact(files[optim_artifact(k)])),
        subtracted=set(task.subtracted), alive=np.array(task.alive, bool),
        X=torch.from_numpy(np.array(task.X, np.float32)).to(dev), y=torch.from_numpy(np.array(task.y, np.int64)).to(dev),
        influenced=frozenset(task.influenced),
    )


def run_forget_task(task: ForgetTask) -> ShardOutcome:
    """The shard's new state after its share of the forget; its retrained steps' increments written as version
    `task.version`'s files (not yet fsynced: forgetting._commit syncs every file it publishes)."""
    paths = StorePaths(Path(task.root))
    state = _state(task, paths)

    def increments(s: int, rows: int) -> tuple[Path, IncrementRows]:
        path = paths.artifact(versioned_file(increments_artifact(task.shard, s), task.version))
        return path, create_increments(path, rows, task.params.shape.num_params, task.precision, task.codec)

    try:
        with deterministic():
            if task.strategy == INFLUENCE:
                outcome = forget_by_influence(state, list(task.routes), task.params, increments)
            else:
                outcome = forget_shard(state, list(task.routes), task.strategy, task.params, increments)
    finally:
        state.increments.release()
    return outcome


def forget_task_files(task: ForgetTask) -> list[Path]:
    """Every file `run_forget_task(task)` may write: what to delete when its map failed."""
    paths = StorePaths(Path(task.root))
    recorded = task.layout.slices - task.params.m
    return [paths.artifact(versioned_file(increments_artifact(task.shard, s), task.version))
            for s in range(1, recorded + 1)]


@dataclass(frozen=True)
class TrainTask:
    """One shard's training (building._train_shard) with its rows."""

    root: str
    shard: int
    config: EngineConfig
    device: str
    shape: MLPShape
    layout: ShardLayout
    m: int
    X: np.ndarray  # (n_k, F) the shard's rows in member order
    y: np.ndarray


@dataclass(frozen=True)
class TrainedShard:
    files: dict[str, str]  # logical name -> version 0's file
    live: np.ndarray  # theta_S
    steps: int  # optimizer steps taken (for progress)


def forget_tasks(store: LoadedStore, planned: PlannedForget) -> list[ForgetTask]:
    """One ForgetTask per changed MLP shard of `planned`, in the plan's shard order."""
    cfg, version = store.config, store.manifest.version + 1
    params = TrainParams(store.shape, cfg.seed, config_epochs(cfg), cfg.batch_size, cfg.learning_rate, store.m)
    recorded = cfg.slices - store.m
    tasks = []
    for k in planned.shards:
        st = store.shards[k]
        logical = [params_artifact(k), optim_artifact(k), *(increments_artifact(k, s) for s in range(1, recorded + 1))]
        tasks.append(ForgetTask(
            root=str(store.paths.root), version=version, shard=k, strategy=planned.plan.strategy,
            routes=tuple(planned.routes.get(k, [])), params=params, precision=cfg.increments,
            codec=cfg.increments_codec, device=store.device,
            layout=st.layout, files=tuple((n, store.manifest.files[n]) for n in logical), alive=st.alive,
            subtracted=tuple(sorted(st.subtracted)), influenced=tuple(sorted(st.influenced)),
            X=st.X.cpu().numpy(), y=st.y.cpu().numpy(),
        ))
    return tasks
