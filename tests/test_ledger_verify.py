"""verify_ledger against an attacker with write access to the file: every tamper is caught and its seq named.

The attacker here does what a real one would: drop the append-only triggers, edit, put the triggers back
with their exact SQL, and, where it helps them, recompute every hash after the edit.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from forgetd.ledger import Head, Ledger, LedgerNotFound, Problem, verify_ledger
from forgetd.ledger.schema import TABLE_SQL, TRIGGERS_SQL

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
COLUMNS = ("seq", "event_id", "type", "v", "recorded_at", "envelope", "leaf_hash", "chain_hash")


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _clock() -> Callable[[], datetime]:
    ticks = iter(range(10**9))
    return lambda: T0 + timedelta(milliseconds=next(ticks))


def make_ledger(path: Path, n: int = 10) -> Head:
    with Ledger(path, clock=_clock()) as book:
        book.append_many([("forget.requested", {"request": f"r{i}", "subjects": [_sha(bytes([i])).hex()]}, f"id-{i}")
                          for i in range(1, n + 1)])
        return book.head()


def tamper(path: Path, *statements: tuple[str, tuple]) -> None:
    """Drop the triggers, run the statements, put the triggers back exactly as they were."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for name in TRIGGERS_SQL:
            conn.execute(f"DROP TRIGGER {name}")
        for sql, params in statements:
            conn.execute(sql, params)
        for sql in TRIGGERS_SQL.values():
            conn.execute(sql)
        conn.execute("COMMIT")
    finally:
        conn.close()


