"""A trained store read into memory: what planning reads and what a forget replaces.

`load_store` reads the live version the manifest names: per shard its members, checkpoints, increments and
index, and the training rows still present (moved to the training device once, so a retrain never reads the
row store). The manifest is the truth about what was forgotten: rows it forgot that the row store still holds
were left by a crash between a forget's commit and its erasure, and are erased here (roll forward). The
same state is what a forgotten row put back behind forgetd's back looks like, and erasing it removes the
evidence, so every such erasure is logged as a warning naming the subject refs (never the ids): the log is
then the record `forgetd verify` can no longer find in the store.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from forgetd.ledger.subjects import subject_ref
from forgetd.server.config import EngineConfig
from forgetd.server.data.encoder import FeatureEncoder
from forgetd.server.engine.checkpoints import ShardCheckpoints
from forgetd.server.engine.increments import ShardIncrements, ShardIndex
from forgetd.server.engine.model import MLPShape, ModelSnapshot, model_digest, model_shape, param_digest
from forgetd.server.engine.shard_extras import attach_extras
from forgetd.server.engine.strategies import ShardState
from forgetd.server.engine.training import ShardLayout, config_epochs
from forgetd.server.errors import StoreError
from forgetd.server.store.layout import (
    FORMAT,
    Manifest,
    StorePaths,
    collect_garbage,
    fsync_dir,
    increments_artifact,
    optim_artifact,
    params_artifact,
    write_durable,
)
from forgetd.server.store.rows import RowStore
from forgetd.server.store.vault import sweep_stale

__all__ = ["StoreMeta", "SampleIndex", "LoadedStore", "load_store", "load_encoder", "make_snapshot", "read_subject_key",
           "ref_bytes"]

log = logging.getLogger("forgetd.server")


def ref_bytes(key: bytes, sample_id: str) -> bytes:
    """The 32 bytes refs.npy holds for a sample: its ledger subject ref (NFC, see forgetd.ledger.subjects)."""
    return bytes.fromhex(subject_ref(key, sample_id))


@dataclass(frozen=True)
class StoreMeta:
    """store.json: what training measured, immutable."""

    config: EngineConfig
    m: int  # the threshold: slices S-m+1..S are the retrain region
    budget: int  # phi, samples read
    num_features: int
    num_classes: int
    training_accuracy: float  # on the training split, right after training
    increments_bytes: int
    train_seconds: float

    @classmethod
    def read(cls, paths: StorePaths) -> StoreMeta:
        try:
            meta: dict[str, Any] = json.loads(paths.meta.read_text())
        except FileNotFoundError:
            raise StoreError(f"{paths.root}: no forgetd store here (train one with `forgetd train --store "
                             f"{paths.root}`)") from None
        except ValueError as exc:
            raise StoreError(f"{paths.meta}: unreadable ({exc}); the store is damaged") from None
        if meta.get("format") != FORMAT:
            raise StoreError(f"{paths.meta}: format {meta.get('format')!r}; this forgetd reads {FORMAT}")
        return cls(EngineConfig.from_json_dict(meta["config"]), int(meta["m"]), int(meta["budget"]),
                   int(meta["num_features"]), int(meta["num_classes"]), meta["training_accuracy_ppm"] / 1e6,
                   int(meta["increments_bytes"]), float(meta["train_seconds"]))


class SampleIndex:
    """Where each training sample sits: subject ref -> row position in the training split, position -> shard
    and local index, and the row store's spelling of each id still present."""

    def __init__(self, refs: np.ndarray, layouts: list[ShardLayout]) -> None:
        self.position_of: dict[bytes, int] = {refs[p].tobytes(): p for p in range(len(refs))}  # refs (N, 32) u8
        self.size = len(refs)
        self.shard_of = np.empty(self.size, np.int64)
        self.local_of = np.empty(self.size, np.int64)
        for k, lay in enumerate(layouts):
            self.shard_of[lay.members] = k
            self.local_of[lay.members] = np.arange(len(lay.members))
        self.row_id: dict[int, str] = {}  # position -> id as the row store has it; filled by load_store

    def position(self, key: bytes, sample_id: str) -> int | None:
        return self.position_of.get(ref_bytes(key, sample_id))


