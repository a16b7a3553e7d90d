"""The forget strategies of ../shared/UNLEARNING.md, applied to one shard's state without touching disk.

`forget_shard` takes a shard's live state, the forget set's members in that shard and a strategy, and
returns the shard's *new* state (copies: the caller publishes it atomically or drops it). The rules:

- RETRAIN: train from theta_0 without F (all shards; the caller passes every shard).
- SISA:    restore theta_{i-1}, i = F's earliest slice, retrain steps i..S without F.
- DPUS:    theta_S -= sum of Delta_t over F's recorded steps not yet subtracted (each step once, ever).
- HS:      update-region members by DPUS, then retrain-region members by SISA (from the corrected state).
- OHS:     update-region members: subtract their increments from theta_1..theta_{S-m}, then retrain steps
           S-m+1..S from theta'_{S-m}; retrain-region members only: SISA.

Every subtraction is applied to every stored checkpoint the increments went into (theta_s for s at or after
the increment's step), not just theta_S; otherwise a later retrain that restarts from theta_s would bring the
forgotten sample back. `CORRECT_CHECKPOINTS` exists only so a test can prove that this matters.
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
from forgetd.server.engine.model import MLPShape
from forgetd.server.engine.training import ShardLayout, run_steps

__all__ = [
    "Plan",
    "PlanEntry",
    "ForgetResult",
    "SampleResult",
    "ShardState", "ShardOutcome", "SampleRoute", "TrainParams", "route", "forget_shard", "EXACT", "APPROXIMATE"]

EXACT = "EXACT"
APPROXIMATE = "APPROXIMATE"

# Tests flip this to show that skipping the checkpoint correction breaks composition; never change it.
CORRECT_CHECKPOINTS = True


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


@dataclass(frozen=True)
class SampleRoute:
    member: int  # local index in the shard
    slice: int  # 1-based
    region: str  # "update" | "retrain"
    strategy: str  # what this sample gets: retrain | sisa | dpus | ohs
    guarantee: str


def route(strategy: str, slice_: int, slices: int, m: int) -> tuple[str, str, str]:
    """(region, per-sample strategy, guarantee) of a sample in `slice_` under a resolved request strategy."""
    region = "update" if slice_ <= slices - m else "retrain"
    if strategy in ("retrain", "sisa"):
        return region, strategy, EXACT
    if strategy == "dpus":
        return region, "dpus", APPROXIMATE
    if region == "retrain":
        return region, "sisa", EXACT
    return region, strategy if strategy == "ohs" else "dpus", APPROXIMATE


@dataclass(frozen=True)
class TrainParams:
    shape: MLPShape
    seed: int
    epochs: int
    batch_size: int
    learning_rate: float
    m: int


def forget_shard(
    state: ShardState,
    routes: list[SampleRoute],
    strategy: str,
    params: TrainParams,
    increments: Callable[[int, int], tuple[Path, np.ndarray]],
) -> ShardOutcome:
    """The shard's state after forgetting `routes` (its members of F) with the resolved `strategy`.
    theta_0 (where RETRAIN restarts) is never corrected or retrained, so it is always the initialisation.
    `increments(s, rows)` creates the new increments file of a retrained recorded step s: (path, memmap)."""
    S = state.layout.slices
    m = params.m
    ckpt = state.checkpoints.copy()
    subtracted = set(state.subtracted)
    alive = state.alive.copy()
    members = [r.member for r in routes]
    alive[members] = False

    by_subtraction = [r.member for r in routes if r.strategy in ("dpus", "ohs")]
    by_retrain = [r.slice for r in routes if r.strategy in ("sisa", "retrain")]
    if strategy == "retrain":
        start = 1
    elif strategy == "ohs" and by_subtraction:
        start = S - m + 1  # retrain the retrain region from the corrected theta_{S-m}
    elif by_retrain:
        start = min(by_retrain)
    else:
        start = S + 1  # nothing to retrain

    params_changed = False
    if by_subtraction:
        ts = state.index.steps_of(by_subtraction)
        recorded = ts[ts < state.increments.recorded_end]
        fresh = np.array([t for t in recorded if int(t) not in subtracted], dtype=np.int64)
        sums = state.increments.cumulative(fresh, params.shape.num_params)
        for s, delta in sums.items():
            if s >= start:
                break  # retrained below from the corrected theta_{start-1}
            if s == S or CORRECT_CHECKPOINTS:
                ckpt.params[s] = subtract(ckpt.params[s], delta)
        subtracted.update(int(t) for t in fresh)
        params_changed = bool(len(fresh))
        # Steps past S-m are never recorded: each one that held a forgotten sample and is not retrained
        # now keeps some of its influence. Report it.
        retrain_from_t = int(state.increments.offsets[start]) if start <= S else int(state.increments.offsets[S + 1])
        residue = int(np.count_nonzero((ts >= state.increments.recorded_end) & (ts < retrain_from_t)))
    else:
        residue = 0

    new_increments: dict[int, Path] = {}
    read = 0
    if start <= S:
        if start == 1:
            subtracted.clear()
        else:
            first_t = int(state.increments.offsets[start])
            subtracted = {t for t in subtracted if t < first_t}

        def sink(s: int, rows: int) -> np.ndarray:
            new_increments[s], array = increments(s, rows)
            return array

        begin = ckpt.state(start - 1)
        read = run_steps(
            shape=params.shape,
            layout=state.layout,
            X=state.X,
            y=state.y,
            alive=alive,
            start=begin,
            first=start,
            seed=params.seed,
            shard=state.shard,
            epochs=params.epochs,
            batch_size=params.batch_size,
            learning_rate=params.learning_rate,
            record_upto=S - m,
            on_step=ckpt.set,
            increments=sink,
        )
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
    )


# -- what the engine reports (re-exported by forgetd.server.engine.engine) ------------------------------------------


@dataclass(frozen=True)
class PlanEntry:
    sample_id: str
    shard: int
    slice: int  # 1-based
    region: str  # "update" | "retrain"
    strategy: str  # what this sample gets: retrain | sisa | dpus | ohs
    estimated_samples_read: int  # if it were forgotten alone
    guarantee: str  # EXACT | APPROXIMATE


@dataclass(frozen=True)
class Plan:
    strategy: str  # resolved: never "auto"
    m: int
    samples: tuple[PlanEntry, ...]
    estimated_samples_read: int  # the coalesced request (one retrain per shard from its earliest start)
    guarantee: str


@dataclass(frozen=True)
class SampleResult:
    sample_id: str
    shard: int
    slice: int
    region: str
    strategy: str
    guarantee: str


@dataclass(frozen=True)
class ForgetResult:
    version: int
    digest: str
    shard_digests: tuple[str, ...]
    strategy: str  # resolved
    samples: tuple[SampleResult, ...]
    guarantee: str
    residue_steps: int  # unrecorded optimizer steps that held a DPUS-forgotten sample and were not retrained
    samples_read: int
    seconds: float
    tag: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-safe, no floats: the duration is `micros`."""
        return {
            "version": self.version,
            "digest": self.digest,
            "shard_digests": list(self.shard_digests),
            "strategy": self.strategy,
            "samples": [vars(s).copy() for s in self.samples],
            "guarantee": self.guarantee,
            "residue_steps": self.residue_steps,
            "samples_read": self.samples_read,
            "micros": int(round(self.seconds * 1e6)),
            "tag": self.tag,
        }
