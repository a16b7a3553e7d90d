"""The gold-standard alarm: what the daemon's `--gold-every N` checks found, as metrics, log lines and GetModel.

The same path as the SLA (sla.py): a gauge that is 1 while the last check was out of tolerance, a warning in
the log when a check first fails and a line when one passes again, and a frozen state GetModel answers with.
The checks themselves (a model retrained from scratch beside the live one) run in forgetd.server.runtime.gold;
this module only records them. Single writer (the gold thread), readers take `state`, replaced whole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["GoldAlarm", "GoldState", "GoldResult"]

log = logging.getLogger("forgetd.server")


class GoldResult(Protocol):
    """What a check found (forgetd.server.engine.gold.GoldFigures has these)."""

    @property
    def version(self) -> int: ...

    @property
    def live_accuracy(self) -> float: ...

    @property
    def gold_accuracy(self) -> float: ...

    @property
    def live_loss(self) -> float: ...

    @property
    def gold_loss(self) -> float: ...

    @property
    def label_agreement(self) -> float: ...

    @property
    def max_probability_difference(self) -> float: ...

    @property
    def parameter_distance(self) -> float: ...

    @property
    def tolerance_points(self) -> float: ...

    @property
    def gap_points(self) -> float: ...

    @property
    def passed(self) -> bool: ...

    def summary(self) -> str: ...


@dataclass(frozen=True)
class GoldState:
    """The last check and the counts since the daemon started."""

    last: GoldResult | None  # None before the first check
    ledger_seq: int  # its audit.gold entry; 0 before the first check
    checks: int
    failures: int


class GoldAlarm:
    """Records gold-standard checks into a daemon's registry (module docstring)."""

    def __init__(self, registry: CollectorRegistry, every: int | None, tolerance_points: float) -> None:
        self.state = GoldState(None, 0, 0, 0)
        self._checks = Counter("forgetd_gold_checks", "Gold-standard checks run (a model retrained from scratch "
                               "on the live rows, compared with the live one)", registry=registry)
        self._failures = Counter("forgetd_gold_failures", "Gold-standard checks whose test accuracy gap was out "
                                 "of tolerance (--gold-epsilon)", registry=registry)
        self._breached = Gauge("forgetd_gold_breached", "1 while the last gold-standard check was out of "
                               "tolerance, else 0", registry=registry)
        self._gap = Gauge("forgetd_gold_gap_points", "Live minus retrained test accuracy at the last check, "
                          "percentage points", registry=registry)
        self._distance = Gauge("forgetd_gold_parameter_distance", "L2 distance between the live and the retrained "
                               "parameters at the last check", registry=registry)
        Gauge("forgetd_gold_tolerance_points", "The gold standard's tolerance (--gold-epsilon), percentage points",
              registry=registry).set(tolerance_points)
        Gauge("forgetd_gold_every", "Applied forgets between gold-standard checks (--gold-every); 0 when off",
              registry=registry).set(every or 0)

    def record(self, result: GoldResult, ledger_seq: int) -> GoldState:
        before = self.state
        failed = not result.passed
        self.state = GoldState(result, ledger_seq, before.checks + 1, before.failures + int(failed))
        self._checks.inc()
        self._failures.inc(int(failed))
        self._breached.set(int(failed))
        self._gap.set(result.gap_points)
        self._distance.set(result.parameter_distance)
        was_failing = before.last is not None and not before.last.passed
        if failed and not was_failing:
            log.warning("gold standard breached at version %d (audit.gold seq %d): %s", result.version, ledger_seq,
                        result.summary())
        elif failed:
            log.warning("gold standard still out of tolerance at version %d (audit.gold seq %d): %s", result.version,
                        ledger_seq, result.summary())
        elif was_failing:
            log.info("gold standard met again at version %d (audit.gold seq %d): %s", result.version, ledger_seq,
                     result.summary())
        else:
            log.info("gold standard met at version %d (audit.gold seq %d): %s", result.version, ledger_seq,
                     result.summary())
        return self.state
