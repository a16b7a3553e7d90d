"""What an audit vault keeps of the training rows: only the rows the live store erased since its snapshot.

A vault must let `forgetd verify` replay from the rows as they were at its snapshot. A full copy of the row
store does that at the price of a second copy of every feature, forever. But the live store (format v2,
row_blocks.py) only ever changes by erasing rows in place: no row is added, moved or edited after training.
So the snapshot's rows are exactly the live rows plus the rows erased since the snapshot, and a vault needs
to hold only the latter, in `audit/<name>/erased.sqlite`:

    meta(key, value)                 format, num_features
    rows(ord INTEGER PRIMARY KEY, id, y, x)   one record a row: ordinal, id, int64 label, <f4 features

The live store writes a row here (committed and synced) before the transaction that zeroes it, and only the
first time: INSERT OR IGNORE keeps the snapshot's bytes. Nothing deletes from this file; removing the vault
removes it whole (a seal does, so the forgotten rows it held go with it).

Reading the snapshot (`snapshot_rows`, `materialize`) therefore reads the live rows first and this file
second: a row erased in between is then in both (same bytes), and one erased before the live read is here,
because it was written here before it was erased. Any other order could miss a row.

Why the live file cannot simply be shared: it is erased in place, so a link to it would lose the rows too.
A store in the v1 row format (one record a row, rows deleted) keeps the old full copy (vault.py).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import quote

import numpy as np

from forgetd.server.errors import StoreError
from forgetd.server.store.row_blocks import FORMAT_V2, Blocks
from forgetd.server.store.space import full_as_no_space, is_full, no_space

__all__ = ["ERASED", "FORMAT", "ROW_DIGESTS", "row_digests", "create_erased", "keep_erased", "keepers", "kept_rows", "materialize",
           "snapshot_rows"]

ERASED = "erased.sqlite"
ROW_DIGESTS = "rows.sha256"
FORMAT = "forgetd.vault.erased.v1"
_SCHEMA = ("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT",
           "CREATE TABLE rows (ord INTEGER PRIMARY KEY, id TEXT NOT NULL, y INTEGER NOT NULL, x BLOB NOT NULL) STRICT")


def create_erased(path: Path, num_features: int) -> None:
    """A new, empty keeper file at `path`, synced (the caller syncs its directory)."""
    with full_as_no_space(path.parent, f"creating {path.name}"):
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA page_size=4096")
            conn.execute("PRAGMA journal_mode=DELETE")  # one file at rest: no -wal beside a vault
            conn.execute("BEGIN")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [("format", FORMAT), ("num_features", str(num_features))])
            conn.execute("COMMIT")
        finally:
            conn.close()
        with open(path, "rb+") as f:
            os.fsync(f.fileno())


def keepers(audit_dir: Path) -> list[Path]:
    """The keeper files of every vault under `audit_dir`, the ones being built (hidden folders) included: a
    vault under construction must already see every erase that follows its start."""
    if not audit_dir.is_dir():
        return []
    return sorted(p for p in audit_dir.glob(f"*/{ERASED}") if p.is_file())


def keep_erased(files: Sequence[Path], ords: Sequence[int], ids: Sequence[str], X: np.ndarray, y: np.ndarray) -> None:
    """Write these rows (about to be erased from the live store) into every keeper file, durably, keeping
    whatever a file already holds for an ordinal. NoSpace when a file cannot grow; StoreError when one is not
    a keeper file."""
    X = np.ascontiguousarray(X, dtype="<f4")
    records = [(int(o), sid, int(label), X[i].tobytes()) for i, (o, sid, label) in enumerate(zip(ords, ids, y))]
    for path in files:
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
            try:
                conn.execute("PRAGMA synchronous=FULL")
                _check_format(conn, path)
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("INSERT OR IGNORE INTO rows VALUES (?, ?, ?, ?)", records)
                conn.execute("COMMIT")
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            if is_full(exc):
                raise no_space(path.parent, f"keeping {len(records)} erased row(s) in {path.name}") from None
            raise StoreError(f"{path}: cannot keep the erased rows there ({exc})") from None


def kept_rows(path: Path) -> dict[int, tuple[str, int, bytes]]:
    """ordinal -> (id, y, feature bytes) of every row the keeper file holds."""
    try:
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
        try:
            _check_format(conn, path)
            return {int(o): (str(sid), int(label), bytes(x)) for o, sid, label, x in
                    conn.execute("SELECT ord, id, y, x FROM rows ORDER BY ord")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not a readable vault keeper file ({exc})") from None


def row_digests(ords: np.ndarray, ids: Sequence[str], X: np.ndarray, y: np.ndarray) -> bytes:
    """The vault's `rows.sha256`: per snapshot row, in ordinal order, its ordinal (u64 BE) and 32 bytes of
    SHA-256 over the ordinal (u64 BE), the id (UTF-8 length u32 BE, bytes), the features (<f4) and the label
    (<i8). It lets an audit name the first row of the snapshot that differs or is missing, where the one
    content digest only says that some row does."""
    X = np.ascontiguousarray(X, dtype="<f4")
    labels = np.asarray(y, dtype="<i8")
    out = bytearray()
    for i, (o, sid) in enumerate(zip(ords.tolist(), ids)):
        encoded = sid.encode("utf-8")
        h = hashlib.sha256(struct.pack(">QI", o, len(encoded)))
        h.update(encoded)
        h.update(X[i].tobytes())
        h.update(labels[i].tobytes())
        out += struct.pack(">Q", o) + h.digest()
    return bytes(out)


def snapshot_rows(live: Path, keeper: Path) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """(ordinals, ids, X, y) of the vault's snapshot, in ordinal order: the live rows, then the kept ones."""
    conn = sqlite3.connect(f"file:{quote(str(live.resolve()))}?mode=ro", uri=True)
    try:
        layout = _blocks(conn, live)
        conn.execute("BEGIN")  # one read snapshot for the ids and the rows
        ords = layout.index(conn)
        X, y = layout.load_all(conn, list(ords.values()))
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{live}: not a readable row store ({exc})") from None
    finally:
        conn.close()
    kept = kept_rows(keeper)
    if not kept:  # a new vault, or one no forget has touched: the live rows are the snapshot, no second copy
        return np.fromiter(ords.values(), dtype=np.int64, count=len(ords)), list(ords), X, y
    by_ord = {o: i for i, o in enumerate(ords.values())}
    order = sorted(set(by_ord) | set(kept))
    width = layout.num_features
    out_X = np.empty((len(order), width), dtype=np.float32)
    out_y = np.empty(len(order), dtype=np.int64)
    out_ids: list[str] = []
    live_ids = list(ords)
    for i, o in enumerate(order):
        if o in kept:
            sid, label, x = kept[o]
            out_X[i] = np.frombuffer(x, dtype="<f4")
            out_y[i] = label
        else:
            sid = live_ids[by_ord[o]]
            out_X[i], out_y[i] = X[by_ord[o]], y[by_ord[o]]
        out_ids.append(sid)
    return np.array(order, dtype=np.int64), out_ids, out_X, out_y


