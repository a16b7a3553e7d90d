"""The single unlearning worker: take the next batch of pending requests, apply it, record it, publish it.

Why one worker: the engine mutates one store, and every forget.applied must describe exactly one step from
the previous live version to the next, in ledger order. The worker drains what is pending, coalesces
consecutive requests that asked for the same strategy into one engine call, appends `forget.applied`, and
only then swaps the live model (one reference assignment; Predict reads the reference once per call).

The engine publishes each version together with its batch tag (store/batch_tag.py), which holds what this
batch's forget.applied says; if the daemon dies before the append, recovery writes it from there.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from forgetd.server.observe import Metrics
from forgetd.server.runtime import events
from forgetd.server.runtime.events import ModelState, SubjectOutcome
from forgetd.server.runtime.live import LiveModel
from forgetd.server.runtime.predictor import Predict, predictor_for
from forgetd.server.runtime.state import Pending, RuntimeState
from forgetd.server.store.batch_tag import BatchTag
from forgetd.server.vocabulary import AUTO

if TYPE_CHECKING:
    from forgetd.server.engine.engine import Engine
    from forgetd.server.engine.model import ModelSnapshot

__all__ = ["Worker", "subject_outcomes"]

log = logging.getLogger("forgetd.server")


def subject_outcomes(tag: BatchTag) -> list[SubjectOutcome]:
    """The forget.applied subjects a batch tag names (the tag holds them in the ledger's spelling)."""
    return [SubjectOutcome(s.subject_ref, s.shard, s.slice, s.region, s.strategy, s.guarantee) for s in tag.subjects]


@dataclass(frozen=True)
class _Step:
    """A batch applied (or found to change nothing), not yet recorded: the version it leads to and its entry."""

    snapshot: ModelSnapshot
    predict: Predict
    model: ModelState
    payload: dict[str, Any]  # its forget.applied


class Worker:
    """The thread that applies the queue, one batch at a time (module docstring)."""


    def __init__(self, state: RuntimeState, engine: Engine, max_batch_requests: int, metrics: Metrics) -> None:
        self._state = state
        self._metrics = metrics
        self._engine = engine
        self._max_batch = max_batch_requests
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="forgetd-unlearner", daemon=True)
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        from forgetd.server.engine.training import deterministic

        # torch imports its compiler stack the first time deterministic mode is switched on (seconds on a
        # small CPU); pay that here, while Predict is already served, not inside the first Forget.
        with deterministic():
            pass
        state = self._state
        while True:
            with state.lock:
                while not state.queue and not state.stopping:
                    state.work.wait()
                if state.stopping and (not state.queue or time.monotonic() > state.drain_until):
                    return
                batch = self._take_batch()
            try:
                self._apply(batch)
            except Exception:  # noqa: BLE001 - logged; the requests stay durable and pending
                # The store and the ledger may now disagree (the engine may have published a version whose
                # forget.applied is missing). Applying more would compound that; restart recovery resolves it
                # from the store's tag, so the worker halts and admission answers UNAVAILABLE until then.
                log.exception("applying forget batch %s failed; the worker has stopped: restart the daemon to "
                              "apply the acknowledged requests", [p.requested.request_id for p in batch])
                with state.lock:
                    state.halted = True
                    for p in state.pending.values():
                        p.failed = True
                        p.done.set()
                return

    def _take_batch(self) -> list[Pending]:
        """The oldest pending request and every following one with the same strategy (ledger order kept)."""
        state = self._state
        first = state.pending[state.queue.popleft()]
        batch = [first]
        while (state.queue and len(batch) < self._max_batch
               and state.pending[state.queue[0]].requested.strategy == first.requested.strategy):
            batch.append(state.pending[state.queue.popleft()])
        return batch

    def _apply(self, batch: list[Pending]) -> None:
        state = self._state
        strategy = batch[0].requested.strategy
        rids = [p.requested.request_id for p in batch]
        with state.lock:
            ids: list[str] = []
            taken: set[str] = set()  # refs of `ids`
            for p in batch:
                for ref in p.requested.subjects:
                    if ref in state.remaining and ref not in taken:
                        ids.append(state.remaining[ref])
                        taken.add(ref)
        queued = int((time.monotonic() - min(p.enqueued for p in batch)) * 1e6)
        started = time.perf_counter()
        if ids:
            step = self._forget(ids, strategy, rids, queued)
        else:  # every sample was forgotten by an earlier batch while these waited: nothing to change
            step = self._unchanged(strategy, rids, queued)
        with state.lock:
            entry = state.append(events.FORGET_APPLIED, step.payload, events.applied_event_id(rids))
            for ref in taken:
                del state.remaining[ref]
            state.live = LiveModel.of(step.snapshot, step.predict, step.model, entry.seq, len(state.fold.forgotten))
            for p in batch:
                del state.pending[p.requested.request_id]
                p.done.set()
        elapsed = time.perf_counter() - started
        self._metrics.batch_applied(step.payload, len(batch), queued / 1e6 + elapsed)
        log.info("forget batch of %d request(s), %d sample(s), %s: version %d at seq %d in %.1f ms", len(batch),
                 len(ids), strategy, step.model.version, entry.seq, elapsed * 1e3)

    def _forget(self, ids: list[str], strategy: str, rids: list[str], queued: int) -> _Step:
        """The engine's new version of the store without `ids`, and its forget.applied."""
        report = self._engine.forget(ids, strategy, request_ids=rids)
        assert report.tag is not None  # the engine tags every forget that names its requests
        model = ModelState(report.version, report.digest, report.shard_digests)
        payload = events.applied_payload(
            request_ids=rids,
            strategy=strategy,
            resolved_strategy=report.strategy,
            subjects=subject_outcomes(report.tag),
            model=model,
            residue_steps=report.residue_steps,
            samples_read=report.samples_read,
            apply_micros=int(report.seconds * 1e6),
            queued_micros=queued,
            device=self._engine.device,
        )
        # The forward is prepared before the swap, so the swap under the lock is one assignment.
        return _Step(report.snapshot, predictor_for(report.snapshot), model, payload)

    def _unchanged(self, strategy: str, rids: list[str], queued: int) -> _Step:
        live = self._state.live
        model = ModelState(live.version, live.digest, live.shard_digests)
        resolved = self._engine.config.default_strategy if strategy == AUTO else strategy
        payload = events.applied_payload(
            request_ids=rids, strategy=strategy, resolved_strategy=resolved, subjects=[], model=model,
            residue_steps=0, samples_read=0, apply_micros=0, queued_micros=queued,
        )  # fmt: skip
        return _Step(live.snapshot, live.predict, model, payload)
