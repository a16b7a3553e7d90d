"""Carrying out a planned forget and publishing it as the next version.

The order is what makes a forget all or nothing: every shard's new state is computed first (in memory, new
increments files aside), then written as new files, then the manifest is switched in one rename (the
commit), and only then are the in-memory state swapped, the superseded files deleted and the rows erased.
A failure before the commit deletes what it wrote and leaves the old version live and whole; a failure in
the erasure after it is finished the next time the store opens (engine/state.py's roll forward).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from forgetd.ledger.subjects import subject_ref
from forgetd.server.engine.increments import create_increments
from forgetd.server.engine.increments_codec import IncrementRows
from forgetd.server.engine.newton import forget_by_influence, forget_linear_shard
from forgetd.server.engine.planning import PlannedForget
from forgetd.server.engine.shard_tasks import forget_task_files, forget_tasks, run_forget_task
from forgetd.server.engine.shard_extras import swap_extras, write_extras
from forgetd.server.engine.state import LoadedStore, make_snapshot
from forgetd.server.engine.strategies import IncrementsFile, ShardOutcome, TrainParams, forget_shard
from forgetd.server.engine.training import config_epochs, deterministic
from forgetd.server.errors import StoreError
from forgetd.server.executors import ShardExecutor
from forgetd.server.store.batch_tag import BatchTag, TaggedSubject
from forgetd.server.store.layout import (
    Manifest,
    fsync_dir,
    increments_artifact,
    optim_artifact,
    params_artifact,
    versioned_file,
)
from forgetd.server.vocabulary import INFLUENCE, LINEAR

__all__ = ["forget_planned", "batch_tag"]


def batch_tag(store: LoadedStore, planned: PlannedForget, request_ids: Sequence[str], strategy: str) -> BatchTag:
    """The tag that names the batch of `request_ids` in the version it publishes: its forget.applied entry as
    the plan foresees it (store/batch_tag.py), samples named by subject ref only."""
    plan = planned.plan
    subjects = tuple(
        TaggedSubject(subject_ref(store.subject_key, e.sample_id), e.shard, e.slice, e.region, e.strategy,
                      e.guarantee)
        for e in plan.samples
    )
    return BatchTag(tuple(request_ids), strategy, plan.strategy, subjects, plan.estimated_samples_read,
                    store.device, encoder_residue=plan.encoder_residue)


def forget_planned(store: LoadedStore, planned: PlannedForget, tag: BatchTag | None,
                   executor: ShardExecutor | None = None) -> list[ShardOutcome]:
    """Apply `planned` and publish it with `tag` as the next version; `store` then holds that version.
    `executor` computes the shards' new states (inline, in this thread, when None); publishing stays here."""
    if executor is not None and executor.remote and store.config.model != LINEAR:
        outcomes = _forget_remote(store, planned, executor)
    else:
        outcomes = _forget_shards(store, planned)
    positions = [loc.position for loc in planned.located]
    old = store.manifest
    new = _commit(store, outcomes, positions, tag)
    _swap_in(store, outcomes, new, positions)
    for name in set(old.files.values()) - set(new.files.values()):
        store.paths.artifact(name).unlink(missing_ok=True)
    for p in positions:
        del store.index.row_id[p]
    try:
        store.rows.erase([loc.row_id for loc in planned.located])
    except Exception as exc:
        raise StoreError(
            f"{store.paths.root}: version {new.version} is committed but erasing its rows failed ({exc}); "
            "open the store again to finish the erasure"
        ) from exc
    return outcomes


