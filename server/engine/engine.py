"""The unlearning engine: trains a store (SISA slices + recorded increments) and forgets samples from it.

    engine = Engine.train(load_dataset("synthetic", n=2000, seed=0), EngineConfig(slices=10), "store/")
    result = engine.forget(["syn:17"], strategy="auto")     # HS or OHS, as configured
    probs = engine.snapshot().predict_proba(X)               # immutable; later forgets never touch it

Digests: a shard's digest is the hex SHA-256 of its live parameters theta_S as little-endian float32 in
the model's flat layout (forgetd.server.engine.model); the model digest is the hex SHA-256 of all shards' live
parameter bytes concatenated in shard order 0..K-1. Bitwise equal on the same kind of device.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from forgetd.server.engine.checkpoints import ShardCheckpoints
from forgetd.server.config import EngineConfig
from forgetd.server.vocabulary import STRATEGIES, resolve_device
from forgetd.server.data.loaders import Dataset
from forgetd.server.errors import AlreadyForgotten, EmptyRequest, InvalidConfig, InvalidStrategy, StoreError, UnknownSample
from forgetd.server.engine.increments import ShardIncrements, ShardIndex
from forgetd.server.engine.model import MLPShape, ModelSnapshot, init_params
from forgetd.server.store.rows import RowStore
from forgetd.server.store.layout import FORMAT, Manifest, StorePaths, atomic_write_json, collect_garbage, fsync_dir, save_array
from forgetd.server.engine.strategies import (
    APPROXIMATE,
    EXACT,
    ForgetResult,
    Plan,
    PlanEntry,
    SampleResult,
    SampleRoute,
    ShardState,
    TrainParams,
    forget_shard,
    route,
)
from forgetd.server.engine.training import (
    OptState,
    cost,
    default_budget,
    derive_seed,
    deterministic,
    make_layout,
    ShardLayout,
    run_steps,
    step_offsets,
    threshold,
)

__all__ = ["Engine", "Plan", "PlanEntry", "ForgetResult", "SampleResult", "ModelSnapshot"]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _param_digest(params: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(params, dtype="<f4").tobytes()).hexdigest()


def _ref(key: bytes, sample_id: str) -> bytes:
    return hmac.digest(key, sample_id.encode("utf-8"), "sha256")


# -- the engine ---------------------------------------------------------------------------------------------


class Engine:
    """A trained store, opened for forgetting and prediction. Use Engine.train or Engine.open.

    Attributes: config (EngineConfig), m (the threshold: slices S-m+1..S are the retrain region), budget
    (phi, samples read), num_features, num_classes, training_accuracy (train split, right after training),
    increments_bytes, train_seconds, device ("cpu", "cuda:0"), store_dir, subject_key (the deployment's
    HMAC key), ledger_path; version, live_tag and digest() follow the live version.
    """

    def __init__(self, root: Path, device: str) -> None:
        self.store_dir = root
        self._paths = StorePaths(root)
        self.device = device
        self._lock = threading.RLock()
        self._closed = False

    # -- construction -------------------------------------------------------------------------------------

    @classmethod
    def train(cls, dataset: Dataset, config: EngineConfig, store_dir: str | Path, *,
              progress: Callable[[int, int], None] | None = None) -> Engine:
        """Train a new store at `store_dir` (which must not exist) and open it. Built in a hidden sibling
        directory and renamed into place, so a crash leaves no store that opens."""
        root = Path(store_dir)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise StoreError(f"{root}: already exists; choose a new --store directory or remove this one")
        device = resolve_device(config.device)
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = root.parent / f".{root.name}.training-{os.getpid()}-{os.urandom(4).hex()}"
        tmp.mkdir()
        try:
            _build_store(tmp, dataset, config, device, progress)
            if root.exists():
                root.rmdir()  # empty, checked above
            os.rename(tmp, root)
            fsync_dir(root.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls.open(root, device=device)

    @classmethod
    def open(cls, store_dir: str | Path, device: str = "auto") -> Engine:
        """Open a trained store; StoreError when it is missing, incomplete or damaged. A store left between
        a forget's commit and its row erasure is finished here (the rows are erased)."""
        root = Path(store_dir)
        paths = StorePaths(root)
        try:
            meta = json.loads(paths.meta.read_text())
        except FileNotFoundError:
            raise StoreError(f"{root}: no forgetd store here (train one with `forgetd train --store {root}`)") from None
        except ValueError as exc:
            raise StoreError(f"{paths.meta}: unreadable ({exc}); the store is damaged") from None
        if meta.get("format") != FORMAT:
            raise StoreError(f"{paths.meta}: format {meta.get('format')!r}; this forgetd reads {FORMAT}")
        config = EngineConfig.from_json_dict(meta["config"])
        if device == "auto" and config.device != "auto":
            device = config.device
        self = cls(root, resolve_device(device))
        self._meta = meta
        self.config = config
        self.m = int(meta["m"])
        self.budget = int(meta["budget"])
        self.num_features = int(meta["num_features"])
        self.num_classes = int(meta["num_classes"])
        self.training_accuracy = meta["training_accuracy_ppm"] / 1e6
        self.increments_bytes = int(meta["increments_bytes"])
        self.train_seconds = float(meta["train_seconds"])
        self._shape = MLPShape(self.num_features, config.hidden_sizes, self.num_classes)
        self._manifest = Manifest.read(paths.manifest)
        # One engine per store writes: the first to open holds an exclusive lock, and only the holder may
        # tidy up (delete unreferenced files, finish an erasure) or forget. Another engine opened on the
        # same store reads, plans and predicts; its forget() fails while the holder is open.
        self._writer = _WriterLock(root)
        self._owner = self._writer.acquire()
        try:
            if self._owner:
                collect_garbage(paths, self._manifest)
            self.subject_key = paths.subject_key.read_bytes()
            self._rows = RowStore.open(paths.rows)
            try:
                self._load_state()
            except BaseException:
                self._rows.close()
                raise
        except BaseException:
            self._writer.close()
            raise
        self._snapshot = self._make_snapshot()
        return self

    def _take_over(self) -> None:
        """Become the store's writer, if the engine that was writing has closed and changed nothing since."""
        if not self._writer.acquire():
            raise StoreError(f"{self.store_dir}: another engine has this store open; only one may forget (close it first)")
        if Manifest.read(self._paths.manifest).version != self.version:
            self._writer.release()
            raise StoreError(f"{self.store_dir}: another engine changed the store since this one opened it; open it again")
        self._owner = True

    def _load_state(self) -> None:
        paths, cfg, man = self._paths, self.config, self._manifest
        with np.load(paths.layout, allow_pickle=False) as z:
            self._layouts = [ShardLayout(members=z[f"members{k}"], bounds=z[f"bounds{k}"]) for k in range(cfg.shards)]
        with np.load(paths.test, allow_pickle=False) as z:
            self._X_test, self._y_test = z["X"], z["y"]
        refs = np.load(paths.root / "refs.npy", allow_pickle=False)  # (N, 32) uint8
        self._pos_of_ref = {refs[p].tobytes(): p for p in range(len(refs))}
        n = len(refs)
        self._shard_of = np.empty(n, np.int64)
        self._local_of = np.empty(n, np.int64)
        for k, lay in enumerate(self._layouts):
            self._shard_of[lay.members] = k
            self._local_of[lay.members] = np.arange(len(lay.members))
        forgotten = set(man.forgotten)
        # Roll forward: the manifest is the truth; rows it forgot but the row store still holds were left
        # by a crash between the commit and the erasure.
        ids, X, y = self._rows.load()
        pos = np.array([self._pos_of_ref.get(_ref(self.subject_key, sid), -1) for sid in ids], np.int64)
        if (pos < 0).any():
            raise StoreError(f"{paths.rows}: a row the store never trained on; the store is damaged")
        leftover = [sid for sid, p in zip(ids, pos.tolist()) if p in forgotten]
        if leftover:
            if self._owner:
                self._rows.erase(leftover)
            keep = np.array([p not in forgotten for p in pos.tolist()], bool)
            ids, X, y, pos = [i for i, k in zip(ids, keep) if k], X[keep], y[keep], pos[keep]
        if len(pos) + len(forgotten) != n:
            missing = n - len(pos) - len(forgotten)
            raise StoreError(f"{paths.rows}: {missing} rows missing that were never forgotten; the store is damaged")
        X_all = np.zeros((n, self.num_features), np.float32)
        y_all = np.zeros(n, np.int64)
        X_all[pos], y_all[pos] = X, y
        alive_all = np.zeros(n, bool)
        alive_all[pos] = True
        dev = torch.device(self.device)
        self._shards: list[ShardState] = []
        for k, lay in enumerate(self._layouts):
            ckpt = ShardCheckpoints.load(paths.artifact(man.files[f"shard{k}.params"]),
                                         paths.artifact(man.files[f"shard{k}.optim"]))
            incs = ShardIncrements(lay, cfg.epochs, cfg.batch_size, cfg.slices - self.m)
            for s in range(1, cfg.slices - self.m + 1):
                incs.attach(s, paths.artifact(man.files[f"shard{k}.step{s}.inc"]))
            self._shards.append(ShardState(
                shard=k, layout=lay, index=ShardIndex.load(paths.index(k)), increments=incs, checkpoints=ckpt,
                subtracted=set(man.subtracted.get(k, [])), alive=alive_all[lay.members].copy(),
                X=torch.from_numpy(X_all[lay.members]).to(dev), y=torch.from_numpy(y_all[lay.members]).to(dev),
            ))

    # -- reading ------------------------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self._manifest.version

    @property
    def live_tag(self) -> str | None:
        """The tag given to the forget that produced the live version (None after training)."""
        return self._manifest.tag

    @property
    def ledger_path(self) -> Path:
        return self._paths.ledger

    def sample_ids(self) -> list[str]:
        """Ids of the training samples still present (not forgotten), in training-data order."""
        return self._rows.ids()

    def has_sample(self, sample_id: str) -> bool:
        return sample_id in self._rows

    def shard_digests(self) -> list[str]:
        return list(self._snapshot.shard_digests)

    def digest(self) -> str:
        return self._snapshot.digest

    def snapshot(self) -> ModelSnapshot:
        return self._snapshot

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._snapshot.predict_proba(X)

    def evaluate(self) -> float:
        """Accuracy of the live model on the test split (0.0 when the data set had no test rows)."""
        if len(self._y_test) == 0:
            return 0.0
        pred = self.predict_proba(self._X_test).argmax(axis=1)
        return float((pred == self._y_test).mean())

    def genesis_record(self) -> dict[str, Any]:
        """What the ledger's genesis commits: config, data digest, the initial model and artifact digests."""
        return json.loads(self._paths.genesis.read_text())

    def _make_snapshot(self) -> ModelSnapshot:
        lives = [st.checkpoints.live for st in self._shards]
        shard_digests = tuple(_param_digest(p) for p in lives)
        h = hashlib.sha256()
        for p in lives:
            h.update(np.ascontiguousarray(p, dtype="<f4").tobytes())
        params = tuple(torch.from_numpy(p.copy()).to(self.device) for p in lives)
        return ModelSnapshot(self.version, h.hexdigest(), shard_digests, self._shape, params,
                             self.config.aggregation, self.device)

    # -- planning -----------------------------------------------------------------------------------------

    def _resolve(self, strategy: str) -> str:
        if strategy not in STRATEGIES:
            raise InvalidStrategy(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        return self.config.default_strategy if strategy == "auto" else strategy

    def _locate(self, ids: Iterable[str]) -> list[tuple[str, int, int, int]]:
        """(id, position, shard, local) per distinct id, in request order; every check before any change."""
        if isinstance(ids, str):
            raise TypeError("ids must be a collection of sample ids, not one string")
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            raise EmptyRequest("the request names no sample ids; give at least one")
        out, unknown, gone = [], [], []
        forgotten = set(self._manifest.forgotten)
        for sid in wanted:
            if not isinstance(sid, str):
                unknown.append(repr(sid))
                continue
            p = self._pos_of_ref.get(_ref(self.subject_key, sid))
            if p is None:
                unknown.append(sid)
            elif p in forgotten:
                gone.append(sid)
            else:
                out.append((sid, p, int(self._shard_of[p]), int(self._local_of[p])))
        if unknown:
            raise UnknownSample(unknown)
        if gone:
            raise AlreadyForgotten(gone)
        return out

    def _step_sizes(self, k: int) -> list[int]:
        st = self._shards[k]
        alive_per_slice = np.add.reduceat(st.alive.astype(np.int64), st.layout.bounds[:-1])  # slices are non-empty
        return np.cumsum(alive_per_slice).tolist()

    def plan(self, ids: Iterable[str], strategy: str = "auto") -> Plan:
        """What forget(ids, strategy) would do; validates like forget and changes nothing."""
        with self._lock:
            resolved = self._resolve(strategy)
            entries = []
            starts: dict[int, int] = {}
            S, m, E = self.config.slices, self.m, self.config.epochs
            sizes = {k: self._step_sizes(k) for k in range(self.config.shards)}
            for sid, _p, k, local in self._locate(ids):
                sl = self._layouts[k].slice_of(local)
                region, strat, guarantee = route(resolved, sl, S, m)
                first = {"retrain": 1, "sisa": sl, "ohs": S - m + 1, "dpus": S + 1}[strat]
                est = sum(cost(sizes[j], E, 1) for j in sizes) if strat == "retrain" else cost(sizes[k], E, first)
                starts[k] = min(starts.get(k, S + 1), first)
                entries.append(PlanEntry(sid, k, sl, region, strat, est, guarantee))
            if resolved == "retrain":
                total = sum(cost(sizes[j], E, 1) for j in sizes)
            else:
                total = sum(cost(sizes[k], E, first) for k, first in starts.items())
            guarantee = APPROXIMATE if any(e.guarantee == APPROXIMATE for e in entries) else EXACT
            return Plan(resolved, m, tuple(entries), total, guarantee)

    # -- forgetting ---------------------------------------------------------------------------------------

    def forget(self, ids: Iterable[str], strategy: str = "auto", *, tag: str | None = None) -> ForgetResult:
        """Forget these samples (coalesced) and publish the result as the next version, atomically with
        `tag`. Unknown, already forgotten or no ids: an error, and nothing changes."""
        with self._lock:
            if self._closed:
                raise StoreError(f"{self.store_dir}: the engine is closed")
            if not self._owner:
                self._take_over()
            t0 = time.perf_counter()
            resolved = self._resolve(strategy)
            located = self._locate(ids)
            S, m = self.config.slices, self.m
            routes: dict[int, list[SampleRoute]] = {}
            samples = []
            for sid, _p, k, local in located:
                sl = self._layouts[k].slice_of(local)
                region, strat, guarantee = route(resolved, sl, S, m)
                routes.setdefault(k, []).append(SampleRoute(local, sl, region, strat, guarantee))
                samples.append(SampleResult(sid, k, sl, region, strat, guarantee))
            shards = range(self.config.shards) if resolved == "retrain" else sorted(routes)
            tp = TrainParams(self._shape, self.config.seed, self.config.epochs, self.config.batch_size,
                             self.config.learning_rate, m)
            version = self.version + 1
            created: list[Path] = []

            def increments_file(k: int) -> Callable[[int, int], tuple[Path, np.ndarray]]:
                def create(s: int, rows: int) -> tuple[Path, np.ndarray]:
                    path = self._paths.artifact(f"shard{k}.step{s}.inc.v{version}.npy")
                    created.append(path)
                    return path, np.lib.format.open_memmap(path, "w+", np.float32, (rows, self._shape.num_params))
                return create

            try:
                with deterministic():
                    outcomes = [forget_shard(self._shards[k], routes.get(k, []), resolved, tp, increments_file(k))
                                for k in shards]
            except BaseException:
                for path in created:
                    path.unlink(missing_ok=True)
                raise
            self._publish(outcomes, [p for _s, p, _k, _l in located], [sid for sid, *_ in located], tag)
            snap = self._snapshot
            return ForgetResult(
                version=snap.version,
                digest=snap.digest,
                shard_digests=snap.shard_digests,
                strategy=resolved,
                samples=tuple(samples),
                guarantee=APPROXIMATE if any(s.guarantee == APPROXIMATE for s in samples) else EXACT,
                residue_steps=sum(o.residue_steps for o in outcomes),
                samples_read=sum(o.samples_read for o in outcomes),
                seconds=time.perf_counter() - t0,
                tag=tag,
            )

    def _publish(self, outcomes: list, positions: list[int], ids: list[str], tag: str | None) -> None:
        """Write the new artifacts, switch the manifest (the commit), erase the rows, swap the state."""
        paths, old = self._paths, self._manifest
        version = old.version + 1
        files = dict(old.files)
        written: list[Path] = []

        def new_file(logical: str) -> Path:
            files[logical] = name = f"{logical}.v{version}.npy"
            written.append(paths.artifact(name))
            return written[-1]

        subtracted = dict(old.subtracted)
        for o in outcomes:
            subtracted[o.shard] = sorted(o.subtracted)
        try:
            for o in outcomes:
                k = o.shard
                if o.params_changed:
                    o.checkpoints.save_params(new_file(f"shard{k}.params"))
                if o.optim_changed:
                    o.checkpoints.save_optim(new_file(f"shard{k}.optim"))
                for s, path in o.new_increments.items():
                    files[f"shard{k}.step{s}.inc"] = path.name
                    written.append(path)
                    with open(path, "rb+") as f:
                        os.fsync(f.fileno())
            fsync_dir(paths.artifacts)
            new = Manifest(version, tag, files, {k: v for k, v in subtracted.items() if v},
                           sorted(set(old.forgotten) | set(positions)))
            new.write(paths.manifest)  # the commit point
        except BaseException:
            for p in written:  # nothing references them; the old version stays live and whole
                p.unlink(missing_ok=True)
            raise
        self._manifest = new
        for o in outcomes:
            st = self._shards[o.shard]
            st.checkpoints, st.subtracted, st.alive = o.checkpoints, o.subtracted, o.alive
            for s in o.new_increments:
                st.increments.attach(s, paths.artifact(files[f"shard{o.shard}.step{s}.inc"]))
        for p in positions:  # the in-memory copy of the rows goes too
            st = self._shards[int(self._shard_of[p])]
            st.X[int(self._local_of[p])] = 0
        self._snapshot = self._make_snapshot()
        for name in set(old.files.values()) - set(files.values()):
            paths.artifact(name).unlink(missing_ok=True)
        try:
            self._rows.erase(ids)
        except Exception as exc:
            raise StoreError(
                f"{self.store_dir}: version {version} is committed but erasing its rows failed ({exc}); "
                "open the store again to finish the erasure"
            ) from exc

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._rows.close()
                self._writer.close()
                for st in self._shards:
                    st.increments.release()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Engine({str(self.store_dir)!r}, version={self.version}, shards={self.config.shards}, m={self.m}, "
                f"device={self.device!r})")


class _WriterLock:
    """An exclusive flock on the store *directory* (a directory cannot be hard-linked, so a linked copy of a
    store never shares it). Closed, and so released, by close() or when an engine nobody closed is freed."""

    def __init__(self, root: Path) -> None:
        self._fd: int | None = os.open(root, os.O_RDONLY | os.O_DIRECTORY)

    def acquire(self) -> bool:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # type: ignore[arg-type]
            return True
        except BlockingIOError:
            return False

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)  # type: ignore[arg-type]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()


