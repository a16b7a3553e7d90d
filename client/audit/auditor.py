"""The auditor: `audit(store)` proves, from the store and its ledger alone, what the model is and what it forgot.

    report = audit("store/", receipt=load_receipt("r.json"), server="127.0.0.1:50051")
    print(report.text()); sys.exit(0 if report.ok else 1)

Checks, in order; each passes or fails, and a failure names its first offending item (seq, expected, actual):

1. chain    verify_ledger (every hash, canonical bytes, gapless seq, triggers, integrity); consistency with an
            expected head or a receipt's head; the receipt head's Ed25519 signature under the key genesis
            recorded; every event follows the schema and from the events before it.
2. genesis  the vault replay starts from (audit/genesis, or the one the latest audit.verified sealed) matches
            the digests the ledger committed for it: every file, the rows' content digest, its parameters;
            for the genesis vault also the initial checkpoints and increments genesis.engine.artifacts lists.
3. replay   on a scratch copy of the vault, every later forget.applied is re-executed with its recorded
            strategy, comparing per-shard digests after each (forgetd.server.replay: needs the server extra).
            Requests without their forget.applied are named as pending.
4. data     no forgotten subject has a row in the live store (subject refs under the deployment key); the
            live parameters are the head's. Separately, how many forgotten subjects' rows a vault still holds,
            pending the next seal: a notice the auditor sees, not a failure.
5. live     (with a server) the serving model's version and digests are the head's; its signed head verifies
            under genesis's key and extends the store's ledger.

`seal=True`, once every check passed, snapshots the verified state as a new vault, appends `audit.verified`
(see forgetd.client.audit.events) and deletes the older vault, so the rows it held are gone and later audits
replay from the new snapshot.
"""

from __future__ import annotations

import gc
import json
import sqlite3
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from forgetd.client.audit import store_reader as audit_store
from forgetd.client.audit.events import AUDIT_VERIFIED, Batch, Events, fold
from forgetd.client.audit.store_reader import StoreUnreadable
from forgetd.client.receipts import check_head_signature, check_receipt_self, head_of
from forgetd.client.types import Receipt
from forgetd.ledger import ConsistencyProof, Head, LedgerError, Problem, subject_ref, verify_consistency, verify_ledger

if TYPE_CHECKING:
    from forgetd.client.client import Client

__all__ = ["AuditReport", "CheckResult", "StoreSealError", "audit", "PASSED", "FAILED", "SKIPPED"]

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
MAX_LISTED = 50  # problems listed per check; the rest are counted
# Probabilities from a daemon on another device (or its lean CPU predictor) differ in the last bits only.
PREDICT_TOLERANCE = 1e-5
SERVER_EXTRA = "replay needs the server extra (torch): pip install 'forgetd[server]', or run with --chain-only"


