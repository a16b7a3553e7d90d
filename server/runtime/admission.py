"""Admission of Forget requests: validate against the live data, make durable, queue for the worker.

Admission threads only validate and append `forget.requested` (durable before the answer); they never touch
the engine. A NOT_FOUND or a conflict writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from forgetd.ledger import subject_ref

from forgetd.server.errors import InvalidRequest, NotServing, RequestIdConflict, RequestNotFound, UnknownSample
from forgetd.server.runtime import events
from forgetd.server.runtime.events import Applied, Requested, SubjectOutcome
from forgetd.server.observe import Metrics
from forgetd.server.runtime.state import RuntimeState

__all__ = ["RequestView", "Admission"]

log = logging.getLogger("forgetd.server")


@dataclass(frozen=True)
class RequestView:
    """A Forget request as it stands: its ledger entries, and per requested sample what forgot it."""

    requested: Requested
    applied: Applied | None
    # (sample id as requested, or "" when only its ref survives a restart; subject ref; (batch, outcome) or None)
    samples: tuple[tuple[str, str, tuple[Applied, SubjectOutcome] | None], ...]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Admission:
    def __init__(self, state: RuntimeState, metrics: Metrics) -> None:
        self._state = state
        self._metrics = metrics

    def submit(self, sample_ids: Sequence[str], strategy: str, request_id: str) -> RequestView:
        """Validates a Forget against the live data and makes it durable; NOT_FOUND or a conflict writes nothing."""
        state = self._state
        refs = [subject_ref(state.subject_key, i) for i in sample_ids]
        if len(set(refs)) != len(refs):
            raise InvalidRequest("two sample ids are the same id after Unicode NFC normalisation; name it once")
        with state.lock:
            if state.stopping:
                raise NotServing("the server is shutting down; send the Forget again once it is back")
            known = state.fold.requests.get(request_id)
            if known is not None:
                if known.subjects != tuple(refs) or known.strategy != strategy:
                    raise RequestIdConflict(f"request_id {request_id!r} was already used (seq {known.seq}) for "
                                            "other samples or another strategy; use a new request_id")
                return self._view(request_id)
            if state.halted:
                raise NotServing("forgetting is halted after an internal error; the server must be restarted "
                                 "(acknowledged requests are durable and will be applied)")
            unknown = [i for i, r in zip(sample_ids, refs)
                       if r not in state.remaining and r not in state.fold.forgotten]
            if unknown:
                raise UnknownSample(unknown)
            payload = events.requested_payload(request_id, refs, strategy, _now())
            entry = state.append(events.FORGET_REQUESTED, payload, events.requested_event_id(request_id))
            state.enqueue(state.fold.requests[request_id], tuple(sample_ids))
            state.work.notify()
            self._metrics.request_acknowledged()
            log.debug("forget %s requested at seq %d (%d ids, %s)", request_id, entry.seq, len(sample_ids), strategy)
            return self._view(request_id)

    def request(self, request_id: str) -> RequestView:
        with self._state.lock:
            if request_id not in self._state.fold.requests:
                raise RequestNotFound(f"no Forget with request_id {request_id!r} is in the ledger")
            return self._view(request_id)

    def wait_applied(self, request_id: str, time_remaining: Callable[[], float | None],
                     is_active: Callable[[], bool]) -> RequestView:
        """Blocks until the request is applied (or the caller goes away); NotServing if shutdown comes first or
        the worker halts (the request stays durable and pending either way)."""
        with self._state.lock:
            pending = self._state.pending.get(request_id)
        if pending is not None:
            while not pending.done.is_set() and is_active():
                remaining = time_remaining()
                pending.done.wait(1.0 if remaining is None else max(0.0, min(1.0, remaining)))
            if pending.failed:
                raise NotServing(f"applying request {request_id!r} failed and forgetting is halted; the server must "
                                 f"be restarted: the request is durable at seq {pending.requested.seq} and will "
                                 "be applied then (the server's log has the error)")
        view = self.request(request_id)
        if view.applied is None and (pending is None or pending.done.is_set()):
            raise NotServing(f"the server is shutting down before request {request_id!r} was applied; it is "
                             f"durable at seq {view.requested.seq} and will be applied when the server restarts")
        return view

    def _view(self, request_id: str) -> RequestView:
        """The request as it stands (caller holds the lock)."""
        fold = self._state.fold
        req = fold.requests[request_id]
        ids = self._state.raw_ids.get(request_id) or ("",) * len(req.subjects)
        return RequestView(
            requested=req,
            applied=fold.applied_by_request.get(request_id),
            samples=tuple((i, ref, fold.forgotten.get(ref)) for i, ref in zip(ids, req.subjects)),
        )
