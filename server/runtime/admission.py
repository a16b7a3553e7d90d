"""Admission of Forget requests: validate against the live data, make durable, queue for the worker.

Admission threads only validate and append `forget.requested` (durable before the answer); they never touch
the engine. A NOT_FOUND or a conflict writes nothing. The append goes through the ledger writer's group
committer (group_commit.py): validation holds the runtime lock, the commit does not, so Forgets arriving while
one commit is in flight are validated meanwhile and share the next commit's fsync. The committer folds each
commit's entries and queues their requests under the lock, in seq order, before any caller is answered.

Every identifier the API takes (request ids, sample ids, the HTTP front's idempotency keys, which are request
ids) is put in one form here, by `canonical_id`, before anything is looked up or written: Unicode NFC, the
form the ledger's canonical JSON gives every string. Two spellings of one id are then one id on every front,
and a request id is never written in one form and looked up in another.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from forgetd.ledger import Entry, subject_ref

from forgetd.server.errors import InvalidRequest, NotServing, RequestIdConflict, RequestNotFound, UnknownSample
from forgetd.server.errors import shown_id
from forgetd.server.runtime import events
from forgetd.server.runtime.events import Applied, Requested, SubjectOutcome
from forgetd.server.observe import Metrics
from forgetd.server.runtime.state import RuntimeState
from forgetd.server.vocabulary import MLP, check_supported, weakest_guarantee

__all__ = ["MAX_REQUEST_ID_CHARS", "MAX_SAMPLE_ID_CHARS", "RequestView", "Admission", "canonical_id"]

log = logging.getLogger("forgetd.server")

MAX_REQUEST_ID_CHARS = 128
MAX_SAMPLE_ID_CHARS = 1024


def canonical_id(value: str, field: str, max_chars: int, *, printable: bool = False) -> str:
    """`value` in Unicode NFC; InvalidRequest naming `field` when it is empty, longer than `max_chars`, not valid
    Unicode (a lone surrogate) or, with `printable`, holds control characters."""
    text = unicodedata.normalize("NFC", value)
    if not text:
        raise InvalidRequest(f"{field} is empty")
    if len(text) > max_chars:
        raise InvalidRequest(f"{field} {shown_id(text)} is longer than {max_chars} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"{field} {shown_id(text)} is not valid Unicode (it holds a lone surrogate)") from None
    if printable and not text.isprintable():
        raise InvalidRequest(f"{field} {shown_id(text)} holds control characters; use printable characters "
                             "(a UUID4 is recommended)")
    return text


@dataclass(frozen=True)
class RequestView:
    """A Forget request as it stands: its ledger entries, and per requested sample what forgot it."""

    requested: Requested
    applied: Applied | None
    # (sample id, or "" where it is not shown; subject ref; (batch, outcome) or None while pending), in request
    # order. The ids appear in the answer to the Forget that sent them and, while the request is pending, to
    # whoever may see them (Admission.request); the daemon drops them once the request is applied.
    samples: tuple[tuple[str, str, tuple[Applied, SubjectOutcome] | None], ...]

    @property
    def guarantee(self) -> str | None:
        """The weakest guarantee its samples got (EXACT only if every one was forgotten exactly), by this
        request's batch or by an earlier one; None while pending."""
        if self.applied is None:
            return None
        outcomes = [forgotten for _, _, forgotten in self.samples]
        if any(o is None for o in outcomes):  # not reached: an applied request's samples are all forgotten
            return self.applied.guarantee
        return weakest_guarantee(o[1].guarantee for o in outcomes if o is not None)

    @property
    def strategy(self) -> str | None:
        """The (resolved) strategy of the batches that removed the requested samples when they share one; None
        while pending, or when batches of different strategies removed them (each sample says its own)."""
        if self.applied is None:
            return None
        used = {o[0].resolved_strategy for _, _, o in self.samples if o is not None} or {self.applied.resolved_strategy}
        return used.pop() if len(used) == 1 else None

    def named(self, ids: Sequence[str]) -> RequestView:
        """This view with `ids` (the request's own, in its order) as the sample ids shown."""
        return dataclasses.replace(self, samples=tuple((i, ref, o) for i, (_, ref, o) in zip(ids, self.samples)))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class _Admitting:
    """A request validated and on its way into the ledger: what a second call with its request id compares
    against, and what the fold needs to queue it once durable."""

    request_id: str
    ids: tuple[str, ...]
    durable: threading.Event  # set once its append has returned or failed