class StoreSealError(Exception):
    """The seal was refused: the store changed between the audit and its snapshot, or cannot be copied."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # passed | failed | skipped
    summary: str
    problems: tuple[Problem, ...] = ()
    notices: tuple[str, ...] = ()  # what the auditor must see without it being a failure (pending work)
    seconds: float = 0.0
    figures: Mapping[str, Any] = field(default_factory=dict)
    problems_omitted: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "summary": self.summary,
                "problems": [p.to_dict() for p in self.problems], "problems_omitted": self.problems_omitted,
                "notices": list(self.notices), "seconds": round(self.seconds, 6), "figures": dict(self.figures)}


@dataclass(frozen=True)
class AuditReport:
    store: str
    head: Head | None
    checks: tuple[CheckResult, ...]
    sealed: Mapping[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.status != FAILED for c in self.checks) and self.checks[0].status == PASSED

    def check(self, name: str) -> CheckResult:
        return next(c for c in self.checks if c.name == name)

    def text(self) -> str:
        lines = [f"forgetd verify {self.store}"]
        for c in self.checks:
            lines.append(f"  {c.name:<8} {c.status.upper() if c.status == FAILED else c.status:<8} {c.summary}")
            for p in c.problems[:5]:
                lines.append(f"           - {p}")
            more = len(c.problems) - 5 + c.problems_omitted
            if more > 0:
                lines.append(f"           ... and {more} more")
            for n in c.notices:
                lines.append(f"           notice: {n}")
        if self.sealed:
            lines.append(f"sealed: audit.verified at seq {self.sealed['seq']}; replays now start from vault "
                         f"audit/{self.sealed['vault']}" + (f"; removed {', '.join(self.sealed['removed'])}"
                                                            if self.sealed["removed"] else ""))
        failed = [c.name for c in self.checks if c.status == FAILED]
        lines.append("verified: every check passed" if self.ok else f"NOT verified: {', '.join(failed)} failed")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "store": self.store, "head": self.head.to_dict() if self.head else None,
                "head_hex": self.head.to_hex() if self.head else None,
                "checks": [c.to_dict() for c in self.checks], "sealed": dict(self.sealed) if self.sealed else None}


class _Check:
    """Collects one check's findings; `done()` makes the frozen result."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = time.perf_counter()
        self.problems: list[Problem] = []
        self.notices: list[str] = []
        self.figures: dict[str, Any] = {}

    def add(self, seq: int | None, what: str, expected: object = None, actual: object = None) -> None:
        self.problems.append(Problem(seq, what, expected, actual))

    def done(self, summary: str, failed_summary: str | None = None) -> CheckResult:
        failed = bool(self.problems)
        listed = tuple(self.problems[:MAX_LISTED])
        return CheckResult(self.name, FAILED if failed else PASSED,
                           (failed_summary or f"{len(self.problems)} problem(s); first: {self.problems[0]}")
                           if failed else summary,
                           listed, tuple(self.notices), time.perf_counter() - self.started, self.figures,
                           len(self.problems) - len(listed))


def _sha256_or_missing(path: Path) -> str:
    """The file's hex SHA-256, or "missing": an unreadable file is a finding to report, never a crash."""
    try:
        return audit_store.sha256_file(path)
    except StoreUnreadable:
        return "missing"


def _skipped(name: str, why: str) -> CheckResult:
    return CheckResult(name, SKIPPED, why)


# ------------------------------------------------------------------------------------------------ the audit


def audit(
    store: str | Path,
    *,
    expect_head: Head | str | None = None,
    receipt: Receipt | None = None,
    server: str | Client | None = None,
    chain_only: bool = False,
    key_file: str | Path | None = None,
    device: str | None = None,
    progress: bool = False,
    seal: bool = False,
) -> AuditReport:
    """Run the checks on the store at `store` (see the module docstring) and return the report."""
    root = Path(store)
    if isinstance(expect_head, str):
        expect_head = Head.from_hex(expect_head)
    checks: list[CheckResult] = []
    chain, head, events = _check_chain(root, expect_head, receipt)
    checks.append(chain)
    later = ["genesis", "replay", "data", "live"]
    if chain_only:
        return AuditReport(str(root), head, tuple(checks + [_skipped(n, "not run (--chain-only)") for n in later]))
    if chain.status != PASSED or events is None or head is None:
        why = "not run: the chain did not verify, so its events cannot be trusted"
        return AuditReport(str(root), head, tuple(checks + [_skipped(n, why) for n in later]))
    key = _subject_key(root, key_file)
    base = _base(events)
    genesis = _check_genesis(root, events, base)
    checks.append(genesis)
    replayed = None
    if genesis.status != PASSED:
        checks.append(_skipped("replay", "not run: the vault does not match what the ledger committed"))
    else:
        replay_check, replayed = _check_replay(root, events, base, key, device, progress)
        checks.append(replay_check)
    checks.append(_check_data(root, events, key, base, replayed))
    checks.append(_check_live(server, events, head, root) if server is not None
                  else _skipped("live", "not run (no --server)"))
    report = AuditReport(str(root), head, tuple(checks))
    if seal:
        if not report.ok or replayed is None:
            return report
        return AuditReport(str(root), head, tuple(checks), _seal(root, events, head, base, replayed))
    return report


# ------------------------------------------------------------------------------------------------ 1. chain


