"""The Ledger: an append-only, hash-chained SQLite table written through sqlite-utils.

Durability: WAL, synchronous=FULL on every connection, each append (or batch) in one BEGIN IMMEDIATE
transaction, so an append returns only once its commit is on disk. Several processes may append at once:
BEGIN IMMEDIATE serialises writers (with a busy timeout), and each writer reads the last chain hash inside
its own transaction. Readers never block the writer (WAL). An append_many is five statements however many
events it holds (BEGIN, the last row, one lookup of all their event ids, the INSERTs, COMMIT), and everything
that does not depend on the chain (validation, canonical bytes) is done before BEGIN (ledger.prepare).

Each process keeps the leaf hashes it has seen in an in-memory Merkle tree (ledger.merkle.MerkleTree) and
tops it up from the table when another process has appended, so head() and proofs cost O(log^2 n), not a
scan. The tree trusts the stored leaf_hash column; `verify_ledger` is what recomputes everything.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from .canonical import SCHEMA_VERSION, canonical_bytes, canonical_string, spliced_envelope
from .errors import (
    ChainBroken,
    EntryNotFound,
    IdempotencyConflict,
    InvalidPayload,
    LedgerError,
    LedgerNotFound,
    NotALedger,
    ProofError,
    ReadOnlyLedger,
)
from .merkle import CHAIN_PREFIX, LEAF_PREFIX, ZERO_CHAIN, MerkleTree, TreeSnapshot
from .model import Entry, Head
from .prepare import Clock, Prepared, format_time, prepare, utc_now
from .proofs import ConsistencyProof, InclusionProof
from .schema import APPLICATION_ID, COLUMNS, FILE_FORMAT, TABLE, TABLE_SQL, TRIGGERS_SQL, connect

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM {TABLE}"
_LAST = f"SELECT seq, chain_hash FROM {TABLE} ORDER BY seq DESC LIMIT 1"
_INSERT = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_LOOKUP_CHUNK = 256  # event ids per lookup query: well under SQLite's limit on bound parameters
_READ_CHUNK = 1000
_sha256 = hashlib.sha256


class Ledger:
    """An append-only, hash-chained event ledger in one SQLite file.

    >>> with Ledger("ledger.db") as ledger:
    ...     entry = ledger.append("forget.requested", {"subjects": ["9f2c..."]}, event_id="req-1")
    ...     head = ledger.head()

    Thread-safe (one connection behind a lock); several processes may append to the same file at once.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        readonly: bool = False,
        clock: Clock | None = None,
        busy_timeout: float = 60.0,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._clock = clock or utc_now
        if readonly and not self.path.exists():
            raise LedgerNotFound(f"no ledger at {self.path}")
        try:
            self.db = sqlite_utils.Database(connect(self.path, readonly=readonly, busy_timeout=busy_timeout))
        except sqlite3.DatabaseError as exc:
            raise NotALedger(f"{self.path} cannot be opened as SQLite: {exc}") from exc
        self._conn = self.db.conn
        self._lock = threading.RLock()
        self._tree = MerkleTree()
        # The head and tree right after this connection's last append_many, taken inside its transaction (a
        # writer's receipts need no read of their own); None until one, or while another process's are unsynced.
        self.last_commit: tuple[Head, TreeSnapshot] | None = None
        try:
            self._open_schema()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise NotALedger(f"{self.path} is not a forgetd ledger: {exc}") from exc
        except LedgerError:
            self.close()
            raise

    # --- lifecycle ------------------------------------------------------------------------------------

    def _open_schema(self) -> None:
        if self.readonly:
            self._check_identity()
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            app_id = self._conn.execute("PRAGMA application_id").fetchone()[0]
            if app_id == 0:
                others = [t for t in self.db.table_names() if not t.startswith("sqlite_")]
                if others:
                    raise NotALedger(f"{self.path} is a SQLite file with other tables ({', '.join(others)})")
                self._conn.execute(TABLE_SQL)
                for sql in TRIGGERS_SQL.values():
                    self._conn.execute(sql)
                self._conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                self._conn.execute(f"PRAGMA user_version = {FILE_FORMAT}")
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._check_identity()

    def _check_identity(self) -> None:
        app_id = self._conn.execute("PRAGMA application_id").fetchone()[0]
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id != APPLICATION_ID:
            raise NotALedger(f"{self.path} is not a forgetd ledger (application_id {app_id:#x})")
        if version > FILE_FORMAT:
            raise NotALedger(f"{self.path} has ledger format {version}; this forgetd reads up to {FILE_FORMAT}")
        if not self.db[TABLE].exists():
            raise NotALedger(f"{self.path} has no {TABLE} table")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r}{', readonly=True' if self.readonly else ''})"

    # --- appending ------------------------------------------------------------------------------------

    def append(self, event_type: str, payload: dict[str, Any], *, event_id: str | None = None) -> Entry:
        """Append one event durably and return its Entry.

        `event_id` is the idempotency key (a fresh UUID when omitted): appending an id already recorded with
        the same type and payload returns the recorded entry; with a different one it raises
        IdempotencyConflict. Floats, NaN, unsafe integers or a non-string type raise before anything is written.
        """
        return self.append_many([(event_type, payload, event_id)])[0]

    def append_many(
        self, events: Iterable[tuple[str, dict[str, Any]] | tuple[str, dict[str, Any], str | None]]
    ) -> list[Entry]:
        """Append several events in one transaction (one fsync); all or nothing. Each item is
        (event_type, payload) or (event_type, payload, event_id); the Entries come back in order."""
        if self.readonly:
            raise ReadOnlyLedger(f"{self.path} was opened read-only")
        prepared = []
        for i, item in enumerate(events):
            if not isinstance(item, tuple) or len(item) not in (2, 3):
                raise InvalidPayload(f"event {i} must be (event_type, payload) or (event_type, payload, event_id)")
            prepared.append(prepare(item[0], item[1], item[2] if len(item) == 3 else None))
        if not prepared:
            return []
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                last = conn.execute(_LAST).fetchone()
                start, chain = (last[0], last[1]) if last else (0, ZERO_CHAIN)
                out, rows, chain = self._chained(prepared, start, chain, self._find_events(prepared))
                if rows:
                    conn.executemany(_INSERT, rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self.last_commit = None
            if self._tree.size == start:
                self._tree.extend([row[6] for row in rows])
                seq = start + len(rows)
                self.last_commit = (Head(seq, chain, self._tree.root(seq)), TreeSnapshot(self._tree, seq))
            return out

    def _chained(self, prepared: list[Prepared], seq: int, chain: bytes, recorded: dict[str, Entry]
                 ) -> tuple[list[Entry], list[tuple[Any, ...]], bytes]:
        """The entries of `prepared` after entry `seq` (chain hash `chain`), the rows to insert for the new ones
        and the last chain hash; an event id already `recorded` (or earlier in the batch) answers with its entry."""
        out: list[Entry] = []
        rows: list[tuple[Any, ...]] = []
        clock, sha = self._clock, _sha256
        for etype, eid, body, body_bytes, type_json, eid_json in prepared:
            existing = recorded.get(eid)
            if existing is not None:
                self._check_same(existing, etype, body_bytes)
                out.append(existing)
                continue
            seq += 1
            recorded_at = format_time(clock())
            envelope = spliced_envelope(seq, eid_json, type_json, canonical_string(recorded_at), body_bytes)
            leaf = sha(LEAF_PREFIX + envelope).digest()  # hash_leaf and hash_chain, inlined
            chain = sha(CHAIN_PREFIX + seq.to_bytes(8, "big") + chain + leaf).digest()
            entry = Entry(seq, eid, etype, SCHEMA_VERSION, recorded_at, body, envelope, leaf, chain)
            rows.append((seq, eid, etype, SCHEMA_VERSION, recorded_at, envelope, leaf, chain))
            recorded[eid] = entry
            out.append(entry)
        return out, rows, chain

    def _find_events(self, prepared: list[Prepared]) -> dict[str, Entry]:
        """The entries already recorded under the event ids of `prepared`, by id: one query per _LOOKUP_CHUNK ids.
        The list of ids is padded to a power of two (repeating one) so that few distinct statements are cached."""
        ids = list(dict.fromkeys(p[1] for p in prepared))
        found: dict[str, Entry] = {}
        for first in range(0, len(ids), _LOOKUP_CHUNK):
            chunk = ids[first:first + _LOOKUP_CHUNK]
            chunk += chunk[-1:] * ((1 << (len(chunk) - 1).bit_length()) - len(chunk))
            sql = f"{_SELECT} WHERE event_id IN ({', '.join('?' * len(chunk))})"
            for row in self._conn.execute(sql, chunk):
                entry = _entry(row)
                found[entry.event_id] = entry
        return found

    def _find_event(self, event_id: str) -> Entry | None:
        row = self._conn.execute(f"{_SELECT} WHERE event_id = ?", (event_id,)).fetchone()
        return None if row is None else _entry(row)

    @staticmethod
    def _check_same(existing: Entry, event_type: str, body_bytes: bytes) -> None:
        if existing.type != event_type:
            raise IdempotencyConflict(existing.event_id, existing.seq, f"type {existing.type!r}, not {event_type!r}")
        if canonical_bytes(existing.payload) != body_bytes:
            raise IdempotencyConflict(existing.event_id, existing.seq, "a different payload")

    # --- reading --------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.size

    @property
    def size(self) -> int:
        """The number of entries (the last seq)."""
        with self._lock:
            row = self._conn.execute(f"SELECT max(seq) FROM {TABLE}").fetchone()
            return int(row[0] or 0)

    def entry(self, seq: int) -> Entry:
        """The entry at `seq` (1-based); EntryNotFound if there is none."""
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise EntryNotFound(f"seq must be an integer, got {type(seq).__name__} {seq!r}")
        with self._lock:
            row = self._conn.execute(f"{_SELECT} WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            raise EntryNotFound(f"no entry at seq {seq} (the ledger has {self.size} entries; seqs start at 1)")
        return _entry(row)

    def entry_by_event_id(self, event_id: str) -> Entry:
        """The entry recorded under `event_id`; EntryNotFound if there is none."""
        with self._lock:
            found = self._find_event(event_id)
        if found is None:
            raise EntryNotFound(f"no entry has event id {event_id!r}")
        return found

    def entries(self, start: int = 1, stop: int | None = None) -> Iterator[Entry]:
        """Entries with start <= seq < stop (stop None: to the end), in order, read in chunks."""
        seq = max(int(start), 1)
        while stop is None or seq < stop:
            limit = _READ_CHUNK if stop is None else min(_READ_CHUNK, stop - seq)
            with self._lock:
                rows = self._conn.execute(
                    f"{_SELECT} WHERE seq >= ? ORDER BY seq LIMIT ?", (seq, limit)
                ).fetchall()
            if not rows:
                return
            for row in rows:
                yield _entry(row)
            seq = rows[-1][0] + 1

    # --- heads and proofs -----------------------------------------------------------------------------

    def head(self, size: int | None = None) -> Head:
        """The current head, or the head after the first `size` entries."""
        _check_int(size, "head size")
        with self._lock, self._read():
            current, chain = self._sync()
            if size is None or size == current:
                return Head(current, chain, self._tree.root(current))
            if not 0 <= size <= current:
                raise ProofError(f"head size {size} is not within 0..{current} (the ledger's size)")
            if size == 0:
                return Head.empty()
            row = self._conn.execute(f"SELECT chain_hash FROM {TABLE} WHERE seq = ?", (size,)).fetchone()
            return Head(size, row[0], self._tree.root(size))

    def prove_inclusion(self, seq: int, size: int | None = None) -> InclusionProof:
        """The audit path for entry `seq` in the ledger of `size` entries (default: the current size)."""
        _check_int(size, "proof size")
        with self._lock, self._read():
            current, _ = self._sync()
            if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= current:
                raise EntryNotFound(f"no entry at seq {seq!r} (the ledger has {current} entries; seqs start at 1)")
            size = current if size is None else size
            if not seq <= size <= current:
                raise ProofError(f"proof size {size} must be within {seq}..{current} (seq..ledger size)")
            hashes = self._tree.inclusion_proof(seq - 1, size)
            return InclusionProof(seq, size, self._tree.leaf(seq - 1), tuple(hashes))

    def prove_consistency(self, old_size: int, new_size: int | None = None) -> ConsistencyProof:
        """The proof that the ledger at `old_size` is a prefix of the ledger at `new_size` (default: now)."""
        _check_int(old_size, "old size", optional=False)
        _check_int(new_size, "new size")
        with self._lock, self._read():
            current, _ = self._sync()
            new_size = current if new_size is None else new_size
            if not 0 <= new_size <= current:
                raise ProofError(f"new size {new_size} is not within 0..{current} (the ledger's size)")
            if not 0 <= old_size <= new_size:
                raise ProofError(f"old size {old_size} is not within 0..{new_size} (the new size)")
            return ConsistencyProof(old_size, new_size, tuple(self._tree.consistency_proof(old_size, new_size)))

    def snapshot(self) -> TreeSnapshot:
        """The Merkle tree as it is now, to build proofs from without this ledger's lock (merkle.TreeSnapshot)."""
        with self._lock, self._read():
            size, _ = self._sync()
            return TreeSnapshot(self._tree, size)

    def _read(self) -> _ReadTransaction:
        return _ReadTransaction(self._conn)

    def _sync(self) -> tuple[int, bytes]:
        """Bring the in-memory tree up to the table's last seq; return (size, last chain hash)."""
        last = self._conn.execute(f"SELECT seq, chain_hash FROM {TABLE} ORDER BY seq DESC LIMIT 1").fetchone()
        size, chain = (last[0], last[1]) if last else (0, ZERO_CHAIN)
        have = self._tree.size
        if size < have:
            raise ChainBroken(f"the ledger shrank from {have} to {size} entries while open", seq=size + 1)
        if size > have:
            rows = self._conn.execute(
                f"SELECT seq, leaf_hash FROM {TABLE} WHERE seq > ? AND seq <= ? ORDER BY seq", (have, size)
            ).fetchall()
            for expected, (seq, leaf) in enumerate(rows, start=have + 1):
                if seq != expected or not isinstance(leaf, bytes) or len(leaf) != 32:
                    raise ChainBroken(f"entry {expected} is missing or malformed; run `forgetd ledger verify`",
                                      seq=expected)
            if len(rows) != size - have:
                raise ChainBroken(f"entries {have + len(rows) + 1}..{size} are missing", seq=have + len(rows) + 1)
            self._tree.extend(leaf for _, leaf in rows)
        return size, chain


class _ReadTransaction:
    """A deferred transaction so that a head's size, chain hash and leaves come from one snapshot."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._owned = False

    def __enter__(self) -> None:
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN")
            self._owned = True

    def __exit__(self, *exc: object) -> None:
        if self._owned:
            self._conn.execute("COMMIT")


def _check_int(value: object, what: str, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProofError(f"{what} must be an integer, got {type(value).__name__} {value!r}")


def _entry(row: Sequence[Any]) -> Entry:
    seq, event_id, etype, v, recorded_at, envelope, leaf, chain = row
    try:
        payload = json.loads(envelope)["payload"]
    except (ValueError, TypeError, KeyError) as exc:
        raise ChainBroken(f"entry {seq} has a malformed envelope ({exc}); run `forgetd ledger verify`", seq=seq) from None
    return Entry(seq, event_id, etype, v, recorded_at, payload, envelope, leaf, chain)
