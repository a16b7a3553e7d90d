"""What `forgetd bench unlearning` measures of one strategy: the time and reads of each forget, and how
visible the forgotten samples stay to the two membership-inference attacks."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from forgetd.server.bench.mia import PredictProba, model_loss_attack, shadow_attack
from forgetd.server.config import EngineConfig
from forgetd.server.data import Dataset
from forgetd.server.engine.engine import Engine

__all__ = ["Run", "forget_one", "summary", "ShadowTrainer", "attacks", "auc_se"]


@dataclass
class Run:
    """One strategy's forgets, request by request."""

    seconds: list[float] = field(default_factory=list)
    samples_read: list[int] = field(default_factory=list)
    guarantees: Counter[str] = field(default_factory=Counter)
    routes: Counter[str] = field(default_factory=Counter)  # what each sample got: dpus | sisa | ohs | retrain
    residue_steps: int = 0


def forget_one(engine: Engine, sid: str, strategy: str, run: Run) -> None:
    t0 = time.perf_counter()
    result = engine.forget([sid], strategy)
    run.seconds.append(time.perf_counter() - t0)  # wall time of the whole call, publish included
    run.samples_read.append(result.samples_read)
    run.guarantees[result.guarantee.upper()] += 1  # the tables print guarantees in capitals
    run.routes.update(s.strategy for s in result.samples)
    run.residue_steps += result.residue_steps


def summary(run: Run) -> dict[str, object]:
    s = np.asarray(run.seconds)
    return {
        "mean_seconds": float(s.mean()),
        "p50_seconds": float(np.percentile(s, 50)),
        "p95_seconds": float(np.percentile(s, 95)),
        "samples_read": int(sum(run.samples_read)),  # over all requests
        "samples_read_per_request": float(np.mean(run.samples_read)),
        "guarantees": dict(sorted(run.guarantees.items())),
        "sample_routes": dict(sorted(run.routes.items())),
        "residue_steps": run.residue_steps,
        "request_seconds": [float(x) for x in run.seconds],
    }


class ShadowTrainer:
    """train_fn for mia.shadow_attack: a forgetd store with the bench's own MLP and settings (no increments
    recorded: the budget covers a full retrain, so m = S). Memoised, so the shadow models are trained once and
    every strategy's model faces the same attack classifier."""

    def __init__(self, config: EngineConfig, work: Path, num_features: int, num_classes: int, tick: Callable[[], None]) -> None:
        self._config = dataclasses.replace(config, budget=2**62)
        self._work = work
        self._names = tuple(f"f{j}" for j in range(num_features))
        self._num_classes = num_classes
        self._tick = tick
        self._cache: dict[tuple[int, str], PredictProba] = {}

    def __call__(self, X: np.ndarray, y: np.ndarray, seed: int) -> PredictProba:
        key = (seed, hashlib.sha256(np.ascontiguousarray(X).tobytes() + np.ascontiguousarray(y).tobytes()).hexdigest())
        if key not in self._cache:
            ds = Dataset(name=f"shadow{seed}", feature_names=self._names, train_ids=tuple(f"shadow:{i}" for i in range(len(y))),
                         X_train=X, y_train=y, test_ids=(), X_test=np.zeros((0, len(self._names)), np.float32),
                         y_test=np.zeros(0, np.int64), num_classes=self._num_classes)
            store = self._work / f"shadow-{len(self._cache)}"
            with Engine.train(ds, dataclasses.replace(self._config, seed=seed % 2**62), store) as eng:
                self._cache[key] = eng.snapshot().predict_proba
            shutil.rmtree(store)
            self._tick()
        return self._cache[key]


def attacks(proba: PredictProba, ds: Dataset, forgot: np.ndarray, shadow: ShadowTrainer, seed: int,
            shadows: int) -> dict[str, float | None]:
    """Both attacks on the forgotten rows `forgot` of `ds`'s training split, the test split as non-members."""
    X_f, y_f = ds.X_train[forgot], ds.y_train[forgot]
    loss = model_loss_attack(proba, X_f, y_f, ds.X_test, ds.y_test)
    sh = shadow_attack(shadow, ds.X_train, ds.y_train, proba, X_f, y_f, X_reference=ds.X_test,
                       y_reference=ds.y_test, num_shadows=shadows, seed=seed)
    return {"mia_auc": loss.auc, "mia_auc_se": auc_se(loss.auc, loss.n_members, loss.n_nonmembers),
            "mia_tpr_at_1pct_fpr": loss.tpr_at_1pct_fpr, "shadow_member_rate": sh.member_rate,
            "shadow_test_member_rate": sh.reference_member_rate, "shadow_attack_auc": sh.attack_auc}


def auc_se(auc: float, n_members: int, n_nonmembers: int) -> float:
    """Hanley & McNeil's (1982) standard error of an AUC. With 100 forgotten samples it is about 0.03: the
    noise floor against which "within 0.05 of RETRAIN's AUC" has to be read."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_members - 1) * (q1 - auc**2) + (n_nonmembers - 1) * (q2 - auc**2)) / (n_members * n_nonmembers)
    return float(np.sqrt(max(var, 0.0)))
