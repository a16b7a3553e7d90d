"""Group commit: Forgets admitted concurrently share commits, each acknowledged only once its own entry is
durable; a commit SQLite refuses fails exactly its callers; a repeated request id keeps its one answer.

Batches are made deterministic without timing: a second SQLite connection holds the ledger's write lock
(BEGIN IMMEDIATE), so the first commit waits in flight while the others queue behind it, and the test waits
on the committer's own counters (a condition variable), never on a clock.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from forgetd.ledger import InvalidPayload, Ledger, verify_ledger
from forgetd.ledger.group_commit import CommitStats
from forgetd.server.errors import NotServing, RequestIdConflict
from forgetd.server.runtime.ledger_writer import LedgerWriter
from forgetd.v1 import common_pb2, unlearning_service_pb2 as upb

from helpers import RunningDaemon, in_threads, write_lock_held

WAIT = 60.0  # seconds a condition may take on a loaded machine before the test fails instead of hanging


def wait_stats(daemon: RunningDaemon, ready: Callable[[CommitStats], bool]) -> None:
    assert daemon.runtime.ledger.committers[0].wait_until(ready, WAIT), daemon.runtime.ledger.committers[0].stats()


def test_concurrent_forgets_share_commits_and_each_gets_its_own_durable_seq(daemon: RunningDaemon) -> None:
    _, unlearning = daemon.stubs()
    ledger_path = daemon.store / "ledger.sqlite"
    with Ledger(ledger_path, readonly=True) as ledger:
        before = ledger.size
    rids = [str(uuid.uuid4()) for _ in range(8)]

    def forget(n: int, rid: str) -> Callable[[], Any]:
        return lambda: unlearning.Forget(upb.ForgetRequest(
            sample_ids=[f"synthetic:{100 + n}"], strategy=common_pb2.STRATEGY_SISA, request_id=rid, wait=False))

    with write_lock_held(ledger_path):
        threads, answers = in_threads([forget(0, rids[0])])
        wait_stats(daemon, lambda s: s.in_flight == 1)  # the first commit waits for the lock
        more, more_answers = in_threads([forget(n, rids[n]) for n in range(1, 8)] + [forget(3, rids[3])])
        wait_stats(daemon, lambda s: s.queued == 7)  # the repeat of rids[3] waits for its first call instead
        assert daemon.runtime.ledger.committers[0].stats().commits == 0  # nothing acknowledged before it is durable
    for t in threads + more:
        t.join()
    answers += more_answers
    assert not [a for a in answers if isinstance(a, BaseException)], answers
    seqs = [a.receipt.requested_seq for a in answers]
    assert sorted(set(seqs[:8])) == list(range(before + 1, before + 9))  # each its own seq, none lost
    assert seqs[8] == seqs[3]  # the repeated request id got the first call's answer

    stats = daemon.runtime.ledger.committers[0].stats()
    assert stats.largest == 7 and stats.commits == 2 and stats.entries == 8
    metrics = daemon.runtime.metrics
    assert metrics.value("forgetd_ledger_commits_total") == 2
    assert metrics.value("forgetd_ledger_committed_entries_total") == 8
    assert metrics.value("forgetd_unlearning_requests_acknowledged_total") == 8

    with pytest.raises(grpc.RpcError) as conflict:  # the same id with other samples: refused, naming the seq
        unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:5"], strategy=common_pb2.STRATEGY_SISA,
                                            request_id=rids[3], wait=False))
    assert conflict.value.code() == grpc.StatusCode.FAILED_PRECONDITION, conflict.value.details()
    assert f"seq {seqs[3]}" in conflict.value.details()

    with Ledger(ledger_path, readonly=True) as ledger:
        requested = [e for e in ledger.entries() if e.type == "forget.requested"]
    assert Counter(e.payload["request_id"] for e in requested) == Counter(rids)
    assert verify_ledger(ledger_path).ok


def test_a_commit_sqlite_refuses_fails_exactly_its_callers(daemon: RunningDaemon) -> None:
    runtime = daemon.runtime
    ledger_path = daemon.store / "ledger.sqlite"
    poison = "forget.requested:poison"
    trigger = (f"CREATE TRIGGER poison BEFORE INSERT ON entries WHEN NEW.event_id = '{poison}' "
               "BEGIN SELECT RAISE(ABORT, 'injected failure'); END")

    def submit(n: int, rid: str) -> Callable[[], Any]:
        return lambda: runtime.submit([f"synthetic:{200 + n}"], "sisa", rid)

    with write_lock_held(ledger_path, trigger):
        first, first_answer = in_threads([submit(0, "alone")])
        wait_stats(daemon, lambda s: s.in_flight == 1)
        batch, batch_answers = in_threads([submit(1, "b"), submit(2, "poison"), submit(3, "d")])
        wait_stats(daemon, lambda s: s.queued == 3)
    for t in first + batch:
        t.join()
    assert first_answer[0].requested.request_id == "alone"
    for answer in batch_answers:  # the poisoned batch: every caller in it gets SQLite's error
        assert isinstance(answer, sqlite3.IntegrityError) and "injected failure" in str(answer), answer
    assert runtime.ledger.committers[0].stats().failed == 1

    runtime.submit(["synthetic:204"], "sisa", "after")  # the next batch proceeds
    runtime.submit(["synthetic:201"], "sisa", "b")  # nothing of the failed batch was kept: its id is free

    conn = sqlite3.connect(ledger_path, isolation_level=None)
    conn.execute("DROP TRIGGER poison")
    conn.close()
    with Ledger(ledger_path, readonly=True) as ledger:
        ids = [e.payload["request_id"] for e in ledger.entries() if e.type == "forget.requested"]
    assert ids == ["alone", "after", "b"]
    assert verify_ledger(ledger_path).ok


def test_close_drains_the_queue_then_refuses(tmp_path: Path) -> None:
    writer = LedgerWriter(tmp_path / "ledger.sqlite", tmp_path / "head.key")
    folded: list[tuple[int, str]] = []
    committer = writer.grouped(lambda done: folded.extend((e.seq, tag) for e, tag in done))

    def append(i: int) -> Callable[[], Any]:
        return lambda: committer.append(("forget.requested", {"i": i}, f"r-{i}"), f"tag-{i}")

    with write_lock_held(tmp_path / "ledger.sqlite"):
        threads, answers = in_threads([append(0)])
        assert committer.wait_until(lambda s: s.in_flight == 1, WAIT)
        more, more_answers = in_threads([append(1), append(2), append(1)])  # r-1 twice: one entry, one seq
        assert committer.wait_until(lambda s: s.queued == 3, WAIT)
        closing, _ = in_threads([writer.close])
        assert committer.wait_until(lambda s: s.closing and s.queued == 3, WAIT)  # closing, nothing committed
    for t in threads + more + closing:
        t.join()
    answers += more_answers
    seq_of = {a.event_id: a.seq for a in answers}
    assert answers[0].seq == 1 and sorted(seq_of.values()) == [1, 2, 3] and answers[1].seq == answers[3].seq
    assert sorted(folded) == sorted([(1, "tag-0"), (seq_of["r-1"], "tag-1"), (seq_of["r-2"], "tag-2"),
                                     (seq_of["r-1"], "tag-1")])
    with pytest.raises(NotServing):
        committer.append(("forget.requested", {"i": 9}, "r-9"), "late")
    assert Ledger(tmp_path / "ledger.sqlite", readonly=True).size == 3


def test_a_request_id_being_admitted_is_answered_after_its_first_call(daemon: RunningDaemon) -> None:
    runtime = daemon.runtime
    with write_lock_held(daemon.store / "ledger.sqlite"):
        first, first_answer = in_threads([lambda: runtime.submit(["synthetic:210"], "sisa", "same")])
        wait_stats(daemon, lambda s: s.in_flight == 1)
        # Other samples under the same id, while the first is in flight: the answer once the first is durable.
        later, later_answer = in_threads([lambda: runtime.submit(["synthetic:211"], "sisa", "same")])
    for t in first + later:
        t.join()
    assert first_answer[0].requested.request_id == "same"
    assert isinstance(later_answer[0], RequestIdConflict), later_answer
    assert f"seq {first_answer[0].requested.seq}" in str(later_answer[0])


def test_an_event_the_ledger_refuses_fails_only_its_caller_in_a_shared_commit(tmp_path: Path) -> None:
    writer = LedgerWriter(tmp_path / "ledger.sqlite", tmp_path / "head.key")
    committer = writer.grouped(lambda done: None)

    def append(payload: dict[str, Any], eid: str) -> Callable[[], Any]:
        return lambda: committer.append(("forget.requested", payload, eid), eid)

    with write_lock_held(tmp_path / "ledger.sqlite"):
        first, first_answer = in_threads([append({"i": 0}, "r-0")])
        assert committer.wait_until(lambda s: s.in_flight == 1, WAIT)
        # A float is refused by the ledger before anything is written; the others in its commit go in.
        batch, answers = in_threads([append({"i": 1}, "r-1"), append({"x": 0.5}, "bad"), append({"i": 2}, "r-2")])
        assert committer.wait_until(lambda s: s.queued == 3, WAIT)
    for t in first + batch:
        t.join()
    writer.close()
    assert isinstance(answers[1], InvalidPayload), answers[1]
    assert first_answer[0].seq == 1 and sorted(a.seq for a in (answers[0], answers[2])) == [2, 3]
    with Ledger(tmp_path / "ledger.sqlite", readonly=True) as ledger:
        assert [e.event_id for e in ledger.entries()][0] == "r-0" and ledger.size == 3
    assert verify_ledger(tmp_path / "ledger.sqlite").ok