def rows(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT {', '.join(COLUMNS)} FROM entries ORDER BY seq").fetchall()
    finally:
        conn.close()


def rewrite_with_recomputed_hashes(path: Path, envelopes: dict[int, bytes]) -> None:
    """Replace some envelopes and recompute every leaf and chain hash, so that the chain is self-consistent."""
    old = rows(path)
    chain = bytes(32)
    new = []
    for seq, event_id, etype, v, recorded_at, envelope, _leaf, _chain in old:
        envelope = envelopes.get(seq, envelope)
        leaf = _sha(b"\x00" + envelope)
        chain = _sha(b"\x02" + seq.to_bytes(8, "big") + chain + leaf)
        new.append((seq, event_id, etype, v, recorded_at, envelope, leaf, chain))
    tamper(path, ("DELETE FROM entries", ()),
           *[(f"INSERT INTO entries ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row) for row in new])


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


def test_an_untouched_ledger_verifies(path: Path) -> None:
    head = make_ledger(path)
    report = verify_ledger(path)
    assert report.ok and report.first_bad_seq is None and report.problems == ()
    assert report.head == head and report.entries == 10
    assert verify_ledger(path, expect_head=head).ok
    assert verify_ledger(path, expect_head=head.to_hex()).ok
    with Ledger(path, readonly=True) as book:
        assert verify_ledger(path, expect_head=book.head(4)).ok
    assert verify_ledger(path, expect_head=Head.empty()).ok
    assert "integrity_check" in report.checks and "expected head" not in report.checks
    assert report.summary().startswith("ok: 10 entries verified; head 000000000000000a")
    json.dumps(report.to_dict())


def test_empty_ledger_verifies(path: Path) -> None:
    Ledger(path).close()
    report = verify_ledger(path)
    assert report.ok and report.head == Head.empty() and report.entries == 0


def test_deleting_a_middle_row(path: Path) -> None:
    make_ledger(path)
    tamper(path, ("DELETE FROM entries WHERE seq = 5", ()))
    report = verify_ledger(path)
    assert not report.ok and report.first_bad_seq == 5
    assert report.problems[0] == "seq 5: missing: the next row has seq 6 (expected seq 5, actual seq 6)"
    assert report.problems[0].seq == 5 and report.problems[0].expected == "seq 5"


def test_swapping_two_rows(path: Path) -> None:
    make_ledger(path)
    tamper(path, ("UPDATE entries SET seq = -3 WHERE seq = 3", ()), ("UPDATE entries SET seq = 3 WHERE seq = 7", ()),
           ("UPDATE entries SET seq = 7 WHERE seq = -3", ()))
    report = verify_ledger(path)
    assert not report.ok and report.first_bad_seq == 3
    assert any(p.startswith("seq 3: column seq differs from the envelope's seq") for p in report.problems)


def test_dropping_a_trigger(path: Path) -> None:
    make_ledger(path)
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER entries_no_delete")
    conn.commit()
    conn.close()
    report = verify_ledger(path)
    assert not report.ok and report.first_bad_seq is None
    assert list(report.problems) == ["append-only trigger entries_no_delete is missing"]


def test_a_trigger_rewritten_to_do_nothing(path: Path) -> None:
    make_ledger(path)
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER entries_no_update")
    conn.execute("CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries BEGIN SELECT 1; END")
    conn.execute("CREATE TRIGGER sneaky AFTER INSERT ON entries BEGIN SELECT 1; END")
    conn.commit()
    conn.close()
    problems = verify_ledger(path).problems
    assert problems[0].startswith("append-only trigger entries_no_update was altered")
    assert problems[1] == "unexpected trigger sneaky on entries"


def test_truncating_the_tail_is_caught_with_an_older_head(path: Path) -> None:
    head = make_ledger(path)
    tamper(path, ("DELETE FROM entries WHERE seq > 7", ()))
    assert verify_ledger(path).ok  # a chain alone cannot see a missing tail: that is what kept heads are for
    report = verify_ledger(path, expect_head=head)
    assert not report.ok and report.first_bad_seq == 8
    assert report.problems[0] == ("seq 8: the ledger has 7 entries but the expected head has 10: the tail from seq 8 "
                                  "was truncated (expected size >= 10, actual size 7)")


def test_rewriting_every_row_with_recomputed_hashes_is_caught_with_an_older_head(path: Path) -> None:
    head = make_ledger(path)
    first = rows(path)[0][5]
    forged = first.replace(b'"request":"r1"', b'"request":"r9"')
    assert forged != first
    rewrite_with_recomputed_hashes(path, {1: forged})
    assert verify_ledger(path).ok  # self-consistent: every hash was recomputed
    report = verify_ledger(path, expect_head=head)
    assert not report.ok and report.first_bad_seq == 10
    assert report.problems[0].startswith("seq 10: the chain hash at seq 10 differs from the expected head's: "
                                         "history up to seq 10 was rewritten (expected ")
    assert report.problems[1].startswith("seq 10: the Merkle root over seqs 1..10 differs from the expected head's")
    # An older head catches it too, at its own size.
    older = Head(head.size, head.chain_hash, head.merkle_root)
    assert verify_ledger(path, expect_head=older).first_bad_seq == 10


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda env: env.replace(b'"request":', b'"request": '), "envelope differs from its canonical form"),
        (lambda env: env.replace(b'"request":"r3"', b'"request":3.5'), "envelope contains a float (3.5)"),
        (lambda env: env.replace(b'"request":"r3"', b'"request":9007199254740993'), "envelope integer 9007199254740993"),
        (lambda env: env.replace(b'"request":"r3"', b'"request":"Cafe\xcc\x81"'), "envelope contains a string that is not NFC"),
        (lambda env: env.replace(b'"v":1}', b'"v":1,"x":2}'), "envelope keys are wrong"),
        (lambda env: env.replace(b'"type":"forget.requested"', b'"type":"forget.applied"'),
         "column type differs from the envelope's type"),
        (lambda env: env[:-1], "envelope is not JSON"),
        (lambda env: b"[1,2]", "envelope is not a JSON object"),
        (lambda env: b"[" * 100_000 + b"]" * 100_000, "envelope is nested too deeply"),
        (lambda env: env.replace(b'"request":"r3"', b'"request":"\xc3\xa9","\xf0\x9f\x98\x80":1,"\xef\xbf\xbd":2'),
         "envelope differs from its canonical form"),
    ],
)
def test_non_canonical_envelopes_with_recomputed_hashes(path: Path, edit, why: str) -> None:
    make_ledger(path)
    env = rows(path)[2][5]
    rewrite_with_recomputed_hashes(path, {3: edit(env)})
    report = verify_ledger(path)
    assert not report.ok and report.first_bad_seq == 3
    assert any(p.startswith(f"seq 3: {why}") for p in report.problems), report.problems


def test_malformed_rows_are_findings_not_crashes(path: Path) -> None:
    """An attacker rebuilds the table without STRICT and stores values of the wrong types."""
    make_ledger(path, 6)
    loose = f"CREATE TABLE loose ({', '.join(COLUMNS)})"  # no types, no constraints
    tamper(path, (loose, ()), ("INSERT INTO loose SELECT * FROM entries", ()), ("DROP TABLE entries", ()),
           ("ALTER TABLE loose RENAME TO entries", ()),
           ("UPDATE entries SET leaf_hash = 'not a hash' WHERE seq = 2", ()),
           ("UPDATE entries SET envelope = 'text, not bytes' WHERE seq = 3", ()),
           ("UPDATE entries SET v = 'one' WHERE seq = 4", ()),
           ("UPDATE entries SET chain_hash = x'00' WHERE seq = 5", ()),
           ("UPDATE entries SET seq = 'six' WHERE seq = 6", ()))
    report = verify_ledger(path)
    assert not report.ok and report.first_bad_seq == 2
    text = "\n".join(report.problems)
    assert "the entries table's definition was changed" in text
    assert "seq 2: leaf hash differs from SHA-256(0x00 || envelope) (expected " in text
    assert "seq 3: envelope is not a BLOB but str" in text
    assert "seq 4: column v differs from the envelope's v (expected 1, actual 'one')" in text
    assert "seq 5: chain hash is not 32 bytes" in text
    assert "seq 6: seq column is not an integer (expected an integer, actual 'six')" in text


def test_cells_of_the_wrong_type_under_an_intact_strict_schema_are_findings(path: Path) -> None:
    """What a corrupted page leaves: the schema still says STRICT, so rows take the lean path, whose type
    assumptions then fail: each such row is a finding at its seq, and the pass goes on."""
    make_ledger(path, 6)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA writable_schema=ON")
    conn.execute("UPDATE sqlite_master SET sql = ? WHERE name = 'entries'", (TABLE_SQL.replace(") STRICT", ")"),))
    conn.close()
    tamper(path, ("UPDATE entries SET envelope = 'text, not bytes' WHERE seq = 3", ()),
           ("UPDATE entries SET recorded_at = 5 WHERE seq = 5", ()))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA writable_schema=ON")
    conn.execute("UPDATE sqlite_master SET sql = ? WHERE name = 'entries'", (TABLE_SQL,))
    conn.close()
    report = verify_ledger(path, jobs=1)
    assert report.first_bad_seq == 3 and report.entries == 5  # row 3 takes no place in the sequence
    assert [p.what for p in report.problems[:5]] == [
        "row could not be examined (AttributeError: 'str' object has no attribute 'decode')",
        "missing: the next row has seq 4",
        "chain hash differs from SHA-256(0x02 || seq || previous chain || leaf)",
        "column recorded_at differs from the envelope's recorded_at",
        "recorded_at is not an RFC 3339 UTC time",
    ]
    assert [p.seq for p in report.problems[:5]] == [3, 3, 4, 5, 5]
    # The schema text is intact, so no finding about it; SQLite's own check may see the wrong type.
    assert all(p.startswith("PRAGMA integrity_check: ") for p in report.problems[5:])


def test_forked_workers_fall_back_to_none_when_no_process_can_be_had(monkeypatch: pytest.MonkeyPatch) -> None:
    from forgetd.ledger import scan

    class NoProcesses:
        def Pool(self, processes: int) -> None:
            raise OSError("fork refused")

    with scan.forked_workers(0) as pool:
        assert pool is None
    monkeypatch.setattr(scan.multiprocessing, "get_context", lambda method: NoProcesses())
    with scan.forked_workers(2) as pool:
        assert pool is None


def test_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"definitely not a database " * 100)
    report = verify_ledger(bogus)
    assert not report.ok and report.first_bad_seq is None and report.head is None
    assert report.problems[0].startswith("cannot open the file as SQLite") or "schema" in report.problems[0]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LedgerNotFound, match="no ledger at"):
        verify_ledger(tmp_path / "nope.db")


