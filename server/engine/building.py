"""Training a new store (Engine.train): sliced training once per shard, and every file a store holds.

Engine.train calls `build_store` on a hidden, empty sibling directory and renames it into place afterwards,
so nothing here needs to be atomic: a crash leaves a half-made hidden directory, never a store that opens.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from forgetd.server.config import EngineConfig
from forgetd.server.data.dataset import Dataset
from forgetd.server.engine.checkpoints import ShardCheckpoints
from forgetd.server.engine.increments import ShardIndex, create_increments
from forgetd.server.engine.increments_codec import IncrementRows
from forgetd.server.engine.linear_build import train_linear_shards
from forgetd.server.engine.model import MLPShape, ModelSnapshot, init_params, model_digest, model_shape, param_digest
from forgetd.server.engine.shard_tasks import TrainedShard, TrainTask
from forgetd.server.engine.state import ref_bytes
from forgetd.server.engine.training import (
    OptState,
    ShardLayout,
    config_epochs,
    default_budget,
    derive_seed,
    deterministic,
    make_layout,
    run_steps,
    step_offsets,
    threshold,
)
from forgetd.server.errors import DataError, InvalidConfig
from forgetd.server.executors import ShardExecutor
from forgetd.server.store.layout import (
    FORMAT,
    Manifest,
    StorePaths,
    atomic_write_json,
    fsync_dir,
    increments_artifact,
    optim_artifact,
    params_artifact,
    save_array,
    sha256_file,
    versioned_file,
    write_durable,
)
from forgetd.server.store.rows import RowStore
from forgetd.server.vocabulary import LINEAR

__all__ = ["build_store", "train_shard_task"]

Progress = Callable[[int, int], None]  # (optimizer steps done, total)


@dataclass(frozen=True)
class _Slicing:
    layouts: list[ShardLayout]
    budget: int  # phi, samples read
    m: int  # the threshold the budget gives


def build_store(root: Path, ds: Dataset, cfg: EngineConfig, device: str, progress: Progress | None,
                executor: ShardExecutor | None = None) -> None:
    """Train `ds` with `cfg` on `device` into the empty directory `root`, in five steps:

    1. the folders and the deployment's subject key (0600);
    2. the slicing: shards by keyed hash, S slices each, and the threshold m the budget allows;
    3. the data: the feature encoder, refs (subject refs, never ids), the layout, the test split, the
       erasable row store;
    4. per shard: its index, then steps 1..S with a checkpoint after each and the update region's increments;
    5. the records: genesis.json (what the ledger's genesis commits), store.json, the manifest of version 0.

    `progress(done, total)` counts optimizer steps. The training time in store.json covers steps 1 to 4.
    `executor` runs step 4's shards (inline, one after another, when None); the bytes are the same under each.
    """
    t0 = time.perf_counter()
    paths = StorePaths(root)
    key = _make_folders_and_key(paths)
    slicing = _slice(ds, cfg)
    if cfg.model == LINEAR:  # no update region: the linear family records no increments (engine/linear_build.py)
        slicing = _Slicing(slicing.layouts, slicing.budget, cfg.slices)
    _write_data(paths, ds, slicing.layouts, key)
    shape = model_shape(cfg.model, cfg.hidden_sizes, ds.num_features, ds.num_classes)
    if cfg.model == LINEAR:
        files, lives = train_linear_shards(paths, ds, cfg, slicing.layouts, progress)
    else:
        files, lives = _train_shards(paths, ds, cfg, device, shape, slicing, progress, executor)
    train_seconds = time.perf_counter() - t0
    fsync_dir(paths.artifacts)
    fsync_dir(paths.index_dir)
    _write_records(paths, ds, cfg, device, shape, slicing, files, lives, train_seconds)


def _make_folders_and_key(paths: StorePaths) -> bytes:
    for d in (paths.artifacts, paths.index_dir):
        d.mkdir()
    paths.keys.mkdir(mode=0o700)
    key = os.urandom(32)
    fd = os.open(paths.subject_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
        f.flush()
        os.fsync(f.fileno())
    return key


def _slice(ds: Dataset, cfg: EngineConfig) -> _Slicing:
    layouts = make_layout(ds.train_ids, cfg.shards, cfg.slices, cfg.seed)
    if any(len(lay.members) < cfg.slices for lay in layouts):
        small = min(len(lay.members) for lay in layouts)
        raise InvalidConfig(f"a shard holds {small} samples but slices is {cfg.slices}; use fewer shards or slices")
    step_sizes = [[lay.step_size(s) for s in range(1, cfg.slices + 1)] for lay in layouts]
    epochs = config_epochs(cfg)  # refuses a sisa schedule that would leave the last slice untrained
    budget = cfg.budget if cfg.budget is not None else default_budget(step_sizes, epochs)
    return _Slicing(layouts, budget, threshold(step_sizes, epochs, budget))


def _write_data(paths: StorePaths, ds: Dataset, layouts: list[ShardLayout], key: bytes) -> None:
    assert ds.encoder is not None  # Dataset sets one (the identity when its loader has no raw form)
    write_durable(paths.encoder, ds.encoder.to_bytes())
    refs = [ref_bytes(key, i) for i in ds.train_ids]
    _refuse_normal_form_twins(ds.train_ids, refs)
    save_array(paths.refs, np.frombuffer(b"".join(refs), np.uint8).reshape(-1, 32))
    _write_npz(paths.layout, **{f"members{k}": lay.members for k, lay in enumerate(layouts)},
               **{f"bounds{k}": lay.bounds for k, lay in enumerate(layouts)})
    _write_npz(paths.test, X=ds.X_test, y=ds.y_test)
    RowStore.create(paths.rows, ds.train_ids, ds.X_train, ds.y_train).close()


def _refuse_normal_form_twins(ids: Sequence[str], refs: list[bytes]) -> None:
    # The ledger, the store and every lookup name a sample by the ref of its NFC form, so two ids that differ
    # only in their Unicode normal form would be one sample to all of them.
    if len(set(refs)) == len(refs):
        return
    first: dict[bytes, str] = {}
    for sid, ref in zip(ids, refs):
        if ref in first:
            raise DataError(f"training ids {first[ref]!r} and {sid!r} are the same id after Unicode NFC "
                            "normalisation, which is how the ledger names a sample; make them distinct")
        first[ref] = sid


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    # Compressed: the test split of tabular data (binary or one-hot features) and the layout's small integers
    # in int64 shrink many times (Purchase-shaped: 64 MiB of test features to a few), read once at open.
    with open(path, "xb") as f:
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]
        f.flush()
        os.fsync(f.fileno())


def _train_shards(paths: StorePaths, ds: Dataset, cfg: EngineConfig, device: str, shape: MLPShape,
                  slicing: _Slicing, progress: Progress | None,
                  executor: ShardExecutor | None) -> tuple[dict[str, str], list[np.ndarray]]:
    """Train every shard; returns the manifest's files (logical name -> file) and each shard's theta_S. A
    remote executor trains the shards in its workers (train_shard_task) and progress moves a shard at a time."""
    total = sum(int(step_offsets(lay, config_epochs(cfg), cfg.batch_size)[-1]) for lay in slicing.layouts)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    files: dict[str, str] = {}
    if executor is not None and executor.remote:
        tasks = [TrainTask(str(paths.root), k, cfg, device, shape, lay, slicing.m, _rows(ds.X_train, lay),
                           _rows(ds.y_train, lay)) for k, lay in enumerate(slicing.layouts)]
        trained = executor.map(train_shard_task, tasks)
        for t in trained:
            files.update(t.files)
            advance(t.steps)
        return files, [np.array(t.live) for t in trained]  # own, writable copies
    lives = [_train_shard(paths, _rows(ds.X_train, lay), _rows(ds.y_train, lay), cfg, device, shape, k, lay,
                          slicing.m, files, advance)
             for k, lay in enumerate(slicing.layouts)]
    return files, lives


def _rows(a: np.ndarray, lay: ShardLayout) -> np.ndarray:
    return np.ascontiguousarray(a[lay.members])


def train_shard_task(task: TrainTask) -> TrainedShard:
    """One shard's training in an executor's worker: its files written under the store being built."""
    files: dict[str, str] = {}
    steps = [0]

    def count(n: int) -> None:
        steps[0] += n

    live = _train_shard(StorePaths(Path(task.root)), task.X, task.y, task.config, task.device, task.shape,
                        task.shard, task.layout, task.m, files, count)
    return TrainedShard(files, live, steps[0])


def _train_shard(paths: StorePaths, X: np.ndarray, y: np.ndarray, cfg: EngineConfig, device: str, shape: MLPShape,
                 k: int, lay: ShardLayout, m: int, files: dict[str, str], advance: Callable[[int], None]) -> np.ndarray:
    """Shard k's index, checkpoints and increments, written and named in `files`; returns its theta_S.
    X, y: the shard's rows in member order."""
    ShardIndex.build(lay, cfg.seed, k, config_epochs(cfg), cfg.batch_size).save(paths.index(k))
    ckpt = ShardCheckpoints.empty(cfg.slices, shape.num_params)
    p0 = init_params(shape, derive_seed(cfg.seed, "init", k))
    zeros = torch.zeros_like(p0)
    ckpt.set(0, OptState(p0, zeros, zeros, 0))
    written: list[Path] = []

    def increments(s: int, rows: int) -> IncrementRows:
        logical = increments_artifact(k, s)
        files[logical] = name = versioned_file(logical, 0)
        written.append(paths.artifact(name))
        return create_increments(written[-1], rows, shape.num_params, cfg.increments, cfg.increments_codec)

    dev = torch.device(device)
    with deterministic():
        run_steps(shape=shape, layout=lay,
                  X=torch.from_numpy(np.array(X)).to(dev), y=torch.from_numpy(np.array(y)).to(dev),
                  alive=np.ones(len(lay.members), bool), start=ckpt.state(0), first=1, seed=cfg.seed,
                  shard=k, epochs=config_epochs(cfg), batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
                  record_upto=cfg.slices - m, on_step=ckpt.set, increments=increments, progress=advance)
    for path in written:
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
    files[params_artifact(k)] = name = versioned_file(params_artifact(k), 0)
    ckpt.save_params(paths.artifact(name))
    files[optim_artifact(k)] = name = versioned_file(optim_artifact(k), 0)
    ckpt.save_optim(paths.artifact(name))
    return ckpt.live.copy()


def _write_records(paths: StorePaths, ds: Dataset, cfg: EngineConfig, device: str, shape: MLPShape,
                   slicing: _Slicing, files: dict[str, str], lives: list[np.ndarray], train_seconds: float) -> None:
    snap = ModelSnapshot(0, "", (), shape, tuple(torch.from_numpy(p).to(device) for p in lives), cfg.aggregation,
                         device)

    def accuracy_ppm(X: np.ndarray, y: np.ndarray) -> int:
        return int(round(1e6 * float((snap.predict_proba(X).argmax(1) == y).mean()))) if len(y) else 0

    common: dict[str, Any] = {
        "config": cfg.to_json_dict(),
        "data_digest": ds.digest(),
        "num_train": len(ds.train_ids),
        "num_test": len(ds.test_ids),
        "num_features": ds.num_features,
        "num_classes": ds.num_classes,
        "num_params": shape.num_params,
        "m": slicing.m,
        "budget": slicing.budget,
        "device": device,
        "increments_bytes": sum(paths.artifact(n).stat().st_size for k, n in files.items() if k.endswith(".inc")),
        "training_accuracy_ppm": accuracy_ppm(ds.X_train, ds.y_train),
        "test_accuracy_ppm": accuracy_ppm(ds.X_test, ds.y_test),
    }
    genesis = {
        "format": FORMAT,
        **common,
        "model": {"version": 0, "digest": model_digest(lives), "shard_digests": [param_digest(p) for p in lives]},
        "artifacts": {
            **{logical: sha256_file(paths.artifact(name)) for logical, name in sorted(files.items())},
            **{f"shard{k}.index": sha256_file(paths.index(k)) for k in range(cfg.shards)},
            "layout": sha256_file(paths.layout),
            "refs": sha256_file(paths.refs),
            "encoder": sha256_file(paths.encoder),
        },
    }
    atomic_write_json(paths.genesis, genesis)
    atomic_write_json(paths.meta, {"format": FORMAT, **common, "train_seconds": train_seconds})
    Manifest(0, None, files).write(paths.manifest)
