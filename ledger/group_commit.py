"""Group commit: appends that arrive while a commit is in flight share the next one.

    committer = GroupCommitter(commit=ledger.append_many, on_durable=fold)
    entry = committer.append(("forget.requested", payload, event_id), tag)   # blocks until durable

Leader/follower: a caller that finds no commit in flight leads, on its own thread (alone, a caller pays one
commit and no thread handoff, as a direct append did). The leader takes everything queued (up to `max_batch`
events, its own first), commits it in one transaction (one fsync: the ledger's `append_many`, chained in
order, the bytes N single appends would write), hands the entries to `on_durable` in seq order, and only then
answers each caller in the batch with its own entry. Callers arriving while that commit is in flight queue;
when it ends, the oldest of them leads the next commit for them all, so under load one fsync acknowledges
many appends. Durability is the single append's: nothing is answered before its commit is on disk.

A commit that fails (SQLite refused it: a read-only file, a full disk, a trigger's RAISE) wrote nothing, so
exactly the callers in it get the error and the next batch proceeds. A batch refused for one event's sake
(a LedgerError raised before anything is written: an event id reused with another payload, a payload the
ledger cannot hold) is committed again one event at a time, so only that caller sees its error. Batches are
committed and handed to `on_durable` strictly one after another: ledger order, fold order and queue order are
one order. `close` refuses new appends (LedgerClosing) and returns once the queue is drained.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import LedgerClosing, LedgerError
from .model import Entry

__all__ = ["MAX_GROUP", "CommitStats", "Event", "GroupCommitter"]

log = logging.getLogger("forgetd.ledger")

# Events per commit: a bound on one transaction's size and on how long the last of them waits, far above
# what one fsync's worth of arrivals is at any realistic rate.
MAX_GROUP = 256

Event = tuple[str, Mapping[str, Any], str]  # (event type, payload, event id)
T = TypeVar("T")


@dataclass(frozen=True)
class CommitStats:
    """What the committer has done: commits (successful transactions), the entries they wrote, the largest."""

    commits: int = 0
    entries: int = 0
    largest: int = 0
    failed: int = 0  # commits SQLite refused (their callers got the error)
    queued: int = 0  # waiting for the next commit now
    in_flight: int = 0  # in the commit under way now
    closing: bool = False  # close was called: new appends are refused, the queue drains


class _Waiting(Generic[T]):
    """One caller in the queue. It sleeps on its own lock, released exactly once: when a leader has answered it,
    or when it is named to lead the next commit (no caller is woken for a change that is not its own)."""

    __slots__ = ("event", "tag", "entry", "error", "sleep", "wake")

    def __init__(self, event: Event, tag: T) -> None:
        self.event = event
        self.tag = tag
        self.entry: Entry | None = None
        self.error: BaseException | None = None
        wake = threading.Lock()
        wake.acquire()
        self.sleep = wake.acquire  # bound once: the hand-off is two C calls, no Python frame
        self.wake = wake.release

    def result(self) -> Entry:
        if self.error is not None:
            raise self.error
        assert self.entry is not None  # answered before it is woken, or it led the commit that answered it
        return self.entry


class GroupCommitter(Generic[T]):
    """Leader/follower group commit in front of a ledger's batched append (see the module docstring)."""

    def __init__(self, commit: Callable[[Sequence[Event]], list[Entry]],
                 on_durable: Callable[[Sequence[tuple[Entry, T]]], None], *, max_batch: int = MAX_GROUP) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._commit = commit
        self._on_durable = on_durable
        self._max_batch = max_batch
        self._queue: deque[_Waiting[T]] = deque()
        self._cond = threading.Condition(threading.RLock())  # guards everything below
        self._closing = False
        self._leader: _Waiting[T] | None = None  # the caller committing now, or named to commit next
        # Counters as plain ints (a CommitStats is built only when asked for); the condition is notified on a
        # change only while someone waits on it (wait_until, close), so an append pays no notify of its own.
        self._commits = self._entries = self._largest = self._failed = self._in_flight = 0
        self._watchers = 0

    def append(self, event: Event, tag: T) -> Entry:
        """Queues `event` for the next commit and blocks until it is durable: its entry (the one already
        recorded when its event id is), or the error its commit failed with. `tag` goes to `on_durable` beside
        the entry. LedgerClosing, with nothing written, once `close` was called."""
        me: _Waiting[T] = _Waiting(event, tag)
        with self._cond:
            if self._closing:
                raise LedgerClosing("the ledger is closing; send the request again once the server is back")
            self._queue.append(me)
            leads = self._leader is None
            if leads:
                self._leader = me  # no commit in flight: this caller commits, on its own thread
            self._changed()
        if not leads:
            me.sleep()
            if me.entry is not None or me.error is not None:
                return me.result()  # a leader committed it
        with self._cond:  # leading: `me` is first in the queue, so it is in `batch`
            queue = self._queue
            batch = [queue.popleft() for _ in range(min(self._max_batch, len(queue)))]
            self._in_flight = len(batch)
            self._changed()
        following: _Waiting[T] | None = None
        try:
            self._commit_batch(batch)
        except BaseException as exc:  # noqa: BLE001 - never leave a caller asleep; the leader hears it too
            for w in batch:
                if w.entry is None and w.error is None:
                    w.error = exc
            raise
        finally:
            with self._cond:
                # Arrivals during this commit go in the next one, led by the oldest of them.
                self._leader = following = self._queue[0] if self._queue else None
                self._in_flight = 0
                self._changed()
            # The next leader first: its commit (an fsync, without the GIL) runs while the callers just
            # answered wake up and return, rather than after them.
            if following is not None:
                following.wake()
            for w in batch:
                if w is not me:
                    w.wake()
        return me.result()

    def stats(self) -> CommitStats:
        with self._cond:
            return CommitStats(commits=self._commits, entries=self._entries, largest=self._largest,
                               failed=self._failed, queued=len(self._queue), in_flight=self._in_flight,
                               closing=self._closing)

    def wait_until(self, ready: Callable[[CommitStats], bool], timeout: float | None = None) -> bool:
        """Blocks until `ready(stats)` holds (tests and benchmarks watch commits form); False on timeout."""
        with self._cond:
            self._watchers += 1
            try:
                return self._cond.wait_for(lambda: ready(self.stats()), timeout)
            finally:
                self._watchers -= 1

    def close(self) -> None:
        """Refuses new appends and returns once everything queued is committed and answered."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            self._watchers += 1
            try:
                self._cond.wait_for(lambda: self._leader is None)
            finally:
                self._watchers -= 1

    def _commit_batch(self, batch: list[_Waiting[T]]) -> None:
        """Commits `batch`, hands what became durable to on_durable, then records every caller's answer (the
        leader wakes them once the next commit has a leader)."""
        try:
            entries: list[Entry | BaseException] = list(self._commit([w.event for w in batch]))
            self._committed(len(batch))
        except LedgerError as exc:
            # Refused before anything was written; with one event that is its answer, with more find whose.
            entries = [exc] if len(batch) == 1 else [self._commit_one(w.event) for w in batch]
        except BaseException as exc:  # noqa: BLE001 - SQLite refused the commit: exactly these callers hear it
            log.warning("a ledger commit of %d entries failed: %s", len(batch), exc)
            with self._cond:
                self._failed += 1
                self._changed()
            entries = [exc] * len(batch)
        durable = [(entry, w.tag) for entry, w in zip(entries, batch) if isinstance(entry, Entry)]
        if durable:
            try:
                self._on_durable(durable)
            except BaseException as exc:  # noqa: BLE001 - durable but not folded: never acknowledged as if it were
                log.exception("folding %d committed ledger entries failed", len(durable))
                entries = [exc if isinstance(entry, Entry) else entry for entry in entries]
        for entry, w in zip(entries, batch):
            if isinstance(entry, Entry):
                w.entry = entry
            else:
                w.error = entry

    def _commit_one(self, event: Event) -> Entry | BaseException:
        try:
            entry = self._commit([event])[0]
        except BaseException as exc:  # noqa: BLE001 - this caller's answer
            return exc
        self._committed(1)
        return entry

    def _committed(self, entries: int) -> None:
        with self._cond:
            self._commits += 1
            self._entries += entries
            self._largest = max(self._largest, entries)
            self._changed()

    def _changed(self) -> None:
        """Called with the condition held after any counter or the queue changed."""
        if self._watchers:
            self._cond.notify_all()