# -- training a store ---------------------------------------------------------------------------------------


def _build_store(root: Path, ds: Dataset, cfg: EngineConfig, device: str,
                 progress: Callable[[int, int], None] | None) -> None:
    t0 = time.perf_counter()
    paths = StorePaths(root)
    for d in (paths.artifacts, paths.root / "index"):
        d.mkdir()
    paths.keys.mkdir(mode=0o700)
    key = os.urandom(32)
    fd = os.open(paths.subject_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
        f.flush()
        os.fsync(f.fileno())

    layouts = make_layout(ds.train_ids, cfg.shards, cfg.slices, cfg.seed)
    if any(len(lay.members) < cfg.slices for lay in layouts):
        small = min(len(lay.members) for lay in layouts)
        raise InvalidConfig(f"a shard holds {small} samples but slices is {cfg.slices}; use fewer shards or slices")
    step_sizes = [[lay.step_size(s) for s in range(1, cfg.slices + 1)] for lay in layouts]
    budget = cfg.budget if cfg.budget is not None else default_budget(step_sizes, cfg.epochs)
    m = threshold(step_sizes, cfg.epochs, budget)
    record_upto = cfg.slices - m

    save_array(root / "refs.npy", np.frombuffer(b"".join(_ref(key, i) for i in ds.train_ids), np.uint8).reshape(-1, 32))
    with open(paths.layout, "xb") as f:
        np.savez(f, **{f"members{k}": lay.members for k, lay in enumerate(layouts)},
                 **{f"bounds{k}": lay.bounds for k, lay in enumerate(layouts)})
        f.flush()
        os.fsync(f.fileno())
    with open(paths.test, "xb") as f:
        np.savez(f, X=ds.X_test, y=ds.y_test)
        f.flush()
        os.fsync(f.fileno())
    RowStore.create(paths.rows, ds.train_ids, ds.X_train, ds.y_train).close()

    shape = MLPShape(ds.num_features, cfg.hidden_sizes, ds.num_classes)
    total = sum(int(step_offsets(lay, cfg.epochs, cfg.batch_size)[-1]) for lay in layouts)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    files: dict[str, str] = {}
    dev = torch.device(device)
    lives = []
    for k, lay in enumerate(layouts):
        idx = ShardIndex.build(lay, cfg.seed, k, cfg.epochs, cfg.batch_size)
        idx.save(paths.index(k))
        ckpt = ShardCheckpoints.empty(cfg.slices, shape.num_params)
        p0 = init_params(shape, derive_seed(cfg.seed, "init", k))
        zeros = torch.zeros_like(p0)
        ckpt.set(0, OptState(p0, zeros, zeros, 0))

        written: list[Path] = []

        def increments(s: int, rows: int, k: int = k) -> np.ndarray:
            files[f"shard{k}.step{s}.inc"] = name = f"shard{k}.step{s}.inc.v0.npy"
            written.append(paths.artifact(name))
            return np.lib.format.open_memmap(written[-1], "w+", np.float32, (rows, shape.num_params))

        with deterministic():
            run_steps(shape=shape, layout=lay,
                      X=torch.from_numpy(np.ascontiguousarray(ds.X_train[lay.members])).to(dev),
                      y=torch.from_numpy(np.ascontiguousarray(ds.y_train[lay.members])).to(dev),
                      alive=np.ones(len(lay.members), bool), start=ckpt.state(0), first=1, seed=cfg.seed,
                      shard=k, epochs=cfg.epochs, batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
                      record_upto=record_upto, on_step=ckpt.set, increments=increments, progress=advance)
        for path in written:
            with open(path, "rb+") as f:
                os.fsync(f.fileno())
        files[f"shard{k}.params"] = name = f"shard{k}.params.v0.npy"
        ckpt.save_params(paths.artifact(name))
        files[f"shard{k}.optim"] = name = f"shard{k}.optim.v0.npy"
        ckpt.save_optim(paths.artifact(name))
        lives.append(ckpt.live.copy())
    train_seconds = time.perf_counter() - t0
    fsync_dir(paths.artifacts)
    fsync_dir(paths.root / "index")

    snap = ModelSnapshot(0, "", (), shape, tuple(torch.from_numpy(p).to(dev) for p in lives), cfg.aggregation, device)
    def accuracy(X: np.ndarray, y: np.ndarray) -> int:
        return int(round(1e6 * float((snap.predict_proba(X).argmax(1) == y).mean()))) if len(y) else 0
    train_acc, test_acc = accuracy(ds.X_train, ds.y_train), accuracy(ds.X_test, ds.y_test)
    h = hashlib.sha256()
    for p in lives:
        h.update(np.ascontiguousarray(p, dtype="<f4").tobytes())
    inc_bytes = sum(paths.artifact(n).stat().st_size for key_, n in files.items() if key_.endswith(".inc"))
    common = {
        "config": cfg.to_json_dict(),
        "data_digest": ds.digest(),
        "num_train": len(ds.train_ids),
        "num_test": len(ds.test_ids),
        "num_features": ds.num_features,
        "num_classes": ds.num_classes,
        "num_params": shape.num_params,
        "m": m,
        "budget": budget,
        "device": device,
        "increments_bytes": inc_bytes,
        "training_accuracy_ppm": train_acc,
        "test_accuracy_ppm": test_acc,
    }
    genesis = {
        "format": FORMAT,
        **common,
        "model": {"version": 0, "digest": h.hexdigest(), "shard_digests": [_param_digest(p) for p in lives]},
        "artifacts": {
            **{logical: _sha256_file(paths.artifact(name)) for logical, name in sorted(files.items())},
            **{f"shard{k}.index": _sha256_file(paths.index(k)) for k in range(cfg.shards)},
            "layout": _sha256_file(paths.layout),
            "refs": _sha256_file(root / "refs.npy"),
        },
    }
    atomic_write_json(paths.genesis, genesis)
    atomic_write_json(paths.meta, {"format": FORMAT, **common, "train_seconds": train_seconds})
    Manifest(0, None, files).write(paths.manifest)