def _forget_shards(store: LoadedStore, planned: PlannedForget) -> list[ShardOutcome]:
    """Every changed shard's new state; on failure the increments files made on the way are deleted."""
    cfg = store.config
    params = TrainParams(store.shape, cfg.seed, config_epochs(cfg), cfg.batch_size, cfg.learning_rate, store.m)
    version = store.manifest.version + 1
    created: list[Path] = []

    def increments_file(k: int) -> IncrementsFile:
        def create(s: int, rows: int) -> tuple[Path, IncrementRows]:
            path = store.paths.artifact(versioned_file(increments_artifact(k, s), version))
            created.append(path)
            return path, create_increments(path, rows, store.shape.num_params, cfg.increments, cfg.increments_codec)
        return create

    def one(k: int) -> ShardOutcome:
        st, routes, strategy = store.shards[k], planned.routes.get(k, []), planned.plan.strategy
        if st.linear is not None:  # the linear family: every strategy is a Newton step or a retrain (newton.py)
            return forget_linear_shard(st, routes, strategy, cfg, store.shape.num_features, store.shape.num_classes)
        if strategy == INFLUENCE:
            return forget_by_influence(st, routes, params, increments_file(k))
        return forget_shard(st, routes, strategy, params, increments_file(k))

    try:
        with deterministic():
            return [one(k) for k in planned.shards]
    except BaseException:
        for path in created:
            path.unlink(missing_ok=True)
        raise


def _forget_remote(store: LoadedStore, planned: PlannedForget, executor: ShardExecutor) -> list[ShardOutcome]:
    """_forget_shards on `executor`'s workers (engine/shard_tasks.py). The linear family stays inline: its Newton
    steps take milliseconds, and its scaled-rows cache lives in the daemon's shard state."""
    tasks = forget_tasks(store, planned)
    try:
        outcomes = executor.map(run_forget_task, tasks)
    except BaseException:
        for t in tasks:  # a worker's files, whichever attempt wrote them: no manifest names them
            for path in forget_task_files(t):
                path.unlink(missing_ok=True)
        raise
    for o in outcomes:  # own copies: results may be read-only views of a transport's buffers (Ray's object store)
        o.checkpoints, o.alive = o.checkpoints.copy(), o.alive.copy()
    return outcomes


def _commit(store: LoadedStore, outcomes: list[ShardOutcome], positions: list[int], tag: BatchTag | None) -> Manifest:
    """Write the new version's files and switch the manifest to it (the commit point); returns the manifest."""
    paths, old = store.paths, store.manifest
    version = old.version + 1
    files = dict(old.files)
    written: list[Path] = []

    def new_file(logical: str) -> Path:
        files[logical] = name = versioned_file(logical, version)
        written.append(paths.artifact(name))
        return written[-1]

    subtracted = dict(old.subtracted)
    for o in outcomes:
        subtracted[o.shard] = sorted(o.subtracted)
    try:
        for o in outcomes:
            k = o.shard
            if o.params_changed:
                o.checkpoints.save_params(new_file(params_artifact(k)))
            if o.optim_changed:
                o.checkpoints.save_optim(new_file(optim_artifact(k)))
            for s, path in o.new_increments.items():
                files[increments_artifact(k, s)] = path.name
                written.append(path)
                with open(path, "rb+") as f:
                    os.fsync(f.fileno())
            write_extras(o, files, new_file)
        fsync_dir(paths.artifacts)
        new = Manifest(version, None if tag is None else tag.to_json(), files,
                       {k: v for k, v in subtracted.items() if v}, sorted(set(old.forgotten) | set(positions)))
        new.write(paths.manifest)  # the commit point
    except BaseException:
        for p in written:  # nothing references them; the old version stays live and whole
            p.unlink(missing_ok=True)
        raise
    return new


def _swap_in(store: LoadedStore, outcomes: list[ShardOutcome], new: Manifest, positions: list[int]) -> None:
    """Make the committed version the in-memory one, and drop the forgotten rows' in-memory copies."""
    store.manifest = new
    for o in outcomes:
        st = store.shards[o.shard]
        st.checkpoints, st.subtracted, st.alive = o.checkpoints, o.subtracted, o.alive
        for s in o.new_increments:
            st.increments.attach(s, store.paths.artifact(new.files[increments_artifact(o.shard, s)]))
        swap_extras(st, o)
    for p in positions:
        st = store.shards[int(store.index.shard_of[p])]
        st.X[int(store.index.local_of[p])] = 0
    store.snapshot = make_snapshot(new.version, store.shards, store.shape, store.config.aggregation, store.device)
