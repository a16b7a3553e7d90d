"""The forget strategies of docs/unlearning.md (section 5), applied to one shard's state without touching disk.

`forget_shard` takes a shard's live state, the forget set's members in that shard and a strategy, and
returns the shard's *new* state (copies: the caller publishes it atomically or drops it). The rules:

- RETRAIN: train from theta_0 without F (all shards; the caller passes every shard).
- SISA:    restore theta_{i-1}, i = F's earliest slice, retrain steps i..S without F.
- DPUS:    theta_S -= sum of Delta_t over F's recorded steps not yet subtracted (each step once, ever).
- HS:      update-region members by DPUS, then retrain-region members by SISA (from the corrected state).
- OHS:     update-region members: subtract their increments from theta_1..theta_{S-m}, then retrain steps
           S-m+1..S from theta'_{S-m}; retrain-region members only: SISA.

INFLUENCE (a Newton step on theta_S) and every strategy of the linear family live in newton.py; this module
keeps their bookkeeping in the MLP's state: a retrain starts no later than the earliest slice of a member an
INFLUENCE step removed (`influenced_floor`), since the earlier checkpoints still hold its influence.

Every subtraction is applied to every stored checkpoint the increments went into (theta_s for s at or after
the increment's step), not just theta_S (`correct_checkpoints`); otherwise a later retrain that restarts from
theta_s would bring the forgotten sample back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from forgetd.server.engine.checkpoints import ShardCheckpoints
from forgetd.server.engine.increments import ShardIncrements, ShardIndex, subtract
from forgetd.server.engine.increments_codec import IncrementRows
from forgetd.server.engine.linear import LinearShard, ScaledRows
from forgetd.server.engine.model import MLPShape
from forgetd.server.engine.reports import APPROXIMATE, EXACT
from forgetd.server.engine.training import Epochs, ShardLayout, run_steps
from forgetd.server.vocabulary import CERTIFIED, CERTIFIED_GUARANTEE, DPUS, INFLUENCE, OHS, RETRAIN, SISA
from forgetd.server.vocabulary import RETRAIN_REGION, UPDATE_REGION

__all__ = ["ShardState", "ShardOutcome", "SampleRoute", "TrainParams", "route", "retrain_start", "forget_shard",
           "influenced_floor",
           "correct_checkpoints"]

# (s, rows) -> (path, where its rows go: a writable memmap or a compressed file's writer) of the new increments
# file of a retrained recorded step s
IncrementsFile = Callable[[int, int], tuple[Path, IncrementRows]]


@dataclass
class ShardState:
    """Everything a forget reads or replaces for one shard."""

    shard: int
    layout: ShardLayout
    index: ShardIndex
    increments: ShardIncrements
    checkpoints: ShardCheckpoints
    subtracted: set[int]  # recorded optimizer steps whose increment DPUS already removed
    alive: np.ndarray  # (n_k,) bool
    X: torch.Tensor  # (n_k, F) on the training device
    y: torch.Tensor  # (n_k,)
    linear: LinearShard | None = None  # the linear family's state (engine/linear.py); None for the MLP
    influenced: frozenset[int] = frozenset()  # members removed by INFLUENCE since the last retrain (shard_extras.py)
    # Linear family: X as the model sees it (linear.ScaledRows), made on the first certified removal and kept for
    # the later ones; forgotten rows are zeroed in it as in X.
    scaled: ScaledRows | None = None


@dataclass
class ShardOutcome:
    shard: int
    checkpoints: ShardCheckpoints
    params_changed: bool
    optim_changed: bool
    new_increments: dict[int, Path]  # step s -> its new increments file, for retrained recorded steps
    subtracted: set[int]
    alive: np.ndarray
    residue_steps: int
    samples_read: int
    linear: LinearShard | None = None  # the new linear state; None: unchanged (or the MLP)
    influenced: frozenset[int] | None = None  # the new influenced set; None: unchanged
    influence: dict[str, Any] | None = None  # what an INFLUENCE step did, as forget.applied records it
    certified: dict[str, Any] | None = None  # what a CERTIFIED removal spent, as forget.applied records it


@dataclass(frozen=True)
class SampleRoute:
    member: int  # local index in the shard
    slice: int  # 1-based
    region: str  # "update" | "retrain"
    strategy: str  # what this sample gets: retrain | sisa | dpus | ohs
    guarantee: str


def route(strategy: str, slice_: int, slices: int, m: int) -> tuple[str, str, str]:
    """(region, per-sample strategy, guarantee) of a sample in `slice_` under a resolved request strategy."""
    region = UPDATE_REGION if slice_ <= slices - m else RETRAIN_REGION
    if strategy in (RETRAIN, SISA):
        return region, strategy, EXACT
    if strategy == INFLUENCE:
        return region, INFLUENCE, APPROXIMATE
    if strategy == CERTIFIED:
        return region, CERTIFIED, CERTIFIED_GUARANTEE
    if strategy == DPUS:
        return region, DPUS, APPROXIMATE
    if region == RETRAIN_REGION:
        return region, SISA, EXACT
    return region, strategy if strategy == OHS else DPUS, APPROXIMATE


@dataclass(frozen=True)
class TrainParams:
    shape: MLPShape
    seed: int
    epochs: Epochs  # E_1..E_S (training.config_epochs)
    batch_size: int
    learning_rate: float
    m: int


def retrain_start(strategy: str, routes: list[SampleRoute], slices: int, m: int) -> int:
    """The first step a forget of `routes` retrains in its shard; slices + 1 when it retrains none."""
    if strategy == RETRAIN:
        return 1
    if strategy == OHS and any(r.strategy in (DPUS, OHS) for r in routes):
        return slices - m + 1  # retrain the retrain region from the corrected theta_{S-m}
    by_retrain = [r.slice for r in routes if r.strategy in (SISA, RETRAIN)]
    return min(by_retrain) if by_retrain else slices + 1


def forget_shard(
    state: ShardState,
    routes: list[SampleRoute],
    strategy: str,
    params: TrainParams,
    increments: IncrementsFile,
) -> ShardOutcome:
    """The shard's state after forgetting `routes` (its members of F) with the resolved `strategy`.
    theta_0 (where RETRAIN restarts) is never corrected or retrained, so it is always the initialisation.
    `increments(s, rows)` creates the new increments file of a retrained recorded step s: (path, memmap)."""
    S = state.layout.slices
    ckpt = state.checkpoints.copy()
    subtracted = set(state.subtracted)
    alive = state.alive.copy()
    alive[[r.member for r in routes]] = False
    start = retrain_start(strategy, routes, S, params.m)
    if start <= S:  # a retrain must also re-run every step an influence-removed member took part in
        start = min(start, influenced_floor(state))

    by_subtraction = [r.member for r in routes if r.strategy in (DPUS, OHS)]
    params_changed, residue = False, 0
    if by_subtraction:
        params_changed, residue = _subtract(state, ckpt, subtracted, by_subtraction, start, params.shape.num_params)

    new_increments: dict[int, Path] = {}
    read = 0
    if start <= S:
        subtracted = _subtracted_before(state, subtracted, start)
        read = _retrain(state, ckpt, alive, start, params, increments, new_increments)
        params_changed = True
    return ShardOutcome(
        shard=state.shard,
        checkpoints=ckpt,
        params_changed=params_changed,
        optim_changed=start <= S,
        new_increments=new_increments,
        subtracted=subtracted,
        alive=alive,
        residue_steps=residue,
        samples_read=read,
        influenced=frozenset() if start <= S and state.influenced else None,
    )


def influenced_floor(state: ShardState) -> int:
    """The earliest slice of a member removed by INFLUENCE since the shard's last retrain (S + 1: none), where
    any retrain of the shard must start (shard_extras.py says why)."""
    S = state.layout.slices
    return min((state.layout.slice_of(j) for j in state.influenced), default=S + 1)


def correct_checkpoints(ckpt: ShardCheckpoints, sums: dict[int, np.ndarray], start: int) -> None:
    """theta_s -= sums[s] (the increments subtracted that went into theta_s) for every stored checkpoint before
    the retrain's `start`; those from `start` on are retrained from the corrected theta_{start-1}."""
    for s, delta in sums.items():
        if s >= start:
            break
        ckpt.params[s] = subtract(ckpt.params[s], delta)


