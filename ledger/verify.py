"""verify_ledger: recompute everything a ledger file claims, and name the first entry that does not hold.

Checked, in one pass over the rows: seq is gapless from 1; each envelope is valid UTF-8 JSON in the
restricted domain and re-canonicalises to exactly its stored bytes; its fields equal the row's columns;
every leaf hash and every chain link recomputes; then the Merkle root over the recomputed leaves, the schema
(STRICT table, both triggers, their exact SQL), `PRAGMA integrity_check`, and, given `expect_head`, that the
ledger still holds that head as a prefix (same chain hash and root at that size; not shorter).

A malformed row is a finding, never a crash. Each Problem names a seq (where one applies), what was expected
and what was found. Chain links are checked against the *stored* previous chain hash, so one edited row is
reported at its own seq instead of flooding every later row; the head in the report is recomputed from the
envelopes alone, never read from the stored hash columns.

Speed matters (an auditor replays 100k entries a second): rows are read in chunks, parsed with the C JSON
decoder, re-encoded a chunk at a time, hashed with hashlib, and integrity_check runs on its own connection
in a thread while Python works through the rows (sqlite3 releases the GIL inside SQLite). A large ledger
is split into seq ranges checked by forked worker processes; they can only confirm that every row holds,
and at the first doubt the whole ledger is checked again in one process, so findings never depend on it.
"""

from __future__ import annotations

import gc
import hashlib
import json
import multiprocessing
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import canonical
from .canonical import ENVELOPE_KEYS, SCHEMA_VERSION, NonCanonical, check_canonical
from .errors import LedgerNotFound
from .merkle import CHAIN_PREFIX, HASH_SIZE, ZERO_CHAIN, root_of
from .model import Head
from .store import APPLICATION_ID, COLUMNS, FILE_FORMAT, TABLE, TABLE_SQL, TRIGGERS_SQL

MAX_PROBLEMS = 200  # listed in full; later ones are counted (first_bad_seq still sees them all)
_CHUNK = 2000
_RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z").fullmatch


class Problem(str):
    """One finding. It *is* its human-readable message (a str), with the parts kept as attributes:
    `seq` (None for file-level findings), `what`, `expected` and `actual`."""

    seq: int | None
    what: str
    expected: str | None
    actual: str | None

    def __new__(cls, seq: int | None, what: str, expected: object = None, actual: object = None) -> Problem:
        text = what if seq is None else f"seq {seq}: {what}"
        if expected is not None or actual is not None:
            text += f" (expected {_show(expected)}, actual {_show(actual)})"
        self = super().__new__(cls, text)
        self.seq = seq
        self.what = what
        self.expected = None if expected is None else _show(expected)
        self.actual = None if actual is None else _show(actual)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "what": self.what, "expected": self.expected, "actual": self.actual,
                "message": str(self)}


def _show(value: object) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex() if len(value) <= 64 else f"{bytes(value[:48])!r}... ({len(value)} bytes)"
    if isinstance(value, str):
        return value if len(value) <= 120 else value[:117] + "..."
    return repr(value)


@dataclass(frozen=True)
class VerifyReport:
    """What verify_ledger found. `ok` only when there are no problems at all."""

    path: str
    entries: int  # rows read
    head: Head | None  # recomputed from the envelopes (None when the rows could not be read at all)
    problems: tuple[Problem, ...]
    first_bad_seq: int | None
    expect_head: Head | None = None
    problems_omitted: int = 0
    elapsed_s: float = 0.0
    checks: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            against = f", consistent with the expected head at size {self.expect_head.size}" if self.expect_head else ""
            return f"ok: {self.entries} entries verified{against}; head {self.head.to_hex() if self.head else '-'}"
        where = f"first bad seq {self.first_bad_seq}" if self.first_bad_seq is not None else "file-level problem"
        count = len(self.problems) + self.problems_omitted
        return f"verification failed: {where}; {count} problem{'s' if count != 1 else ''}: {self.problems[0]}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "path": self.path,
            "entries": self.entries,
            "first_bad_seq": self.first_bad_seq,
            "head": self.head.to_dict() if self.head else None,
            "head_hex": self.head.to_hex() if self.head else None,
            "expect_head": self.expect_head.to_dict() if self.expect_head else None,
            "problems": [p.to_dict() for p in self.problems],
            "problems_omitted": self.problems_omitted,
            "checks": list(self.checks),
            "elapsed_s": round(self.elapsed_s, 6),
        }


