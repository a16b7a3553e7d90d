"""Replay: re-execute the ledger's forget.applied batches on a scratch copy of an audit vault, comparing digests.

The one module of the server the auditor imports (forgetd.client.audit, lazily: it needs torch), so everything
the audit asks of the server is here: the replay, the store's own predictions for the live check, and the
vault operations of a seal. The auditor reads and checks the ledger itself and hands this module only what to
run: for each batch, the strategy it asked for, its subjects' refs in the order the engine was given them,
and the outcome and digests the ledger recorded. Raw ids are recovered here from the vault's own rows (the
HMAC of every id under the deployment key), so the ledger never needs to hold one.

Equality owed: bitwise on the same device type (the engine is deterministic there), so per-shard digests are
compared after every batch and the first difference stops the replay (everything after it would differ
too). A batch recorded on another device type (CUDA vs CPU) cannot be compared bitwise: its digests are
skipped, and at the end the replayed parameters are compared with the live store's within a stated absolute
tolerance, reported as such.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from forgetd.ledger import subject_ref
from forgetd.server.errors import ForgetdError, NoSpace
from forgetd.server.store import vault as _vault
from forgetd.server.store.layout import Manifest, StorePaths
from forgetd.server.store.space import full_as_no_space
from forgetd.server.replay_details import first_difference
from forgetd.server.engine.increments_codec import content_sha256
from forgetd.server.store.erased import ERASED
from forgetd.server.store.vault import RECORD, link_or_copy, sweep_stale, vault_rows

if TYPE_CHECKING:
    from forgetd.server.engine.engine import Engine, ForgetReport
    from forgetd.server.engine.gold import GoldFigures

__all__ = ["DEFAULT_TOLERANCE", "ForgetdError", "NoSpace", "ReplayBatch", "ReplayMismatch", "ReplayResult",
           "default_device", "remove_vault", "replay", "snapshot_vault", "store_predictions", "vault_names",
           "gold_standard"]

# What a vault or a ledger the daemon did not write could make the engine raise: a finding, not a crash
# (RuntimeError covers torch's own errors, e.g. an unavailable CUDA device).
_FAILURES = (ForgetdError, OSError, ValueError, KeyError, IndexError, RuntimeError)
DEFAULT_TOLERANCE = 1e-4  # max |delta| per parameter when a batch ran on another device type


@dataclass(frozen=True)
class ReplayBatch:
    seq: int
    strategy: str  # as asked ("auto" included): the engine resolves it as the daemon's did
    # (subject ref, shard, slice, region, strategy, guarantee) per sample, in the order given to the engine
    outcomes: tuple[tuple[str, int, int, str, str, str], ...]
    version: int
    digest: str
    shard_digests: tuple[str, ...]
    device: str | None  # where the daemon ran it; None = unknown (taken to be the training device)
    # INFLUENCE's and CERTIFIED's recorded figures (forget.applied's `influence`, `certified`), compared field by
    # field with the replay's; None: none recorded (another strategy, or a batch written from the store's tag)
    details: Mapping[str, Any] | None = None
    # model.retrained (every shard retrained from scratch, no outcomes): the audit.gold seq it answered
    retrain_of: int | None = None


@dataclass(frozen=True)
class ReplayMismatch:
    seq: int | None
    what: str
    expected: str | None = None
    actual: str | None = None
    # A parameter digest can only be owed bitwise on the device type that made it; anything else (routing,
    # versions, missing rows, a failed forget) must agree on every device.
    digest_only: bool = False


@dataclass(frozen=True)
class ReplayResult:
    replayed: int  # batches re-executed
    skipped: int  # batches that forgot nothing (checked: the model did not move)
    device: str
    bitwise: bool  # every batch compared bitwise; False: some only within `tolerance` at the end
    mismatch: ReplayMismatch | None
    seconds: float  # wall time: scratch copy, open, every forget
    forget_seconds: float  # the engine's own time in forget(), comparable with the ledger's apply_micros
    version: int | None  # the replayed final state
    digest: str | None
    shard_digests: tuple[str, ...]
    max_abs_diff: float | None = None  # set when compared within tolerance
    tolerance: float | None = None
    # The replayed store's manifest (without its tag, which names the daemon's requests) and the SHA-256 of
    # every artifact file it names: the live store must hold exactly these (checkpoints, optimizer state,
    # increments), or a seal would vouch for files the replay never produced.
    manifest: dict[str, Any] | None = None
    artifacts: dict[str, str] | None = None


def default_device(recorded: str | None) -> str:
    """Replay where the store was trained when this machine has that kind of device; else on the CPU."""
    import torch

    if recorded is not None and recorded.startswith("cuda") and torch.cuda.is_available():
        return "cuda:0" if recorded == "cuda" else recorded
    return "cpu"


def _device_type(device: str | None) -> str | None:
    return None if device is None else device.split(":")[0]


def make_scratch(vault: Path, parent: Path, subject_key: bytes) -> Path:
    """A private, writable copy of `vault` that Engine.open accepts (links for files, a copy of the rows).
    Whole or not at all: a failure (NoSpace for a full disk) removes what it had copied."""
    sweep_stale(parent.parent)
    scratch = StorePaths(parent / f".replay-{os.getpid()}-{os.urandom(4).hex()}")
    scratch.root.mkdir(parents=True)
    try:
        with full_as_no_space(parent, "making the replay's scratch copy of the vault"):
            _fill_scratch(vault, scratch, subject_key)
    except BaseException:
        remove_scratch(scratch.root)
        raise
    return scratch.root


def _fill_scratch(vault: Path, scratch: StorePaths, subject_key: bytes) -> None:
    for src in sorted(vault.rglob("*")):
        dst = scratch.root / src.relative_to(vault)
        if src.is_dir():
            dst.mkdir(exist_ok=True)
        elif src.name != RECORD and not src.name.startswith((ERASED, scratch.rows.name)):  # journals too
            dst.parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(src, dst)
    vault_rows(vault, scratch.rows)
    scratch.keys.mkdir(mode=0o700)
    fd = os.open(scratch.subject_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(subject_key)


def remove_scratch(scratch: Path) -> None:
    rows = StorePaths(scratch).rows
    for held in scratch.glob(f"{rows.name}*"):
        held.unlink(missing_ok=True)  # the held rows first
    shutil.rmtree(scratch, ignore_errors=True)


@dataclass
class _Run:
    """What a replay has done so far; `result` freezes it."""

    device: str
    started: float  # perf_counter at the start of the timed span
    replayed: int = 0
    skipped: int = 0
    forget_seconds: float = 0.0
    bitwise: bool = True
    mismatch: ReplayMismatch | None = None

    def result(self, engine: Engine | None, scratch: Path, *, max_abs_diff: float | None = None,
               tolerance: float | None = None) -> ReplayResult:
        elapsed = time.perf_counter() - self.started  # the re-execution; hashing its output below is checking
        version, digest, shards = ((engine.version, engine.digest(), tuple(engine.shard_digests()))
                                   if engine is not None else (None, None, ()))
        manifest, artifacts = _artifacts(scratch) if engine is not None and self.mismatch is None else (None, None)
        return ReplayResult(self.replayed, self.skipped, self.device, self.bitwise, self.mismatch, elapsed,
                            self.forget_seconds, version, digest, shards, max_abs_diff, tolerance, manifest, artifacts)


def replay(
    vault: Path,
    subject_key: bytes,
    batches: Sequence[ReplayBatch],
    *,
    device: str = "cpu",
    recorded_device: str | None = None,
    scratch_parent: Path,
    live_store: Path | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    on_step: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Replay `batches` (in ledger order) from the state in `vault`; stop at the first difference.

    `recorded_device` is where batches without a device of their own ran (the training device).
    `live_store`, when given, is compared with the final state within `tolerance` if any batch could not be
    compared bitwise. `on_step(n)` is called after each batch (a progress bar).

    NoSpace when the scratch copy or a replayed forget does not fit on the disk: not a finding about the
    store, so it is raised, never reported as a mismatch. The scratch copy is removed on every way out
    (the auditor's command turns SIGTERM and SIGHUP into exceptions so that this holds for them too).
    """
    from forgetd.server.engine.engine import Engine  # torch
    from forgetd.server.engine.training import deterministic

    # torch imports its compiler stack the first time deterministic mode is switched on (seconds on a small
    # CPU). The daemon pays that once at start, outside every apply time it records (worker._run); so does
    # the replay, outside its timed span, or the ratio would compare a cold process with a warm one.
    with deterministic():
        pass
    run = _Run(device, time.perf_counter())
    scratch = make_scratch(vault, scratch_parent, subject_key)
    engine: Engine | None = None
    try:
        try:
            engine = Engine.open(scratch, device=device)
        except NoSpace:
            raise
        except _FAILURES as exc:
            run.mismatch = ReplayMismatch(None, f"the vault does not open as a store: {exc}")
            return run.result(None, scratch)
        if not _replay_all(engine, subject_key, batches, recorded_device, run, on_step):
            return run.result(engine, scratch)
        if not run.bitwise and live_store is not None:
            diff = _max_abs_diff(engine, live_store)
            if diff is None or diff > tolerance:
                run.mismatch = ReplayMismatch(None, f"replayed parameters differ from the live store's beyond the "
                                                    f"tolerance {tolerance:g} (batches ran on another device type)",
                                              f"max |delta| <= {tolerance:g}",
                                              "unreadable" if diff is None else f"{diff:.3g}")
            return run.result(engine, scratch, max_abs_diff=diff, tolerance=tolerance)
        return run.result(engine, scratch)
    finally:
        if engine is not None:
            engine.close()
        remove_scratch(scratch)