@dataclass
class LoadedStore:
    paths: StorePaths
    config: EngineConfig
    m: int
    shape: MLPShape
    device: str
    subject_key: bytes
    rows: RowStore
    manifest: Manifest  # the live version
    layouts: list[ShardLayout]
    index: SampleIndex
    shards: list[ShardState]
    X_test: np.ndarray
    y_test: np.ndarray
    snapshot: ModelSnapshot  # of the live version
    encoder: FeatureEncoder  # raw row -> features, as fitted at training (encoder.json)
    # one-hot feature -> per shard, the local indices of the rows that hold it; built on first use by
    # engine/encoder_residue.py (training rows never change, so it stays valid)
    category_holders: dict[int, list[np.ndarray]] | None = None


def load_store(paths: StorePaths, meta: StoreMeta, device: str, *, owner: bool) -> LoadedStore:
    """The live version of the store at `paths`. Only the store's writer (`owner`) tidies up: it deletes the
    files no version names, the scratch copies of audits that were killed, and finishes an interrupted erasure."""
    manifest = Manifest.read(paths.manifest)
    key = read_subject_key(paths)
    if owner:
        collect_garbage(paths, manifest)
        for name in sweep_stale(paths.root):
            log.warning("removed audit/%s, left behind by an audit or seal that did not finish", name)
    rows = RowStore.open(paths.rows)
    try:
        with np.load(paths.layout, allow_pickle=False) as z:
            layouts = [ShardLayout(members=z[f"members{k}"], bounds=z[f"bounds{k}"]) for k in range(meta.config.shards)]
        with np.load(paths.test, allow_pickle=False) as z:
            X_test, y_test = z["X"], z["y"]
        index = SampleIndex(np.load(paths.refs, allow_pickle=False), layouts)
        X_all, y_all, alive_all = _load_rows(paths, rows, index, key, meta.num_features, manifest, owner)
        shards = _load_shards(paths, meta, manifest, layouts, X_all, y_all, alive_all, device)
        attach_extras(paths, manifest, shards)  # the linear family's state, INFLUENCE's bookkeeping
    except BaseException:
        rows.close()
        raise
    shape = model_shape(meta.config.model, meta.config.hidden_sizes, meta.num_features, meta.num_classes)
    snapshot = make_snapshot(manifest.version, shards, shape, meta.config.aggregation, device)
    return LoadedStore(paths, meta.config, meta.m, shape, device, key, rows, manifest, layouts, index, shards,
                       X_test, y_test, snapshot, load_encoder(paths, meta.num_features, owner))


def load_encoder(paths: StorePaths, num_features: int, owner: bool) -> FeatureEncoder:
    """The store's feature encoder. A store trained before encoders were kept gets the identity over its
    features (x0..), written by the writer once so that its vaults hold one too."""
    try:
        encoder = FeatureEncoder.from_bytes(paths.encoder.read_bytes(), str(paths.encoder))
    except FileNotFoundError:
        encoder = FeatureEncoder.identity([f"x{j}" for j in range(num_features)])
        if owner:
            write_durable(paths.encoder, encoder.to_bytes())
            fsync_dir(paths.root)
    if encoder.num_features != num_features:
        raise StoreError(f"{paths.encoder}: encodes {encoder.num_features} features but the model takes "
                         f"{num_features}; the store is damaged")
    return encoder


def read_subject_key(paths: StorePaths) -> bytes:
    """The deployment's HMAC key; StoreError naming the file when it is missing or unreadable."""
    try:
        key = paths.subject_key.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"{paths.subject_key}: missing; it is the deployment's subject key, without which no "
                         "sample id can be matched to the ledger: restore it from a backup of this store") from None
    except OSError as exc:
        raise StoreError(f"{paths.subject_key}: cannot read it ({exc.strerror})") from None
    return key