def materialize(live: Path, keeper: Path, dst: Path, copy: Callable[[Path, Path], None]) -> None:
    """A row store file at `dst` holding the vault's snapshot: a consistent copy of the live file (`copy`, the
    SQLite backup), then every kept row written back into its slot. For a replay's private scratch only."""
    copy(live, dst)
    kept = kept_rows(keeper)
    if not kept:
        return
    conn = sqlite3.connect(dst, isolation_level=None)
    try:
        layout = _blocks(conn, dst)
        ords = sorted(kept)
        X = np.stack([np.frombuffer(kept[o][2], dtype="<f4") for o in ords])
        conn.execute("BEGIN")
        layout.restore(conn, ords, [kept[o][0] for o in ords], X, np.array([kept[o][1] for o in ords], np.int64))
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        if is_full(exc):
            raise no_space(dst.parent, f"restoring the vault's rows in {dst.name}") from None
        raise StoreError(f"{dst}: cannot restore the vault's rows ({exc})") from None
    finally:
        conn.close()


def _blocks(conn: sqlite3.Connection, path: Path) -> Blocks:
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if meta.get("format") != FORMAT_V2:
        raise StoreError(f"{path}: row store format {meta.get('format')!r}; a vault that keeps only erased rows "
                         f"needs {FORMAT_V2!r}")
    return Blocks(path, int(meta["num_features"]), int(meta["rows_per_block"]))


def _check_format(conn: sqlite3.Connection, path: Path) -> None:
    fmt = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
    if fmt is None or fmt[0] != FORMAT:
        raise StoreError(f"{path}: format {fmt[0] if fmt else None!r}, expected {FORMAT!r}; the vault is damaged")
