"""The row pass of verify_ledger: every envelope parsed and re-canonicalised, every leaf hash and chain link
recomputed, in one pass over the rows, in this process or split across forked workers.

Speed matters (an auditor replays 100k entries a second): rows are read in chunks, parsed with the C JSON
decoder, re-encoded a chunk at a time and hashed with hashlib, with no Python function call per row on the
happy path. Anything unusual drops to row_problems(), which re-examines the row slowly and says exactly
what is wrong.

A large ledger is split into seq ranges checked by forked worker processes; they can only confirm that every
row holds, and at the first doubt the whole ledger is checked again in one process, so findings never
depend on it.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import canonical
from .canonical import ENVELOPE_KEYS, SCHEMA_VERSION
from .findings import RFC3339_UTC, Findings, is_hash, row_problems
from .merkle import CHAIN_PREFIX, HASH_SIZE, ZERO_CHAIN
from .schema import COLUMNS, TABLE

PARALLEL_MIN_ENTRIES = 20_000
MAX_JOBS = 4
_CHUNK = 2000

Row = tuple[Any, ...]  # the COLUMNS of one row, as SQLite returned them


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection; raises sqlite3.Error at once if the file is not a database."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=60.0)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # fails here if not a database
    return conn


@dataclass
class Scan:
    leaves: list[bytes]
    chain: bytes  # the chain hash recomputed from the envelopes, after the last row
    chain_at_expected: bytes | None  # the same after row `expect_size`


@dataclass
class _Cursor:
    """Where the row pass stands between two chunks (within one, _link_rows keeps it in locals: faster)."""

    expected: int  # the seq the next row should have
    prev_stored: bytes  # the stored chain hash of the previous row (for link checks)
    chain: bytes  # the chain recomputed from envelopes alone
    diverged: bool  # whether `chain` and `prev_stored` differ
    chain_at_expected: bytes | None
    leaves: list[bytes]


def scan_ledger(path: Path, found: Findings, expect_size: int, *, strict: bool, pool: Pool | None = None,
                ranges: Sequence[tuple[int, int]] = ()) -> Scan:
    """Every row of the ledger at `path`, by the workers in `pool` over `ranges` when they all confirm a
    spotless ledger, otherwise here, reporting into `found`. `strict`: the schema check passed."""
    scan = _scan_in_parallel(pool, str(path), ranges, expect_size) if pool is not None else None
    if scan is not None:
        return scan
    conn = connect_readonly(path)
    try:
        return _scan_rows(conn, found, expect_size, strict=strict)
    finally:
        conn.close()


def _rows(conn: sqlite3.Connection, lo: int = 1, hi: int | None = None) -> Iterator[list[Row]]:
    if hi is None:  # everything, rows with a non-integer seq included
        cur = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} ORDER BY seq")
    else:
        cur = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE seq >= ? AND seq < ? ORDER BY seq", (lo, hi))
    while rows := cur.fetchmany(_CHUNK):
        yield rows


def _scan_rows(
    conn: sqlite3.Connection,
    found: Findings,
    expect_size: int,
    *,
    strict: bool = True,
    lo: int = 1,
    hi: int | None = None,
    prev_chain: bytes = ZERO_CHAIN,
) -> Scan:
    # Three steps a chunk, each one tight loop over locals: _parse_lean parses the envelopes that may take the
    # lean path, _link_rows hashes and links every row (the others through the slow path), and
    # _check_canonical_chunk re-encodes the lean ones in one call. `strict` says the schema check passed, so
    # SQLite itself guarantees each column's type (STRICT, NOT NULL): the lean path then skips per-column
    # type tests. Without it every row takes the slow, paranoid path.
    at = _Cursor(lo, prev_chain, prev_chain, False, ZERO_CHAIN if expect_size == 0 else None, [])
    gc_was_enabled = gc.isenabled()
    gc.disable()  # the pass allocates only acyclic objects; collection passes would dominate otherwise
    try:
        for rows in _rows(conn, lo, hi):
            parsed = _parse_lean(rows) if strict else [None] * len(rows)
            objs, envelopes, lean_rows = _link_rows(rows, parsed, at, found, expect_size)
            if objs:
                _check_canonical_chunk(objs, envelopes, lean_rows, found)
        if hi is not None and at.expected < hi:
            found.add(at.expected, f"missing: no row has seq {at.expected}..{hi - 1}")
    finally:
        if gc_was_enabled:
            gc.enable()
    return Scan(at.leaves, at.chain, at.chain_at_expected)


def _parse_lean(rows: list[Row]) -> list[Any]:
    """For each row: its envelope as a dict when it is ASCII JSON whose fields equal the columns and lie in
    the domain; None when the row needs the slow path; the exception when examining it raised."""
    scan = canonical.scan_once
    keys = ENVELOPE_KEYS
    ts_ok = RFC3339_UTC
    out: list[Any] = []
    add = out.append
    for seq, event_id, etype, v, recorded_at, envelope, _leaf, _chain in rows:
        obj: Any = None
        try:
            if envelope.isascii():
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
        except Exception as exc:  # kept, not raised: it counts only for a row in its place (see _link_rows)
            obj = exc
        add(obj)
    return out


def _link_rows(rows: list[Row], parsed: list[Any], at: _Cursor, found: Findings,
               expect_size: int) -> tuple[list[Any], list[bytes], list[Row]]:
    """Hash one chunk of rows and link them onto the chain at `at`, reporting what does not recompute.
    Returns the rows that took the lean path (objects, envelopes, rows) for the chunk's canonical check."""
    sha256 = hashlib.sha256
    chain_tag = CHAIN_PREFIX[0] << 64
    add_leaf = at.leaves.append
    expected, prev_stored, chain, diverged = at.expected, at.prev_stored, at.chain, at.diverged
    chain_at_expected = at.chain_at_expected
    objs: list[Any] = []
    envelopes: list[bytes] = []
    lean_rows: list[Row] = []
    for row, obj in zip(rows, parsed):
        try:
            seq, _, _, _, _, envelope, leaf_stored, chain_stored = row
            if seq == expected and obj.__class__ is dict:
                objs.append(obj)
                envelopes.append(envelope)
                lean_rows.append(row)
                leaf = sha256(b"\x00" + envelope).digest()
                if leaf != leaf_stored:
                    found.add(seq, "leaf hash differs from SHA-256(0x00 || envelope)", leaf, leaf_stored)
            else:
                if seq == expected and isinstance(obj, Exception):
                    raise obj
                placed = _off_path(row, expected, found)
                if placed is None:
                    continue  # out of place: not part of the sequence
                leaf, expected = placed
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
    at.expected, at.prev_stored, at.chain, at.diverged = expected, prev_stored, chain, diverged
    at.chain_at_expected = chain_at_expected
    return objs, envelopes, lean_rows


