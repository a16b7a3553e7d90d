"""The row store's two on-disk layouts: v2 (rows packed in blocks, erased in place), and v1 (one record a row),
which stores written before v2 still use.

Why blocks: in v1 a 600-feature row is a 2,400-byte record, and a 4 KiB page holds only one, so the file is
1.7x its features. A v2 block holds up to a mebibyte of rows in one record, columns side by side:

    blocks(blk, live, y, id_ends, ids, x)   row `ord` is slot ord % B of block ord // B (B rows per block)
      live     B bytes, 1 while the row is stored, 0 once erased
      y        B little-endian int64 labels
      id_ends  B little-endian uint32: the end of each slot's id in `ids`
      ids      the ids, UTF-8, end to end
      x        B x F little-endian float32 features

Why in place: deleting a record lets SQLite rebalance a b-tree page, and the rebuilt page keeps stale copies
of cells it moved in its unallocated gap, where `secure_delete` does not reach. In v1 that happens once many
small rows share a page: an id the next erase deletes survives in the gap. A v2 file is written once, by
appends, and no record is ever deleted, moved or resized after that: an erase overwrites the row's slots
(live flag, label, id bytes, features) with zeros through SQLite's incremental blob I/O, in one
transaction. Only the pages holding those bytes change, and the WAL checkpoint writes them over the old ones.
The price is that erased slots stay in the file as zeros (the file never shrinks), and what is left of an
erased row is where its slot was and how long its id was (`id_ends`), none of its bytes.
"""

from __future__ import annotations

import json
import sqlite3
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from forgetd.server.errors import StoreError

__all__ = ["BLOCKS_SCHEMA", "FORMAT_V1", "FORMAT_V2", "Blocks", "Layout", "Records", "rows_per_block"]

FORMAT_V1 = "forgetd.rowstore.v1"
FORMAT_V2 = "forgetd.rowstore.v2"
BLOCKS_SCHEMA = ("CREATE TABLE blocks (blk INTEGER PRIMARY KEY, live BLOB NOT NULL, y BLOB NOT NULL, "
                 "id_ends BLOB NOT NULL, ids BLOB NOT NULL, x BLOB NOT NULL) STRICT")
_BLOCK_BYTES = 1 << 20  # features per block: big enough that a block's partly filled pages are a rounding error
_MAX_BLOCK_ROWS = 4096  # bounds the id and label columns that an erase rewrites pages of


def rows_per_block(num_features: int) -> int:
    return max(1, min(_MAX_BLOCK_ROWS, _BLOCK_BYTES // max(1, 4 * num_features)))


class Layout(ABC):
    """How one format reads and erases rows; the caller holds the lock and, for `erase`, the transaction."""

    format: str
    mmap_bytes = 0  # PRAGMA mmap_size for the store's connection

    def __init__(self, path: Path, num_features: int) -> None:
        self.path, self.num_features = path, num_features

    @abstractmethod
    def index(self, conn: sqlite3.Connection) -> dict[str, int]:
        """id -> ordinal of every stored row, in ordinal order."""

    @abstractmethod
    def load_all(self, conn: sqlite3.Connection, ords: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(X, y) of the rows with these ordinals (ascending: every stored row)."""

    @abstractmethod
    def load_some(self, conn: sqlite3.Connection, ords: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(X, y) of the rows with these ordinals, in this order (repeats allowed)."""

    @abstractmethod
    def erase(self, conn: sqlite3.Connection, ords: Sequence[int]) -> None:
        """Remove these rows (distinct, stored) inside the caller's transaction."""

    def _changed(self, what: str) -> StoreError:
        return StoreError(f"{self.path}: {what}; the file was changed behind this store's back")


class Records(Layout):
    """v1: `rows(ord INTEGER PRIMARY KEY, id, y, x)`, one record a row, erased by DELETE."""

    format = FORMAT_V1

    def index(self, conn: sqlite3.Connection) -> dict[str, int]:
        return {sid: o for o, sid in conn.execute("SELECT ord, id FROM rows ORDER BY ord")}

    def load_all(self, conn: sqlite3.Connection, ords: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        rows = conn.execute("SELECT ord, y, x FROM rows ORDER BY ord").fetchall()
        if len(rows) != len(ords):
            raise self._changed(f"holds {len(rows)} rows, expected {len(ords)}")
        return self._arrays(rows)

    def load_some(self, conn: sqlite3.Connection, ords: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        query = "SELECT ord, y, x FROM rows WHERE ord IN (SELECT value FROM json_each(?))"
        by_ord = {r[0]: r for r in conn.execute(query, (json.dumps(sorted(set(ords))),))}
        return self._arrays([by_ord[o] for o in ords])

    def erase(self, conn: sqlite3.Connection, ords: Sequence[int]) -> None:
        cur = conn.execute("DELETE FROM rows WHERE ord IN (SELECT value FROM json_each(?))", (json.dumps(list(ords)),))
        if cur.rowcount != len(ords):
            raise self._changed(f"expected to delete {len(ords)} rows, deleted {cur.rowcount}")

    def _arrays(self, rows: list[tuple[int, int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
        X = np.frombuffer(b"".join([r[2] for r in rows]), dtype="<f4").reshape(len(rows), self.num_features)
        y = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        return X.astype(np.float32), y


class Blocks(Layout):
    """v2: the block table described above."""

    format = FORMAT_V2
    # Reading a slot walks the block's chain of overflow pages from its start; mapped, the walk follows
    # pointers instead of copying every page (the engine reads shards in random chunks of the whole file).
    # Writes still go through the WAL; the file never shrinks, so the mapping is never cut short.
    mmap_bytes = 1 << 40  # SQLite caps it at its compiled maximum

    def __init__(self, path: Path, num_features: int, block_rows: int) -> None:
        super().__init__(path, num_features)
        self.block_rows = block_rows

    @staticmethod
    def write(conn: sqlite3.Connection, ids: Sequence[str], X: np.ndarray, y: np.ndarray, block_rows: int) -> None:
        """Insert every block, in order (the caller's transaction, on a fresh file)."""
        labels = np.asarray(y).astype("<i8")
        for blk, lo in enumerate(range(0, len(ids), block_rows)):
            hi = min(lo + block_rows, len(ids))
            encoded = [sid.encode("utf-8") for sid in ids[lo:hi]]
            ends = np.cumsum([len(b) for b in encoded], dtype="<u4")
            conn.execute("INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?)",
                         (blk, b"\x01" * (hi - lo), labels[lo:hi].tobytes(), ends.tobytes(), b"".join(encoded),
                          np.ascontiguousarray(X[lo:hi], dtype="<f4").tobytes()))

    def index(self, conn: sqlite3.Connection) -> dict[str, int]:
        ords: dict[str, int] = {}
        B, expected = self.block_rows, 0
        for blk, live, id_ends, ids in conn.execute("SELECT blk, live, id_ends, ids FROM blocks ORDER BY blk"):
            ends = np.frombuffer(id_ends, dtype="<u4").tolist()
            # Ordinals are positions: every block but the last is full, and none is missing.
            if blk != expected or len(ends) != len(live) or len(live) > B or (ends and ends[-1] != len(ids)):
                raise StoreError(f"{self.path}: block {blk} is malformed or out of place; the store is damaged")
            expected = blk + 1 if len(live) == B else -1
            starts = [0, *ends[:-1]]
            # An all-ASCII block (every id the loaders make) is decoded once and cut a character a byte; the
            # per-slot decode this saves was most of a store's open.
            if ids.isascii():
                text = ids.decode("ascii")
                names = [text[a:b] for a, b in zip(starts, ends)]
            else:
                names = [ids[a:b].decode("utf-8") for a, b in zip(starts, ends)]
            base = blk * B
            if live.count(0):
                ords.update((sid, base + slot) for slot, sid in enumerate(names) if live[slot])
            else:
                ords.update(zip(names, range(base, base + len(names))))
        return ords

    def load_all(self, conn: sqlite3.Connection, ords: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        F, B = self.num_features, self.block_rows
        wanted = np.fromiter(ords, dtype=np.int64, count=len(ords))
        X = np.empty((len(wanted), F), dtype=np.float32)  # (n, F)
        y = np.empty(len(wanted), dtype=np.int64)
        done = 0
        for blk, live, labels, x in conn.execute("SELECT blk, live, y, x FROM blocks ORDER BY blk"):
            k = len(live)
            upto = int(np.searchsorted(wanted, blk * B + k))
            slots = wanted[done:upto] - blk * B
            flags = np.frombuffer(live, dtype=np.uint8)
            if len(x) != 4 * F * k or len(labels) != 8 * k or int(np.count_nonzero(flags)) != len(slots) \
                    or not flags[slots].all():
                raise self._changed(f"block {blk} does not hold the rows this store expects")
            X[done:upto] = np.frombuffer(x, dtype="<f4").reshape(k, F)[slots]
            y[done:upto] = np.frombuffer(labels, dtype="<i8")[slots]
            done = upto
        if done != len(wanted):
            raise self._changed(f"holds {done} rows, expected {len(wanted)}")
        return X, y

    def load_some(self, conn: sqlite3.Connection, ords: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        F, B = self.num_features, self.block_rows
        wanted, order = np.unique(np.fromiter(ords, dtype=np.int64, count=len(ords)), return_inverse=True)
        X = np.empty((len(wanted), F), dtype=np.float32)  # (distinct rows, F), ascending ordinals
        y = np.empty(len(wanted), dtype=np.int64)
        blocks = wanted // B
        for part in np.split(np.arange(len(wanted)), np.flatnonzero(np.diff(blocks)) + 1):
            if not len(part):
                continue
            # One read per column of the span from the first to the last wanted slot: a block's bytes lie
            # in a chain of overflow pages, and every read walks it from the start.
            blk = int(blocks[part[0]])
            slots = wanted[part] - blk * B
            lo, hi = int(slots[0]), int(slots[-1]) + 1
            with conn.blobopen("blocks", "live", blk, readonly=True) as live, \
                    conn.blobopen("blocks", "y", blk, readonly=True) as labels, \
                    conn.blobopen("blocks", "x", blk, readonly=True) as x:
                flags = np.frombuffer(_read(live, lo, hi - lo), dtype=np.uint8)[slots - lo]
                if not flags.all():
                    raise self._changed(f"row {int(wanted[part][np.argmin(flags)])} is erased in the file")
                y[part] = np.frombuffer(_read(labels, 8 * lo, 8 * (hi - lo)), dtype="<i8")[slots - lo]
                X[part] = np.frombuffer(_read(x, 4 * F * lo, 4 * F * (hi - lo)), dtype="<f4").reshape(-1, F)[slots - lo]
        return X[order], y[order]

    def erase(self, conn: sqlite3.Connection, ords: Sequence[int]) -> None:
        R = 4 * self.num_features
        for blk, slots in self._by_block(ords).items():
            ends = np.frombuffer(conn.execute("SELECT id_ends FROM blocks WHERE blk = ?", (blk,)).fetchone()[0],
                                 dtype="<u4").tolist()
            with conn.blobopen("blocks", "live", blk) as live, conn.blobopen("blocks", "y", blk) as labels, \
                    conn.blobopen("blocks", "ids", blk) as ids, conn.blobopen("blocks", "x", blk) as x:
                for s in slots:
                    if live[s] != 1:
                        raise self._changed(f"row {blk * self.block_rows + s} was already erased in the file")
                    start = ends[s - 1] if s else 0
                    live[s] = 0
                    _zero(labels, 8 * s, 8)
                    _zero(ids, start, ends[s] - start)
                    _zero(x, R * s, R)

    def restore(self, conn: sqlite3.Connection, ords: Sequence[int], ids: Sequence[str], X: np.ndarray,
                y: np.ndarray) -> None:
        """Write rows back into their slots (a replay's scratch copy of a vault, erased.py): the inverse of
        `erase`, for slots whose id length is the one `id_ends` kept. Never called on a live store."""
        R = 4 * self.num_features
        where = {o: i for i, o in enumerate(ords)}
        for blk, slots in self._by_block(ords).items():
            ends = np.frombuffer(conn.execute("SELECT id_ends FROM blocks WHERE blk = ?", (blk,)).fetchone()[0],
                                 dtype="<u4").tolist()
            with conn.blobopen("blocks", "live", blk) as live, conn.blobopen("blocks", "y", blk) as labels, \
                    conn.blobopen("blocks", "ids", blk) as id_bytes, conn.blobopen("blocks", "x", blk) as x:
                for s in slots:
                    i = where[blk * self.block_rows + s]
                    start = ends[s - 1] if s else 0
                    encoded = ids[i].encode("utf-8")
                    if len(encoded) != ends[s] - start:
                        raise self._changed(f"row {blk * self.block_rows + s}'s id does not fit the slot it was in")
                    live[s] = 1
                    _put(labels, 8 * s, np.asarray(y[i], dtype="<i8").tobytes())
                    _put(id_bytes, start, encoded)
                    _put(x, R * s, np.ascontiguousarray(X[i], dtype="<f4").tobytes())

    def _by_block(self, ords: Sequence[int]) -> dict[int, list[int]]:
        grouped: dict[int, list[int]] = defaultdict(list)
        for o in ords:
            grouped[o // self.block_rows].append(o % self.block_rows)
        return grouped


def _read(blob: sqlite3.Blob, offset: int, length: int) -> bytes:
    blob.seek(offset)
    return blob.read(length)


def _put(blob: sqlite3.Blob, offset: int, data: bytes) -> None:
    if data:
        blob.seek(offset)
        blob.write(data)


def _zero(blob: sqlite3.Blob, offset: int, length: int) -> None:
    if length:
        blob.seek(offset)
        blob.write(bytes(length))
