"""The worker's sense of time: how long a batch will take (to decide at shutdown whether one still fits in
the grace) and how long to wait before retrying one that failed."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

__all__ = ["ApplyTimes", "Backoff"]


class ApplyTimes:
    """The apply times this run measured. A batch's time is modelled as a fixed part plus a part per sample
    its retrains read (the plan says how many); each part is the worst of the last `window` batches, so the
    estimate errs long: a batch that might not finish within the grace is left for the restart, which
    applies it anyway, rather than cut off half way."""

    def __init__(self, window: int = 16) -> None:
        self._recent: deque[tuple[int, float]] = deque(maxlen=window)  # (samples read, seconds)

    def record(self, samples_read: int, seconds: float) -> None:
        self._recent.append((samples_read, seconds))

    def estimate(self, samples_read: int, prior_seconds_per_read: Callable[[], float]) -> float:
        """Seconds a batch reading `samples_read` samples should take. `prior_seconds_per_read` is asked only
        when no batch of this run read any samples (the training's own rate is the daemon's best guess then)."""
        fixed = max((s for r, s in self._recent if r == 0), default=0.0)
        if samples_read == 0:
            return fixed
        rates = [s / r for r, s in self._recent if r > 0]
        return fixed + samples_read * (max(rates) if rates else prior_seconds_per_read())


class Backoff:
    """Delays between the retries of a failing batch: `first` seconds, doubling up to `cap`."""

    def __init__(self, cap: float, first: float = 0.1) -> None:
        self._cap = max(first, cap)
        self._next = first

    def next(self) -> float:
        delay, self._next = self._next, min(self._cap, self._next * 2)
        return delay
