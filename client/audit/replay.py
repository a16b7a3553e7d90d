"""Check 3, replay: every forget.applied after the base is re-executed on a scratch copy of its vault.

The work runs in forgetd.server.replay (the engine, so torch: the server extra), imported only here and only
when there is something to replay, so that `forgetd verify --chain-only` runs on a client-only install.
This module turns the ledger's batches into what that replay takes and its result into the check's.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgetd.client.audit import store_reader
from forgetd.client.audit.events import Batch, Events
from forgetd.client.audit.genesis import Base
from forgetd.client.audit.report import CheckResult, Findings
from forgetd.client.errors import NoSpace, StoreUnreadable

if TYPE_CHECKING:
    from forgetd.server.replay import ReplayBatch, ReplayResult

__all__ = ["NO_KEY", "Replayed", "SERVER_EXTRA", "check_replay"]

SERVER_EXTRA = "replay needs the server extra (torch): pip install 'forgetd[server]', or run with --chain-only"
NO_KEY = "no subject key: give --key-file, or keep keys/subject.key in the store"


@dataclass(frozen=True)
class Replayed:
    batches: int
    device: str
    bitwise: bool
    # What the live store must hold: the replayed manifest (no tag) and artifact digests (file -> SHA-256).
    manifest: Mapping[str, Any] | None = None
    artifacts: Mapping[str, str] | None = None


def check_replay(root: Path, events: Events, base: Base, key: bytes | None, device: str | None,
                 progress: bool) -> tuple[CheckResult, Replayed | None]:
    """The replay check's result, and what the replay produced (None when it did not run)."""
    c = Findings("replay")
    for req in events.pending():
        c.notices.append(f"request {req.request_id!r} (seq {req.seq}) is pending: no forget.applied yet")
    batches = [b for b in events.batches if b.seq > base.size]
    if key is None:
        c.add(None, NO_KEY, "a key file", "none")
        return c.done(""), None
    if not batches:
        c.figures.update(replayed=0)
        manifest, artifacts = _vault_state(root, base)
        return c.done(f"nothing to replay after seq {base.size}"), Replayed(0, device or "cpu", True, manifest, artifacts)
    try:
        result = _run(root, events, base, key, batches, device, progress)
    except ModuleNotFoundError as exc:
        if exc.name in ("torch", "numpy"):
            c.add(None, SERVER_EXTRA)
            return c.done(""), None
        raise
    if result.mismatch is not None:
        m = result.mismatch
        c.add(m.seq, m.what, m.expected, m.actual)
    return c.done(_summarise(result, batches, base, c)), Replayed(result.replayed, result.device, result.bitwise,
                                                                  result.manifest, result.artifacts)


def _run(root: Path, events: Events, base: Base, key: bytes, batches: list[Batch], device: str | None,
         progress: bool) -> ReplayResult:
    """Replay `batches` with forgetd.server.replay (ModuleNotFoundError without the server extra); NoSpace when
    its scratch copy does not fit (removed again: the replay cleans up on every way out)."""
    from forgetd.server import replay as server_replay
    from tqdm import tqdm

    recorded = events.genesis.get("engine", {}).get("device") if events.genesis else None
    recorded_device = recorded if isinstance(recorded, str) else None
    bar = tqdm(total=len(batches), desc="replay", unit="batch", file=sys.stderr, disable=not progress, leave=False)
    try:
        return server_replay.replay(
            root / "audit" / str(base.name), key, [_to_replay(server_replay.ReplayBatch, b) for b in batches],
            device=device or server_replay.default_device(recorded_device), recorded_device=recorded_device,
            scratch_parent=root / "audit", live_store=root, on_step=bar.update,
        )
    except server_replay.NoSpace as exc:
        raise NoSpace(f"the replay stopped: {exc}") from None
    finally:
        bar.close()


def _summarise(result: ReplayResult, batches: list[Batch], base: Base, c: Findings) -> str:
    """The figures (replay time beside the daemon's recorded apply time) and the passing summary."""
    recorded_s = sum(b.apply_micros for b in batches) / 1e6
    ratio = result.seconds / recorded_s if recorded_s > 0 else None
    c.figures.update(replayed=result.replayed, skipped=result.skipped, device=result.device, bitwise=result.bitwise,
                     seconds=round(result.seconds, 6), forget_seconds=round(result.forget_seconds, 6),
                     daemon_seconds=round(recorded_s, 6), ratio=round(ratio, 4) if ratio else None,
                     max_abs_diff=result.max_abs_diff, tolerance=result.tolerance)
    worst = "unknown" if result.max_abs_diff is None else f"{result.max_abs_diff:.3g}"
    how = ("bitwise" if result.bitwise else
           f"within tolerance {result.tolerance:g} (max |delta| {worst}; some batches ran on another device type)")
    retrains = [b.seq for b in batches if b.retrain_of is not None]
    c.figures.update(retrains=len(retrains))
    named = f" (model.retrained at seq {', '.join(map(str, retrains))} among them)" if retrains else ""
    return (f"{result.replayed} batch(es){named} from audit/{base.name} replayed {how} on {result.device} in "
            f"{result.seconds:.2f} s (the daemon applied them in {recorded_s:.2f} s"
            + (f", {ratio:.2f}x)" if ratio else ")"))


def _vault_state(root: Path, base: Base) -> tuple[Mapping[str, Any] | None, Mapping[str, str] | None]:
    """With nothing to replay, the live store must hold the vault's own state (checked by the genesis check)."""
    try:
        manifest = dict(store_reader.read_json(root / "audit" / str(base.name) / "CURRENT.json"))
    except (StoreUnreadable, TypeError, ValueError):
        return None, None
    manifest.pop("tag", None)
    # In the replay's terms (content digests, store_reader.artifact_digest) of the vault's files, whose bytes the
    # genesis check compared with the record.
    vault = root / "audit" / str(base.name)
    return manifest, {rel[len("artifacts/"):]: store_reader.artifact_digest(vault / rel)
                      for rel in base.files if rel.startswith("artifacts/")}


def _to_replay(make: type[ReplayBatch], b: Batch) -> ReplayBatch:
    return make(
        seq=b.seq, strategy=b.strategy,
        outcomes=tuple((o.subject_ref, o.shard, o.slice, o.region, o.strategy, o.guarantee) for o in b.subjects),
        version=b.model.version, digest=b.model.digest, shard_digests=b.model.shard_digests, device=b.device,
        details=b.details, retrain_of=b.retrain_of,
    )  # fmt: skip