class _Findings:
    def __init__(self) -> None:
        self.listed: list[Problem] = []
        self.omitted = 0
        self.first_bad: int | None = None

    def add(self, seq: int | None, what: str, expected: object = None, actual: object = None) -> None:
        if seq is not None and (self.first_bad is None or seq < self.first_bad):
            self.first_bad = seq
        if len(self.listed) < MAX_PROBLEMS:
            self.listed.append(Problem(seq, what, expected, actual))
        else:
            self.omitted += 1


def verify_ledger(path: str | Path, *, expect_head: Head | str | None = None, jobs: int | None = None) -> VerifyReport:
    """Recompute every hash, envelope and link of the ledger at `path`; see the module docstring.

    `expect_head` (a Head or its hex) is a head the caller kept from earlier: the ledger must still contain
    it as a prefix. Raises LedgerNotFound if there is no file; everything wrong *inside* the file is reported.

    `jobs` is how many processes may check rows (None: one per idle CPU, up to 4, for ledgers of 20,000
    entries or more, when forking is safe). Worker processes only confirm a clean ledger; if any of them finds anything,
    the whole ledger is checked again in this process, so findings never depend on `jobs`.
    """
    started = time.perf_counter()
    path = Path(path)
    if isinstance(expect_head, str):
        expect_head = Head.from_hex(expect_head)
    if not path.is_file():
        raise LedgerNotFound(f"no ledger at {path}")
    found = _Findings()
    checks: list[str] = []
    head: Head | None = None
    entries = 0
    integrity: _IntegrityCheck | None = None
    pool: Any = None  # a multiprocessing Pool when rows are checked in several processes
    try:
        conn = _connect(path)
    except sqlite3.Error as exc:
        found.add(None, f"cannot open the file as SQLite: {exc}")
        return _report(path, 0, None, found, expect_head, started, checks)
    try:
        try:
            strict = _check_schema(conn, found)
            checks.append("schema")
        except sqlite3.Error as exc:
            found.add(None, f"cannot read the schema: {exc}")
            return _report(path, 0, None, found, expect_head, started, checks)
        expect_size = expect_head.size if expect_head else 0
        ranges = _plan_workers(conn, strict, jobs)
        if ranges:  # fork while this process has no other thread and no open SQLite connection
            conn.close()
            try:
                pool = multiprocessing.get_context("fork").Pool(len(ranges))
            except OSError:
                pool = None  # no processes to be had: one will do
            conn = _connect(path)
        integrity = _IntegrityCheck(path)
        integrity.start()
        try:
            scan = _scan_in_parallel(pool, str(path), ranges, expect_size) if pool else None
            if scan is None:
                scan = _scan_rows(conn, found, expect_size, strict=strict)
            checks += ["envelopes", "leaf hashes", "chain links"]
        except sqlite3.Error as exc:
            found.add(None, f"cannot read the {TABLE} rows: {exc}")
            scan = None
        if scan is not None:
            entries = len(scan.leaves)
            head = Head(entries, scan.chain, root_of(scan.leaves)) if entries else Head.empty()
            checks.append("merkle root")
            if expect_head is not None:
                _check_expected_head(scan, expect_head, found)
                checks.append("expected head")
    finally:
        conn.close()
        if pool is not None:
            pool.terminate()
            pool.join()
        if integrity is not None:
            integrity.join()
            for line in integrity.result:
                found.add(None, f"PRAGMA integrity_check: {line}")
            checks.append("integrity_check")
    return _report(path, entries, head, found, expect_head, started, checks)


def _report(path: Path, entries: int, head: Head | None, found: _Findings, expect_head: Head | None,
            started: float, checks: list[str]) -> VerifyReport:
    return VerifyReport(
        path=str(path), entries=entries, head=head, problems=tuple(found.listed), first_bad_seq=found.first_bad,
        expect_head=expect_head, problems_omitted=found.omitted, elapsed_s=time.perf_counter() - started,
        checks=tuple(checks),
    )


def _connect(path: Path) -> sqlite3.Connection:
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=60.0)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # fails here if not a database
    return conn


