"""The daemon's gold standard (`forgetd serve --gold-every N`): after every N applied Forget requests, a model
retrained from scratch on the live rows beside the live one (engine/gold.py), recorded as an `audit.gold`
ledger entry and raised through the alarm (observe/gold.py) when it is out of tolerance (--gold-epsilon).

Why a thread of its own, at the lowest priority: a retrain from scratch costs what a RETRAIN costs, and the
worker must never wait for it. The engine copies what the retrain needs under its lock (a memory copy of the
rows) and retrains without it, so forgets go on meanwhile; the entry is appended under the runtime's lock like
every append, in ledger order. A check that fails to run is logged and the next one tries again.

With `--gold-retrain`, a check out of tolerance asks the worker for a full retrain (retrain_event.py), and once
it is published the thread checks the retrained model at once; a check of a retrained model that fails again
only raises the alarm (the retrain is what the reference is, so a second one could not do better).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

from forgetd.server.observe.gold import GoldAlarm
from forgetd.server.runtime.retraining import RetrainDue
from forgetd.server.runtime.state import RuntimeState

if TYPE_CHECKING:
    from forgetd.server.engine.engine import Engine

__all__ = ["AUDIT_GOLD", "GoldWatch"]

log = logging.getLogger("forgetd.server")

AUDIT_GOLD = "audit.gold"  # the ledger event (docs/unlearning.md section 10); the daemon's fold skips it


class GoldWatch:
    """The gold thread of one runtime (module docstring). `every` None: no thread, no checks."""

    def __init__(self, state: RuntimeState, engine: Engine, every: int | None, tolerance_points: float,
                 alarm: GoldAlarm, retrains: RetrainDue | None = None) -> None:
        self._state = state
        self._retrains = retrains  # --gold-retrain: where a failed check asks the worker for a retrain
        self._engine = engine
        self._every = every
        self._tolerance = tolerance_points
        self._alarm = alarm
        self._thread: threading.Thread | None = None
        self._recorded = threading.Condition()  # notified after every check recorded
        self._checks = 0

    def start(self) -> None:
        if self._every is None:
            return
        self._thread = threading.Thread(target=self._run, name="forgetd-gold", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        """Waits up to `timeout` seconds for a check in progress (shutdown sets the runtime's stopping flag)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_for_checks(self, count: int, timeout: float) -> bool:
        """Blocks until `count` checks have been recorded since the daemon started, at most `timeout` seconds."""
        with self._recorded:
            return self._recorded.wait_for(lambda: self._checks >= count, timeout)

    def _applied(self) -> int:
        return len(self._state.fold.applied_by_request)  # caller holds the lock

    def _run(self) -> None:
        _lowest_priority()
        state, every = self._state, self._every
        assert every is not None
        with state.lock:
            done, retrained = self._applied() // every, self._retrained()
        while True:
            with state.lock:
                while not state.stopping and self._applied() // every <= done and self._retrained() == retrained:
                    state.settled.wait()
                if state.stopping:
                    return
                after_retrain = self._retrained() != retrained
                done, retrained = self._applied() // every, self._retrained()
            self.check(may_retrain=not after_retrain)

    def _retrained(self) -> int:
        return 0 if self._retrains is None else self._retrains.done  # caller holds the lock

    def check(self, *, may_retrain: bool = True) -> int | None:
        """One check now: its audit.gold entry's seq, or None when it could not run (logged) or shutdown began.
        Out of tolerance with --gold-retrain (and `may_retrain`), the worker is asked for a full retrain."""
        try:
            figures = self._engine.gold_standard(self._tolerance)
        except Exception:  # noqa: BLE001 - logged with its stack; a check that fails must never stop the daemon
            log.exception("the gold-standard check failed to run; the next one tries again")
            return None
        payload = {**figures.to_payload(), "by": "daemon"}
        with self._state.lock:
            if self._state.stopping:
                return None
            event_id = f"{AUDIT_GOLD}:{self._state.fold.size + 1}"
            entry = self._state.append(AUDIT_GOLD, payload, event_id)
        self._alarm.record(figures, entry.seq)
        if not figures.passed and may_retrain and self._retrains is not None:
            self._retrains.request(entry.seq)
        with self._recorded:
            self._checks += 1
            self._recorded.notify_all()
        return entry.seq


def _lowest_priority() -> None:
    """Nice 19 for this thread alone (Linux gives each thread its own nice value); elsewhere, as it is."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError) as exc:
        log.debug("the gold thread keeps the daemon's priority: %s", exc)
