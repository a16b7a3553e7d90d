"""A trained store opened: what Predict reads at once, and what only a forget needs on its first use.

`load_store` reads the live version the manifest names in two parts. At open: the live parameters (the last
row of each shard's `.params`, read from a memory map), the encoder, the test split and the row store's ids;
that is all a Predict, `has_sample` or `sample_ids` needs, so a daemon serves within seconds of its start.
On first use (`LoadedStore.index` or `.shards`, which a forget, a plan or the gold check reach, never
Predict): the training rows still present, read from the row store shard by shard into the training device,
and per shard its checkpoints, increments (memory-mapped) and index. A store opened by a reader rather than
its writer loads everything at open, since the writer may delete the version's files afterwards.

The manifest is the truth about what was forgotten: rows it forgot that the row store still holds were left
by a crash between a forget's commit and its erasure, and are erased (roll forward). Opening checks the
count (rows + forgotten = trained) and, when it disagrees, loads everything at once, so the roll-forward
still happens before anything is served. The same state is what a forgotten row put back behind forgetd's
back looks like, and erasing it removes the evidence, so every such erasure is logged as a warning naming
the subject refs (never the ids): the log is then the record `forgetd verify` can no longer find in the store.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from forgetd.ledger.subjects import subject_ref, subject_refs_raw
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
    check_committed,
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
           "ref_bytes", "stored_subjects"]

log = logging.getLogger("forgetd.server")

_CHUNK_ROWS = 16384  # rows read from the row store at a time: the copy in flight stays a few tens of MiB


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
    """Where each training sample sits: subject ref -> row position in the training split (a sorted copy of
    refs.npy searched by bisection, no per-sample objects), position -> shard and local index, and the row
    store's spelling of each id still present."""

    def __init__(self, refs: np.ndarray, layouts: list[ShardLayout]) -> None:
        keys = np.ascontiguousarray(refs, dtype=np.uint8).view("S32").reshape(-1)  # refs (N, 32) u8
        self._order = np.argsort(keys, kind="stable")  # rank -> position
        self._sorted = keys[self._order]
        self.size = len(keys)
        self.shard_of = np.empty(self.size, np.int64)
        self.local_of = np.empty(self.size, np.int64)
        for k, lay in enumerate(layouts):
            self.shard_of[lay.members] = k
            self.local_of[lay.members] = np.arange(len(lay.members))
        self.row_id: dict[int, str] = {}  # position -> id as the row store has it; filled on the first use

    def positions(self, refs: list[bytes]) -> np.ndarray:
        """The position of each 32-byte ref, -1 where the store never trained on it."""
        query = np.frombuffer(b"".join(refs), "S32") if refs else np.zeros(0, "S32")
        if self.size == 0:
            return np.full(len(query), -1, np.int64)
        at = np.minimum(np.searchsorted(self._sorted, query), self.size - 1)
        # "S" compares ignore trailing NUL bytes, but every key and query is 32 bytes long, so equal is equal
        return np.where(self._sorted[at] == query, self._order[at], -1).astype(np.int64)

    def position(self, key: bytes, sample_id: str) -> int | None:
        p = int(self.positions([ref_bytes(key, sample_id)])[0])
        return None if p < 0 else p


@dataclass
class _Loaded:
    """The part of a store only forgetting reads, loaded once on first use."""

    index: SampleIndex
    shards: list[ShardState]


