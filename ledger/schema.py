"""The ledger's file format: what marks a SQLite file as a forgetd ledger, its one STRICT table, the two
triggers that refuse UPDATE and DELETE, and the settings every writing connection uses.

The Ledger (store) creates exactly this schema; verify_ledger compares a file's stored schema with these
strings, so the verifier depends on the format, not on the code that writes it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

APPLICATION_ID = 0x46474C44  # "FGLD" in the SQLite header: marks the file as a forgetd ledger
FILE_FORMAT = 1  # PRAGMA user_version
TABLE = "entries"
COLUMNS = ("seq", "event_id", "type", "v", "recorded_at", "envelope", "leaf_hash", "chain_hash")

# The exact DDL; verify_ledger compares the stored schema against these strings.
TABLE_SQL = f"""CREATE TABLE {TABLE} (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    v INTEGER NOT NULL,
    recorded_at TEXT NOT NULL,
    envelope BLOB NOT NULL,
    leaf_hash BLOB NOT NULL,
    chain_hash BLOB NOT NULL
) STRICT"""
TRIGGERS_SQL = {
    "entries_no_update": f"""CREATE TRIGGER entries_no_update BEFORE UPDATE ON {TABLE}
BEGIN
    SELECT RAISE(ABORT, 'forgetd ledger is append-only: UPDATE refused');
END""",
    "entries_no_delete": f"""CREATE TRIGGER entries_no_delete BEFORE DELETE ON {TABLE}
BEGIN
    SELECT RAISE(ABORT, 'forgetd ledger is append-only: DELETE refused');
END""",
}


def connect(path: str | Path, *, readonly: bool = False, busy_timeout: float = 60.0) -> sqlite3.Connection:
    """A connection with the ledger's settings: autocommit (explicit transactions), WAL, synchronous=FULL."""
    if readonly:
        uri = f"file:{quote(str(Path(path).resolve()))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(str(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn
