"""The erasable training-data store: rows by sample id in one SQLite file, physically removed on erase.

Forgetting a sample must leave no copy of its row in the store's files. The schema and settings are chosen
so that a byte search of the folder finds nothing after `erase` returns:

- Rows are packed in blocks (format v2, `row_blocks.py`): the file is about the size of its features, and an
  erase overwrites the row's bytes with zeros in place instead of deleting a record, so SQLite never moves a
  cell (a rebalanced page keeps stale copies of the cells it moved, out of `secure_delete`'s reach).
- `PRAGMA secure_delete=ON`: SQLite zeroes deleted cells and freed pages instead of only unlinking them
  (what v1 stores, which delete their records, rely on).
- Rowid tables keyed by integers, with **no index on the id**. Index b-trees keep copies of keys as dividers
  in their interior pages, and deleting a leaf entry does not rewrite them, so a deleted id could survive
  there. Interior pages of a rowid table hold only integers. Ids are looked up in an in-memory map built
  when the store is opened.
- WAL journal with a `wal_checkpoint(TRUNCATE)` after every erase: new (zeroed) page images go to the WAL,
  the checkpoint writes them over the old pages in place, and the WAL is truncated to zero bytes. A
  rollback journal would instead copy the old page, row included, into a journal file.
- The file is written once, in ordinal order, in a fresh file, so SQLite only appends pages and never leaves
  stale copies of cells behind when it splits a page.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import numpy as np

from forgetd.server.data import hash_rows
from forgetd.server.errors import DataError, StoreError, UnknownSample
from forgetd.server.store.erased import keep_erased, keepers
from forgetd.server.store.layout import fsync_dir
from forgetd.server.store.row_blocks import BLOCKS_SCHEMA, FORMAT_V1, FORMAT_V2, Blocks, Layout, Records, rows_per_block
from forgetd.server.store.space import is_full, no_space

__all__ = ["RowStore", "content_digest"]

# The digest's domain tag: the same rows hash the same whatever the file's format (verify compares digests
# recorded before v2 existed).
_DIGEST_DOMAIN = FORMAT_V1
_PAGE_SIZE = 4096  # the smallest page an erase rewrites; blocks fill pages whatever their size


class RowStore:
    """Training rows (id, float32 features, int64 label) in insertion order, erasable by id.

    Safe to share between threads: every operation holds the store's lock.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, layout: Layout, ords: dict[str, int],
                 vaults: Path | None = None) -> None:
        # Use RowStore.create or RowStore.open.
        self.path = path
        self._vaults = vaults
        self.num_features = layout.num_features
        self.format = layout.format  # FORMAT_V2 for every store created now; FORMAT_V1 for older ones
        self._layout = layout
        self._conn = conn
        self._ords = ords  # id -> ordinal, in insertion order
        self._lock = threading.Lock()

    # -- construction ---------------------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path, ids: Sequence[str], X: np.ndarray, y: np.ndarray) -> RowStore:
        """Write a new store at `path` atomically (temp file, fsync, rename) and open it.

        Raises StoreError when `path` exists and DataError for rows that cannot be stored.
        """
        path = Path(path)
        ids = list(ids)
        X = np.ascontiguousarray(X, dtype="<f4")
        y = np.asarray(y)
        _check_rows(ids, X, y)
        if path.exists():
            raise StoreError(f"{path}: already exists; a row store is created once (open it, or remove it first)")
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        for leftover in _sqlite_files(tmp):
            leftover.unlink(missing_ok=True)
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.execute(f"PRAGMA page_size={_PAGE_SIZE}")  # only takes before the first table
                conn.execute("PRAGMA secure_delete=ON")
                conn.execute("PRAGMA journal_mode=WAL")  # persistent in the file header
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT")
                conn.execute(BLOCKS_SCHEMA)
                block_rows = rows_per_block(X.shape[1])
                conn.execute("BEGIN")
                conn.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [("format", FORMAT_V2), ("num_features", str(X.shape[1])), ("rows_per_block", str(block_rows))],
                )
                Blocks.write(conn, ids, X, y, block_rows)
                conn.execute("COMMIT")
                _checkpoint(conn, tmp)
            finally:
                conn.close()  # the last connection's close checkpoints and removes -wal and -shm
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
            fsync_dir(path.parent)
        finally:
            for leftover in _sqlite_files(tmp):
                leftover.unlink(missing_ok=True)
        return cls.open(path)

    @classmethod
    def open(cls, path: Path, *, busy_timeout: float = 5.0, vaults: Path | None = None) -> RowStore:
        """Open an existing store; StoreError when it is missing or not a row store.

        `busy_timeout` (seconds) is how long an erase waits for another connection's read to finish before
        it gives up scrubbing the old pages (see `erase`). `vaults`: the folder of the audit vaults that keep
        the rows this store erases (erased.py); every erase writes the rows there first.
        """
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"{path}: no row store here (create one with RowStore.create)")
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout)
        try:
            conn.execute("PRAGMA secure_delete=ON")  # per connection, not stored in the file
            # NORMAL, not FULL: every erase ends with a checkpoint, which syncs the WAL, writes it into the
            # main file and syncs that, so an erase is still durable on return; only the commit's own sync
            # (one of the three on a Forget's path) goes. A crash before the checkpoint loses an erase that
            # the engine's roll-forward on open (and the ledger's re-apply) redoes anyway.
            conn.execute("PRAGMA synchronous=NORMAL")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{path}: cannot switch the row store to WAL mode (got {mode!r})")
            # A crash between an erase's commit and its checkpoint leaves the zeroed pages in the WAL; fold
            # them into the main file now so the old row bytes do not outlive the restart.
            _checkpoint(conn, path)
            layout = _layout(path, dict(conn.execute("SELECT key, value FROM meta").fetchall()))
            conn.execute(f"PRAGMA mmap_size={layout.mmap_bytes}")
            ords = layout.index(conn)
        except sqlite3.DatabaseError as e:
            conn.close()
            if is_full(e):  # the WAL's first pages, or the checkpoint, need room
                raise no_space(path.parent, f"opening {path.name}") from None
            raise StoreError(f"{path}: not a readable row store ({e})") from None
        except BaseException:
            conn.close()
            raise
        return cls(path, conn, layout, ords, vaults)

    # -- reading ----------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ords)

    def __contains__(self, sample_id: object) -> bool:
        return sample_id in self._ords

    def ids(self) -> list[str]:
        """The ids of the rows still stored, in insertion order."""
        with self._lock:
            return list(self._ords)

    def ordinals(self) -> tuple[list[str], np.ndarray]:
        """(ids, ordinals (n,) int64) of the rows still stored, in insertion order: a row's ordinal is its
        position in the ids the store was created with, erased rows' included."""
        with self._lock:
            return list(self._ords), np.fromiter(self._ords.values(), dtype=np.int64, count=len(self._ords))

    def load(self, ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(ids, X (n, F) float32, y (n,) int64): every row in insertion order, or the named rows in the
        order named. UnknownSample when an id is not stored (never stored, or erased)."""
        with self._lock:
            conn = self._checked_conn()
            if ids is None:
                # The ids come from the in-memory map (same order); reading them from SQLite too costs a third more.
                out_ids = list(self._ords)
                X, y = self._layout.load_all(conn, list(self._ords.values()))
            else:
                out_ids = list(ids)
                missing = [i for i in out_ids if i not in self._ords]
                if missing:
                    raise UnknownSample(missing)
                X, y = self._layout.load_some(conn, [self._ords[i] for i in out_ids])
        return out_ids, X, y

    def digest(self) -> str:
        """Hex SHA-256 of the current rows in insertion order: b"forgetd.rowstore.v1\\0", the feature count as
        u64 big-endian, then the rows encoded as `forgetd.server.data.hash_rows` documents. The same for the
        same rows in either file format."""
        return content_digest(self.num_features, *self.load())

    # -- erasing ----------------------------------------------------------------------------------------

    def erase(self, ids: Sequence[str]) -> None:
        """Physically remove these rows; durable on return. UnknownSample, and nothing changed, when any id
        is not stored. An empty sequence is a no-op.

        StoreError when another connection keeps reading the file past the busy timeout: the rows are then
        deleted (and gone from `load`) but their old pages are scrubbed only by the next erase or open.
        """
        with self._lock:
            conn = self._checked_conn()
            wanted = list(dict.fromkeys(ids))
            missing = [i for i in wanted if i not in self._ords]
            if missing:
                raise UnknownSample(missing)
            if not wanted:
                return
            ords = [self._ords[i] for i in wanted]
            self._keep_in_vaults(conn, wanted, ords)
            conn.execute("BEGIN IMMEDIATE")  # one transaction: a crash leaves every row or none of them
            try:
                self._layout.erase(conn, ords)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            for i in wanted:
                del self._ords[i]
            _checkpoint(conn, self.path)

    def _keep_in_vaults(self, conn: sqlite3.Connection, ids: list[str], ords: list[int]) -> None:
        """Before rows are zeroed, the vaults that keep erased rows get them (committed first: a crash between
        the two leaves a row in both, never in neither). v1 stores' vaults are full copies and need nothing."""
        files = keepers(self._vaults) if self._vaults is not None and self.format == FORMAT_V2 else []
        if files:
            X, y = self._layout.load_some(conn, ords)
            keep_erased(files, ords, ids, X, y)

    def scrub(self) -> None:
        """Fold the WAL into the file and truncate it, overwriting the pages of rows already erased: what an
        erase that raised StoreError for a busy reader left undone. StoreError while a reader still holds it."""
        with self._lock:
            _checkpoint(self._checked_conn(), self.path)

    # -- lifetime ---------------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> RowStore:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RowStore({str(self.path)!r}, rows={len(self)}, features={self.num_features})"

    def _checked_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: the row store is closed")
        return self._conn


def content_digest(num_features: int, ids: Sequence[str], X: np.ndarray, y: np.ndarray) -> str:
    """RowStore.digest's value for these rows (ordinal order): also what a vault's snapshot hashes to."""
    h = hashlib.sha256(_DIGEST_DOMAIN.encode() + b"\0")
    h.update(num_features.to_bytes(8, "big"))
    hash_rows(h, list(ids), X, y)
    return h.hexdigest()


def _check_rows(ids: list[str], X: np.ndarray, y: np.ndarray) -> None:
    if X.ndim != 2:
        raise DataError(f"row store: X has shape {X.shape}; expected (rows, features)")
    if y.ndim != 1 or y.dtype.kind not in "iub":
        raise DataError(f"row store: y has dtype {y.dtype} shape {y.shape}; expected 1-D integers")
    if not len(ids) == X.shape[0] == y.shape[0]:
        raise DataError(f"row store: {len(ids)} ids, {X.shape[0]} rows of X, {y.shape[0]} labels; they must agree")
    if not np.isfinite(X).all():
        row, col = np.argwhere(~np.isfinite(X))[0]
        raise DataError(f"row store: row {row} ({ids[row]!r}), column {col}: {X[row, col]} is not finite")
    seen: set[str] = set()
    for i, sid in enumerate(ids):
        if not isinstance(sid, str) or not sid:
            raise DataError(f"row store: row {i}: id {sid!r}; ids are non-empty strings")
        if sid in seen:
            raise DataError(f"row store: row {i}: duplicate id {sid!r}")
        seen.add(sid)


def _layout(path: Path, meta: dict[str, str]) -> Layout:
    fmt = meta.get("format")
    try:
        if fmt == FORMAT_V2:
            return Blocks(path, int(meta["num_features"]), int(meta["rows_per_block"]))
        if fmt == FORMAT_V1:
            return Records(path, int(meta["num_features"]))
    except (KeyError, ValueError) as e:
        raise StoreError(f"{path}: the row store's meta table is incomplete ({e}); the store is damaged") from None
    raise StoreError(f"{path}: row store format {fmt!r}; this forgetd reads {FORMAT_V2!r} and {FORMAT_V1!r} "
                     "(a newer forgetd wrote it: upgrade, or retrain the store)")


def _checkpoint(conn: sqlite3.Connection, path: Path) -> None:
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        # Another connection holds a read snapshot; the old pages would stay reachable through the WAL.
        raise StoreError(f"{path}: could not checkpoint the WAL (another reader is open); close other connections")


def _sqlite_files(db: Path) -> list[Path]:
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"), db.with_name(db.name + "-journal")]