def _check_chain(root: Path, expect_head: Head | None, receipt: Receipt | None) -> tuple[CheckResult, Head | None, Events | None]:
    c = _Check("chain")
    path = root / "ledger.sqlite"
    if not path.is_file():
        c.add(None, f"no ledger at {path}", "ledger.sqlite", "none")
        return c.done(""), None, None
    receipt_head = None
    if receipt is not None and receipt.head is not None:
        try:
            receipt_head = head_of(receipt.head)
        except LedgerError as exc:
            c.add(None, f"the receipt's head is malformed: {exc}")
    expected = expect_head or receipt_head
    started = time.perf_counter()
    enabled = gc.isenabled()
    gc.disable()  # reading allocates a dict per entry, none cyclic: skip collection passes (as verify_ledger does)
    try:
        # verify_ledger spends most of its wall time in SQLite's integrity_check, which releases the GIL: the
        # event fold runs meanwhile instead of after it.
        with ThreadPoolExecutor(1, thread_name_prefix="verify-ledger") as pool:
            verifying = pool.submit(verify_ledger, path, expect_head=expected)
            events = fold(_read_events(path, c))
            report = verifying.result()
    finally:
        if enabled:
            gc.enable()
    c.problems[:0] = report.problems  # the ledger's own findings first: they explain the events'
    elapsed = time.perf_counter() - started
    c.figures.update(entries=report.entries, seconds=round(elapsed, 6), verify_ledger_seconds=round(report.elapsed_s, 6),
                     entries_per_s=int(report.entries / elapsed) if elapsed > 0 else None)
    if expect_head is not None and receipt_head is not None:
        # Both given: the receipt's head needs its own pass (only its new findings are added).
        seen = set(report.problems)
        c.problems.extend(p for p in verify_ledger(path, expect_head=receipt_head).problems if p not in seen)
    c.problems.extend(events.problems)
    if receipt is not None:
        _, problems = check_receipt_self(receipt, events.head_public_key)
        c.problems.extend(problems)
        if receipt.requested_seq and receipt.request_id not in events.requests:
            c.add(receipt.requested_seq, f"the receipt's request {receipt.request_id!r} is not in the ledger's events")
    head = report.head
    against = f", consistent with the {'receipt' if receipt else 'expected'} head" if expected else ""
    rate = c.figures["entries_per_s"]
    summary = (f"{report.entries} entries, head {head.to_hex()[:24] if head else '-'}...{against}"
               + (f" ({rate:,} entries/s)" if rate else ""))
    return c.done(summary), head, events if not c.problems else None


def _read_events(path: Path, c: _Check) -> list[tuple[int, str, Any]]:
    """(seq, type, payload) per row, read raw: rows verify_ledger already reported are skipped, not raised on."""
    out = []
    try:
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT seq, type, envelope FROM entries ORDER BY seq").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        c.add(None, f"cannot read the ledger's entries: {exc}")
        return out
    # One json.loads over the whole ledger is several times faster than one per row; a row that spoils it
    # (verify_ledger has named it already) sends this chunk to the row-by-row path, which skips it.
    for start in range(0, len(rows), 5000):
        chunk = rows[start:start + 5000]
        try:
            envelopes = json.loads(b"[" + b",".join(r[2] for r in chunk) + b"]")
            if len(envelopes) != len(chunk):
                raise ValueError("a row held more than one value")
            parsed = [(seq, etype, env["payload"]) for (seq, etype, _), env in zip(chunk, envelopes)]
        except (ValueError, TypeError, KeyError):
            parsed = []
            for seq, etype, envelope in chunk:
                try:
                    parsed.append((seq, etype, json.loads(envelope)["payload"]))
                except (ValueError, TypeError, KeyError):
                    continue
        out.extend(row for row in parsed if type(row[0]) is int and type(row[1]) is str)
    return out


# ------------------------------------------------------------------------------------------------ 2. genesis


@dataclass(frozen=True)
class _Base:
    """Where replay starts: the vault the ledger last committed and the ledger size it stands for."""

    name: str | None
    record: Mapping[str, Any] | None
    size: int  # batches with seq > size are replayed
    version: int
    digest: str
    seq: int  # the event that committed it (genesis or audit.verified)
    is_genesis: bool


def _base(events: Events) -> _Base:
    if events.audits:
        a = events.audits[-1]
        return _Base(_name(a.vault), a.vault, a.verified_size, a.model.version, a.model.digest, a.seq, False)
    vault = events.genesis.get("vault") if events.genesis else None
    model = events.genesis_model
    return _Base(_name(vault), vault if isinstance(vault, Mapping) else None, 1,
                 model.version if model else 0, model.digest if model else "", 1, True)