class _IntegrityCheck(threading.Thread):
    def __init__(self, path: Path) -> None:
        super().__init__(name="ledger-integrity-check", daemon=True)
        self.path = path
        self.result: list[str] = []

    def run(self) -> None:
        try:
            conn = _connect(self.path)
            try:
                rows = conn.execute("PRAGMA integrity_check").fetchall()
            finally:
                conn.close()
            self.result = [str(r[0]) for r in rows if r[0] != "ok"]
        except sqlite3.Error as exc:
            self.result = [f"could not run: {exc}"]


def _norm_sql(sql: object) -> str:
    return " ".join(str(sql).split())


def _check_schema(conn: sqlite3.Connection, found: _Findings) -> bool:
    """Report schema problems; return True when the table is exactly ours (so column types are enforced)."""
    before = len(found.listed) + found.omitted
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if app_id != APPLICATION_ID:
        found.add(None, "the file is not marked as a forgetd ledger", f"application_id {APPLICATION_ID:#x}", f"{app_id:#x}")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version != FILE_FORMAT:
        found.add(None, "unknown ledger file format", f"user_version {FILE_FORMAT}", f"user_version {version}")
    objects = {(t, n): (tbl, sql) for t, n, tbl, sql in conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")}
    table = objects.get(("table", TABLE))
    if table is None:
        found.add(None, f"the {TABLE} table is missing")
    elif _norm_sql(table[1]) != _norm_sql(TABLE_SQL):
        found.add(None, f"the {TABLE} table's definition was changed (STRICT, NOT NULL and UNIQUE are required)",
                  _norm_sql(TABLE_SQL), _norm_sql(table[1]))
    for name, sql in TRIGGERS_SQL.items():
        trigger = objects.get(("trigger", name))
        if trigger is None:
            found.add(None, f"append-only trigger {name} is missing")
        elif _norm_sql(trigger[1]) != _norm_sql(sql):
            found.add(None, f"append-only trigger {name} was altered", _norm_sql(sql), _norm_sql(trigger[1]))
    for (kind, name), (tbl, _sql) in sorted(objects.items()):
        if kind == "trigger" and tbl == TABLE and name not in TRIGGERS_SQL:
            found.add(None, f"unexpected trigger {name} on {TABLE}")
    return table is not None and _norm_sql(table[1]) == _norm_sql(TABLE_SQL) and before == len(found.listed) + found.omitted


@dataclass
class _Scan:
    leaves: list[bytes]
    chain: bytes  # the chain hash recomputed from the envelopes, after the last row
    chain_at_expected: bytes | None  # the same after row `expect_size`


def _rows(conn: sqlite3.Connection, lo: int = 1, hi: int | None = None) -> Iterator[list[tuple[Any, ...]]]:
    if hi is None:  # everything, rows with a non-integer seq included
        cur = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} ORDER BY seq")
    else:
        cur = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE seq >= ? AND seq < ? ORDER BY seq", (lo, hi))
    while True:
        rows = cur.fetchmany(_CHUNK)
        if not rows:
            return
        yield rows


