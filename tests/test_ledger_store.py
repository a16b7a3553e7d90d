"""The Ledger library: appends, reads, heads, proofs, idempotency, refusals, concurrency, guard rails."""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
import rfc8785

from forgetd.ledger import (
    EMPTY_ROOT,
    EntryNotFound,
    Head,
    IdempotencyConflict,
    InvalidEventId,
    InvalidEventType,
    InvalidPayload,
    Ledger,
    LedgerNotFound,
    NotALedger,
    ProofError,
    ReadOnlyLedger,
    subject_ref,
    verify_consistency,
    verify_inclusion,
    verify_ledger,
)

T0 = datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def ledger(path: Path):
    with Ledger(path, clock=lambda: T0) as book:
        yield book


def _rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM entries").fetchone()[0]
    finally:
        conn.close()


def test_append_stores_the_canonical_envelope_and_its_hashes(ledger: Ledger) -> None:
    entry = ledger.append("forget.requested", {"subjects": ["ab"], "n": 2}, event_id="req-1")
    envelope = {"v": 1, "seq": 1, "event_id": "req-1", "type": "forget.requested",
                "recorded_at": "2025-01-02T03:04:05.000006Z", "payload": {"subjects": ["ab"], "n": 2}}
    assert entry.envelope == rfc8785.dumps(envelope)
    assert entry.envelope == (b'{"event_id":"req-1","payload":{"n":2,"subjects":["ab"]},'
                              b'"recorded_at":"2025-01-02T03:04:05.000006Z","seq":1,"type":"forget.requested","v":1}')
    assert entry.leaf_hash == _sha(b"\x00" + entry.envelope)
    assert entry.chain_hash == _sha(b"\x02" + (1).to_bytes(8, "big") + bytes(32) + entry.leaf_hash)
    assert (entry.seq, entry.event_id, entry.type, entry.v, entry.payload) == (1, "req-1", "forget.requested", 1,
                                                                              {"subjects": ["ab"], "n": 2})
    assert ledger.entry(1) == entry


def test_head_follows_appends(ledger: Ledger) -> None:
    assert ledger.head() == Head(0, bytes(32), EMPTY_ROOT) == Head.empty()
    entries = [ledger.append("e", {"i": i}) for i in range(5)]
    head = ledger.head()
    leaves = [e.leaf_hash for e in entries]
    n01 = _sha(b"\x01" + leaves[0] + leaves[1])
    n23 = _sha(b"\x01" + leaves[2] + leaves[3])
    assert head == Head(5, entries[-1].chain_hash, _sha(b"\x01" + _sha(b"\x01" + n01 + n23) + leaves[4]))
    assert ledger.head(2) == Head(2, entries[1].chain_hash, n01)
    assert ledger.head(0) == Head.empty()
    assert Head.from_hex(head.to_hex()) == head and Head.from_dict(head.to_dict()) == head
    assert head.to_hex()[:16] == "0000000000000005" and len(head.to_hex()) == 144


def test_entries_and_entry(ledger: Ledger) -> None:
    for i in range(7):
        ledger.append("e", {"i": i}, event_id=f"id-{i}")
    assert [e.seq for e in ledger.entries()] == list(range(1, 8))
    assert [e.payload["i"] for e in ledger.entries(3, 6)] == [2, 3, 4]
    assert list(ledger.entries(8)) == []
    assert ledger.entry_by_event_id("id-4").seq == 5
    assert len(ledger) == ledger.size == 7


@pytest.mark.parametrize("seq", [0, 8, -1, 10**6])
def test_unknown_seq_raises(ledger: Ledger, seq: int) -> None:
    for i in range(7):
        ledger.append("e", {"i": i})
    with pytest.raises(EntryNotFound, match=f"^no entry at seq {seq} \\(the ledger has 7 entries; seqs start at 1\\)$"):
        ledger.entry(seq)
    with pytest.raises(EntryNotFound):
        ledger.prove_inclusion(seq)


def test_entry_wants_an_integer(ledger: Ledger) -> None:
    with pytest.raises(EntryNotFound, match="^seq must be an integer, got str '1'$"):
        ledger.entry("1")  # type: ignore[arg-type]
    with pytest.raises(EntryNotFound, match="^no entry has event id 'nope'$"):
        ledger.entry_by_event_id("nope")