def _name(record: Any) -> str | None:
    name = record.get("name") if isinstance(record, Mapping) else None
    return name if isinstance(name, str) and name and "/" not in name and not name.startswith(".") else None


def _check_genesis(root: Path, events: Events, base: _Base) -> CheckResult:
    c = _Check("genesis")
    where = "genesis" if base.is_genesis else f"audit.verified (seq {base.seq})"
    if base.record is None or base.name is None:
        c.add(base.seq, f"{where} records no audit vault, so no replay can start (a ledger from before the vault)",
              "a vault record", "none")
        return c.done("")
    vault = root / "audit" / base.name
    if not vault.is_dir():
        c.add(base.seq, f"the vault {where} committed is missing", f"audit/{base.name}", "no such directory")
        return c.done("")
    files = base.record.get("files")
    if not isinstance(files, Mapping):
        c.add(base.seq, "the vault record has no file digests", "files", "none")
        return c.done("")
    for rel, want in sorted(files.items()):
        if not isinstance(rel, str) or rel.startswith("/") or ".." in rel.split("/"):
            c.add(base.seq, f"the vault record names a file outside the vault: {rel!r}", "a path inside it", rel)
            continue
        have = _sha256_or_missing(vault / rel)
        if have != want:
            c.add(base.seq, f"vault file audit/{base.name}/{rel} differs from what {where} recorded", want, have)
    extra = sorted(p.relative_to(vault).as_posix() for p in vault.rglob("*")
                   if p.is_file() and p.name not in ("rows.sqlite", "vault.json") and p.relative_to(vault).as_posix() not in files)
    for rel in extra:
        c.add(base.seq, f"vault file audit/{base.name}/{rel} is not in the record {where} committed", "absent", "present")
    try:
        digest, count = audit_store.rows_digest(vault / "rows.sqlite", immutable=True)
        if digest != base.record.get("rows_digest"):
            c.add(base.seq, f"the vault's training rows differ from what {where} recorded ({count} rows)",
                  base.record.get("rows_digest"), digest)
        version, model_digest, _ = audit_store.live_parameters(vault)
        if (version, model_digest) != (base.version, base.digest):
            c.add(base.seq, f"the vault's parameters are not the model {where} recorded",
                  f"version {base.version} {base.digest}", f"version {version} {model_digest}")
    except StoreUnreadable as exc:
        c.add(base.seq, str(exc))
        count = 0
    if base.is_genesis and events.genesis is not None:
        _check_engine_artifacts(vault, events.genesis.get("engine"), c)
    c.figures.update(vault=base.name, files=len(files), rows=count)
    return c.done(f"vault audit/{base.name}: {len(files)} files, {count} rows and the version-{base.version} "
                  f"parameters match {where}")


def _check_engine_artifacts(vault: Path, engine: Any, c: _Check) -> None:
    """The initial checkpoints, increments, index, layout and refs against genesis.engine.artifacts."""
    artifacts = engine.get("artifacts") if isinstance(engine, Mapping) else None
    if not isinstance(artifacts, Mapping):
        c.add(1, "genesis records no artifact digests", "engine.artifacts", "none")
        return
    try:
        manifest_files = audit_store.read_json(vault / "CURRENT.json")["files"]
        if not isinstance(manifest_files, dict):
            raise TypeError("files is not an object")
    except (StoreUnreadable, KeyError, TypeError) as exc:
        c.add(1, f"the vault's manifest is unreadable: {exc}")
        return
    for logical, want in sorted(artifacts.items()):
        if isinstance(manifest_files.get(logical), str):
            rel = f"artifacts/{manifest_files[logical]}"
        elif logical.endswith(".index"):
            rel = f"index/{logical[:-len('.index')]}.npz"
        else:
            rel = {"layout": "layout.npz", "refs": "refs.npy"}.get(logical, logical)
        have = _sha256_or_missing(vault / rel)
        if have != want:
            c.add(1, f"{logical} ({rel}) differs from the digest genesis recorded", want, have)


# ------------------------------------------------------------------------------------------------ 3. replay


@dataclass(frozen=True)
class _Replayed:
    batches: int
    device: str
    bitwise: bool
    # What the live store must hold: the replayed manifest (no tag) and artifact digests (file -> SHA-256).
    manifest: Mapping[str, Any] | None = None
    artifacts: Mapping[str, str] | None = None


