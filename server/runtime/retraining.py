"""The daemon's full retrains (`forgetd serve --gold-retrain`): a gold-standard check out of tolerance asks for
one, the worker runs it, and `model.retrained` (runtime/retrain_event.py) records it.

Why the worker runs it (not the gold thread): one thread changes the store, so a retrain never races a
forget, and every version the ledger records follows from the one before. The gold thread asks for it
(`RetrainDue.request`) and the worker takes it before its next batch. Crash safety is the forget's: the
engine writes a RetrainTag (store/retrain_tag.py) in the rename that publishes the version, and recovery
writes the missing entry from it (`finish_retrain`); a failed check whose retrain never committed is asked
for again at start (`RetrainFold.unanswered_gold`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from forgetd.ledger import Entry

from forgetd.server.runtime.events import ModelState
from forgetd.server.runtime.live import LiveModel
from forgetd.server.runtime.retrain_event import MODEL_RETRAINED, retrained_event_id, retrained_payload
from forgetd.server.store.layout import Manifest, StorePaths
from forgetd.server.store.retrain_tag import RetrainTag

if TYPE_CHECKING:
    from forgetd.server.engine.engine import Engine
    from forgetd.server.runtime.state import RuntimeState

__all__ = ["RetrainDue", "RetrainJob", "retrain_live", "finish_retrain"]

log = logging.getLogger("forgetd.server")


@dataclass(frozen=True)
class RetrainJob:
    gold_seq: int  # the failed check's audit.gold entry


class RetrainDue:
    """The retrain the gold thread asks the worker for, and how many the worker has finished. Under the runtime's
    lock: the worker waits on `state.work` for it, callers of `wait_for` on `state.settled`."""

    def __init__(self, state: RuntimeState) -> None:
        self._state = state
        self._due: int | None = None
        self.done = 0

    def request(self, gold_seq: int) -> None:
        with self._state.lock:
            self._due = gold_seq
            self._state.work.notify_all()

    def pending(self) -> bool:
        return self._due is not None  # caller holds the lock

    def take(self) -> RetrainJob | None:
        """The retrain asked for, once (caller holds the lock)."""
        due, self._due = self._due, None
        return None if due is None else RetrainJob(due)

    def finished(self) -> None:
        self.done += 1  # caller holds the lock
        self._state.settled.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        """Blocks until `count` retrains have been published since the daemon started, at most `timeout` seconds."""
        with self._state.lock:
            return self._state.settled.wait_for(lambda: self.done >= count, timeout)


def retrain_live(state: RuntimeState, engine: Engine, job: RetrainJob, due: RetrainDue) -> Entry:
    """The worker's retrain: the engine publishes it, then model.retrained is appended and the live model swapped
    in one hold of the lock, as a batch is."""
    from forgetd.server.runtime.predictor import predictor_for  # torch

    if engine.version != state.live.version:
        raise RuntimeError(f"the store is at version {engine.version}, not the live version {state.live.version}")
    t0 = time.perf_counter()
    report = engine.retrain_all(job.gold_seq)
    model = ModelState(report.version, report.digest, report.shard_digests)
    payload = retrained_payload(job.gold_seq, model, samples_read=report.samples_read,
                                apply_micros=int((time.perf_counter() - t0) * 1e6), recovered=False,
                                device=engine.device)
    predict = predictor_for(report.snapshot)
    with state.lock:
        entry = state.append(MODEL_RETRAINED, payload, retrained_event_id(model.version))
        state.live = LiveModel.of(report.snapshot, predict, model, entry.seq, len(state.fold.forgotten))
        due.finished()
    log.warning("retrained every shard from scratch after the failed gold-standard check at seq %d: version %d "
                "(%s) at seq %d in %.1f s", job.gold_seq, model.version, model.digest[:16], entry.seq, report.seconds)
    return entry


def finish_retrain(engine: Engine, state: RuntimeState) -> None:
    """The engine published a retrain but the daemon died before its model.retrained: write it from the tag
    (recovery; caller holds the lock)."""
    said = state.fold.live_model()
    tag = RetrainTag.read(Manifest.read(StorePaths(engine.store_dir).manifest).tag) if said is not None else None
    if said is None or tag is None or engine.version != said.version + 1:
        return
    model = ModelState(engine.version, engine.digest(), tuple(engine.shard_digests()))
    payload = retrained_payload(tag.gold_seq, model, samples_read=0, apply_micros=0, recovered=True,
                                device=tag.device or engine.device)
    entry = state.append(MODEL_RETRAINED, payload, retrained_event_id(model.version))
    log.warning("recovery: version %d was retrained before the crash; recorded it at seq %d from the store",
                engine.version, entry.seq)