def _replay_all(engine: Engine, subject_key: bytes, batches: Sequence[ReplayBatch], recorded_device: str | None,
                run: _Run, on_step: Callable[[int], None] | None) -> bool:
    """Replay every batch into `run`; False at the first difference owed on this device (left in run.mismatch)."""
    by_ref = {subject_ref(subject_key, sid): sid for sid in engine.sample_ids()}
    for batch in batches:
        mismatch, seconds = _replay_one(engine, batch, by_ref)
        same_device = _device_type(batch.device or recorded_device) == _device_type(run.device)
        if mismatch is not None and (same_device or not mismatch.digest_only):
            run.mismatch = mismatch
            return False
        if batch.outcomes or batch.retrain_of is not None:
            run.replayed += 1
            run.forget_seconds += seconds
        else:
            run.skipped += 1
        run.bitwise = run.bitwise and same_device
        if on_step is not None:
            on_step(1)
    return True


def _artifacts(scratch: Path) -> tuple[dict[str, Any], dict[str, str]]:
    paths = StorePaths(scratch)
    manifest = Manifest.read(paths.manifest).to_json()
    manifest.pop("tag", None)
    return manifest, {name: content_sha256(paths.artifact(name)) for name in sorted(set(manifest["files"].values()))}


def _replay_one(eng: Engine, batch: ReplayBatch, by_ref: dict[str, str]) -> tuple[ReplayMismatch | None, float]:
    """The first difference between the batch as recorded and as replayed (None: none), and the engine's time."""
    if not batch.outcomes and batch.retrain_of is None:  # the daemon changed nothing: neither may the ledger's digests
        if batch.digest != eng.digest():
            return ReplayMismatch(batch.seq, "a batch that forgot nothing records another model",
                                  eng.digest(), batch.digest, digest_only=True), 0.0
        return None, 0.0
    ids = []
    for ref, *_rest in batch.outcomes:
        sid = by_ref.get(ref)
        if sid is None:
            return ReplayMismatch(batch.seq, f"subject {ref} is in no row of the vault: its data is missing, "
                                             "so the batch cannot be replayed", "a row with this subject ref",
                                  "none"), 0.0
        ids.append(sid)
    retrain = batch.retrain_of  # a model.retrained: every shard retrained from scratch, as the daemon did
    try:
        got = eng.forget(ids, batch.strategy) if retrain is None else eng.retrain_all(retrain)
    except NoSpace:
        raise
    except _FAILURES as exc:
        return ReplayMismatch(batch.seq, f"replaying the {'batch' if retrain is None else 'retrain'} failed: {exc}"), 0.0
    found = _compare(batch, got)
    if found is not None and retrain is not None:
        found = replace(found, what=f"model.retrained (after gold check seq {retrain}): {found.what}")
    return found, float(got.seconds)