def _load_rows(paths: StorePaths, rows: RowStore, index: SampleIndex, key: bytes, num_features: int,
               manifest: Manifest, owner: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X (N, F), y (N,), alive (N,)) by row position, rows forgotten (or never there) zero and not alive."""
    forgotten = set(manifest.forgotten)
    ids, X, y = rows.load()
    pos = np.array([index.position_of.get(ref_bytes(key, sid), -1) for sid in ids], np.int64)
    if (pos < 0).any():
        stranger = ids[int(np.argmax(pos < 0))]
        if unicodedata.normalize("NFC", stranger) != stranger:
            raise StoreError(f"{paths.rows}: row id {stranger!r} is not in Unicode NFC form and refs.npy does not "
                             "name it by its NFC form; train the store again with this forgetd")
        raise StoreError(f"{paths.rows}: a row the store never trained on; the store is damaged")
    leftover = [sid for sid, p in zip(ids, pos.tolist()) if p in forgotten]
    if leftover:
        if owner:
            refs = [ref_bytes(key, sid).hex() for sid in leftover]
            log.warning("%s held %d row(s) of samples the store had forgotten (subject refs %s); erased them again. "
                        "After a crash between a forget's commit and its erasure this is the roll-forward; "
                        "otherwise the rows were put back behind forgetd's back", paths.rows, len(refs),
                        ", ".join(refs))
            rows.erase(leftover)
        keep = np.array([p not in forgotten for p in pos.tolist()], bool)
        ids, X, y, pos = [i for i, k in zip(ids, keep) if k], X[keep], y[keep], pos[keep]
    n = index.size
    if len(pos) + len(forgotten) != n:
        missing = n - len(pos) - len(forgotten)
        raise StoreError(f"{paths.rows}: {missing} rows missing that were never forgotten; the store is damaged")
    index.row_id = dict(zip(pos.tolist(), ids))
    X_all = np.zeros((n, num_features), np.float32)
    y_all = np.zeros(n, np.int64)
    X_all[pos], y_all[pos] = X, y
    alive_all = np.zeros(n, bool)
    alive_all[pos] = True
    return X_all, y_all, alive_all


def _load_shards(paths: StorePaths, meta: StoreMeta, manifest: Manifest, layouts: list[ShardLayout],
                 X_all: np.ndarray, y_all: np.ndarray, alive_all: np.ndarray, device: str) -> list[ShardState]:
    cfg, recorded = meta.config, meta.config.slices - meta.m
    dev = torch.device(device)
    shards = []
    for k, lay in enumerate(layouts):
        ckpt = ShardCheckpoints.load(paths.artifact(manifest.files[params_artifact(k)]),
                                     paths.artifact(manifest.files[optim_artifact(k)]))
        incs = ShardIncrements(lay, config_epochs(cfg), cfg.batch_size, recorded)
        for s in range(1, recorded + 1):
            incs.attach(s, paths.artifact(manifest.files[increments_artifact(k, s)]))
        shards.append(ShardState(
            shard=k, layout=lay, index=ShardIndex.load(paths.index(k)), increments=incs, checkpoints=ckpt,
            subtracted=set(manifest.subtracted.get(k, [])), alive=alive_all[lay.members].copy(),
            X=torch.from_numpy(X_all[lay.members]).to(dev), y=torch.from_numpy(y_all[lay.members]).to(dev),
        ))
    return shards


def make_snapshot(version: int, shards: list[ShardState], shape: MLPShape, aggregation: str,
                  device: str) -> ModelSnapshot:
    """The shards' live parameters as `version`, copied to the device: later forgets never touch the copy."""
    lives = [st.checkpoints.live for st in shards]
    params = tuple(torch.from_numpy(p.copy()).to(device) for p in lives)
    return ModelSnapshot(version, model_digest(lives), tuple(param_digest(p) for p in lives), shape, params,
                         aggregation, device)