class Admission:
    def __init__(self, state: RuntimeState, metrics: Metrics, model: str = MLP) -> None:
        self._state = state
        self._metrics = metrics
        self._model = model  # the store's model family: which strategies it applies (vocabulary.check_supported)
        # Request ids validated but not yet durable (guarded by state.lock): a second call with one of them waits
        # for the first, then answers as it would have after it (the first's view, a conflict, or its own try).
        self._admitting: dict[str, _Admitting] = {}
        self._committer = state.ledger.grouped(self._fold_durable)

    def submit(self, sample_ids: Sequence[str], strategy: str, request_id: str) -> RequestView:
        """Validates a Forget against the live data and makes it durable; NOT_FOUND or a conflict writes nothing.
        The view names the samples by the ids given (in NFC)."""
        state = self._state
        request_id = canonical_id(request_id, "request_id", MAX_REQUEST_ID_CHARS, printable=True)
        ids = tuple(canonical_id(i, "sample id", MAX_SAMPLE_ID_CHARS) for i in sample_ids)
        refs = [subject_ref(state.subject_key, i) for i in ids]
        if len(set(refs)) != len(refs):
            raise InvalidRequest("two sample ids are the same id after Unicode NFC normalisation; name it once")
        while True:
            with state.lock:
                answer = self._admit(request_id, ids, refs, strategy)
            if isinstance(answer, RequestView):
                return answer
            if isinstance(answer, threading.Event):
                answer.wait()  # another call is admitting this request id: answer as if after it
                continue
            return self._append(answer, refs, strategy)

    def _admit(self, request_id: str, ids: tuple[str, ...], refs: list[str],
               strategy: str) -> RequestView | _Admitting | threading.Event:
        """Under the lock: the answer when the request id is known, the call to wait for when it is being
        admitted, else this call's reservation once the request is valid (nothing written yet)."""
        state = self._state
        if state.stopping:
            raise NotServing("the server is shutting down; send the Forget again once it is back")
        known = state.fold.requests.get(request_id)
        if known is not None:
            if known.subjects != tuple(refs) or known.strategy != strategy:
                raise RequestIdConflict(f"request_id {shown_id(request_id)} was already used (seq {known.seq}) "
                                        "for other samples or another strategy; use a new request_id")
            return self._view(request_id, False).named(ids)
        if request_id in self._admitting:
            return self._admitting[request_id].durable
        if state.halt_reason is not None:
            raise NotServing(f"forgetting is halted: {state.halt_reason}")
        check_supported(strategy, self._model)  # before anything is written: the worker could never apply it
        unknown = [i for i, r in zip(ids, refs) if r not in state.remaining and r not in state.fold.forgotten]
        if unknown:
            raise UnknownSample(unknown, example=next(iter(state.remaining.values()), None))
        admitting = _Admitting(request_id, ids, threading.Event())
        self._admitting[request_id] = admitting
        return admitting

    def _append(self, admitting: _Admitting, refs: list[str], strategy: str) -> RequestView:
        """Appends `forget.requested` through the group committer (durable when it returns; the fold has queued
        it by then) and answers; a failed append writes nothing and frees the request id."""
        request_id = admitting.request_id
        payload = events.requested_payload(request_id, refs, strategy, _now())
        event = (events.FORGET_REQUESTED, payload, events.requested_event_id(request_id))
        try:
            entry = self._committer.append(event, admitting)
        except BaseException:
            with self._state.lock:
                del self._admitting[request_id]
            admitting.durable.set()
            raise
        with self._state.lock:  # one hold: the reservation freed and the view read
            del self._admitting[request_id]
            view = self._view(request_id, False).named(admitting.ids)
        admitting.durable.set()
        self._metrics.request_acknowledged()
        log.debug("forget %s requested at seq %d (%d ids, %s)", request_id, entry.seq, len(admitting.ids), strategy)
        return view

    def _fold_durable(self, durable: Sequence[tuple[Entry, _Admitting]]) -> None:
        """On the committer's thread, after a commit and before its callers are answered: fold its entries (and
        first any appended meanwhile, as RuntimeState.fold_through does) and queue its requests, in seq order."""
        state = self._state
        with state.lock:
            fold = state.fold
            for entry, admitting in durable:
                state.fold_through(entry)
                rid = admitting.request_id
                if rid not in state.pending and rid not in fold.applied_by_request:
                    state.enqueue(fold.requests[rid], admitting.ids)
            state.work.notify()
        self._metrics.ledger_commit(len(durable))

    def request(self, request_id: str, *, reveal_ids: bool = False) -> RequestView:
        """The request as it stands; with `reveal_ids` (a caller allowed to see them) the sample ids it named
        while it is pending, else "" for each."""
        request_id = self._known(request_id)
        with self._state.lock:
            return self._view(request_id, reveal_ids)

    def wait_applied(self, request_id: str, time_remaining: Callable[[], float | None],
                     is_active: Callable[[], bool], *, reveal_ids: bool = False) -> RequestView:
        """Blocks until the request is applied, or the caller goes away or runs out of time (then the view as it
        stands). NotServing, with the reason, when forgetting halts or the server shuts down first; the request
        stays durable and pending either way."""
        state = self._state
        request_id = self._known(request_id)
        with state.lock:
            while True:
                view = self._view(request_id, reveal_ids)
                if view.applied is not None:
                    return view
                where = f"request {shown_id(request_id)} is durable at seq {view.requested.seq}"
                if state.halt_reason is not None:
                    raise NotServing(f"forgetting is halted: {state.halt_reason} ({where} and will be applied once "
                                     "forgetting resumes)")
                if state.worker_gone or request_id not in state.pending:
                    raise NotServing(f"the server is shutting down before request {shown_id(request_id)} was "
                                     f"applied; it is durable at seq {view.requested.seq} and will be applied "
                                     "when the server restarts")
                remaining = time_remaining()
                if not is_active() or (remaining is not None and remaining <= 0):
                    return view
                state.settled.wait(1.0 if remaining is None else min(1.0, remaining))

    def _known(self, request_id: str) -> str:
        """The canonical form of a request id the ledger holds; RequestNotFound otherwise."""
        request_id = canonical_id(request_id, "request_id", MAX_REQUEST_ID_CHARS, printable=True)
        with self._state.lock:
            if request_id not in self._state.fold.requests:
                raise RequestNotFound(f"no Forget with request_id {shown_id(request_id)} is in the ledger")
        return request_id

    def _view(self, request_id: str, reveal_ids: bool) -> RequestView:
        """The request as it stands (caller holds the lock)."""
        fold = self._state.fold
        req = fold.requests[request_id]
        held = self._state.raw_ids.get(request_id) if reveal_ids else None
        ids = held or ("",) * len(req.subjects)
        return RequestView(
            requested=req,
            applied=fold.applied_by_request.get(request_id),
            samples=tuple((i, ref, fold.forgotten.get(ref)) for i, ref in zip(ids, req.subjects)),
        )