class LoadedStore:
    """The live version of a store. Everything but `index` and `shards` is read at open; those two load on
    first use, once, under a lock (the worker and the gold check may both reach them first)."""

    def __init__(self, paths: StorePaths, meta: StoreMeta, device: str, subject_key: bytes, rows: RowStore,
                 manifest: Manifest, layouts: list[ShardLayout], X_test: np.ndarray, y_test: np.ndarray,
                 encoder: FeatureEncoder, owner: bool) -> None:
        # Use load_store.
        self.paths = paths
        self.config: EngineConfig = meta.config
        self.m = meta.m
        self.shape: MLPShape = model_shape(meta.config.model, meta.config.hidden_sizes, meta.num_features,
                                           meta.num_classes)
        self.device = device
        self.subject_key = subject_key
        self.rows = rows
        self.manifest = manifest  # the live version
        self.layouts = layouts
        self.X_test = X_test
        self.y_test = y_test
        self.encoder = encoder  # raw row -> features, as fitted at training (encoder.json)
        self.snapshot: ModelSnapshot  # of the live version; set by load_store
        # one-hot feature -> per shard, the local indices of the rows that hold it; built on first use by
        # engine/encoder_residue.py (training rows never change, so it stays valid)
        self.category_holders: dict[int, list[np.ndarray]] | None = None
        self.open_phases: dict[str, float] = {}  # seconds of each step of the open (and of the first use)
        self._meta = meta
        self._owner = owner
        self._loaded: _Loaded | None = None
        self.checked_rows: tuple[list[str], np.ndarray, bytes] | None = None  # stored_subjects', for _load
        self._load_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the rows, checkpoints, increments and indexes are in memory yet."""
        return self._loaded is not None

    @property
    def index(self) -> SampleIndex:
        return self._load().index

    @property
    def shards(self) -> list[ShardState]:
        return self._load().shards

    def release(self) -> None:
        """Unmap the increments (closing); loads nothing that is not loaded yet."""
        with self._load_lock:
            if self._loaded is not None:
                for st in self._loaded.shards:
                    st.increments.release()

    def _load(self) -> _Loaded:
        loaded = self._loaded
        if loaded is not None:
            return loaded
        with self._load_lock:
            if self._loaded is None:
                t0 = time.perf_counter()
                index = SampleIndex(np.load(self.paths.refs, allow_pickle=False), self.layouts)
                alive_all = _reconcile_rows(self, index)
                shards = _load_shards(self, index.row_id, alive_all)
                attach_extras(self.paths, self.manifest, shards)  # the linear family's state, INFLUENCE's bookkeeping
                self._loaded = _Loaded(index, shards)
                self.open_phases["first_use"] = time.perf_counter() - t0
            return self._loaded


def load_store(paths: StorePaths, meta: StoreMeta, device: str, *, owner: bool) -> LoadedStore:
    """The live version of the store at `paths`. Only the store's writer (`owner`) tidies up: it deletes the
    files no version names, the scratch copies of audits that were killed, and finishes an interrupted erasure."""
    phases: dict[str, float] = {}
    clock = [time.perf_counter()]

    def phase(name: str) -> None:
        now = time.perf_counter()
        phases[name], clock[0] = now - clock[0], now

    manifest = Manifest.read(paths.manifest)
    key = read_subject_key(paths)
    if owner:
        collect_garbage(paths, manifest)
        for name in sweep_stale(paths.root):
            log.warning("removed audit/%s, left behind by an audit or seal that did not finish", name)
    phase("manifest")
    rows = RowStore.open(paths.rows, vaults=paths.audit)  # the vaults keep what it erases
    phase("row_ids")
    try:
        with np.load(paths.layout, allow_pickle=False) as z:
            layouts = [ShardLayout(members=z[f"members{k}"], bounds=z[f"bounds{k}"]) for k in range(meta.config.shards)]
        with np.load(paths.test, allow_pickle=False) as z:
            X_test, y_test = z["X"], z["y"]
        phase("layout_and_test")
        store = LoadedStore(paths, meta, device, key, rows, manifest, layouts, X_test, y_test,
                            load_encoder(paths, meta.num_features, owner), owner)
        store.snapshot = _snapshot_of(manifest.version, _live_params(paths, manifest, meta.config.shards), store.shape,
                                      meta.config.aggregation, device)
        phase("live_params")
        trained = sum(len(lay.members) for lay in layouts)
        if not owner or len(rows) + len(manifest.forgotten) != trained:
            store._load()  # a reader, or rows to roll forward (or missing): everything now
            phase("rows_and_shards")
    except BaseException:
        rows.close()
        raise
    store.open_phases.update(phases)
    return store


def load_encoder(paths: StorePaths, num_features: int, owner: bool) -> FeatureEncoder:
    """The store's feature encoder. A store trained before encoders were kept gets the identity over its
    features (x0..), written by the writer once so that its vaults hold one too."""
    try:
        data = paths.encoder.read_bytes()
        check_committed(paths, "encoder", paths.encoder, data)
        encoder = FeatureEncoder.from_bytes(data, str(paths.encoder))
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


def stored_subjects(store: LoadedStore) -> dict[str, str]:
    """Subject ref (hex) -> id of every row stored (checked by `_checked_rows`, the check kept for the first use
    so it does not hash every id again); StoreError for two ids equal after Unicode NFC normalisation."""
    ids, _, computed = store.checked_rows = _checked_rows(store)
    hexed = computed.hex()
    by_ref = dict(zip([hexed[i:i + 64] for i in range(0, len(hexed), 64)], ids))
    if len(by_ref) != len(ids):
        raise StoreError(f"{store.paths.root}: the training data has ids that are equal after Unicode NFC "
                         "normalisation; the ledger could not tell those samples apart")
    return by_ref


def _checked_rows(store: LoadedStore) -> tuple[list[str], np.ndarray, bytes]:
    """(ids, ordinals, raw subject refs) of every row stored, each id checked against refs.npy at its ordinal
    (its training position): a row whose id is not the one trained there, or past the trained ones, is refused
    (StoreError). One pass of HMACs (ledger.subjects.subject_refs_raw), compared to refs.npy in one go."""
    paths = store.paths
    ids, ords = store.rows.ordinals()
    refs = np.load(paths.refs, mmap_mode="r", allow_pickle=False)  # (N, 32) u8 by position
    if len(ords) and int(ords[-1]) >= len(refs):
        raise StoreError(f"{paths.rows}: a row at position {int(ords[-1])}, past the {len(refs)} the store trained "
                         "on; the row store was changed behind forgetd's back: restore it from a backup")
    computed = subject_refs_raw(store.subject_key, ids)
    expected = np.ascontiguousarray(refs[ords]).tobytes()
    if computed != expected:
        bad = int(np.argmax(np.frombuffer(computed, "S32") != np.frombuffer(expected, "S32")))
        if unicodedata.normalize("NFC", ids[bad]) != ids[bad]:
            raise StoreError(f"{paths.rows}: row id {ids[bad]!r} is not in Unicode NFC form and refs.npy does not "
                             "name it by its NFC form; train the store again with this forgetd")
        raise StoreError(f"{paths.rows}: the row at position {int(ords[bad])} holds an id that is not the one the "
                         "store trained there (its subject ref is not refs.npy's); the row store was changed "
                         "behind forgetd's back: restore it from a backup")
    return ids, ords, computed


def _live_params(paths: StorePaths, manifest: Manifest, shards: int) -> list[np.ndarray]:
    """theta_S of every shard, read from the last row of its `.params` through a memory map (the rest of the
    file is not read)."""
    lives = []
    for k in range(shards):
        path = paths.artifact(manifest.files[params_artifact(k)])
        try:
            params = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise StoreError(f"checkpoint file unreadable ({exc}); the store is damaged") from None
        if params.ndim != 2 or params.shape[0] < 1:
            raise StoreError(f"{path}: shape {params.shape}, expected (slices + 1, parameters); the store is damaged")
        lives.append(np.array(params[-1], dtype=np.float32))
        del params  # unmapped
    return lives


def _reconcile_rows(store: LoadedStore, index: SampleIndex) -> np.ndarray:
    """Match the row store's ids to positions (index.row_id), finish an interrupted erasure (the writer only),
    and check that every row never forgotten is there; alive (N,) by position."""
    paths, rows, key = store.paths, store.rows, store.subject_key
    forgotten = set(store.manifest.forgotten)
    checked, store.checked_rows = store.checked_rows, None
    ids, pos, _ = checked if checked is not None else _checked_rows(store)  # a checked id's position is its ordinal
    leftover = [sid for sid, p in zip(ids, pos.tolist()) if p in forgotten]
    if leftover:
        if store._owner:
            refs = [ref_bytes(key, sid).hex() for sid in leftover]
            log.warning("%s held %d row(s) of samples the store had forgotten (subject refs %s); erased them again. "
                        "After a crash between a forget's commit and its erasure this is the roll-forward; "
                        "otherwise the rows were put back behind forgetd's back", paths.rows, len(refs),
                        ", ".join(refs))
            rows.erase(leftover)
        keep = np.array([p not in forgotten for p in pos.tolist()], bool)
        ids, pos = [i for i, k in zip(ids, keep) if k], pos[keep]
    n = index.size
    if len(pos) + len(forgotten) != n:
        missing = n - len(pos) - len(forgotten)
        raise StoreError(f"{paths.rows}: {missing} rows missing that were never forgotten; the store is damaged")
    index.row_id = dict(zip(pos.tolist(), ids))
    alive_all = np.zeros(n, bool)
    alive_all[pos] = True
    return alive_all


def _shard_rows(store: LoadedStore, row_id: dict[int, str], members: np.ndarray,
                alive: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(X (n_k, F) float32, y (n_k,) int64) of one shard by local index, rows forgotten zero, read from the row
    store a chunk at a time straight into the shard's arrays (no copy of the whole training set)."""
    X = np.zeros((len(members), store.shape.num_features), np.float32)
    y = np.zeros(len(members), np.int64)
    present = np.flatnonzero(alive)
    for start in range(0, len(present), _CHUNK_ROWS):
        local = present[start:start + _CHUNK_ROWS]
        _, X[local], y[local] = store.rows.load([row_id[int(p)] for p in members[local]])
    dev = torch.device(store.device)
    return torch.from_numpy(X).to(dev), torch.from_numpy(y).to(dev)