def _check_replay(root: Path, events: Events, base: _Base, key: bytes | None, device: str | None,
                  progress: bool) -> tuple[CheckResult, _Replayed | None]:
    c = _Check("replay")
    for req in events.pending():
        c.notices.append(f"request {req.request_id!r} (seq {req.seq}) is pending: no forget.applied yet")
    batches = [b for b in events.batches if b.seq > base.size]
    if key is None:
        c.add(None, "no subject key: give --key-file, or keep keys/subject.key in the store", "a key file", "none")
        return c.done(""), None
    if not batches:
        c.figures.update(replayed=0)
        manifest, artifacts = _vault_state(root, base)
        return c.done(f"nothing to replay after seq {base.size}"), _Replayed(0, device or "cpu", True, manifest, artifacts)
    try:
        from forgetd.server import replay as replay_mod
    except ModuleNotFoundError as exc:
        if exc.name in ("torch", "numpy"):
            c.add(None, SERVER_EXTRA)
            return c.done(""), None
        raise
    recorded = events.genesis.get("engine", {}).get("device") if events.genesis else None
    device = device or replay_mod.default_device(recorded if isinstance(recorded, str) else None)
    from tqdm import tqdm

    bar = tqdm(total=len(batches), desc="replay", unit="batch", file=sys.stderr, disable=not progress, leave=False)
    try:
        result = replay_mod.replay(
            root / "audit" / str(base.name), key, [_to_replay(replay_mod, b) for b in batches], device=device,
            recorded_device=recorded if isinstance(recorded, str) else None, scratch_parent=root / "audit",
            live_store=root, on_step=bar.update,
        )
    finally:
        bar.close()
    if result.mismatch is not None:
        m = result.mismatch
        c.add(m.seq, m.what, m.expected, m.actual)
    recorded_s = sum(b.apply_micros for b in batches) / 1e6
    ratio = result.seconds / recorded_s if recorded_s > 0 else None
    c.figures.update(replayed=result.replayed, skipped=result.skipped, device=result.device, bitwise=result.bitwise,
                     seconds=round(result.seconds, 6), forget_seconds=round(result.forget_seconds, 6),
                     daemon_seconds=round(recorded_s, 6), ratio=round(ratio, 4) if ratio else None,
                     max_abs_diff=result.max_abs_diff, tolerance=result.tolerance)
    worst = "unknown" if result.max_abs_diff is None else f"{result.max_abs_diff:.3g}"
    how = ("bitwise" if result.bitwise else
           f"within tolerance {result.tolerance:g} (max |delta| {worst}; some batches ran on another device type)")
    summary = (f"{result.replayed} batch(es) from audit/{base.name} replayed {how} on {result.device} in "
               f"{result.seconds:.2f} s (the daemon applied them in {recorded_s:.2f} s"
               + (f", {ratio:.2f}x)" if ratio else ")"))
    return c.done(summary), _Replayed(result.replayed, result.device, result.bitwise, result.manifest, result.artifacts)


def _vault_state(root: Path, base: _Base) -> tuple[Mapping[str, Any] | None, Mapping[str, str] | None]:
    """With nothing to replay, the live store must hold the vault's own state (checked by the genesis check)."""
    try:
        manifest = dict(audit_store.read_json(root / "audit" / str(base.name) / "CURRENT.json"))
    except (StoreUnreadable, TypeError, ValueError):
        return None, None
    manifest.pop("tag", None)
    files = base.record.get("files", {}) if base.record is not None else {}
    return manifest, {rel[len("artifacts/"):]: digest for rel, digest in files.items() if rel.startswith("artifacts/")}


