"""The epoch schedule (docs/unlearning.md 2.3) and the cost model of equation 1 (section 3).

Pure arithmetic on slice sizes, no torch: training (training.py) runs E_s epochs in step s, the increments
and the index follow the same E_s, and the cost of retraining steps i..S, the threshold m and the default
budget count the samples those epochs read. Every function that takes `epochs` accepts either the one E of
"per-step" or the tuple E_1..E_S a schedule gives.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from forgetd.server.config import EngineConfig
from forgetd.server.errors import InvalidConfig
from forgetd.server.vocabulary import EPOCH_SCHEDULES, PER_STEP_SCHEDULE, SISA_SCHEDULE

__all__ = ["Epochs", "epochs_per_step", "config_epochs", "step_epochs", "cost", "threshold", "default_budget"]

# The epochs of each step: one E for every step (per-step), or E_1..E_S as `epochs_per_step` gives them.
Epochs = int | Sequence[int]


def epochs_per_step(slices: int, epochs: int, schedule: str) -> tuple[int, ...]:
    """E_1..E_S, the epochs step s = 1..S runs under `schedule` (docs/unlearning.md section 2.3).

    sisa is the SISA reference code's formula, in the same IEEE-754 double arithmetic: avg = 2*S/(S+1) * E/S
    and step s gets int(s*avg) - int((s-1)*avg), so sum_s E_s * |slices 1..s| is about E * n. Steps may get 0
    epochs (E_s is 0 or 1 when E < (S+1)/2); a schedule whose last step gets none would leave slice S untrained
    for good, so it is refused with the smallest E that trains it."""
    if schedule == PER_STEP_SCHEDULE:
        return (epochs,) * slices
    if schedule != SISA_SCHEDULE:
        raise InvalidConfig(f"epoch_schedule is {schedule!r}; choose one of {', '.join(EPOCH_SCHEDULES)}")
    plan = _sisa_epochs(slices, epochs)
    if plan[-1] == 0:
        least = next(e for e in itertools.count(epochs + 1) if _sisa_epochs(slices, e)[-1] > 0)
        raise InvalidConfig(
            f"epoch_schedule sisa with epochs {epochs} over {slices} slices gives step {slices} no epoch, so slice "
            f"{slices} would never be trained on; use epochs >= {least}, fewer slices, or epoch_schedule per-step")
    return plan


def _sisa_epochs(slices: int, epochs: int) -> tuple[int, ...]:
    avg = 2 * slices / (slices + 1) * epochs / slices  # float, as the reference code computes it
    return tuple(int((sl + 1) * avg) - int(sl * avg) for sl in range(slices))


def config_epochs(cfg: EngineConfig) -> tuple[int, ...]:
    """E_1..E_S of a store's configuration: what training, the cost model, the increments and replay follow."""
    return epochs_per_step(cfg.slices, cfg.epochs, cfg.epoch_schedule)


def step_epochs(epochs: Epochs, slices: int) -> Sequence[int]:
    """E_1..E_S from `epochs`: the tuple itself, or the one E of per-step repeated."""
    if isinstance(epochs, int):
        return (epochs,) * slices
    if len(epochs) != slices:
        raise ValueError(f"{len(epochs)} per-step epoch counts for {slices} steps")
    return epochs


def cost(step_sizes: Sequence[int], epochs: Epochs, first: int) -> int:
    """Samples read by retraining steps first..S: sum_{s=first..S} E_s * |slices 1..s| (step_sizes[s-1])."""
    plan = step_epochs(epochs, len(step_sizes))
    return int(sum(int(e) * int(n) for e, n in zip(plan[first - 1 :], step_sizes[first - 1 :])))


def threshold(shard_step_sizes: Sequence[Sequence[int]], epochs: Epochs, budget: int) -> int:
    """m: the largest number of trailing slices whose retrain fits the budget, cost(S-m+1) <= phi, for every
    shard (the paper's equation 1 with E_s epochs in step s). 0 means every slice is in the update region."""
    slices = len(shard_step_sizes[0])
    m = 0
    for cand in range(1, slices + 1):
        if all(cost(sizes, epochs, slices - cand + 1) <= budget for sizes in shard_step_sizes):
            m = cand
        else:
            break
    return m


def default_budget(shard_step_sizes: Sequence[Sequence[int]], epochs: Epochs) -> int:
    """The budget when none is configured: half a full retrain of the largest shard (m = 3 of 10 slices)."""
    return max(cost(sizes, epochs, 1) for sizes in shard_step_sizes) // 2