def _scan_rows(
    conn: sqlite3.Connection,
    found: _Findings,
    expect_size: int,
    *,
    strict: bool = True,
    lo: int = 1,
    hi: int | None = None,
    prev_chain: bytes = ZERO_CHAIN,
) -> _Scan:
    # The hot loop: locals only, no per-row Python function calls on the happy path. Anything unusual drops
    # to _row_problems(), which re-examines the row slowly and says exactly what is wrong. `strict` says the
    # schema check passed, so SQLite itself guarantees each column's type (STRICT, NOT NULL): the lean path
    # then skips per-column type tests. Without it every row takes the slow, paranoid path.
    lean = strict
    sha256 = hashlib.sha256
    scan = canonical.scan_once
    encode = canonical.fast_encode
    keys = ENVELOPE_KEYS
    ts_ok = _RFC3339_UTC
    long_digits = canonical.LONG_DIGITS.search
    chain_tag = CHAIN_PREFIX[0] << 64
    leaves: list[bytes] = []
    add_leaf = leaves.append
    expected = lo  # the seq the next row should have
    prev_stored = prev_chain  # the stored chain hash of the previous row (for link checks)
    chain = prev_chain  # the chain recomputed from envelopes alone
    diverged = False  # whether `chain` and `prev_stored` differ
    chain_at_expected: bytes | None = ZERO_CHAIN if expect_size == 0 else None
    gc_was_enabled = gc.isenabled()
    gc.disable()  # the loop allocates only acyclic objects; collection passes would dominate otherwise
    try:
        for rows in _rows(conn, lo, hi):
            fast_objs: list[Any] = []
            fast_envs: list[bytes] = []
            fast_rows: list[tuple[Any, ...]] = []
            for row in rows:
                try:
                    seq, event_id, etype, v, recorded_at, envelope, leaf_stored, chain_stored = row
                    obj = None
                    if lean and seq == expected and envelope.isascii():
                        try:
                            text = envelope.decode("ascii")
                            obj, end = scan(text, 0)
                        except (StopIteration, ValueError, RecursionError):
                            obj = None
                        else:
                            if (
                                end != len(text)
                                or obj.__class__ is not dict
                                or obj.keys() != keys
                                or obj["seq"] != seq
                                or obj["v"] != v
                                or obj["event_id"] != event_id
                                or obj["type"] != etype
                                or obj["recorded_at"] != recorded_at
                                or v != SCHEMA_VERSION
                                or obj["v"].__class__ is not int
                                or obj["seq"].__class__ is not int
                                or not event_id
                                or not etype
                                or not ts_ok(recorded_at)
                            ):
                                obj = None
                    if obj is None:
                        # Slow path: report this row's problems; it counts as a leaf if its seq is where it should be.
                        leaf = _row_problems(row, expected, found)
                        if seq.__class__ is int and seq >= expected:
                            if seq > expected:
                                expected = seq
                            if leaf is None:
                                leaf = leaf_stored if _is_hash(leaf_stored) else bytes(HASH_SIZE)
                        else:
                            continue  # out of place: not part of the sequence
                    else:
                        fast_objs.append(obj)
                        fast_envs.append(envelope)
                        fast_rows.append(row)
                        leaf = sha256(b"\x00" + envelope).digest()
                        if leaf != leaf_stored:
                            found.add(seq, "leaf hash differs from SHA-256(0x00 || envelope)", leaf, leaf_stored)
                    prefix = (chain_tag + expected).to_bytes(9, "big")  # 0x02 || seq as 8 bytes big-endian
                    link = sha256(prefix + prev_stored + leaf).digest()
                    if link == chain_stored:
                        prev_stored = chain_stored
                    else:
                        found.add(expected, "chain hash differs from SHA-256(0x02 || seq || previous chain || leaf)",
                                  link, chain_stored)
                        prev_stored = chain_stored if chain_stored.__class__ is bytes and len(chain_stored) == 32 else link
                    # Until the first broken link the recomputed chain is the stored one; after it, keep both.
                    chain = sha256(prefix + chain + leaf).digest() if diverged else link
                    diverged = chain != prev_stored
                    add_leaf(leaf)
                    if expected == expect_size:
                        chain_at_expected = chain
                    expected += 1
                except Exception as exc:  # a malformed row is a finding, never a crash
                    found.add(expected, f"row could not be examined ({type(exc).__name__}: {exc})")
            if fast_objs:
                joined = b"[" + b",".join(fast_envs) + b"]"
                if _encode_or_none(encode, fast_objs) != joined or _may_hold_unsafe_int(joined):
                    for obj, envelope, row in zip(fast_objs, fast_envs, fast_rows):
                        if _encode_or_none(encode, obj) != envelope or long_digits(envelope):
                            try:
                                _row_problems(row, row[0], found, check_leaf=False)
                            except Exception as exc:  # never a crash
                                found.add(row[0], f"row could not be examined ({type(exc).__name__}: {exc})")
        if hi is not None and expected < hi:
            found.add(expected, f"missing: no row has seq {expected}..{hi - 1}")
    finally:
        if gc_was_enabled:
            gc.enable()
    return _Scan(leaves, chain, chain_at_expected)


# --- several processes ----------------------------------------------------------------------------------

PARALLEL_MIN_ENTRIES = 20_000
MAX_JOBS = 4


def idle_cpus() -> int:
    """CPUs not busy over the last minute (load average), at most MAX_JOBS: extra processes on a machine with
    nothing idle only fight each other (and the integrity_check thread)."""
    cpus = os.cpu_count() or 1
    try:
        busy = int(os.getloadavg()[0])
    except OSError:
        busy = 0
    return max(1, min(cpus - busy, MAX_JOBS))


