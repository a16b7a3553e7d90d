"""The worker's forget.applied is committed without the runtime lock: while its append waits mid-commit, Forgets
are still validated and committed and requests still answered; and whichever thread folds that entry first
swaps its batch in, so no reader sees a batch folded as applied while the old model is live.

The worker is held mid-append without timing: a trigger refuses its first forget.applied, and while it backs
off a second SQLite connection takes the ledger's write lock (dropping the trigger inside it), so the retry
waits in flight; the test waits on the committers' own counters, never on a clock.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from forgetd.ledger import Entry, verify_ledger
from forgetd.server.runtime.ledger_writer import LedgerWriter
from forgetd.server.runtime.state import RuntimeState

from helpers import RunningDaemon, write_lock_held

WAIT = 60.0  # seconds a condition may take on a loaded machine before the test fails instead of hanging


def test_a_forget_is_admitted_while_the_workers_append_waits_mid_commit(daemon: RunningDaemon) -> None:
    runtime = daemon.runtime
    ledger_path = daemon.store / "ledger.sqlite"
    admission, worker = runtime.ledger.committers  # admission's committer, then the worker's
    conn = sqlite3.connect(ledger_path, isolation_level=None)
    conn.execute("CREATE TRIGGER hold BEFORE INSERT ON entries WHEN NEW.type = 'forget.applied' "
                 "BEGIN SELECT RAISE(ABORT, 'held for the test'); END")
    conn.close()

    first = runtime.submit(["synthetic:220"], "sisa", "first")  # durable; its forget.applied is refused
    assert worker.wait_until(lambda s: s.failed >= 1, WAIT), worker.stats()
    answers: list[Any] = []
    with write_lock_held(ledger_path, "DROP TRIGGER hold"):
        assert worker.wait_until(lambda s: s.in_flight == 1, WAIT), worker.stats()  # the retry waits for the lock
        second = threading.Thread(target=lambda: answers.append(runtime.submit(["synthetic:221"], "sisa", "second")))
        second.start()
        # Validated and in its commit while the worker is mid-append: the runtime lock was free all along.
        assert admission.wait_until(lambda s: s.in_flight == 1, WAIT), admission.stats()
        assert runtime.request("first").applied is None and worker.stats().in_flight == 1
    second.join(WAIT)
    assert not second.is_alive() and answers[0].requested.request_id == "second"
    assert answers[0].requested.seq > first.requested.seq

    for rid in ("first", "second"):
        view = runtime.wait_applied(rid, lambda: WAIT, lambda: True)
        assert view.applied is not None, rid
        assert runtime.live.version >= view.applied.model.version  # applied means live
    assert verify_ledger(ledger_path).ok


def test_an_entry_folded_by_another_thread_runs_what_its_writer_asked(tmp_path: Path) -> None:
    writer = LedgerWriter(tmp_path / "ledger.sqlite", tmp_path / "head.key")
    state = RuntimeState(writer, b"k" * 32)
    ran: list[tuple[int, int]] = []  # (the entry's seq, the fold's size when it ran)
    try:
        with state.lock:
            state.when_folded("held", lambda entry: ran.append((entry.seq, state.fold.size)))
            state.when_folded("dropped", lambda entry: ran.append((-1, -1)))
            state.when_folded("dropped", None)
        # Committed by one writer without the lock, as the worker does, and not folded yet by it...
        held = writer.append("test.held", {"n": 1}, event_id="held")
        writer.append("test.dropped", {"n": 2}, event_id="dropped")
        with state.lock:  # ...then another append folds it first, in seq order, and runs what was asked
            later = state.append("test.later", {"n": 3}, "later")
            state.fold_through(held)  # the writer's own fold, afterwards: nothing runs twice
        assert ran == [(held.seq, held.seq)] and later.seq == held.seq + 2 and state.fold.size == later.seq
        assert isinstance(held, Entry)
    finally:
        writer.close()
