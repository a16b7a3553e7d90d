"""The group committer in the ledger package: concurrent appends share commits, each caller answered with its
own durable entry; after close an append is refused with LedgerClosing and writes nothing; the daemon's
committer answers that refusal as NotServing (UNAVAILABLE, with the same message).

Batches are formed deterministically: a second SQLite connection holds the write lock, so the first commit
waits in flight while the others queue, and the test waits on the committer's counters, never on a clock.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from forgetd.ledger import Entry, GroupCommitter, Ledger, LedgerClosing, LedgerError, verify_ledger
from forgetd.ledger.group_commit import CommitStats
from forgetd.server.api.status import status_for
from forgetd.server.errors import NotServing
from forgetd.server.runtime.ledger_writer import LedgerWriter
from helpers import in_threads, write_lock_held

WAIT = 60.0  # seconds a condition may take on a loaded machine before the test fails instead of hanging
CLOSING = "the ledger is closing; send the request again once the server is back"


def test_queued_appends_share_one_commit_and_each_gets_its_own_entry(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    folded: list[tuple[int, str]] = []
    with Ledger(path) as ledger:
        committer: GroupCommitter[str] = GroupCommitter(
            ledger.append_many, lambda durable: folded.extend((e.seq, tag) for e, tag in durable))

        def append(i: int) -> Callable[[], Entry]:
            return lambda: committer.append(("forget.requested", {"i": i}, f"r-{i}"), f"tag-{i}")

        with write_lock_held(path):
            first, first_answer = in_threads([append(0)])
            assert committer.wait_until(lambda s: s.in_flight == 1, WAIT)
            rest, rest_answers = in_threads([append(i) for i in range(1, 6)])
            assert committer.wait_until(lambda s: s.queued == 5, WAIT)
            assert committer.stats().commits == 0  # nothing answered before it is durable
        for t in first + rest:
            t.join()
        answers = first_answer + rest_answers
        assert all(isinstance(a, Entry) for a in answers), answers
        assert [a.event_id for a in answers] == [f"r-{i}" for i in range(6)]
        assert sorted(a.seq for a in answers) == [1, 2, 3, 4, 5, 6]
        assert sorted(folded) == sorted((a.seq, f"tag-{i}") for i, a in enumerate(answers))
        assert committer.stats() == CommitStats(commits=2, entries=6, largest=5)
    assert verify_ledger(path).ok


def test_one_bad_event_fails_only_its_caller(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.append("forget.requested", {"i": 0}, event_id="taken")
        committer: GroupCommitter[None] = GroupCommitter(ledger.append_many, lambda durable: None)
        with write_lock_held(ledger.path):
            first, first_answer = in_threads([lambda: committer.append(("forget.requested", {"i": 1}, "a"), None)])
            assert committer.wait_until(lambda s: s.in_flight == 1, WAIT)
            rest, answers = in_threads([lambda: committer.append(("forget.requested", {"i": 9}, "taken"), None),
                                        lambda: committer.append(("forget.requested", {"i": 2}, "b"), None)])
            assert committer.wait_until(lambda s: s.queued == 2, WAIT)
        for t in first + rest:
            t.join()
        assert isinstance(first_answer[0], Entry)
        assert isinstance(answers[0], LedgerError) and "already recorded" in str(answers[0])
        assert isinstance(answers[1], Entry) and answers[1].event_id == "b"
        assert ledger.size == 3


def test_after_close_an_append_is_refused_with_ledger_closing_and_writes_nothing(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        committer: GroupCommitter[None] = GroupCommitter(ledger.append_many, lambda durable: None)
        committer.append(("forget.requested", {"i": 1}, "a"), None)
        committer.close()
        assert committer.stats().closing
        with pytest.raises(LedgerClosing, match="closing"):
            committer.append(("forget.requested", {"i": 2}, "b"), None)
        assert ledger.size == 1


def test_the_daemons_committer_answers_a_closing_ledger_as_not_serving_unavailable(tmp_path: Path) -> None:
    writer = LedgerWriter(tmp_path / "ledger.sqlite", tmp_path / "head.key")
    committer = writer.grouped(lambda durable: None)
    entry = committer.append(("forget.requested", {"i": 1}, "a"), None)
    assert entry.seq == 1
    writer.close()
    with pytest.raises(NotServing) as refused:
        committer.append(("forget.requested", {"i": 2}, "b"), None)
    assert str(refused.value) == CLOSING  # the message clients saw before the committer moved
    assert status_for(refused.value) == (grpc.StatusCode.UNAVAILABLE, CLOSING)
    assert not isinstance(LedgerClosing(CLOSING), NotServing)  # the ledger's error; the server translates it
    with Ledger(tmp_path / "ledger.sqlite", readonly=True) as ledger:
        assert ledger.size == 1


def test_max_batch_is_checked() -> None:
    with pytest.raises(ValueError, match="max_batch must be at least 1"):
        GroupCommitter(lambda events: [], lambda durable: None, max_batch=0)
