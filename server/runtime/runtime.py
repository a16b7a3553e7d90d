"""The running daemon below its fronts: one open store, its ledger, the live model and the worker.

    runtime = Runtime.open(ServerConfig(store="store"))   # loads the engine, recovers the ledger
    runtime.start()                                       # the unlearning worker
    view = runtime.submit(["syn:17"], "auto", request_id="r1")   # durable before it returns
    runtime.live.predict(features, rows)                  # the live version, swapped whole per batch

The work lives beside this module: admission.py (submit and the request views), worker.py (the single
thread that applies batches), recovery.py (reconciling the ledger with the store at start), state.py (what
they share under one lock), ledger_writer.py (the ledger connection and signed heads and checkpoints),
witnessing.py (asking the configured witnesses to cosign heads, in the background).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from forgetd.server.config import ServerConfig
from forgetd.server.executors import ExecutorSpec
from forgetd.server.observe import Metrics
from forgetd.server.runtime.admission import Admission, RequestView
from forgetd.server.observe.gold import GoldAlarm
from forgetd.server.runtime.gold import GoldWatch
from forgetd.server.runtime.ledger_writer import LedgerWriter
from forgetd.server.runtime.live import LiveModel, ModelFacts
from forgetd.server.runtime.recovery import recover
from forgetd.server.runtime.retraining import RetrainDue
from forgetd.server.runtime.state import RuntimeState
from forgetd.server.runtime.witnessing import Witnessing
from forgetd.server.runtime.worker import Worker
from forgetd.server.store.layout import StorePaths

if TYPE_CHECKING:
    from forgetd.server.engine.engine import Engine

__all__ = ["Runtime", "RequestView", "LiveModel", "ModelFacts"]


class Runtime:
    """One open store: its engine, its ledger, the live model and the worker. Built by `Runtime.open`."""

    def __init__(self, config: ServerConfig, engine: Engine, ledger: LedgerWriter) -> None:
        # Use Runtime.open: the state is only whole once recovery has run.
        self.config = config
        self.engine = engine
        self.ledger = ledger
        self._state = state = RuntimeState(ledger, engine.subject_key)
        self.metrics = Metrics(config.sla_seconds, config.sla_window)  # observe: this daemon's own registry
        self.metrics.watch(queue=lambda: len(state.pending), halted=lambda: state.halted, ledger=lambda: state.fold.size,
                           version=lambda: state.live.version, forgotten=lambda: state.live.forgotten_count,
                           published=lambda: ledger.published_size)
        self._admission = Admission(self._state, self.metrics, engine.config.model)
        # --gold-retrain: the gold thread asks the worker for full retrains here (runtime/retraining.py)
        self.retrains = RetrainDue(state) if config.gold_retrain else None
        self._worker = Worker(self._state, engine, config.max_batch_requests, self.metrics,
                              retry_seconds=config.apply_retry_seconds, retrains=self.retrains)
        self.witnessing = Witnessing(ledger, config.witnesses, config.quorum)  # no thread without witnesses
        self.gold_alarm = GoldAlarm(self.metrics.registry, config.gold_every, config.gold_epsilon)
        self.gold = GoldWatch(state, engine, config.gold_every, config.gold_epsilon, self.gold_alarm,  # --gold-every
                              self.retrains)
        self.info: ModelFacts

    @classmethod
    def open(cls, config: ServerConfig) -> Runtime:
        from forgetd.server.engine.engine import Engine  # torch

        engine = Engine.open(config.store, device=config.device, require_writer=True,  # one daemon per store
                             executor=ExecutorSpec(config.executor, config.executor_workers, config.ray_address))
        try:
            ledger = LedgerWriter(engine.ledger_path, StorePaths(config.store).head_key)
        except BaseException:
            engine.close()  # it holds the store's writer lock
            raise
        runtime = cls(config, engine, ledger)
        try:
            runtime.info = recover(config, engine, runtime._state)
            if runtime.retrains is not None and (unanswered := runtime._state.fold.unanswered_gold()) is not None:
                runtime.retrains.request(unanswered)  # a failed check whose retrain a crash cut short
        except BaseException:
            runtime.close()
            raise
        return runtime

    @property
    def live(self) -> LiveModel:
        """What Predict and GetModel read; read it once per call, the worker swaps it whole."""
        return self._state.live

    @live.setter
    def live(self, model: LiveModel) -> None:
        self._state.live = model

    # -- admission ----------------------------------------------------------------------------------------

    def submit(self, sample_ids: Sequence[str], strategy: str, request_id: str) -> RequestView:
        """Validates a Forget against the live data and makes it durable; NOT_FOUND or a conflict writes nothing."""
        return self._admission.submit(sample_ids, strategy, request_id)

    def request(self, request_id: str, *, reveal_ids: bool = False) -> RequestView:
        """The request as it stands. Its sample ids are "" unless `reveal_ids` (the caller holds the bearer token,
        or the server has none) and the request is still pending: an applied request names its samples by
        subject ref only, as the ledger does."""
        return self._admission.request(request_id, reveal_ids=reveal_ids)

    def wait_applied(self, request_id: str, time_remaining: Callable[[], float | None],
                     is_active: Callable[[], bool], *, reveal_ids: bool = False) -> RequestView:
        """Blocks until the request is applied (or the caller goes away or runs out of time); NotServing with
        the reason if forgetting halts or shutdown comes first."""
        return self._admission.wait_applied(request_id, time_remaining, is_active, reveal_ids=reveal_ids)

    @property
    def halt_reason(self) -> str | None:
        """Why forgetting is halted, in words (GetModel and health report it); None while forgets are applied."""
        return self._state.halt_reason

    # -- the worker ---------------------------------------------------------------------------------------

    def start(self, on_halt: Callable[[str | None], None] | None = None) -> None:
        """Starts the worker; `on_halt` hears why forgetting halted, and None when it resumed (the daemon sets
        the Unlearning service's health from it)."""
        self._worker.start(on_halt)
        self.witnessing.start()
        self.gold.start()

    def stop(self, drain_seconds: float = 0.0) -> bool:
        """Refuses new requests and lets the worker finish within `drain_seconds`: it starts no batch that its
        measured apply times say would end later, and the one in progress is waited for until then. Wakes
        every waiter. What is left stays durable for the restart. False when the batch in progress was still
        running at the deadline: it is left to run (or to be redone by the restart); do not close then."""
        state = self._state
        deadline = time.monotonic() + drain_seconds
        with state.lock:
            # Called again (to wait longer for a batch still running), it waits but never extends the grace.
            state.drain_until = min(state.drain_until, deadline) if state.stopping else deadline
            state.stopping = True
            state.work.notify_all()
            state.settled.notify_all()
        finished = self._worker.join(max(0.0, deadline - time.monotonic()))
        with state.lock:
            state.worker_gone = True  # if it still runs, nothing after its batch will be applied
            state.settled.notify_all()
        self.witnessing.stop()
        return finished

    def close(self) -> None:
        self.ledger.close()
        self.engine.close()