def test_a_head_from_another_ledger(path: Path, tmp_path: Path) -> None:
    make_ledger(path)
    other = make_ledger(tmp_path / "other.db", 3)  # same first entries but another clock start? no: identical
    assert verify_ledger(path, expect_head=other).ok  # identical content: a genuine prefix
    with Ledger(tmp_path / "third.db") as book:
        book.append("x", {})
        stranger = book.head()
    report = verify_ledger(path, expect_head=stranger)
    assert not report.ok and report.first_bad_seq == 1


def test_problems_are_strings_with_parts() -> None:
    p = Problem(4, "leaf hash differs", b"\x01" * 2, b"\x02" * 2)
    assert p == "seq 4: leaf hash differs (expected 0101, actual 0202)"
    assert (p.seq, p.what, p.expected, p.actual) == (4, "leaf hash differs", "0101", "0202")
    assert p.to_dict()["message"] == str(p)


# --- properties ----------------------------------------------------------------------------------------

MAX = 2**53 - 1
values = st.recursive(
    st.none() | st.booleans() | st.integers(-MAX, MAX) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
events = st.lists(
    st.tuples(st.sampled_from(["genesis", "forget.requested", "forget.applied", "événement"]),
              st.dictionaries(st.text(max_size=5), values, max_size=4),
              st.none() | st.sampled_from(["a", "b", "c"])),
    min_size=0, max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=events, batch=st.integers(1, 5))
def test_any_sequence_of_appends_verifies(events: list, batch: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.db"
        with Ledger(path) as book:
            seen: dict[str, tuple] = {}
            for i in range(0, len(events), batch):
                chunk = []
                for etype, payload, event_id in events[i:i + batch]:
                    if event_id is not None and seen.setdefault(event_id, (etype, payload)) != (etype, payload):
                        event_id = None  # the same id with another payload is a conflict, tested elsewhere
                    chunk.append((etype, payload, event_id))
                book.append_many(chunk)
            head = book.head()
        report = verify_ledger(path)
        assert report.ok, report.problems
        assert report.head == head


def _mutate(value: object, pick: st.DataObject) -> object:
    if isinstance(value, int):
        k = pick.draw(st.integers(0, 7), label="byte")
        mask = pick.draw(st.integers(1, 255), label="mask")
        out = value ^ (mask << (8 * k))
        return out - 2**64 if out >= 2**63 else out
    if isinstance(value, str):
        i = pick.draw(st.integers(0, len(value) - 1), label="char")
        c = pick.draw(st.characters(exclude_characters=[value[i]], exclude_categories=["Cs"]), label="new char")
        return value[:i] + c + value[i + 1:]
    assert isinstance(value, bytes)
    i = pick.draw(st.integers(0, len(value) - 1), label="byte")
    mask = pick.draw(st.integers(1, 255), label="mask")
    return value[:i] + bytes([value[i] ^ mask]) + value[i + 1:]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 6), pick=st.data())
