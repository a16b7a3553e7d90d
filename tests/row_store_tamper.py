"""Editing a row store file behind forgetd's back, the way an attacker or a bad restore would: raw SQLite on the
block format (server/store/row_blocks.py), never through RowStore. For the audit's tamper tests."""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

from forgetd.server.bench.tamper import put_back_row


def _slot(conn: sqlite3.Connection, sid: str) -> tuple[int, int, int, int]:
    """(block, slot, id start, id end) of a stored id's slot."""
    for blk, id_ends, ids, live in conn.execute("SELECT blk, id_ends, ids, live FROM blocks ORDER BY blk"):
        ends = struct.unpack(f"<{len(live)}I", id_ends)
        for s, end in enumerate(ends):
            start = ends[s - 1] if s else 0
            if live[s] and ids[start:end] == sid.encode():
                return blk, s, start, end
    raise KeyError(sid)


def features(path: Path, sids: list[str]) -> list[bytes]:
    """The stored feature bytes of these ids."""
    conn = sqlite3.connect(path)
    try:
        width = 4 * int(conn.execute("SELECT value FROM meta WHERE key = 'num_features'").fetchone()[0])
        out = []
        for sid in sids:
            blk, s, _, _ = _slot(conn, sid)
            with conn.blobopen("blocks", "x", blk, readonly=True) as x:
                out.append(x[width * s: width * (s + 1)])
        return out
    finally:
        conn.close()


def kept_row(vault: Path, sid: str) -> tuple[int, int, bytes]:
    """(ord, y, x) of a row a vault (audit/<name>) keeps in erased.sqlite because the live store erased it."""
    conn = sqlite3.connect(vault / "erased.sqlite")
    try:
        row = conn.execute("SELECT ord, y, x FROM rows WHERE id = ?", (sid,)).fetchone()
    finally:
        conn.close()
    if row is None:
        raise KeyError(sid)
    return int(row[0]), int(row[1]), bytes(row[2])


def kept_features(vault: Path, sids: list[str]) -> list[bytes]:
    return [kept_row(vault, sid)[2] for sid in sids]


def drop_kept(vault: Path, sid: str) -> None:
    """Delete a kept row from a vault's erased.sqlite."""
    conn = sqlite3.connect(vault / "erased.sqlite")
    try:
        conn.execute("DELETE FROM rows WHERE id = ?", (sid,))
        conn.commit()
    finally:
        conn.close()


def put_back(vault: Path, live: Path, sid: str) -> None:
    """Write a row the live store erased back into its slot (its ordinal), from what the vault audit/<name>
    keeps of it (the tamper bench's own case)."""
    put_back_row(vault, live, sid)


def drop(path: Path, sid: str) -> None:
    """Mark a row erased (live flag 0), leaving its bytes."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        blk, s, _, _ = _slot(conn, sid)
        with conn.blobopen("blocks", "live", blk) as flags:
            flags[s] = 0
    finally:
        conn.close()


def flip_last_label(path: Path) -> tuple[int, int]:
    """Replace the last stored row's label y by 1 - y; (its ordinal, the old y)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        per_block = int(conn.execute("SELECT value FROM meta WHERE key = 'rows_per_block'").fetchone()[0])
        for blk, live in conn.execute("SELECT blk, live FROM blocks ORDER BY blk DESC").fetchall():
            stored = [s for s in range(len(live)) if live[s]]
            if stored:
                s = stored[-1]
                with conn.blobopen("blocks", "y", blk) as labels:
                    (y,) = struct.unpack("<q", labels[8 * s: 8 * s + 8])
                    labels[8 * s: 8 * s + 8] = struct.pack("<q", 1 - y)
                return blk * per_block + s, y
        raise KeyError("no stored row")
    finally:
        conn.close()