def _to_replay(mod: Any, b: Batch) -> Any:
    return mod.ReplayBatch(
        seq=b.seq, strategy=b.strategy,
        outcomes=tuple((o.subject_ref, o.shard, o.slice, o.region, o.strategy, o.guarantee) for o in b.subjects),
        version=b.model.version, digest=b.model.digest, shard_digests=b.model.shard_digests, device=b.device,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------ 4. data


def _check_data(root: Path, events: Events, key: bytes | None, base: _Base, replayed: _Replayed | None) -> CheckResult:
    c = _Check("data")
    live = events.live_model()
    try:
        version, digest, shards = audit_store.live_parameters(root)
        if live is not None and (version, digest) != (live.version, live.digest):
            c.add(events.size, "the store's live parameters are not the model the ledger's head describes",
                  f"version {live.version} {live.digest}", f"version {version} {digest}")
            for k, (want, have) in enumerate(zip(live.shard_digests, shards)):
                if want != have:
                    c.add(events.size, f"shard {k}'s live parameters differ", want, have)
                    break
    except StoreUnreadable as exc:
        c.add(None, str(exc))
    _check_store_files(root, base, replayed, c)
    if key is None:
        c.add(None, "no subject key: give --key-file, or keep keys/subject.key in the store", "a key file", "none")
        return c.done("")
    forgotten = events.forgotten
    live_rows: dict[str, tuple[Any, Any, Any]] = {}
    try:
        for ord_, sid, y, x in audit_store.iter_rows(root / "rows.sqlite"):
            if not isinstance(sid, str):
                c.add(None, f"live row ord {ord_} has a malformed id", "a string", type(sid).__name__)
                continue
            live_rows[sid] = (ord_, y, x)
            seq = forgotten.get(subject_ref(key, sid))
            if seq is not None:
                c.add(seq, f"the row of a subject forgotten at seq {seq} is in the live data store (row ord {ord_}, "
                           f"subject {subject_ref(key, sid)})", "no row", f"row ord {ord_}")
    except StoreUnreadable as exc:
        c.add(None, str(exc))
    rows = len(live_rows)
    if base.name is not None and (root / "audit" / base.name / "rows.sqlite").is_file():
        requested = {ref for req in events.requests.values() if req.seq > base.size for ref in req.subjects}
        _check_rows_against_vault(root / "audit" / base.name / "rows.sqlite", live_rows, forgotten, key, base, c,
                                  requested)
    for name, held in _vault_holdings(root, forgotten, key):
        if name == base.name:
            c.notices.append(f"vault audit/{name} still holds {held} row(s) of forgotten subjects, pending the next "
                             "seal (forgetd verify --seal)")
        else:
            c.notices.append(f"vault audit/{name} is not the one the ledger committed last and holds {held} row(s) "
                             "of forgotten subjects; the next seal removes it")
    c.figures.update(rows=rows, forgotten=len(forgotten))
    head_version = live.version if live else 0
    return c.done(f"none of the {len(forgotten)} forgotten subjects has a row among the {rows} live rows, which are "
                  f"audit/{base.name}'s less the forgotten; live parameters are the head's (version {head_version})")


def _check_store_files(root: Path, base: _Base, replayed: _Replayed | None, c: _Check) -> None:
    """Every file of the live store is what the audit derived: the immutable ones (layout, index, refs, test
    split, config) are the vault's; the manifest and every artifact it names (checkpoints, optimizer state,
    increments) are the replay's, byte for byte. Parameters alone would not do: a tampered optimizer state or
    increment shows only in a later forget, and a seal must never vouch for files the replay did not make."""
    files = base.record.get("files", {}) if base.record is not None else {}
    for rel, want in sorted(files.items()):
        if rel.startswith("artifacts/") or rel == "CURRENT.json" or ".." in rel.split("/") or rel.startswith("/"):
            continue
        have = _sha256_or_missing(root / rel)
        if have != want:
            c.add(None, f"the live store's {rel} differs from the vault audit/{base.name}'s", want, have)
    if replayed is None or replayed.manifest is None or replayed.artifacts is None:
        c.notices.append("the live store's checkpoints, optimizer state and increments were not compared (no replay "
                         "result to compare them with)")
        return
    if not replayed.bitwise:
        c.notices.append("the live store's checkpoints, optimizer state and increments were not compared byte for "
                         "byte: some batches ran on another device type")
        return
    try:
        live = dict(audit_store.read_json(root / "CURRENT.json"))
    except (StoreUnreadable, TypeError, ValueError) as exc:
        c.add(None, f"the live manifest is unreadable: {exc}")
        return
    live.pop("tag", None)
    for field_ in sorted(set(live) | set(replayed.manifest)):
        if live.get(field_) != replayed.manifest.get(field_):
            c.add(None, f"the live manifest's {field_!r} differs from the replayed store's",
                  json.dumps(replayed.manifest.get(field_))[:200], json.dumps(live.get(field_))[:200])
            return
    for name, want in sorted(replayed.artifacts.items()):
        have = _sha256_or_missing(root / "artifacts" / name)
        if have != want:
            c.add(None, f"the live store's artifacts/{name} differs from the replayed one", want, have)


def _check_rows_against_vault(vault_rows: Path, live_rows: Mapping[str, tuple[Any, Any, Any]],
                              forgotten: Mapping[str, int], key: bytes, base: _Base, c: _Check,
                              requested: set[str]) -> None:
    """The live rows must be the vault's rows less the forgotten ones, unchanged: a row edited or added behind
    the ledger's back would change what every later retrain learns. Also proves the key fits: the subjects
    requested since the vault was made must be among its rows (a wrong key matches none, and would make
    'no forgotten row found' vacuous)."""
    try:
        vault = [(ord_, sid, y, x, subject_ref(key, sid))
                 for ord_, sid, y, x in audit_store.iter_rows(vault_rows, immutable=True) if isinstance(sid, str)]
    except StoreUnreadable as exc:
        c.add(None, str(exc))
        return
    if requested and not any(row[4] in requested for row in vault):
        # Every other finding would follow from this one: name it alone.
        c.add(None, f"the subject key does not fit this store: none of the {len(requested)} subject(s) requested "
                    f"since audit/{base.name} was made is among its rows", "the deployment's key", "another key")
        return
    kept = 0
    for ord_, sid, y, x, ref in vault:
        if ref in forgotten:
            continue
        kept += 1
        have = live_rows.get(sid)
        if have is None:
            c.add(None, f"training row ord {ord_} (not forgotten) is missing from the live store",
                  f"row ord {ord_}", "none")
        elif have != (ord_, y, x):
            c.add(None, f"training row ord {ord_} (not forgotten) differs from the vault audit/{base.name}'s",
                  f"ord {ord_}, y {y}", f"ord {have[0]}, y {have[1]}" + ("" if have[2] == x else ", other features"))
    extra = len([sid for sid in live_rows if subject_ref(key, sid) not in forgotten]) - kept
    if extra > 0:
        c.add(None, f"the live store holds {extra} row(s) that are not in the vault audit/{base.name}",
              f"{kept} rows", f"{kept + extra} rows")


def _vault_holdings(root: Path, forgotten: Mapping[str, int], key: bytes) -> list[tuple[str, int]]:
    out = []
    audit_dir = root / "audit"
    if not audit_dir.is_dir():
        return out
    for vault in sorted(p for p in audit_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        held = 0
        try:
            for _o, sid, _y, _x in audit_store.iter_rows(vault / "rows.sqlite", immutable=True):
                if isinstance(sid, str) and subject_ref(key, sid) in forgotten:
                    held += 1
        except StoreUnreadable:
            continue
        if held or not vault.name:
            out.append((vault.name, held))
    return out


def _subject_key(root: Path, key_file: str | Path | None) -> bytes | None:
    path = Path(key_file) if key_file is not None else root / "keys" / "subject.key"
    try:
        key = path.read_bytes()
    except OSError:
        return None
    return key or None


# ------------------------------------------------------------------------------------------------ 5. live


def _check_served_parameters(client: Client, root: Path, want: Any, head: Head, c: _Check) -> None:
    """Predict on the store's test rows must give what the live parameters (proved equal to the head's by the
    data check) give: the daemon serves those parameters, it does not only report their digest."""
    try:
        from forgetd.server.replay import store_predictions
    except ModuleNotFoundError as exc:
        if exc.name not in ("torch", "numpy"):
            raise
        c.notices.append("Predict answers not compared with the store's parameters (needs the server extra)")
        return
    try:
        X, expected = store_predictions(root)
    except (OSError, ValueError, KeyError) as exc:
        c.add(None, f"cannot compute the store's own predictions: {exc}")
        return
    answer = client.predict(X)
    if want is not None and (answer.model_version, answer.model_digest) != (want.version, want.digest):
        c.add(head.size, "Predict was answered by a model other than the ledger head's",
              f"version {want.version} {want.digest}", f"version {answer.model_version} {answer.model_digest}")
    worst = max((abs(float(p) - float(q)) for row, ref in zip(answer.probabilities, expected.tolist())
                 for p, q in zip(row, ref)), default=0.0)
    c.figures.update(predict_rows=len(X), predict_max_abs_diff=worst)
    if len(answer.probabilities) != len(X) or worst > PREDICT_TOLERANCE:
        c.add(head.size, f"Predict answers differ from the live parameters' on {len(X)} test rows (the daemon "
                         "serves other parameters than it reports)", f"max |delta| <= {PREDICT_TOLERANCE:g}",
              f"{worst:.3g}")


def _check_live(server: str | Client, events: Events, head: Head, root: Path) -> CheckResult:
    from forgetd.client.client import Client
    from forgetd.client.errors import ForgetdClientError

    c = _Check("live")
    client = Client(server) if isinstance(server, str) else server
    want = events.live_model()
    try:
        info = client.model()
        if want is not None and (info.version, info.digest) != (want.version, want.digest):
            c.add(head.size, "the server serves a model other than the ledger head's",
                  f"version {want.version} {want.digest}", f"version {info.version} {info.digest}")
        elif want is not None and tuple(info.shard_digests) != want.shard_digests:
            c.add(head.size, "the server's shard digests differ from the ledger head's", list(want.shard_digests),
                  list(info.shard_digests))
        if events.head_public_key is not None and info.head_public_key != events.head_public_key.hex():
            c.add(1, "the server's head key is not the one genesis recorded", events.head_public_key.hex(),
                  info.head_public_key)
        _check_served_parameters(client, root, want, head, c)
        now = client.head(consistency_from=head.size)
        server_head = head_of(now.head)
        bad = check_head_signature(server_head, now.head.signature, now.head.public_key, events.head_public_key,
                                   "the server's head")
        if bad is not None:
            c.problems.append(bad)
        try:
            hashes = now.consistency.hashes if now.consistency is not None else ()
            verify_consistency(head, server_head, ConsistencyProof(head.size, server_head.size, tuple(hashes)))
        except LedgerError as exc:
            c.add(head.size, f"the server's ledger does not extend the store's: {exc}", head.to_hex(),
                  server_head.to_hex())
        if server_head.size != head.size:
            c.notices.append(f"the server's ledger has {server_head.size} entries, the store's {head.size}: "
                             "compared against the store's head")
    except ForgetdClientError as exc:
        c.add(None, f"cannot query the server: {exc}")
    finally:
        if isinstance(server, str):
            client.close()
    v = want.version if want else 0
    return c.done(f"the server serves version {v}, the ledger head's, and its signed head extends the store's")


# ------------------------------------------------------------------------------------------------ the seal


def _seal(root: Path, events: Events, head: Head, base: _Base, replayed: _Replayed) -> dict[str, Any]:
    """Snapshot the verified state as a new vault, commit it in audit.verified, delete the older vaults."""
    from forgetd.ledger import Ledger
    from forgetd.server.store import vault as vault_mod

    live = events.live_model()
    assert live is not None
    from forgetd.server.errors import ForgetdError

    name = f"head{head.size}"
    try:
        record = vault_mod.create_vault(root, name)
    except ForgetdError as exc:
        raise StoreSealError(f"cannot snapshot the verified state: {exc}") from exc
    version, digest, _ = audit_store.live_parameters(root / "audit" / name)
    if (version, digest) != (live.version, live.digest):
        vault_mod.remove_vault(root, name)
        raise StoreSealError(f"the store moved on while it was audited (it is at version {version}, the audit "
                             f"verified version {live.version}); run forgetd verify --seal again")
    payload = {
        "verified": head.to_dict(),
        "model": live.to_dict(),
        "vault": record.to_json(),
        "replayed": replayed.batches,
        "replay_device": replayed.device,
        "bitwise": replayed.bitwise,
        "previous_vault": base.name or "",
    }
    with Ledger(root / "ledger.sqlite") as ledger:
        entry = ledger.append(AUDIT_VERIFIED, payload, event_id=f"{AUDIT_VERIFIED}:{head.size}")
    removed = [n for n in vault_mod.vault_names(root) if n != name]
    for old in removed:
        vault_mod.remove_vault(root, old)
    return {"seq": entry.seq, "vault": name, "removed": removed}
