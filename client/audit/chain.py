"""Check 1, chain: the ledger verifies, holds the expected (or the receipt's) head, and its events fit.

verify_ledger recomputes every hash, canonical envelope, seq and trigger; the auditor's own event fold
(forgetd.client.audit.events) checks every payload against the schema and the events before it. A receipt
adds its self-check (signature under genesis's key, inclusion proofs) and must name a request in the ledger.
Only a chain without a single problem hands its events to the later checks.
"""

from __future__ import annotations

import gc
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

from forgetd.client.audit.events import Events, fold
from forgetd.client.audit.report import CheckResult, Findings
from forgetd.client.receipts import check_receipt_self, head_of
from forgetd.client.types import Receipt
from forgetd.ledger import Head, LedgerError, VerifyReport, verify_ledger

__all__ = ["check_chain"]

_CHUNK = 5000  # envelopes parsed per json.loads


def check_chain(root: Path, expect_head: Head | None,
                receipt: Receipt | None) -> tuple[CheckResult, Head | None, Events | None]:
    """The chain check's result, the ledger's head, and its events (None unless the chain is clean)."""
    c = Findings("chain")
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
    report, events = _verify_and_fold(path, expected, c)
    if expect_head is not None and receipt_head is not None:
        # Both given: the receipt's head needs its own pass (only its new findings are added).
        seen = set(report.problems)
        c.problems.extend(p for p in verify_ledger(path, expect_head=receipt_head).problems if p not in seen)
    c.problems.extend(events.problems)
    if receipt is not None:
        _, problems = check_receipt_self(receipt, events.head_public_key, events.checkpoint_origin)
        c.problems.extend(problems)
        if receipt.requested_seq and receipt.request_id not in events.requests:
            c.add(receipt.requested_seq, f"the receipt's request {receipt.request_id!r} is not in the ledger's events")
    head = report.head
    against = f", consistent with the {'receipt' if receipt else 'expected'} head" if expected else ""
    rate = c.figures["entries_per_s"]
    summary = (f"{report.entries} entries, head {head.to_hex()[:24] if head else '-'}...{against}"
               + (f" ({rate:,} entries/s)" if rate else ""))
    return c.done(summary), head, events if not c.problems else None


def _verify_and_fold(path: Path, expected: Head | None, c: Findings) -> tuple[VerifyReport, Events]:
    """verify_ledger's report (its problems put first in `c`) and the folded events, with the timing figures."""
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
    return report, events


def _read_events(path: Path, c: Findings) -> list[tuple[int, str, Any]]:
    """(seq, type, payload) per row, read raw: rows verify_ledger already reported are skipped, not raised on."""
    out: list[tuple[int, str, Any]] = []
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
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start:start + _CHUNK]
        try:
            envelopes = json.loads(b"[" + b",".join(r[2] for r in chunk) + b"]")
            if len(envelopes) != len(chunk):
                raise ValueError("a row held more than one value")
            parsed = [(seq, etype, env["payload"]) for (seq, etype, _), env in zip(chunk, envelopes)]
        except (ValueError, TypeError, KeyError):
            parsed = _parse_one_by_one(chunk)
        out.extend(row for row in parsed if type(row[0]) is int and type(row[1]) is str)
    return out


def _parse_one_by_one(chunk: list[Any]) -> list[tuple[Any, Any, Any]]:
    parsed = []
    for seq, etype, envelope in chunk:
        try:
            parsed.append((seq, etype, json.loads(envelope)["payload"]))
        except (ValueError, TypeError, KeyError):
            continue
    return parsed