def _compare(batch: ReplayBatch, got: ForgetReport) -> ReplayMismatch | None:
    for want, have in zip(batch.outcomes, got.samples):
        have_t = (want[0], int(have.shard), int(have.slice), str(have.region), str(have.strategy),
                  str(have.guarantee))
        if have_t != tuple(want):
            return ReplayMismatch(batch.seq, f"sample {want[0][:16]}... was routed differently on replay",
                                  _fmt(want[1:]), _fmt(have_t[1:]))
    if got.version != batch.version:
        return ReplayMismatch(batch.seq, "replayed model version differs", str(batch.version), str(got.version))
    for k, (want_d, have_d) in enumerate(zip(batch.shard_digests, got.shard_digests)):
        if want_d != have_d:
            return ReplayMismatch(batch.seq, f"shard {k}'s parameters differ after replay", want_d, have_d,
                                  digest_only=True)
    if len(batch.shard_digests) != len(got.shard_digests):
        return ReplayMismatch(batch.seq, "the replayed model has another number of shards",
                              str(len(batch.shard_digests)), str(len(got.shard_digests)))
    if got.digest != batch.digest:
        return ReplayMismatch(batch.seq, "the model digest differs after replay", batch.digest, got.digest,
                              digest_only=True)
    found = None if batch.details is None else first_difference(batch.details, got.details)
    if found is not None:  # the budget arithmetic, the retrains it triggered, the influence step's figures
        where, want_v, have_v = found
        return ReplayMismatch(batch.seq, f"the batch's recorded {where} differs on replay", want_v, have_v,
                              digest_only=True)
    return None