def _off_path(row: Row, expected: int, found: Findings) -> tuple[bytes, int] | None:
    """The slow path: report this row's problems; (its leaf, its seq) when its seq is where it should be
    (due or later), None when it is out of place and so not part of the sequence."""
    seq, leaf_stored = row[0], row[6]
    leaf = row_problems(row, expected, found)
    if not (seq.__class__ is int and seq >= expected):
        return None
    if leaf is None:
        leaf = leaf_stored if is_hash(leaf_stored) else bytes(HASH_SIZE)
    return leaf, seq


def _check_canonical_chunk(objs: list[Any], envelopes: list[bytes], rows: list[Row], found: Findings) -> None:
    """One C re-encode of the whole chunk against the stored bytes joined; a chunk that differs, or may hold
    an unsafe integer, is examined row by row."""
    encode = canonical.fast_encode
    joined = b"[" + b",".join(envelopes) + b"]"
    if _encode_or_none(encode, objs) == joined and not _may_hold_unsafe_int(joined):
        return
    long_digits = canonical.LONG_DIGITS.search
    for obj, envelope, row in zip(objs, envelopes, rows):
        if _encode_or_none(encode, obj) != envelope or long_digits(envelope):
            try:
                row_problems(row, row[0], found, check_leaf=False)
            except Exception as exc:  # never a crash
                found.add(row[0], f"row could not be examined ({type(exc).__name__}: {exc})")


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


# --- several processes ----------------------------------------------------------------------------------


def idle_cpus() -> int:
    """CPUs not busy over the last minute (load average), at most MAX_JOBS: extra processes on a machine with
    nothing idle only fight each other (and the integrity_check thread)."""
    cpus = os.cpu_count() or 1
    try:
        busy = int(os.getloadavg()[0])
    except OSError:
        busy = 0
    return max(1, min(cpus - busy, MAX_JOBS))


def plan_workers(conn: sqlite3.Connection, strict: bool, jobs: int | None) -> list[tuple[int, int]]:
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


@contextmanager
def forked_workers(count: int) -> Iterator[Pool | None]:
    """A pool of `count` forked processes (None for no ranges, or when no process is to be had), terminated
    on exit. Enter it while this process has no other thread and no open SQLite connection."""
    if count < 1:
        yield None
        return
    try:
        pool = multiprocessing.get_context("fork").Pool(count)
    except OSError:
        yield None  # no processes to be had: one will do
        return
    try:
        yield pool
    finally:
        pool.terminate()
        pool.join()


def _scan_in_parallel(pool: Pool, path: str, ranges: Sequence[tuple[int, int]], expect_size: int) -> Scan | None:
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
    for part in parts:
        assert part is not None
        joined, chain, at_expected = part
        leaves += [joined[i:i + HASH_SIZE] for i in range(0, len(joined), HASH_SIZE)]
        if at_expected is not None:
            chain_at_expected = at_expected
    return Scan(leaves, chain, chain_at_expected)


def _scan_range(path: str, lo: int, hi: int, expect_size: int) -> tuple[bytes, bytes, bytes | None] | None:
    """In a worker: check seqs lo..hi-1; (leaves joined, last chain, chain at expect_size) if all is well."""
    conn = connect_readonly(Path(path))
    try:
        row = conn.execute(f"SELECT chain_hash FROM {TABLE} WHERE seq = ?", (lo - 1,)).fetchone()
        prev = row[0] if row is not None and is_hash(row[0]) else ZERO_CHAIN
        found = Findings()
        scan = _scan_rows(conn, found, expect_size if lo <= expect_size < hi else -1, lo=lo, hi=hi, prev_chain=prev)
    finally:
        conn.close()
    if found.count or len(scan.leaves) != hi - lo:
        return None
    return b"".join(scan.leaves), scan.chain, scan.chain_at_expected
