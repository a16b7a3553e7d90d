"""The unlearning engine: trains a store (SISA slices + recorded increments) and forgets samples from it.

    engine = Engine.train(load_dataset("synthetic", n=2000, seed=0), EngineConfig(slices=10), "store/")
    report = engine.forget(["syn:17"], strategy="auto")     # HS or OHS, as configured
    probs = engine.snapshot().predict_proba(X)               # immutable; later forgets never touch it

This module is the engine's lifecycle (train, open, close, the one writer per store); the work lives beside
it: building.py trains a store, state.py loads one, planning.py plans a forget, forgetting.py applies and
publishes it, strategies.py is the per-shard arithmetic.

Digests: a shard's digest is the hex SHA-256 of its live parameters theta_S as little-endian float32 in
the model's flat layout (forgetd.server.engine.model); the model digest is the hex SHA-256 of all shards' live
parameter bytes concatenated in shard order 0..K-1. Bitwise equal on the same kind of device.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from forgetd.server.config import EngineConfig
from forgetd.server.data.dataset import Dataset
from forgetd.server.engine.budget import ShardBudget, certified_budget
from forgetd.server.engine.building import build_store
from forgetd.server.engine.forgetting import batch_tag, forget_planned
from forgetd.server.engine.gold import GoldFigures, compare_gold, gold_inputs
from forgetd.server.engine.model import ModelSnapshot
from forgetd.server.engine.newton import ledger_details
from forgetd.server.engine.planning import plan_forget
from forgetd.server.engine.reports import ForgetReport, Plan, PlanEntry, SampleResult
from forgetd.server.engine.retraining import retrain_store
from forgetd.server.engine.shard_tasks import ForgetTask, forget_tasks
from forgetd.server.engine.state import LoadedStore, StoreMeta, load_store, stored_subjects
from forgetd.server.engine.training import cuda_determinism
from forgetd.server.errors import StoreError
from forgetd.server.executors import ExecutorSpec, InlineExecutor, ShardExecutor, make_executor
from forgetd.server.store.batch_tag import BatchTag
from forgetd.server.store.layout import Manifest, StorePaths, fsync_dir
from forgetd.server.store.lock import WriterLock
from forgetd.server.store.space import full_as_no_space
from forgetd.server.vocabulary import resolve_device, supported_strategies

__all__ = ["Engine", "Plan", "PlanEntry", "ForgetReport", "SampleResult", "ModelSnapshot"]


class Engine:
    """A trained store, opened for forgetting and prediction. Use Engine.train or Engine.open.

    Attributes: config (EngineConfig), m (the threshold: slices S-m+1..S are the retrain region), budget
    (phi, samples read), num_features, num_classes, training_accuracy (train split, right after training),
    increments_bytes, train_seconds, device ("cpu", "cuda:0"), store_dir, subject_key (the deployment's
    HMAC key), ledger_path, encoder (the FeatureEncoder that makes features of raw rows); version,
    live_batch and digest() follow the live version.
    """

    def __init__(self, root: Path, device: str, meta: StoreMeta, store: LoadedStore, writer: WriterLock,
                 owner: bool) -> None:
        # Use Engine.train or Engine.open.
        self.store_dir = root
        self.device = device
        self.config: EngineConfig = meta.config
        self.m = meta.m
        self.budget = meta.budget
        self.num_features = meta.num_features
        self.num_classes = meta.num_classes
        self.training_accuracy = meta.training_accuracy
        self.increments_bytes = meta.increments_bytes
        self.train_seconds = meta.train_seconds
        self.subject_key = store.subject_key
        self.encoder = store.encoder  # raw row -> features, as fitted at training (forgetd.server.data.encoder)
        self._paths = StorePaths(root)
        self._store = store
        self._writer = writer
        self._owner = owner
        self._lock = threading.RLock()
        self._closed = False
        self._executor: ShardExecutor = InlineExecutor()  # where a forget's shards run; open() sets the chosen one

    # -- construction -------------------------------------------------------------------------------------

    @classmethod
    def train(cls, dataset: Dataset, config: EngineConfig, store_dir: str | Path, *,
              progress: Callable[[int, int], None] | None = None,
              executor: ExecutorSpec | ShardExecutor | None = None) -> Engine:
        """Train a new store at `store_dir` (which must not exist) and open it. Built in a hidden sibling
        directory and renamed into place, so a crash leaves no store that opens. `executor` (server/executors)
        trains the shards and then forgets for the opened engine, which owns it; it is not part of the store."""
        root = Path(store_dir)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise StoreError(f"{root}: already exists; choose a new --store directory or remove this one")
        device = resolve_device(config.device)
        cuda_determinism()
        ex = executor if isinstance(executor, ShardExecutor) else make_executor(executor)
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = root.parent / f".{root.name}.training-{os.getpid()}-{os.urandom(4).hex()}"
        tmp.mkdir()
        try:
            with full_as_no_space(root.parent, f"training {root.name}: the half-made store is removed"):
                build_store(tmp, dataset, config, device, progress, ex)
            if root.exists():
                root.rmdir()  # empty, checked above
            os.rename(tmp, root)
            fsync_dir(root.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            ex.close()
            raise
        return cls.open(root, device=device, executor=ex)

    @classmethod
    def open(cls, store_dir: str | Path, device: str = "auto", *, require_writer: bool = False,
             executor: ExecutorSpec | ShardExecutor | None = None) -> Engine:
        """Open a trained store; StoreError when it is missing, incomplete or damaged. A store left between
        a forget's commit and its row erasure is finished here (the rows are erased).

        `require_writer` (the daemon): StoreHeld, before anything is written, when another process holds the
        store's writer lock (store/lock.py); without it such an engine opens to read, plan and predict."""
        ex = executor if isinstance(executor, ShardExecutor) else make_executor(executor)  # starts nothing yet
        root = Path(store_dir)
        paths = StorePaths(root)
        meta = StoreMeta.read(paths)
        if device == "auto" and meta.config.device != "auto":
            device = meta.config.device
        device = resolve_device(device)
        cuda_determinism()
        # One engine per store writes: the first to open holds an exclusive lock, and only the holder may
        # tidy up (delete unreferenced files, finish an erasure) or forget. Another engine opened on the
        # same store reads, plans and predicts; its forget() fails while the holder is open.
        writer = WriterLock(root)
        try:
            if require_writer:
                writer.acquire_or_raise()
                owner = True
            else:
                owner = writer.acquire()
        except BaseException:
            writer.close()
            raise
        try:
            store = load_store(paths, meta, device, owner=owner)
        except BaseException:
            writer.close()
            raise
        engine = cls(root, device, meta, store, writer, owner)
        engine._executor = ex  # owned: closed with the engine
        return engine

    def _take_over(self) -> None:
        """Become the store's writer, if the engine that was writing has closed and changed nothing since."""
        if not self._writer.acquire():
            raise StoreError(f"{self.store_dir}: another engine has this store open; only one may forget (close it first)")
        if Manifest.read(self._paths.manifest).version != self.version:
            self._writer.release()
            raise StoreError(f"{self.store_dir}: another engine changed the store since this one opened it; open it again")
        self._owner = True

    # -- reading ------------------------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self._store.manifest.version

    @property
    def live_batch(self) -> BatchTag | None:
        """The batch tag of the forget that produced the live version (None after training, or when that
        forget named no requests)."""
        return BatchTag.from_json(self._store.manifest.tag)

    @property
    def ledger_path(self) -> Path:
        return self._paths.ledger

    def sample_ids(self) -> list[str]:
        """Ids of the training samples still present (not forgotten), in training-data order."""
        return self._store.rows.ids()

    def stored_subjects(self) -> dict[str, str]:
        """Subject ref -> id of every row stored, each checked against the ref trained at its position."""
        return stored_subjects(self._store)

    def has_sample(self, sample_id: str) -> bool:
        return sample_id in self._store.rows

    def shard_digests(self) -> list[str]:
        return list(self._store.snapshot.shard_digests)

    def digest(self) -> str:
        return self._store.snapshot.digest

    def snapshot(self) -> ModelSnapshot:
        return self._store.snapshot

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._store.snapshot.predict_proba(X)

    def evaluate(self) -> float:
        """Accuracy of the live model on the test split (0.0 when the data set had no test rows)."""
        X_test, y_test = self._store.X_test, self._store.y_test
        if len(y_test) == 0:
            return 0.0
        pred = self.predict_proba(X_test).argmax(axis=1)
        return float((pred == y_test).mean())

    @property
    def supported_strategies(self) -> tuple[str, ...]:
        """The strategies this store's model family applies ("auto" included): vocabulary.supported_strategies."""
        return supported_strategies(self.config.model)

    def gold_standard(self, tolerance_points: float = 0.5) -> GoldFigures:
        """The live model beside one retrained from scratch on the live rows (engine/gold.py). The inputs are
        copied under the engine's lock; the retrain runs without it, so forgets go on meanwhile."""
        with self._lock:
            inputs = gold_inputs(self._store)
        return compare_gold(inputs, tolerance_points)

    def certified_budget(self) -> tuple[ShardBudget, ...]:
        """The linear family's certified-removal budget per shard as the live version stands (engine/budget.py;
        empty for an MLP). Never waits for a forget in progress."""
        return certified_budget(self._store)

    def retrain_all(self, gold_seq: int = 0) -> ForgetReport:
        """Retrain every shard from scratch on the live rows and publish it as the next version, with no forget,
        tagged with the audit.gold entry that asked for it (engine/retraining.py; `forgetd serve --gold-retrain`)."""
        with self._lock:
            if self._closed:
                raise StoreError(f"{self.store_dir}: the engine is closed")
            if not self._owner:
                self._take_over()
            with full_as_no_space(self.store_dir, "retraining the store: nothing was published, it can be retried"):
                return retrain_store(self._store, gold_seq)

    def genesis_record(self) -> dict[str, Any]:
        """What the ledger's genesis commits: config, data digest, the initial model and artifact digests."""
        record: dict[str, Any] = json.loads(self._paths.genesis.read_text())
        return record

    # -- planning and forgetting --------------------------------------------------------------------------

    def plan(self, ids: Iterable[str], strategy: str = "auto") -> Plan:
        """What forget(ids, strategy) would do; validates like forget and changes nothing."""
        with self._lock:
            return plan_forget(self._store, ids, strategy).plan

    def shard_tasks(self, ids: Iterable[str], strategy: str = "auto") -> list[ForgetTask]:
        """The per-shard tasks forget(ids, strategy) would hand its executor (their inputs by value: the rows a
        task moves); changes nothing."""
        with self._lock:
            return forget_tasks(self._store, plan_forget(self._store, ids, strategy))

    @property
    def executor(self) -> ShardExecutor:
        """Where this engine runs its shard tasks (inline, process pool or Ray)."""
        return self._executor

    def forget(self, ids: Iterable[str], strategy: str = "auto", *, request_ids: Sequence[str] = ()) -> ForgetReport:
        """Forget these samples (coalesced) and publish the result as the next version. Unknown, already
        forgotten or no ids: an error, and nothing changes.

        `request_ids` (the daemon's worker gives them) name the Forget requests of the batch: the new version
        is published with their batch tag (store/batch_tag.py), which the report carries too."""
        if isinstance(request_ids, str):
            raise TypeError("request_ids must be a collection of request ids, not one string")
        with self._lock:
            if self._closed:
                raise StoreError(f"{self.store_dir}: the engine is closed")
            if not self._owner:
                self._take_over()
            t0 = time.perf_counter()
            planned = plan_forget(self._store, ids, strategy)
            tag = batch_tag(self._store, planned, request_ids, strategy) if request_ids else None
            with full_as_no_space(self.store_dir, "applying a forget: nothing was published, it can be retried"):
                outcomes = forget_planned(self._store, planned, tag, self._executor)
            plan, snap = planned.plan, self._store.snapshot
            return ForgetReport(
                version=snap.version,
                digest=snap.digest,
                shard_digests=snap.shard_digests,
                strategy=plan.strategy,
                samples=tuple(SampleResult(e.sample_id, e.shard, e.slice, e.region, e.strategy, e.guarantee)
                              for e in plan.samples),
                guarantee=plan.guarantee,
                residue_steps=sum(o.residue_steps for o in outcomes),
                samples_read=sum(o.samples_read for o in outcomes),
                seconds=time.perf_counter() - t0,
                snapshot=snap,
                tag=tag,
                encoder_residue=plan.encoder_residue,
                details=ledger_details(outcomes, self.config),
            )

    def finish_erasure(self) -> None:
        """Erase the rows the live version forgot that the row store still holds, and scrub their pages: finishes
        a forget whose erasure failed after its commit (a reader held the row store), as opening the store
        would. StoreError while the cause lasts; the daemon's worker retries."""
        with self._lock:
            store = self._store
            forgotten = set(store.manifest.forgotten)
            left = [i for i in store.rows.ids() if store.index.position(self.subject_key, i) in forgotten]
            if left:
                store.rows.erase(left)  # scrubs too
            else:
                store.rows.scrub()

    # -- closing ------------------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._store.rows.close()
                self._writer.close()
                self._store.release()  # unmaps the increments; loads nothing a forget never asked for
                self._executor.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Engine({str(self.store_dir)!r}, version={self.version}, shards={self.config.shards}, m={self.m}, "
                f"device={self.device!r})")