def _plan_workers(conn: sqlite3.Connection, strict: bool, jobs: int | None) -> list[tuple[int, int]]:
    """Seq ranges for worker processes, or [] to check everything here.

    Only a ledger whose schema is intact (so every seq is an integer) and whose seqs look gapless is split;
    only with the fork start method, and only while this process runs a single thread (forking a process
    with other threads can deadlock the child)."""
    if not strict or jobs == 1:
        return []
    if "fork" not in multiprocessing.get_all_start_methods() or threading.active_count() != 1:
        return []
    try:
        count, low, high = conn.execute(f"SELECT count(*), min(seq), max(seq) FROM {TABLE}").fetchone()
    except sqlite3.Error:
        return []
    if jobs is None:
        if count < PARALLEL_MIN_ENTRIES:
            return []
        jobs = idle_cpus()
    return _split_seqs(count, low, high, jobs)


def _split_seqs(count: int, low: int | None, high: int | None, jobs: int) -> list[tuple[int, int]]:
    """Half-open seq ranges of about equal size, one per job; [] unless seqs 1..count look gapless."""
    if jobs < 2 or count < jobs or low != 1 or high != count:
        return []
    step = -(-count // jobs)
    return [(start, min(start + step, count + 1)) for start in range(1, count + 1, step)]


def _scan_in_parallel(pool: Any, path: str, ranges: list[tuple[int, int]], expect_size: int) -> _Scan | None:
    """Check each seq range in its own process; the joined result, or None if any range was not spotless."""
    try:
        parts = pool.starmap(_scan_range, [(path, lo, hi, expect_size) for lo, hi in ranges])
    except Exception:  # a worker that failed in any way: the caller checks everything itself
        return None
    if any(part is None for part in parts):
        return None
    leaves: list[bytes] = []
    chain_at_expected = ZERO_CHAIN if expect_size == 0 else None
    chain = ZERO_CHAIN
    for (lo, _hi), part in zip(ranges, parts):
        assert part is not None
        joined, chain, at_expected = part
        leaves += [joined[i:i + HASH_SIZE] for i in range(0, len(joined), HASH_SIZE)]
        if at_expected is not None:
            chain_at_expected = at_expected
    return _Scan(leaves, chain, chain_at_expected)


def _scan_range(path: str, lo: int, hi: int, expect_size: int) -> tuple[bytes, bytes, bytes | None] | None:
    """In a worker: check seqs lo..hi-1; (leaves joined, last chain, chain at expect_size) if all is well."""
    conn = _connect(Path(path))
    try:
        row = conn.execute(f"SELECT chain_hash FROM {TABLE} WHERE seq = ?", (lo - 1,)).fetchone()
        prev = row[0] if row is not None and _is_hash(row[0]) else ZERO_CHAIN
        found = _Findings()
        scan = _scan_rows(conn, found, expect_size if lo <= expect_size < hi else -1, lo=lo, hi=hi, prev_chain=prev)
    finally:
        conn.close()
    if found.listed or found.omitted or len(scan.leaves) != hi - lo:
        return None
    return b"".join(scan.leaves), scan.chain, scan.chain_at_expected


def _encode_or_none(encode: Any, value: Any) -> bytes | None:
    try:
        return encode(value).encode("utf-8")  # type: ignore[no-any-return]
    except (ValueError, RecursionError):
        return None


_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_SIXTEEN_DIGITS = b"0" * 16


def _may_hold_unsafe_int(joined: bytes) -> bool:
    """Whether canonical JSON text may hold an integer of 16+ digits (a number starts after : [ , or -).

    Digit runs inside strings (hex digests) are common; a run preceded by a quote or a letter is skipped.
    A false alarm only costs a precise re-check of the chunk's rows."""
    zeros = joined.translate(_DIGITS_TO_ZERO)
    find = zeros.find
    pos = find(_SIXTEEN_DIGITS)
    while pos != -1:
        if pos and joined[pos - 1] in b":[,-":
            return True
        pos += 16
        while pos < len(zeros) and zeros[pos] == 48:  # skip to the end of this run of digits
            pos += 1
        pos = find(_SIXTEEN_DIGITS, pos)
    return False


def _is_hash(value: object) -> bool:
    return value.__class__ is bytes and len(value) == HASH_SIZE  # type: ignore[arg-type]


def _row_problems(row: tuple[Any, ...], expected: int, found: _Findings, *, check_leaf: bool = True) -> bytes | None:
    """Report everything wrong with one row; return its recomputed leaf hash when the envelope is bytes."""
    seq, event_id, etype, v, recorded_at, envelope, leaf_stored, chain_stored = row
    env_seq: Any = None
    obj: Any = None
    leaf: bytes | None = None
    problem_envelope: str | None = None
    if isinstance(envelope, bytes):
        leaf = hashlib.sha256(b"\x00" + envelope).digest()
        try:
            obj = check_canonical(envelope)
        except NonCanonical as exc:
            obj = _loose_parse(envelope)
            problem_envelope = f"envelope {exc}"
        if isinstance(obj, dict) and isinstance(obj.get("seq"), int) and not isinstance(obj.get("seq"), bool):
            env_seq = obj["seq"]
    else:
        problem_envelope = f"envelope is not a BLOB but {type(envelope).__name__}"
    # Which seq to name: the row's place in the sequence, unless its seq column is what was tampered with
    # (then the envelope still says where it belongs).
    name = expected
    if not (isinstance(seq, int) and seq >= expected):
        name = env_seq if isinstance(env_seq, int) and env_seq >= 1 else expected
    elif seq > expected:
        found.add(expected, f"missing: the next row has seq {seq}", f"seq {expected}", f"seq {seq}")
        name = seq
    if not isinstance(seq, int) or isinstance(seq, bool):
        found.add(name, "seq column is not an integer", "an integer", repr(seq))
    elif seq < expected:
        found.add(name, f"row out of place: seq column {seq} where seq {expected} or later was due",
                  f">= {expected}", seq)
    if problem_envelope:
        found.add(name, problem_envelope)
    if isinstance(obj, dict):
        if set(obj) != ENVELOPE_KEYS:
            found.add(name, "envelope keys are wrong", sorted(ENVELOPE_KEYS), sorted(obj))
        for key, column in (("seq", seq), ("event_id", event_id), ("type", etype), ("v", v),
                            ("recorded_at", recorded_at)):
            if key in obj and (obj[key] != column or type(obj[key]) is not type(column)):
                found.add(name, f"column {key} differs from the envelope's {key}", repr(obj[key]), repr(column))
    elif obj is not None or problem_envelope is None:
        found.add(name, "envelope is not a JSON object")
    if not (isinstance(v, int) and not isinstance(v, bool) and v == SCHEMA_VERSION):
        found.add(name, "unknown schema version", repr(SCHEMA_VERSION), repr(v))
    for what, value in (("event_id", event_id), ("type", etype)):
        if not isinstance(value, str) or not value:
            found.add(name, f"{what} must be a non-empty string", "a non-empty string", value)
    if not isinstance(recorded_at, str) or not _RFC3339_UTC(recorded_at):
        found.add(name, "recorded_at is not an RFC 3339 UTC time", "YYYY-MM-DDTHH:MM:SS[.fff]Z", recorded_at)
    if check_leaf and leaf is not None and leaf != leaf_stored:
        found.add(name, "leaf hash differs from SHA-256(0x00 || envelope)", leaf, leaf_stored)
    if not _is_hash(chain_stored):
        found.add(name, "chain hash is not 32 bytes", "32 bytes", chain_stored)
    return leaf


def _loose_parse(envelope: bytes) -> Any:
    try:
        return json.loads(envelope)
    except (ValueError, RecursionError):
        return None


def _check_expected_head(scan: _Scan, expect: Head, found: _Findings) -> None:
    size = len(scan.leaves)
    if expect.size > size:
        found.add(size + 1, f"the ledger has {size} entries but the expected head has {expect.size}: "
                  f"the tail from seq {size + 1} was truncated", f"size >= {expect.size}", f"size {size}")
        return
    if expect.size == 0:
        return
    chain = scan.chain_at_expected
    if chain != expect.chain_hash:
        found.add(expect.size, f"the chain hash at seq {expect.size} differs from the expected head's: "
                  f"history up to seq {expect.size} was rewritten", expect.chain_hash, chain)
    root = root_of(scan.leaves[: expect.size])
    if root != expect.merkle_root:
        found.add(expect.size, f"the Merkle root over seqs 1..{expect.size} differs from the expected head's: "
                  "the expected head is not a prefix of this ledger", expect.merkle_root, root)
