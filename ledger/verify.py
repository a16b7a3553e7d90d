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

The row pass (ledger.scan) is the hot path, split across forked worker processes for a large ledger;
integrity_check runs on its own connection in a thread meanwhile (sqlite3 releases the GIL inside SQLite).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import LedgerNotFound
from .findings import Findings, Problem
from .merkle import root_of
from .model import Head
from .scan import Scan, connect_readonly, forked_workers, plan_workers, scan_ledger
from .schema import APPLICATION_ID, FILE_FORMAT, TABLE, TABLE_SQL, TRIGGERS_SQL

__all__ = ["Problem", "VerifyReport", "verify_ledger"]  # Problem lives in findings, shared with the row pass


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
    found = Findings()
    checks: list[str] = []
    plan = _check_schema_and_plan(path, found, checks, jobs)
    head = None if plan is None else _check_rows(path, *plan, found, checks, expect_head)
    return VerifyReport(
        path=str(path), entries=head.size if head is not None else 0, head=head, problems=tuple(found.listed),
        first_bad_seq=found.first_bad, expect_head=expect_head, problems_omitted=found.omitted,
        elapsed_s=time.perf_counter() - started, checks=tuple(checks),
    )


def _check_schema_and_plan(path: Path, found: Findings, checks: list[str],
                           jobs: int | None) -> tuple[bool, list[tuple[int, int]]] | None:
    """Open the file and check its schema: (whether it is exactly ours, seq ranges for worker processes),
    or None when the file cannot be read as a ledger at all."""
    try:
        conn = connect_readonly(path)
    except sqlite3.Error as exc:
        found.add(None, f"cannot open the file as SQLite: {exc}")
        return None
    try:  # closed before the row pass, which may fork: no open SQLite connection may cross a fork
        try:
            strict = _check_schema(conn, found)
            checks.append("schema")
        except sqlite3.Error as exc:
            found.add(None, f"cannot read the schema: {exc}")
            return None
        return strict, plan_workers(conn, strict, jobs)
    finally:
        conn.close()


def _check_rows(path: Path, strict: bool, ranges: list[tuple[int, int]], found: Findings, checks: list[str],
                expect_head: Head | None) -> Head | None:
    """The row pass (in worker processes over `ranges`, if any) beside PRAGMA integrity_check in a thread;
    the head recomputed from the envelopes, or None when the rows could not be read."""
    with forked_workers(len(ranges)) as pool:  # forks before the thread starts
        integrity = _IntegrityCheck(path)
        integrity.start()
        try:
            try:
                scan = scan_ledger(path, found, expect_head.size if expect_head else 0, strict=strict,
                                   pool=pool, ranges=ranges)
                checks += ["envelopes", "leaf hashes", "chain links"]
            except sqlite3.Error as exc:
                found.add(None, f"cannot read the {TABLE} rows: {exc}")
                return None
            entries = len(scan.leaves)
            head = Head(entries, scan.chain, root_of(scan.leaves)) if entries else Head.empty()
            checks.append("merkle root")
            if expect_head is not None:
                _check_expected_head(scan, expect_head, found)
                checks.append("expected head")
            return head
        finally:
            integrity.join()
            for line in integrity.result:
                found.add(None, f"PRAGMA integrity_check: {line}")
            checks.append("integrity_check")


class _IntegrityCheck(threading.Thread):
    def __init__(self, path: Path) -> None:
        super().__init__(name="ledger-integrity-check", daemon=True)
        self.path = path
        self.result: list[str] = []

    def run(self) -> None:
        try:
            conn = connect_readonly(self.path)
            try:
                rows = conn.execute("PRAGMA integrity_check").fetchall()
            finally:
                conn.close()
            self.result = [str(r[0]) for r in rows if r[0] != "ok"]
        except sqlite3.Error as exc:
            self.result = [f"could not run: {exc}"]


def _norm_sql(sql: object) -> str:
    return " ".join(str(sql).split())


def _check_schema(conn: sqlite3.Connection, found: Findings) -> bool:
    """Report schema problems; return True when the table is exactly ours (so column types are enforced)."""
    before = found.count
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
    return table is not None and _norm_sql(table[1]) == _norm_sql(TABLE_SQL) and before == found.count


def _check_expected_head(scan: Scan, expect: Head, found: Findings) -> None:
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