def _load_shards(store: LoadedStore, row_id: dict[int, str], alive_all: np.ndarray) -> list[ShardState]:
    paths, manifest, cfg = store.paths, store.manifest, store.config
    recorded = cfg.slices - store.m
    shards = []
    for k, lay in enumerate(store.layouts):
        ckpt = ShardCheckpoints.load(paths.artifact(manifest.files[params_artifact(k)]),
                                     paths.artifact(manifest.files[optim_artifact(k)]))
        incs = ShardIncrements(lay, config_epochs(cfg), cfg.batch_size, recorded)
        for s in range(1, recorded + 1):
            incs.attach(s, paths.artifact(manifest.files[increments_artifact(k, s)]))
        alive = alive_all[lay.members].copy()
        X, y = _shard_rows(store, row_id, lay.members, alive)
        shards.append(ShardState(
            shard=k, layout=lay, index=ShardIndex.load(paths.index(k)), increments=incs, checkpoints=ckpt,
            subtracted=set(manifest.subtracted.get(k, [])), alive=alive, X=X, y=y,
        ))
    return shards


def make_snapshot(version: int, shards: list[ShardState], shape: MLPShape, aggregation: str,
                  device: str) -> ModelSnapshot:
    """The shards' live parameters as `version`, copied to the device: later forgets never touch the copy."""
    return _snapshot_of(version, [st.checkpoints.live for st in shards], shape, aggregation, device)


def _snapshot_of(version: int, lives: list[np.ndarray], shape: MLPShape, aggregation: str,
                 device: str) -> ModelSnapshot:
    params = tuple(torch.from_numpy(p.copy()).to(device) for p in lives)
    return ModelSnapshot(version, model_digest(lives), tuple(param_digest(p) for p in lives), shape, params,
                         aggregation, device)