def _subtract(state: ShardState, ckpt: ShardCheckpoints, subtracted: set[int], members: list[int], start: int,
              num_params: int) -> tuple[bool, int]:
    """DPUS of `members`: subtract their recorded increments not subtracted yet from `ckpt` and add those
    steps to `subtracted` (both in place). Returns (parameters changed, residue steps)."""
    ts = state.index.steps_of(members)
    recorded = ts[ts < state.increments.recorded_end]
    fresh = np.array([t for t in recorded if int(t) not in subtracted], dtype=np.int64)
    correct_checkpoints(ckpt, state.increments.cumulative(fresh, num_params), start)
    subtracted.update(int(t) for t in fresh)
    # Steps past S-m are never recorded: each one that held a forgotten sample and is not retrained now keeps
    # some of its influence. Report it. (offsets[S+1] is the total: with nothing retrained, every step counts.)
    retrain_from_t = int(state.increments.offsets[start])
    residue = int(np.count_nonzero((ts >= state.increments.recorded_end) & (ts < retrain_from_t)))
    return bool(len(fresh)), residue


def _subtracted_before(state: ShardState, subtracted: set[int], start: int) -> set[int]:
    """The subtracted steps a retrain from `start` keeps: it re-records every step from there on."""
    if start == 1:
        return set()
    first_t = int(state.increments.offsets[start])
    return {t for t in subtracted if t < first_t}


def _retrain(state: ShardState, ckpt: ShardCheckpoints, alive: np.ndarray, start: int, params: TrainParams,
             increments: IncrementsFile, new_increments: dict[int, Path]) -> int:
    """Retrain steps start..S without the forgotten members into `ckpt`; returns the samples read."""

    def sink(s: int, rows: int) -> IncrementRows:
        new_increments[s], array = increments(s, rows)
        return array

    return run_steps(
        shape=params.shape,
        layout=state.layout,
        X=state.X,
        y=state.y,
        alive=alive,
        start=ckpt.state(start - 1),
        first=start,
        seed=params.seed,
        shard=state.shard,
        epochs=params.epochs,
        batch_size=params.batch_size,
        learning_rate=params.learning_rate,
        record_upto=state.layout.slices - params.m,
        on_step=ckpt.set,
        increments=sink,
    )