def _fmt(outcome: Sequence[object]) -> str:
    shard, sl, region, strategy, guarantee = outcome
    return f"shard {shard} slice {sl} {region} {strategy} ({guarantee})"


def _max_abs_diff(engine: Engine, live_store: Path) -> float | None:
    paths = StorePaths(live_store)
    try:
        manifest = Manifest.read(paths.manifest)
        worst = 0.0
        for k, replayed in enumerate(engine.snapshot().params):  # (P,) per shard, on the engine's device
            live = np.load(paths.artifact(manifest.files[f"shard{k}.params"]), allow_pickle=False)[-1]
            worst = max(worst, float(np.max(np.abs(live.astype(np.float64) - replayed.cpu().numpy()))))
        return worst
    except (OSError, ValueError, KeyError, ForgetdError):
        return None


def store_predictions(store: Path, rows: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(X, probabilities) of the store's live parameters on up to `rows` of its test rows, on the CPU.

    The auditor sends the same X to a daemon's Predict: equal answers show the daemon *serves* the parameters
    the data check proved equal to the ledger head, rather than only reporting their digest.
    """
    import torch

    from forgetd.server.config import EngineConfig
    from forgetd.server.engine.model import ModelSnapshot, model_shape

    paths = StorePaths(store)
    meta = json.loads(paths.meta.read_text())
    config = EngineConfig.from_json_dict(meta["config"])
    shape = model_shape(config.model, config.hidden_sizes, int(meta["num_features"]), int(meta["num_classes"]))
    manifest = Manifest.read(paths.manifest)
    params = tuple(
        torch.from_numpy(np.load(paths.artifact(manifest.files[f"shard{k}.params"]), allow_pickle=False)[-1].copy())
        for k in range(config.shards)
    )
    with np.load(paths.test, allow_pickle=False) as z:
        X = np.ascontiguousarray(z["X"][:rows], dtype=np.float32)  # (B, F)
    if len(X) == 0:  # a store trained without a test split: any rows will do
        X = np.random.default_rng(0).standard_normal((rows, shape.num_features)).astype(np.float32)
    snapshot = ModelSnapshot(manifest.version, "", (), shape, params, config.aggregation, "cpu")
    return X, snapshot.predict_proba(X)


# ------------------------------------------------------------------------------------------------ the seal
# What `forgetd verify --seal` does to the store's vaults (the work is forgetd.server.store.vault's). They
# raise ForgetdError, re-exported above for the auditor to catch.


def snapshot_vault(store: Path, name: str) -> dict[str, Any]:
    """Snapshot the store's live state as the vault audit/<name>; its record, as the ledger commits it."""
    return _vault.create_vault(store, name).to_json()


def vault_names(store: Path) -> list[str]:
    """The vaults the store holds (hidden build and scratch directories excluded)."""
    return _vault.vault_names(store)


def remove_vault(store: Path, name: str) -> None:
    _vault.remove_vault(store, name)


# ------------------------------------------------------------------------------------------ the gold standard


def gold_standard(store: Path, tolerance_points: float = 0.5, device: str = "cpu") -> GoldFigures:
    """The store's live model beside one retrained from scratch on its live rows with its own configuration
    (forgetd.server.engine.gold): `forgetd verify --gold`. Opens the store to read only, so a daemon may be
    serving it meanwhile. ForgetdError (re-exported above) when the store does not open."""
    from forgetd.server.engine.engine import Engine  # torch

    with Engine.open(store, device=device) as engine:
        return engine.gold_standard(tolerance_points)