def test_changing_any_byte_of_any_column_of_row_i_is_caught_at_i(n: int, pick: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.db"
        make_ledger(path, n)
        i = pick.draw(st.integers(1, n), label="row")
        column = pick.draw(st.sampled_from(COLUMNS), label="column")
        old = rows(path)[i - 1][COLUMNS.index(column)]
        new = _mutate(old, pick)
        assume(new != old)
        if column == "seq":
            assume(not 1 <= new <= n)  # the primary key refuses a duplicate
        if column == "event_id":
            assume(new not in {f"id-{k}" for k in range(1, n + 1)})  # UNIQUE refuses a duplicate
        tamper(path, (f"UPDATE entries SET {column} = ? WHERE seq = ?", (new, i)))
        report = verify_ledger(path, jobs=pick.draw(st.sampled_from([1, 2]), label="jobs"))
        assert not report.ok, f"{column} of row {i} changed from {old!r} to {new!r} went unnoticed"
        assert report.first_bad_seq == i, (column, old, new, report.problems)


# --- several processes ---------------------------------------------------------------------------------


class InlinePool:
    """Stands in for a multiprocessing pool: the same worker function, run here."""

    def starmap(self, func, iterable):
        return [func(*args) for args in iterable]


def _same_findings(a, b) -> bool:
    return (a.ok, a.first_bad_seq, a.problems, a.head, a.entries) == (b.ok, b.first_bad_seq, b.problems, b.head, b.entries)


@pytest.mark.parametrize("jobs", [2, 3, 4])
def test_parallel_verification_agrees_with_one_process(path: Path, jobs: int) -> None:
    from forgetd.ledger import scan as verify_module

    head = make_ledger(path, 61)
    with Ledger(path, readonly=True) as book:
        heads = [book.head(k) for k in (0, 1, 15, 16, 30, 31, 61)]
    for kept in [None, *heads]:
        one, many = verify_ledger(path, expect_head=kept, jobs=1), verify_ledger(path, expect_head=kept, jobs=jobs)
        assert one.ok and _same_findings(one, many)
    # The plan itself, independent of this process's threads: the planner refuses to fork beside other
    # threads, which earlier tests in the same pytest process may have left running.
    ranges = verify_module._split_seqs(61, 1, 61, jobs)
    assert ranges[0][0] == 1 and ranges[-1][1] == 62 and len(ranges) == jobs
    for kept in heads:
        scan = verify_module._scan_in_parallel(InlinePool(), str(path), ranges, kept.size)
        assert scan is not None and scan.chain == head.chain_hash and len(scan.leaves) == 61
        assert scan.chain_at_expected == kept.chain_hash


@pytest.mark.parametrize(
    "statements",
    [
        [("DELETE FROM entries WHERE seq = 31", ())],  # the last row of the first range (jobs=2)
        [("DELETE FROM entries WHERE seq = 32", ())],  # the first row of the second range
        [("UPDATE entries SET envelope = CAST(replace(CAST(envelope AS TEXT), 'r61', 'r62') AS BLOB) WHERE seq = 61", ())],
        [("UPDATE entries SET chain_hash = zeroblob(32) WHERE seq = 31", ())],
        [("UPDATE entries SET type = 'x' WHERE seq = 45", ())],
        [("UPDATE entries SET seq = 100 WHERE seq = 40", ())],
    ],
)
def test_parallel_workers_refuse_anything_off_and_one_process_names_it(path: Path, statements) -> None:
    from forgetd.ledger import scan as verify_module

    make_ledger(path, 61)
    tamper(path, *statements)
    one, many = verify_ledger(path, jobs=1), verify_ledger(path, jobs=2)
    assert not one.ok and _same_findings(one, many)
    assert verify_module._scan_in_parallel(InlinePool(), str(path), [(1, 32), (32, 62)], 0) is None
