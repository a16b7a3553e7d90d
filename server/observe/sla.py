"""The unlearning SLA: the rolling mean time from acknowledging a Forget to serving a model without it,
over the last N applied batches, against a target (`forgetd serve --sla-seconds S --sla-window N`).

A batch's time is its oldest request's: from the moment that request was durable and acknowledged to the
moment the new version was live, queueing included, because that is what a data subject waits for. With
fewer than N batches applied since the daemon started, the mean is over those there are.

Pure and single-writer: only the worker thread records, and readers take `state`, a frozen value replaced
whole on every record, so neither side needs a lock.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass

__all__ = ["SlaState", "SlaWatch"]

log = logging.getLogger("forgetd.server")


@dataclass(frozen=True)
class SlaState:
    """Where the SLA stands after the last batch recorded."""

    target_seconds: float | None  # None: no target configured; the mean is still kept
    window: int  # batches the mean is taken over, at most
    mean_seconds: float  # 0.0 before the first batch
    batches: int  # batches in the mean now (<= window)
    breached: bool  # mean_seconds > target_seconds


class SlaWatch:
    """The rolling mean of the last `window` batch completion times, and whether it passes the target."""

    def __init__(self, target_seconds: float | None, window: int) -> None:
        if window < 1:
            raise ValueError(f"the SLA window is {window}; give at least 1 batch")
        self._times: deque[float] = deque(maxlen=window)
        self.state = SlaState(target_seconds, window, 0.0, 0, False)

    def record(self, seconds: float) -> SlaState:
        """Adds one applied batch's completion time; logs once when the SLA is breached and once when it is met
        again. Returns the new state."""
        self._times.append(seconds)
        before = self.state
        mean = math.fsum(self._times) / len(self._times)  # fsum: no drift however long the daemon runs
        target = before.target_seconds
        breached = target is not None and mean > target
        self.state = SlaState(target, before.window, mean, len(self._times), breached)
        if breached and not before.breached:
            log.warning("unlearning SLA breached: the mean time from acknowledging a Forget to serving the model "
                        "without it is %.4g s over the last %d batch(es), above the target of %.4g s "
                        "(the last batch took %.4g s)", mean, len(self._times), target, seconds)
        elif before.breached and not breached:
            log.info("unlearning SLA met again: the mean is %.4g s over the last %d batch(es), within the target "
                     "of %.4g s", mean, len(self._times), target)
        return self.state
