"""Tamper cases: each changes a copy of a served store behind forgetd's back, then `forgetd verify --json`
(as an auditor runs it) must fail and name a finding; a crash, a pass or a usage error counts as missed.

The cases are the README's tamper matrix: the ledger (a flipped payload byte, a flipped stored hash, a deleted
middle entry, two swapped entries, a truncated tail and a history rewritten with recomputed hashes, both
with the receipt the forgetter kept; a head with a bad signature), the model files (the live parameters,
an optimizer state, an increments file), the rows (a forgotten row put back, a training row edited, a
damaged index page) and the key that signs heads.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from forgetd.ledger import Ledger
from forgetd.ledger.signing import SigningKey
from forgetd.ledger.store import TRIGGERS_SQL

from forgetd.server.bench.processes import run_forgetd

__all__ = ["CASES", "TamperResult", "put_back_row", "run_tamper_cases"]


@dataclass(frozen=True)
class TamperResult:
    case: str
    caught: bool
    check: str | None  # the check that failed
    finding: str  # its first problem, or what went wrong instead


def _sql(ledger: Path, *statements: str) -> None:
    """SQL on the ledger with its append-only triggers dropped, and put back."""
    conn = sqlite3.connect(ledger, isolation_level=None)
    try:
        for name in TRIGGERS_SQL:
            conn.execute(f"DROP TRIGGER {name}")
        for sql in statements:
            conn.execute(sql)
        for sql in TRIGGERS_SQL.values():
            conn.execute(sql)
    finally:
        conn.close()


def _flip_payload(store: Path, _receipt: Path, _forgotten: str) -> None:
    # One payload value, the strategy the request asked for, one character longer.
    _sql(store / "ledger.sqlite", "UPDATE entries SET envelope = CAST(REPLACE(CAST(envelope AS TEXT), "
                                  "'\"strategy\":\"', '\"strategy\":\"x') AS BLOB) WHERE seq = 2")


def _flip_hash(store: Path, _receipt: Path, _forgotten: str) -> None:
    _sql(store / "ledger.sqlite", "UPDATE entries SET leaf_hash = zeroblob(32) WHERE seq = 3")


def _delete_middle(store: Path, _receipt: Path, _forgotten: str) -> None:
    _sql(store / "ledger.sqlite", "DELETE FROM entries WHERE seq = 3")


def _swap(store: Path, _receipt: Path, _forgotten: str) -> None:
    _sql(store / "ledger.sqlite", "UPDATE entries SET seq = -1 WHERE seq = 2",
         "UPDATE entries SET seq = 2 WHERE seq = 3", "UPDATE entries SET seq = 3 WHERE seq = -1")


def _truncate(store: Path, _receipt: Path, _forgotten: str) -> None:
    _sql(store / "ledger.sqlite", "DELETE FROM entries WHERE seq = (SELECT MAX(seq) FROM entries)")


def _rewrite(store: Path, _receipt: Path, _forgotten: str) -> None:
    ledger = store / "ledger.sqlite"
    with Ledger(ledger, readonly=True) as old:
        entries = list(old.entries())
    for path in (ledger, ledger.with_name(ledger.name + "-wal"), ledger.with_name(ledger.name + "-shm")):
        path.unlink(missing_ok=True)
    with Ledger(ledger) as new:  # every hash recomputed (new timestamps): only a head kept outside tells
        new.append_many([(e.type, e.payload, e.event_id) for e in entries])


def _bad_signature(_store: Path, receipt: Path, _forgotten: str) -> None:
    data = json.loads(receipt.read_text())
    sig = data["head"]["signature"]
    data["head"]["signature"] = ("1" if sig[0] != "1" else "2") + sig[1:]
    receipt.write_text(json.dumps(data))


def _live_file(store: Path, logical: str) -> Path:
    return store / "artifacts" / json.loads((store / "CURRENT.json").read_text())["files"][logical]


def _nudge_npy(path: Path) -> None:
    array = np.load(path)
    array.reshape(-1)[-1] += np.float32(0.5)
    path.unlink()  # a new file: the store may share the old one with its vault through a hard link
    np.save(path, array)


def _params(store: Path, _receipt: Path, _forgotten: str) -> None:
    _nudge_npy(_live_file(store, "shard0.params"))


def _optim(store: Path, _receipt: Path, _forgotten: str) -> None:
    _nudge_npy(_live_file(store, "shard0.optim"))


def _increments(store: Path, _receipt: Path, _forgotten: str) -> None:
    files = json.loads((store / "CURRENT.json").read_text())["files"]
    incs = [store / "artifacts" / name for logical, name in sorted(files.items()) if logical.endswith(".inc")]
    path = max(incs, key=lambda path: path.stat().st_size)  # one that holds increments, in whichever codec
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.unlink()  # a new file, as in _nudge_npy
    path.write_bytes(bytes(data))


def put_back_row(vault: Path, live: Path, sid: str) -> None:
    """Write a row the live store erased back into its slot of the block file, from what the vault (audit/<name>)
    keeps of it since its erasure: what a bad restore does. Raw SQLite, never through RowStore."""
    kept = sqlite3.connect(vault / "erased.sqlite")
    try:
        ord_, y, x = kept.execute("SELECT ord, y, x FROM rows WHERE id = ?", (sid,)).fetchone()
    finally:
        kept.close()
    conn = sqlite3.connect(live, isolation_level=None)
    try:
        per_block = int(conn.execute("SELECT value FROM meta WHERE key = 'rows_per_block'").fetchone()[0])
        blk, slot = divmod(ord_, per_block)
        ends = np.frombuffer(conn.execute("SELECT id_ends FROM blocks WHERE blk = ?", (blk,)).fetchone()[0], "<u4")
        start = int(ends[slot - 1]) if slot else 0
        for column, offset, data in (("y", 8 * slot, np.int64(y).tobytes()), ("ids", start, sid.encode()),
                                     ("x", len(x) * slot, x), ("live", slot, b"\x01")):
            with conn.blobopen("blocks", column, blk) as blob:
                blob.seek(offset)
                blob.write(data)
    finally:
        conn.close()


def _row_back(store: Path, _receipt: Path, forgotten: str) -> None:
    put_back_row(store / "audit/genesis", store / "rows.sqlite", forgotten)


def _row_edited(store: Path, _receipt: Path, _forgotten: str) -> None:
    # The first stored row's label, flipped in place: a row later retrains would learn wrong.
    live = sqlite3.connect(store / "rows.sqlite", isolation_level=None)
    blk, flags = live.execute("SELECT blk, live FROM blocks ORDER BY blk LIMIT 1").fetchone()
    slot = bytes(flags).index(1)
    with live.blobopen("blocks", "y", blk) as labels:
        labels.seek(8 * slot)
        y = int(np.frombuffer(labels.read(8), "<i8")[0])
        labels.seek(8 * slot)
        labels.write(np.int64(1 - y).tobytes())
    live.close()


def _index_page(store: Path, _receipt: Path, _forgotten: str) -> None:
    rows = store / "rows.sqlite"
    conn = sqlite3.connect(rows)
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    [root] = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_meta_1'").fetchone()
    conn.close()
    data = bytearray(rows.read_bytes())
    at = (root - 1) * size + bytes(data[(root - 1) * size: root * size]).index(b"num_features")
    data[at] = ord("N")  # the index's copy of a key; every row still reads back
    rows.write_bytes(bytes(data))


def _head_key(store: Path, _receipt: Path, _forgotten: str) -> None:
    (store / "keys" / "head_ed25519.key").write_bytes(SigningKey.generate().to_pem())


# (name, tamper(store copy, receipt copy, a forgotten id), verify with the receipt)
CASES: tuple[tuple[str, Callable[[Path, Path, str], None], bool], ...] = (
    ("ledger: a flipped payload byte", _flip_payload, False),
    ("ledger: a flipped stored hash", _flip_hash, False),
    ("ledger: a deleted middle entry", _delete_middle, False),
    ("ledger: two swapped entries", _swap, False),
    ("ledger: a truncated tail (with the receipt)", _truncate, True),
    ("ledger: history rewritten, hashes recomputed (with the receipt)", _rewrite, True),
    ("receipt: a head with a bad signature", _bad_signature, True),
    ("model: live parameters replaced", _params, False),
    ("model: an optimizer state replaced", _optim, False),
    ("model: an increments file replaced", _increments, False),
    ("rows: a forgotten row put back", _row_back, False),
    ("rows: a training row edited", _row_edited, False),
    ("rows: a damaged index page", _index_page, False),
    ("keys: the head signing key replaced", _head_key, False),
)


def _verify(store: Path, receipt: Path | None) -> tuple[int, dict[str, Any] | None, str]:
    done = run_forgetd(["verify", "--store", str(store), "--json", *(["--receipt", str(receipt)] if receipt else [])])
    try:
        return done.returncode, json.loads(done.stdout), done.stderr
    except ValueError:
        return done.returncode, None, done.stderr


def run_tamper_cases(store: Path, receipt: Path, forgotten: str, work: Path) -> tuple[bool, list[TamperResult]]:
    """(the untampered store verifies, one result per case), each case on its own copy of `store` under `work`;
    `forgotten` is a sample id the store forgot."""
    control_code, control, _ = _verify(store, receipt)
    results = []
    for i, (name, tamper, with_receipt) in enumerate(CASES):
        copy, kept = work / f"case{i}", work / f"case{i}.receipt.json"
        shutil.copytree(store, copy)
        shutil.copyfile(receipt, kept)
        tamper(copy, kept, forgotten)
        code, report, stderr = _verify(copy, kept if with_receipt else None)
        failed = [c for c in (report or {}).get("checks", []) if c["status"] == "failed" and c["problems"]]
        if code == 1 and failed:
            results.append(TamperResult(name, True, failed[0]["name"], _problem(failed[0]["problems"][0])))
        else:
            results.append(TamperResult(name, False, None, f"exit {code}: {stderr.strip()[-300:] or 'passed'}"))
        shutil.rmtree(copy)
    return control_code == 0 and bool(control and control["ok"]), results


def _problem(p: dict[str, Any]) -> str:
    where = f"seq {p['seq']}: " if p.get("seq") is not None else ""
    return f"{where}{p['what']}"[:160]
