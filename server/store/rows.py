"""The erasable training-data store: rows by sample id in one SQLite file, physically removed on erase.

Forgetting a sample must leave no copy of its row in the store's files. The schema and settings are chosen
so that a byte search of the folder finds nothing after `erase` returns:

- `PRAGMA secure_delete=ON`: SQLite zeroes deleted cells and freed pages instead of only unlinking them.
- The table is a rowid table keyed by the insertion ordinal, with **no index on the id**. Index b-trees keep
  copies of keys as dividers in their interior pages, and deleting a leaf entry does not rewrite them, so a
  deleted id could survive there. Interior pages of a rowid table hold only integers. Ids are looked up in
  an in-memory map built when the store is opened (a 32k-row scan takes a few milliseconds).
- WAL journal with a `wal_checkpoint(TRUNCATE)` after every erase: new (zeroed) page images go to the WAL,
  the checkpoint writes them over the old pages in place, and the WAL is truncated to zero bytes. A
  rollback journal would instead copy the old page, row included, into a journal file.
- Rows are written once, in ordinal order, in a fresh file, so SQLite only appends pages and never leaves
  stale copies of cells behind when it splits a page.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import numpy as np

from forgetd.server.data import hash_rows
from forgetd.server.errors import DataError, StoreError, UnknownSample
from forgetd.server.store.layout import fsync_dir
from forgetd.server.store.space import is_full, no_space

__all__ = ["RowStore"]

_FORMAT = "forgetd.rowstore.v1"


class RowStore:
    """Training rows (id, float32 features, int64 label) in insertion order, erasable by id.

    Safe to share between threads: every operation holds the store's lock.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, num_features: int, ords: dict[str, int]) -> None:
        # Use RowStore.create or RowStore.open.
        self.path = path
        self.num_features = num_features
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
                conn.execute("PRAGMA secure_delete=ON")
                conn.execute("PRAGMA journal_mode=WAL")  # persistent in the file header
                conn.execute("PRAGMA synchronous=FULL")
                conn.executescript(
                    """
                    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
                    CREATE TABLE rows (ord INTEGER PRIMARY KEY, id TEXT NOT NULL, y INTEGER NOT NULL, x BLOB NOT NULL) STRICT;
                    """
                )
                conn.execute("BEGIN")
                conn.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [("format", _FORMAT), ("num_features", str(X.shape[1]))],
                )
                conn.executemany(
                    "INSERT INTO rows (ord, id, y, x) VALUES (?, ?, ?, ?)",
                    ((i, sid, int(label), X[i].tobytes()) for i, (sid, label) in enumerate(zip(ids, y.tolist()))),
                )
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
    def open(cls, path: Path, *, busy_timeout: float = 5.0) -> RowStore:
        """Open an existing store; StoreError when it is missing or not a row store.

        `busy_timeout` (seconds) is how long an erase waits for another connection's read to finish before
        it gives up scrubbing the old pages (see `erase`).
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
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("format") != _FORMAT:
                raise StoreError(f"{path}: format is {meta.get('format')!r}, expected {_FORMAT!r}")
            num_features = int(meta["num_features"])
            ords = {sid: o for o, sid in conn.execute("SELECT ord, id FROM rows ORDER BY ord")}
        except sqlite3.DatabaseError as e:
            conn.close()
            if is_full(e):  # the WAL's first pages, or the checkpoint, need room
                raise no_space(path.parent, f"opening {path.name}") from None
            raise StoreError(f"{path}: not a readable row store ({e})") from None
        except BaseException:
            conn.close()
            raise
        return cls(path, conn, num_features, ords)

    # -- reading ----------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ords)

    def __contains__(self, sample_id: object) -> bool:
        return sample_id in self._ords

    def ids(self) -> list[str]:
        """The ids of the rows still stored, in insertion order."""
        with self._lock:
            return list(self._ords)

    def load(self, ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(ids, X (n, F) float32, y (n,) int64): every row in insertion order, or the named rows in the
        order named. UnknownSample when an id is not stored (never stored, or erased)."""
        with self._lock:
            conn = self._checked_conn()
            if ids is None:
                # The ids come from the in-memory map (same order); reading them from SQLite too costs a third more.
                rows = conn.execute("SELECT ord, y, x FROM rows ORDER BY ord").fetchall()
                out_ids = list(self._ords)
                if len(rows) != len(out_ids):
                    raise StoreError(f"{self.path}: holds {len(rows)} rows, expected {len(out_ids)}; changed behind this store's back")
            else:
                out_ids = list(ids)
                missing = [i for i in out_ids if i not in self._ords]
                if missing:
                    raise UnknownSample(missing)
                wanted = sorted({self._ords[i] for i in out_ids})
                by_ord = {
                    r[0]: r
                    for r in conn.execute(
                        "SELECT ord, y, x FROM rows WHERE ord IN (SELECT value FROM json_each(?))",
                        (json.dumps(wanted),),
                    )
                }
                rows = [by_ord[self._ords[i]] for i in out_ids]
        F = self.num_features
        X = np.frombuffer(b"".join([r[2] for r in rows]), dtype="<f4").reshape(len(rows), F).astype(np.float32)
        y = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        return out_ids, X, y

    def digest(self) -> str:
        """Hex SHA-256 of the current rows in insertion order: b"forgetd.rowstore.v1\\0", the feature count as
        u64 big-endian, then the rows encoded as `forgetd.server.data.hash_rows` documents."""
        ids, X, y = self.load()
        h = hashlib.sha256(_FORMAT.encode() + b"\0")
        h.update(self.num_features.to_bytes(8, "big"))
        hash_rows(h, ids, X, y)
        return h.hexdigest()

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
            conn.execute("BEGIN IMMEDIATE")
            try:
                cur = conn.execute("DELETE FROM rows WHERE ord IN (SELECT value FROM json_each(?))", (json.dumps(ords),))
                if cur.rowcount != len(ords):
                    raise StoreError(
                        f"{self.path}: expected to delete {len(ords)} rows, deleted {cur.rowcount}; "
                        "the file was changed behind this store's back"
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            for i in wanted:
                del self._ords[i]
            _checkpoint(conn, self.path)

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


def _checkpoint(conn: sqlite3.Connection, path: Path) -> None:
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        # Another connection holds a read snapshot; the old pages would stay reachable through the WAL.
        raise StoreError(f"{path}: could not checkpoint the WAL (another reader is open); close other connections")


def _sqlite_files(db: Path) -> list[Path]:
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"), db.with_name(db.name + "-journal")]