def test_idempotent_reappend_returns_the_recorded_entry(ledger: Ledger, path: Path) -> None:
    first = ledger.append("forget.requested", {"name": "Caf\u00e9", "ids": [1, 2]}, event_id="req-7")
    ledger.append("other", {})
    again = ledger.append("forget.requested", {"ids": (1, 2), "name": "Cafe\u0301"}, event_id="req-7")
    assert again == first
    assert _rows(path) == 2


def test_idempotency_conflicts_raise_and_write_nothing(ledger: Ledger, path: Path) -> None:
    ledger.append("forget.requested", {"ids": [1]}, event_id="req-7")
    with pytest.raises(IdempotencyConflict, match="^event id 'req-7' is already recorded at seq 1 with a different payload$"):
        ledger.append("forget.requested", {"ids": [2]}, event_id="req-7")
    with pytest.raises(IdempotencyConflict,
                       match="^event id 'req-7' is already recorded at seq 1 with type 'forget.requested', not 'x'$"):
        ledger.append("x", {"ids": [1]}, event_id="req-7")
    with pytest.raises(IdempotencyConflict):  # a batch with a conflict in the middle is rolled back whole
        ledger.append_many([("a", {}), ("forget.requested", {"ids": [3]}, "req-7"), ("b", {})])
    assert _rows(path) == 1


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (("e", {"loss": 0.25}), InvalidPayload, "payload['loss'] = 0.25 is a float"),
        (("e", {"x": [float("nan")]}), InvalidPayload, "payload['x'][0] = NaN is a float"),
        (("e", {"n": 2**60}), InvalidPayload, "payload['n'] = 1152921504606846976 is outside the safe integer range"),
        (("e", ["not", "a", "dict"]), InvalidPayload, "payload must be a dict (a JSON object), got list"),
        ((123, {}), InvalidEventType, "event type must be a string, got int 123"),
        ((None, {}), InvalidEventType, "event type must be a string, got NoneType None"),
        ((b"e", {}), InvalidEventType, "event type must be a string, got bytes b'e'"),
        (("", {}), InvalidEventType, "event type must be 1..256 characters, got 0"),
    ],
)
def test_bad_input_raises_a_clear_error_and_writes_nothing(ledger: Ledger, path: Path, args, error, message) -> None:
    ledger.append("ok", {"fine": 1})
    before = ledger.head()
    with pytest.raises(error) as info:
        ledger.append(*args)
    assert str(info.value).startswith(message)
    assert isinstance(info.value, ValueError)  # every input error is also a ValueError
    with pytest.raises(error):  # inside a batch the good events are not written either
        ledger.append_many([("ok", {"a": 1}), args])
    assert ledger.head() == before and _rows(path) == 1


def test_bad_event_id(ledger: Ledger) -> None:
    with pytest.raises(InvalidEventId, match="^event id must be a string, got int 5$"):
        ledger.append("e", {}, event_id=5)  # type: ignore[arg-type]
    with pytest.raises(InvalidEventId, match="^event id must be 1..256 characters, got 0$"):
        ledger.append("e", {}, event_id="")
    assert ledger.size == 0


def test_default_event_ids_are_unique(ledger: Ledger) -> None:
    ids = {ledger.append("e", {}).event_id for _ in range(20)}
    assert len(ids) == 20


def test_append_many_in_one_transaction(ledger: Ledger) -> None:
    out = ledger.append_many([("e", {"i": i}) for i in range(50)] + [("e", {"i": 0}, "dup"), ("e", {"i": 0}, "dup")])
    assert [e.seq for e in out] == list(range(1, 52)) + [51]
    assert out[-1] is out[-2]
    assert ledger.append_many([]) == []
    assert verify_ledger(ledger.path).ok


def test_triggers_refuse_update_and_delete(ledger: Ledger, path: Path) -> None:
    ledger.append("e", {})
    conn = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only: UPDATE refused"):
            conn.execute("UPDATE entries SET type = 'x'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only: DELETE refused"):
            conn.execute("DELETE FROM entries")
        with pytest.raises(sqlite3.IntegrityError):  # UNIQUE event_id
            conn.execute("INSERT INTO entries SELECT seq + 1, event_id, type, v, recorded_at, envelope, leaf_hash, "
                         "chain_hash FROM entries")
        strict = conn.execute("SELECT strict FROM pragma_table_list WHERE name = 'entries'").fetchone()[0]
        assert strict == 1
    finally:
        conn.close()


def test_connection_settings(ledger: Ledger) -> None:
    conn = ledger.db.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


