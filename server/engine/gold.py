"""The gold standard: the live model beside one retrained from scratch on the live rows with the store's own
configuration, compared on the test split (`forgetd verify --gold`, the daemon's `--gold-every N`).

The retrain is what RETRAIN would publish now: every shard from theta_0 on its layout and batch plan with
every forgotten row dropped (the MLP), or each shard's optimum on its rows still present (the linear family).
So a store whose every forget was EXACT compares equal to the bit, and the figures measure what the
approximate strategies (DPUS, HS, OHS, INFLUENCE, CERTIFIED) left behind: test accuracy and loss of both
models, the share of test rows both label alike, the largest difference of a class probability, and the L2
distance between the parameter vectors (all shards together). Within `tolerance_points` of test accuracy
(percentage points, either way) it passes. A store without a test split is compared on its live rows.

`gold_inputs` copies what the retrain needs (the rows, theta_0, the live snapshot) while the engine's lock is
held; `compare_gold` runs without it, so a daemon keeps forgetting while the reference trains.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from forgetd.server.config import EngineConfig
from forgetd.server.engine.linear import served_params, train_shard
from forgetd.server.engine.model import ModelSnapshot
from forgetd.server.engine.state import LoadedStore
from forgetd.server.engine.training import OptState, ShardLayout, config_epochs, deterministic, run_steps

__all__ = ["GoldFigures", "GoldInputs", "gold_inputs", "compare_gold"]


@dataclass(frozen=True)
class _Shard:
    layout: ShardLayout
    X: torch.Tensor  # (n_k, F), a copy
    y: torch.Tensor  # (n_k,)
    alive: np.ndarray  # (n_k,) bool, a copy
    start: OptState  # theta_0 (MLP)
    scale: float | None  # the linear family's input scale; None for the MLP


@dataclass(frozen=True)
class GoldInputs:
    """Everything the reference retrain and the comparison read, copied at one version."""

    config: EngineConfig
    snapshot: ModelSnapshot  # the live version (immutable)
    shards: tuple[_Shard, ...]
    X_eval: np.ndarray  # (N, F) the test split, or the live rows when there is none
    y_eval: np.ndarray  # (N,)
    on_test: bool


@dataclass(frozen=True)
class GoldFigures:
    version: int
    digest: str
    rows: int  # rows compared on
    on_test: bool  # the test split (else the live training rows)
    live_accuracy: float
    gold_accuracy: float
    live_loss: float  # mean cross-entropy of the served probabilities
    gold_loss: float
    label_agreement: float  # share of rows both models label alike
    max_probability_difference: float  # largest |p_live - p_gold| over rows and classes
    parameter_distance: float  # ||theta_live - theta_gold||_2 over every shard's parameters
    tolerance_points: float
    seconds: float  # the reference's training and the comparison

    @property
    def gap_points(self) -> float:
        """Live minus gold test accuracy, in percentage points."""
        return 100.0 * (self.live_accuracy - self.gold_accuracy)

    @property
    def passed(self) -> bool:
        return abs(self.gap_points) <= self.tolerance_points

    def summary(self) -> str:
        where = "test" if self.on_test else "live training"
        return (f"accuracy {100 * self.live_accuracy:.2f}% live vs {100 * self.gold_accuracy:.2f}% retrained "
                f"({self.gap_points:+.2f} points, tolerance {self.tolerance_points:g}), loss {self.live_loss:.4f} vs "
                f"{self.gold_loss:.4f}, labels agree on {100 * self.label_agreement:.2f}% of {self.rows} {where} rows, "
                f"max probability difference {self.max_probability_difference:.4g}, parameter distance "
                f"{self.parameter_distance:.4g}")

    def to_payload(self) -> dict[str, Any]:
        """The figures as the ledger's audit.gold records them: reals as shortest decimal strings (no floats)."""
        reals = ("live_accuracy", "gold_accuracy", "live_loss", "gold_loss", "label_agreement",
                 "max_probability_difference", "parameter_distance", "tolerance_points")
        return {"model": {"version": self.version, "digest": self.digest}, "rows": self.rows, "on_test": self.on_test,
                **{name: repr(float(getattr(self, name))) for name in reals},
                "gap_points": repr(self.gap_points), "passed": self.passed,
                "micros": int(round(self.seconds * 1e6))}


