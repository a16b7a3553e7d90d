"""The single unlearning worker: take the next batch of pending requests, apply it, record it, publish it.

Why one worker: the engine mutates one store, and every forget.applied must describe exactly one step from
the previous live version to the next, in ledger order. The worker drains what is pending, coalesces
consecutive requests that asked for the same strategy into one engine call, appends `forget.applied` (without
the runtime lock: Forgets are validated and committed meanwhile), and only then swaps the live model (one
reference assignment; Predict reads the reference once per call).

The engine publishes each version together with its batch tag (store/batch_tag.py), which holds what this
batch's forget.applied says; if the daemon dies before the append, recovery writes it from there.

A batch that fails is retried, with backoff, from where it stands: a failure before the engine's commit
(a parameter file that could not be written) left the old version whole, so the batch is applied again; a
failure after it (the rows' erasure, while another reader holds the row store) left the new version
published with this batch's tag, so the erasure is finished and forget.applied written from the tag, as
recovery would. Past `retry_seconds` the failure counts as lasting: forgetting is halted with the reason
(health says the Unlearning service is NOT_SERVING, Forget answers UNAVAILABLE) and the worker keeps
retrying, resuming by itself once the cause is gone. Any other state (the engine neither before nor
cleanly after this batch) is left for a restart's recovery to reconcile.

At shutdown the worker finishes the batch in progress and starts another only if the measured apply times
(pacing.py) say it finishes before the grace runs out; what it leaves stays durable for the restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from forgetd.ledger import Entry

from forgetd.server.errors import ForgetdError, shown_ids
from forgetd.server.observe import Metrics
from forgetd.server.runtime import events
from forgetd.server.runtime.applied import applied_from_tag, subject_outcomes
from forgetd.server.runtime.events import ModelState
from forgetd.server.runtime.group_commit import GroupCommitter
from forgetd.server.runtime.live import LiveModel
from forgetd.server.runtime.pacing import ApplyTimes, Backoff
from forgetd.server.runtime.predictor import Predict, predictor_for
from forgetd.server.runtime.retraining import RetrainDue, RetrainJob, retrain_live
from forgetd.server.runtime.state import Pending, RuntimeState
from forgetd.server.vocabulary import AUTO, RETRAIN

if TYPE_CHECKING:
    from forgetd.server.engine.engine import Engine
    from forgetd.server.engine.model import ModelSnapshot

__all__ = ["Worker", "subject_outcomes", "applied_from_tag", "RETRY_CAP_SECONDS"]

log = logging.getLogger("forgetd.server")

RETRY_CAP_SECONDS = 30.0  # the longest wait between two tries of a failing batch


def _cause(exc: BaseException) -> str:
    """A failure in words a GetModel caller may read: our own errors' messages, an OSError's description; never
    another library's message or a stack (those go to the log)."""
    if isinstance(exc, ForgetdError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return f"{type(exc).__name__} (the server's log has the details)"


@dataclass(frozen=True)
class _Batch:
    """Requests taken from the queue to be applied together."""

    pending: tuple[Pending, ...]
    strategy: str
    ids: tuple[str, ...]  # the store's ids of the samples still to remove
    taken: frozenset[str]  # their subject refs
    queued_micros: int  # how long the oldest request waited

    @property
    def rids(self) -> list[str]:
        return [p.requested.request_id for p in self.pending]


@dataclass(frozen=True)
class _Step:
    """A batch applied (or found to change nothing), not yet recorded: the version it leads to and its entry."""

    snapshot: ModelSnapshot
    predict: Predict
    model: ModelState
    payload: dict[str, Any]  # its forget.applied


class Worker:
    """The thread that applies the queue, one batch at a time (module docstring)."""

    def __init__(self, state: RuntimeState, engine: Engine, max_batch_requests: int, metrics: Metrics, *,
                 retry_seconds: float = 60.0, retrains: RetrainDue | None = None) -> None:
        self._state = state
        self._retrains = retrains  # full retrains the gold thread asks for (--gold-retrain); None: never
        self._metrics = metrics
        self._engine = engine
        self._max_batch = max_batch_requests
        self._retry_seconds = retry_seconds
        self._retry_cap = min(RETRY_CAP_SECONDS, max(1.0, retry_seconds))  # never busier than once a second
        self._times = ApplyTimes()
        self._on_halt: Callable[[str | None], None] = lambda reason: None
        self._thread: threading.Thread | None = None
        # The worker's own committer (its one caller): forget.applied is committed without the runtime lock and
        # apart from admission's commits, whose counters stay those of Forgets alone.
        self._committer: GroupCommitter[Callable[[Entry], None]] = state.ledger.grouped(self._recorded, max_batch=1)

    def start(self, on_halt: Callable[[str | None], None] | None = None) -> None:
        """Starts the thread; `on_halt` hears the reason when forgetting halts, and None when it resumes."""
        if on_halt is not None:
            self._on_halt = on_halt
        self._thread = threading.Thread(target=self._run, name="forgetd-unlearner", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Waits for the thread to end (at most `timeout` seconds); whether it has."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _run(self) -> None:
        from forgetd.server.engine.training import deterministic

        # torch imports its compiler stack the first time deterministic mode is switched on (seconds on a
        # small CPU); pay that here, while Predict is already served, not inside the first Forget.
        with deterministic():
            pass
        try:
            while (batch := self._next_batch()) is not None:
                if not (self._retrain(batch) if isinstance(batch, RetrainJob) else self._apply(batch)):
                    break
        finally:
            with self._state.lock:
                self._state.worker_gone = True
                self._state.settled.notify_all()

    # -- taking work --------------------------------------------------------------------------------------

    def _next_batch(self) -> _Batch | RetrainJob | None:
        """The next batch to apply, or a retrain asked for (first); None once shutdown leaves nothing (or nothing
        that fits) to apply."""
        state, retrains = self._state, self._retrains
        with state.lock:
            while not state.queue and not (retrains is not None and retrains.pending()) and not state.stopping:
                state.work.wait()
            if retrains is not None and not state.stopping and (job := retrains.take()) is not None:
                return job
            if not state.queue:
                return None
            batch = self._take_batch()
            stopping, deadline = state.stopping, state.drain_until
        return batch if not stopping or self._fits(batch, deadline) else None

    def _take_batch(self) -> _Batch:
        """The oldest pending request and every following one with the same strategy (ledger order kept), and
        the samples they still name (caller holds the lock)."""
        state = self._state
        first = state.pending[state.queue.popleft()]
        batch = [first]
        while (state.queue and len(batch) < self._max_batch
               and state.pending[state.queue[0]].requested.strategy == first.requested.strategy):
            batch.append(state.pending[state.queue.popleft()])
        ids: list[str] = []
        taken: set[str] = set()
        for p in batch:
            for ref in p.requested.subjects:
                if ref in state.remaining and ref not in taken:
                    ids.append(state.remaining[ref])
                    taken.add(ref)
        queued = int((time.monotonic() - min(p.enqueued for p in batch)) * 1e6)
        return _Batch(tuple(batch), first.requested.strategy, tuple(ids), frozenset(taken), queued)

    def _fits(self, batch: _Batch, deadline: float) -> bool:
        """Whether `batch` should finish before `deadline`, by this run's measured apply times (or, before any,
        the rate the store was trained at)."""
        left = deadline - time.monotonic()
        try:
            reads = self._engine.plan(batch.ids, batch.strategy).estimated_samples_read if batch.ids else 0
            estimate = self._times.estimate(reads, lambda: self._training_seconds_per_read(batch.ids[0]))
        except Exception:  # noqa: BLE001 - an estimate that cannot be made is one that does not fit
            log.exception("shutting down: could not estimate the next forget batch's time")
            estimate = float("inf")
        if estimate <= left:
            return True
        log.info("shutting down: not starting the next forget batch (%d request(s)): it should take %.1f s and "
                 "%.1f s of the grace are left; it stays durable and is applied after the restart",
                 len(batch.pending), estimate, max(0.0, left))
        return False

    def _training_seconds_per_read(self, sample_id: str) -> float:
        everything = self._engine.plan([sample_id], RETRAIN).estimated_samples_read  # a full training's reads
        return self._engine.train_seconds / max(1, everything)

    # -- applying -----------------------------------------------------------------------------------------

    def _apply(self, batch: _Batch) -> bool:
        """Applies, records and publishes `batch`, retrying failures (module docstring). False when the worker
        must stop: shutdown came while it was failing, or it left a state only a restart reconciles."""
        started = time.perf_counter()
        backoff = Backoff(self._retry_cap)
        failing_since: float | None = None
        step: _Step | None = None
        while True:
            try:
                if step is None:
                    step = self._step(batch, started)
                entry = self._publish(batch, step)
                break
            except Exception as exc:  # noqa: BLE001 - logged; the requests stay durable and pending
                if step is None and not self._resumable(batch):
                    self._halt_for_good(batch, exc)
                    return False
                first = failing_since is None
                failing_since = time.monotonic() if failing_since is None else failing_since
                if not self._retry_later(batch, exc, time.monotonic() - failing_since, backoff.next(), first):
                    return False
        self._resume()
        elapsed = time.perf_counter() - started
        self._metrics.batch_applied(step.payload, len(batch.pending), batch.queued_micros / 1e6 + elapsed)
        log.info("forget batch of %d request(s), %d sample(s), %s: version %d at seq %d in %.1f ms",
                 len(batch.pending), len(batch.ids), batch.strategy, step.model.version, entry.seq, elapsed * 1e3)
        return True

    def _step(self, batch: _Batch, started: float) -> _Step:
        """The engine's work for `batch`: done now, or, when an earlier try published it and then failed (in the
        rows' erasure), finished and read back from the version's tag."""
        engine = self._engine
        if engine.version == self._state.live.version:
            return self._forget(batch) if batch.ids else self._unchanged(batch)
        if not self._resumable(batch):
            raise RuntimeError(f"the store is at version {engine.version}, not one batch past the live version "
                               f"{self._state.live.version} with this batch's tag")
        engine.finish_erasure()
        tag = engine.live_batch
        assert tag is not None  # _resumable checked it names this batch
        model = ModelState(engine.version, engine.digest(), tuple(engine.shard_digests()))
        payload = applied_from_tag(tag, model, apply_micros=int((time.perf_counter() - started) * 1e6),
                                   queued_micros=batch.queued_micros, recovered=False, device=engine.device)
        snapshot = engine.snapshot()
        return _Step(snapshot, predictor_for(snapshot), model, payload)

    def _resumable(self, batch: _Batch) -> bool:
        """Whether a failed try left the engine where a retry can go on: before this batch, or with this batch
        published whole (its tag live, its snapshot swapped in)."""
        engine, live = self._engine, self._state.live
        if engine.version == live.version:
            return engine.snapshot().version == live.version
        tag = engine.live_batch
        return (engine.version == live.version + 1 and tag is not None and list(tag.request_ids) == batch.rids
                and engine.snapshot().version == engine.version)

    def _publish(self, batch: _Batch, step: _Step) -> Entry:
        """Appends the batch's forget.applied without the runtime lock (admission validates and commits Forgets
        meanwhile), then, in the hold of the lock that folds the entry, swaps the live model in: by this thread
        once durable, or first by whichever thread folds the entry before it does (RuntimeState.when_folded)."""
        state = self._state
        event_id = events.applied_event_id(batch.rids)
        swap: Callable[[Entry], None] = lambda entry: self._swap(batch, step, entry)
        with state.lock:
            state.when_folded(event_id, swap)
        try:
            return self._committer.append((events.FORGET_APPLIED, step.payload, event_id), swap)
        finally:
            with state.lock:
                state.when_folded(event_id, None)

    def _recorded(self, durable: Sequence[tuple[Entry, Callable[[Entry], None]]]) -> None:
        """On this thread, once a forget.applied is durable: fold through it and swap its batch in."""
        with self._state.lock:
            for entry, swap in durable:
                self._state.fold_through(entry)
                swap(entry)

    def _swap(self, batch: _Batch, step: _Step, entry: Entry) -> None:
        """The batch's samples gone, its version live, its requests settled (caller holds the lock); once."""
        state = self._state
        if batch.rids[0] not in state.pending:
            return  # swapped in already: the entry was folded by another thread before this one
        for ref in batch.taken:
            state.remaining.pop(ref, None)
        state.live = LiveModel.of(step.snapshot, step.predict, step.model, entry.seq, len(state.fold.forgotten))
        for rid in batch.rids:
            del state.pending[rid]
            state.raw_ids.pop(rid, None)
        state.settled.notify_all()

    def _forget(self, batch: _Batch) -> _Step:
        """The engine's new version of the store without the batch's samples, and its forget.applied."""
        report = self._engine.forget(batch.ids, batch.strategy, request_ids=batch.rids)
        assert report.tag is not None  # the engine tags every forget that names its requests
        self._times.record(report.samples_read, report.seconds)
        model = ModelState(report.version, report.digest, report.shard_digests)
        payload = events.applied_payload(
            request_ids=batch.rids,
            strategy=batch.strategy,
            resolved_strategy=report.strategy,
            subjects=subject_outcomes(report.tag),
            model=model,
            residue_steps=report.residue_steps,
            samples_read=report.samples_read,
            apply_micros=int(report.seconds * 1e6),
            queued_micros=batch.queued_micros,
            device=self._engine.device,
            encoder_residue=report.encoder_residue,
        )
        payload.update(report.details)  # INFLUENCE's and CERTIFIED's figures (engine/newton.py)
        # The forward is prepared before the swap, so the swap under the lock is one assignment.
        return _Step(report.snapshot, predictor_for(report.snapshot), model, payload)

    def _unchanged(self, batch: _Batch) -> _Step:
        """Every sample was forgotten by an earlier batch while these waited: nothing to change."""
        live = self._state.live
        model = ModelState(live.version, live.digest, live.shard_digests)
        resolved = self._engine.config.default_strategy if batch.strategy == AUTO else batch.strategy
        payload = events.applied_payload(
            request_ids=batch.rids, strategy=batch.strategy, resolved_strategy=resolved, subjects=[], model=model,
            residue_steps=0, samples_read=0, apply_micros=0, queued_micros=batch.queued_micros,
        )  # fmt: skip
        return _Step(live.snapshot, live.predict, model, payload)

    # -- failing and resuming -----------------------------------------------------------------------------

    def _retry_later(self, batch: _Batch, exc: Exception, failed_for: float, delay: float, first: bool) -> bool:
        """Logs the failure (with its stack the `first` time), halts forgetting once it has lasted past the retry
        window, and waits `delay` seconds (less if shutdown begins). False when shutdown began: the batch is
        left for the restart."""
        state = self._state
        log.warning("applying forget batch %s failed (%s); retrying in %.1f s", shown_ids(batch.rids), _cause(exc),
                    delay, exc_info=exc if first else None)
        reason = None
        if failed_for >= self._retry_seconds:
            reason = (f"applying forget batch {shown_ids(batch.rids)} has failed for {failed_for:.0f} s "
                      f"({_cause(exc)}); the server retries it every {self._retry_cap:.0f} s and resumes once it "
                      "succeeds, and acknowledged requests stay durable")
        with state.lock:
            newly = reason is not None and state.halt_reason is None
            if reason is not None:
                state.halt_reason = reason
                state.settled.notify_all()
            until = time.monotonic() + delay
            while not state.stopping and (left := until - time.monotonic()) > 0:
                state.work.wait(left)
            stopping = state.stopping
        if newly:
            assert reason is not None
            log.error("forgetting is halted: %s", reason)
            self._on_halt(reason)
        if stopping:
            log.info("shutting down while forget batch %s fails; it stays durable for the restart",
                     shown_ids(batch.rids))
        return not stopping

    def _resume(self) -> None:
        state = self._state
        with state.lock:
            was, state.halt_reason = state.halt_reason, None
            state.settled.notify_all()
        if was is not None:
            log.warning("forgetting resumed: the failing forget batch is applied")
            self._on_halt(None)

    def _retrain(self, job: RetrainJob) -> bool:
        """A full retrain the gold thread asked for (retrain_event.py). A failure before the engine's commit is
        logged and the next failed check asks again; after it, only a restart's recovery reconciles: False."""
        assert self._retrains is not None
        try:
            retrain_live(self._state, self._engine, job, self._retrains)
            return True
        except Exception as exc:  # noqa: BLE001 - logged; forgets go on while the old version stays live
            if self._engine.version == self._state.live.version:
                log.exception("retraining after the failed gold-standard check at seq %d failed; the old version "
                              "stays live", job.gold_seq)
                return True
            self._halt_for_good(None, exc)
            return False

    def _halt_for_good(self, batch: _Batch | None, exc: Exception) -> None:
        what = "retraining the store" if batch is None else f"applying forget batch {shown_ids(batch.rids)}"
        reason = (f"{what} failed ({_cause(exc)}) and left the store in a "
                  "state only a restart reconciles; restart the daemon: acknowledged requests are durable and "
                  "are applied then")
        log.error("forgetting is halted: %s", reason, exc_info=exc)
        with self._state.lock:
            self._state.halt_reason = reason
            self._state.worker_gone = True
            self._state.settled.notify_all()
        self._on_halt(reason)