def test_proofs_against_heads(ledger: Ledger) -> None:
    entries = [ledger.append("e", {"i": i}) for i in range(11)]
    old = ledger.head(6)
    new = ledger.head()
    for e in entries:
        proof = ledger.prove_inclusion(e.seq)
        verify_inclusion(e.leaf_hash, e.seq, proof, new)
        if e.seq <= 6:
            ledger.prove_inclusion(e.seq, 6).verify(old)
    verify_consistency(old, new, ledger.prove_consistency(6))
    ledger.prove_consistency(0).verify(Head.empty(), new)
    ledger.prove_consistency(11).verify(new, new)
    with pytest.raises(ProofError, match="^proof size 3 must be within 4..11 \\(seq..ledger size\\)$"):
        ledger.prove_inclusion(4, 3)
    with pytest.raises(ProofError, match="^new size 12 is not within 0..11 \\(the ledger's size\\)$"):
        ledger.prove_consistency(3, 12)
    with pytest.raises(ProofError, match="^old size 9 is not within 0..8 \\(the new size\\)$"):
        ledger.prove_consistency(9, 8)
    with pytest.raises(ProofError, match="^head size must be an integer, got str '3'$"):
        ledger.head("3")  # type: ignore[arg-type]
    with pytest.raises(ProofError, match="^old size must be an integer, got NoneType None$"):
        ledger.prove_consistency(None)  # type: ignore[arg-type]


def test_a_second_instance_sees_appends_from_the_first(path: Path) -> None:
    with Ledger(path) as a, Ledger(path) as b:
        a.append("e", {"i": 1})
        assert b.head() == a.head()
        b.append("e", {"i": 2})  # b's tree is topped up from the table before it appends
        a.append("e", {"i": 3})
        assert a.head() == b.head()
        assert b.prove_inclusion(3).hashes == a.prove_inclusion(3).hashes
        assert verify_ledger(path).head == a.head()


def test_readonly_and_missing(path: Path, tmp_path: Path) -> None:
    with pytest.raises(LedgerNotFound, match="no ledger at"):
        Ledger(tmp_path / "missing.db", readonly=True)
    with Ledger(path) as book:
        book.append("e", {})
    with Ledger(path, readonly=True) as book:
        assert book.head().size == 1
        with pytest.raises(ReadOnlyLedger, match="was opened read-only"):
            book.append("e", {})


def test_not_a_ledger(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(NotALedger, match="is a SQLite file with other tables \\(t\\)"):
        Ledger(other)
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not SQLite at all" * 40)
    with pytest.raises(NotALedger):
        Ledger(text)


def test_threads_share_one_ledger(ledger: Ledger) -> None:
    def work(k: int) -> None:
        for i in range(25):
            ledger.append("e", {"thread": k, "i": i})

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ledger.size == 100
    report = verify_ledger(ledger.path)
    assert report.ok and report.head == ledger.head()


_CHILD = """
import sys
from forgetd.ledger import Ledger
ledger = Ledger(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()  # wait until every process is ready, so that the appends really overlap
for i in range(100):
    ledger.append("forget.requested", {"writer": int(sys.argv[2]), "i": i}, event_id=f"w{sys.argv[2]}-{i}")
print("done", flush=True)
"""


@pytest.mark.slow
def test_four_processes_append_at_once(path: Path) -> None:
    Ledger(path).close()
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(path), str(k)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for k in range(4)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            out, _ = p.communicate(timeout=300)
            assert p.returncode == 0 and out.strip() == "done"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    report = verify_ledger(path)
    assert report.ok, report.problems
    assert report.entries == 400
    with Ledger(path, readonly=True) as book:
        entries = list(book.entries())
    assert [e.seq for e in entries] == list(range(1, 401))
    assert {e.event_id for e in entries} == {f"w{k}-{i}" for k in range(4) for i in range(100)}
    for k in range(4):  # each writer's own appends stay in its order
        mine = [e.payload["i"] for e in entries if e.payload["writer"] == k]
        assert mine == list(range(100))


def test_subject_ref() -> None:
    key = b"deployment-key"
    expected = hmac.new(key, "Café".encode(), hashlib.sha256).hexdigest()
    assert subject_ref(key, "Café") == expected
    assert subject_ref(key, "Cafe\u0301") == expected  # NFC first
    assert subject_ref(key, "sample-1") != subject_ref(b"other-key", "sample-1")
    assert len(subject_ref(key, "x")) == 64
    with pytest.raises(ValueError, match="non-empty bytes key"):
        subject_ref(b"", "x")
    with pytest.raises(TypeError, match="sample_id must be a string, got int"):
        subject_ref(key, 5)  # type: ignore[arg-type]
