"""What admission, the worker and recovery share, under one lock: the ledger fold, the queue of pending
requests, the samples still in the store, and the live model.

The fold is always the ledger's state up to what has been folded: entries are folded strictly in seq order,
under the lock, by `fold_through` (which first folds any entry appended meanwhile, by another process or by
another of this daemon's writers whose own fold has not run yet). Most appends hold the lock over their
commit (`RuntimeState.append`); the two hot ones do not: admission's group commits and the worker's
forget.applied are committed without it and folded once durable, so neither waits for the other's fsync
while validating. An event whose fold must change more than the fold (the worker's forget.applied swaps the
live model in the same hold of the lock) is registered with `when_folded`: whichever thread folds it first
runs that change, so no reader ever sees a batch folded as applied while the old model is live.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from forgetd.ledger import Entry

from forgetd.server.runtime.events import Requested
from forgetd.server.runtime.ledger_writer import LedgerWriter
from forgetd.server.runtime.retrain_event import RetrainFold
from forgetd.server.runtime.live import LiveModel

__all__ = ["Pending", "RuntimeState"]


@dataclass
class Pending:
    """An acknowledged request the worker has not applied yet."""

    requested: Requested  # its subjects name the samples; the worker maps them to the store's ids
    enqueued: float  # time.monotonic()


class RuntimeState:
    def __init__(self, ledger: LedgerWriter, subject_key: bytes) -> None:
        self.ledger = ledger
        self.subject_key = subject_key
        self.fold = RetrainFold()  # the ledger's events, model.retrained included
        self.lock = threading.Lock()  # guards everything below and the appends' order
        self.work = threading.Condition(self.lock)  # notified when the queue grows or shutdown begins
        # Notified whenever a waiter's answer may have changed: a batch applied, forgetting halted or resumed,
        # shutdown begun, the worker gone.
        self.settled = threading.Condition(self.lock)
        self.queue: deque[str] = deque()  # request ids in ledger order
        self.pending: dict[str, Pending] = {}
        # request id -> its sample ids as the request named them, while it is pending (GetForgetRequest shows
        # them to the token's holder). Never written down, and dropped once the request is applied: the daemon
        # keeps no raw id of a sample the model no longer knows. After a restart they are the store's spelling.
        self.raw_ids: dict[str, tuple[str, ...]] = {}
        # Subject ref -> the id as the store spells it, for the samples still in the store. The ledger names a
        # sample by the ref of its NFC form, so a client may spell an id in any Unicode normal form; the
        # engine is always handed the store's own spelling.
        self.remaining: dict[str, str] = {}
        self.stopping = False
        # Why forgetting is halted, in words, or None while the worker applies batches: set when a batch kept
        # failing past the retry window (the worker retries on and clears it) or left the store in a state
        # only a restart reconciles. Admission refuses new Forgets and waiters are answered with it meanwhile.
        self.halt_reason: str | None = None
        self.worker_gone = False  # no batch will be applied before a restart (shutdown, or a halt for good)
        self.drain_until = 0.0
        self.live: LiveModel  # set by recovery, then swapped by the worker
        # event id -> what folding its entry must also do (when_folded), run by whichever thread folds it first.
        self._on_fold: dict[str, Callable[[Entry], None]] = {}

    @property
    def halted(self) -> bool:
        return self.halt_reason is not None

    def append(self, event_type: str, payload: Mapping[str, Any], event_id: str) -> Entry:
        """Appends and folds in one step (caller holds the lock), so the fold is always the ledger's state."""
        entry = self.ledger.append(event_type, payload, event_id=event_id)
        self.fold_through(entry)
        return entry

    def fold_through(self, entry: Entry) -> None:
        """Folds every entry up to and including `entry` not folded yet, in seq order (caller holds the lock)."""
        if entry.seq > self.fold.size + 1:
            # Appended meanwhile: by another process (`forgetd verify --seal` records audit.verified events), or
            # by a writer of this daemon that commits without the lock and has not folded yet. Folded first, so
            # the fold stays the ledger's state.
            for missed in self.ledger.read(self.fold.size + 1, entry.seq - 1 - self.fold.size):
                self._fold(missed)
        if entry.seq > self.fold.size:  # else folded already, by whichever writer came first
            self._fold(entry)

    def when_folded(self, event_id: str, then: Callable[[Entry], None] | None) -> None:
        """`then(entry)` runs, under the lock, right after the entry of `event_id` is folded, whichever thread folds
        it; None forgets it (caller holds the lock)."""
        if then is None:
            self._on_fold.pop(event_id, None)
        else:
            self._on_fold[event_id] = then

    def _fold(self, entry: Entry) -> None:
        self.fold.add(entry.seq, entry.type, entry.leaf_hash, entry.payload)
        then = self._on_fold.pop(entry.event_id, None)
        if then is not None:
            then(entry)

    def enqueue(self, requested: Requested, ids: tuple[str, ...], enqueued: float | None = None) -> None:
        """Queue an acknowledged request for the worker (caller holds the lock)."""
        rid = requested.request_id
        self.pending[rid] = Pending(requested, time.monotonic() if enqueued is None else enqueued)
        self.raw_ids[rid] = ids
        self.queue.append(rid)