def gold_inputs(store: LoadedStore) -> GoldInputs:
    """Copies of what the reference needs, taken at the store's live version (hold the engine's lock)."""
    shards = tuple(_Shard(st.layout, st.X.clone(), st.y.clone(), st.alive.copy(), st.checkpoints.state(0),
                          None if st.linear is None else st.linear.scale) for st in store.shards)
    if len(store.y_test):
        X_eval, y_eval, on_test = store.X_test, store.y_test, True
    else:
        X_eval = np.concatenate([st.X[torch.from_numpy(st.alive)].cpu().numpy() for st in store.shards])
        y_eval = np.concatenate([st.y[torch.from_numpy(st.alive)].cpu().numpy() for st in store.shards])
        on_test = False
    return GoldInputs(store.config, store.snapshot, shards, X_eval, y_eval, on_test)


def compare_gold(inputs: GoldInputs, tolerance_points: float) -> GoldFigures:
    """Retrain the reference and compare it with the live model. The retrain runs inside training.deterministic()
    (which a daemon's worker may enter at the same time: it counts its holders), so the reference is bitwise
    what RETRAIN would publish on this device."""
    t0 = time.perf_counter()
    snap = inputs.snapshot
    with deterministic():
        gold = [_retrain(inputs, k, sh) for k, sh in enumerate(inputs.shards)]
    params = tuple(torch.from_numpy(p).to(snap.device) for p in gold)
    reference = ModelSnapshot(snap.version, "", (), snap.shape, params, snap.aggregation, snap.device)
    p_live, p_gold = snap.predict_proba(inputs.X_eval), reference.predict_proba(inputs.X_eval)  # (N, C)
    y = inputs.y_eval
    live_params = np.concatenate([t.detach().cpu().numpy().astype(np.float64) for t in snap.params])
    distance = float(np.linalg.norm(live_params - np.concatenate(gold).astype(np.float64)))
    return GoldFigures(
        version=snap.version, digest=snap.digest, rows=len(y), on_test=inputs.on_test,
        live_accuracy=_accuracy(p_live, y), gold_accuracy=_accuracy(p_gold, y),
        live_loss=_loss(p_live, y), gold_loss=_loss(p_gold, y),
        label_agreement=float((p_live.argmax(1) == p_gold.argmax(1)).mean()) if len(y) else 1.0,
        max_probability_difference=float(np.abs(p_live - p_gold).max()) if len(y) else 0.0,
        parameter_distance=distance, tolerance_points=float(tolerance_points),
        seconds=time.perf_counter() - t0,
    )


def _retrain(inputs: GoldInputs, k: int, sh: _Shard) -> np.ndarray:
    cfg, shape = inputs.config, inputs.snapshot.shape
    if sh.scale is not None:
        keep = torch.from_numpy(sh.alive).to(sh.X.device)
        state, _ = train_shard(sh.X[keep], sh.y[keep], shape.num_classes, sh.scale, cfg, k)
        return served_params(state, shape.num_features, shape.num_classes)
    last: list[np.ndarray] = []
    run_steps(shape=shape, layout=sh.layout, X=sh.X, y=sh.y, alive=sh.alive, start=sh.start, first=1, seed=cfg.seed,
              shard=k, epochs=config_epochs(cfg), batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
              record_upto=0, on_step=lambda s, state: last.append(state.params.detach().cpu().numpy()))
    return last[-1]


def _accuracy(p: np.ndarray, y: np.ndarray) -> float:
    return float((p.argmax(1) == y).mean()) if len(y) else 0.0


def _loss(p: np.ndarray, y: np.ndarray) -> float:
    if not len(y):
        return 0.0
    picked = np.clip(p[np.arange(len(y)), y].astype(np.float64), 1e-12, 1.0)
    return float(-np.mean(np.log(picked))) if math.isfinite(float(picked.sum())) else math.inf
