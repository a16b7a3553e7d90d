"""The running daemon below its fronts: one open store, its ledger, the live model and the worker.

    runtime = Runtime.open(ServerConfig(store="store"))   # loads the engine, recovers the ledger
    runtime.start()                                       # the unlearning worker
    view = runtime.submit(["syn:17"], "auto", request_id="r1")   # durable before it returns
    runtime.live.predict(features, rows)                  # the live version, swapped whole per batch

The work lives beside this module: admission.py (submit and the request views), worker.py (the single
thread that applies batches), recovery.py (reconciling the ledger with the store at start), state.py (what
they share under one lock), ledger_writer.py (the ledger connection and signed heads).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from forgetd.server.config import ServerConfig
from forgetd.server.observe import Metrics
from forgetd.server.runtime.admission import Admission, RequestView
from forgetd.server.runtime.ledger_writer import LedgerWriter
from forgetd.server.runtime.live import LiveModel, ModelFacts
from forgetd.server.runtime.recovery import recover
from forgetd.server.runtime.state import RuntimeState
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
                           version=lambda: state.live.version, forgotten=lambda: state.live.forgotten_count)
        self._admission = Admission(self._state, self.metrics)
        self._worker = Worker(self._state, engine, config.max_batch_requests, self.metrics)
        self.info: ModelFacts

    @classmethod
    def open(cls, config: ServerConfig) -> Runtime:
        from forgetd.server.engine.engine import Engine  # torch

        engine = Engine.open(config.store, device=config.device)
        try:
            ledger = LedgerWriter(engine.ledger_path, StorePaths(config.store).head_key)
        except BaseException:
            engine.close()  # it holds the store's writer lock
            raise
        runtime = cls(config, engine, ledger)
        try:
            runtime.info = recover(config, engine, runtime._state)
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

    def request(self, request_id: str) -> RequestView:
        return self._admission.request(request_id)

    def wait_applied(self, request_id: str, time_remaining: Callable[[], float | None],
                     is_active: Callable[[], bool]) -> RequestView:
        """Blocks until the request is applied (or the caller goes away); NotServing if shutdown comes first."""
        return self._admission.wait_applied(request_id, time_remaining, is_active)

    # -- the worker ---------------------------------------------------------------------------------------

    def start(self) -> None:
        self._worker.start()

    def stop(self, drain_seconds: float = 0.0) -> None:
        """Refuses new requests; applies what is queued for up to `drain_seconds` (the batch in progress always
        finishes), then stops the worker and wakes every waiter. What is left stays durable for the restart."""
        state = self._state
        with state.lock:
            state.stopping = True
            state.drain_until = time.monotonic() + drain_seconds
            state.work.notify_all()
        self._worker.join()
        with state.lock:
            for pending in state.pending.values():
                pending.done.set()

    def close(self) -> None:
        self.ledger.close()
        self.engine.close()
