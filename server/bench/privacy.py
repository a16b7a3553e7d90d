"""LiRA in `forgetd bench unlearning`: per-example membership inference on the forgotten rows, with shadows
trained the way the target is trained, and the checks that read it.

    probe = LiraProbe.train(ds, engine_config, shadows=64, seed=0)    # the shadow models: the whole cost
    entry = probe.measure(model.predict_proba, forgot)                # AUC, TPR at 0.1% / 1% FPR, 95% CIs
    vulnerable = probe.most_vulnerable(100)                           # the second forget set

The target is a forgetd store: K shards, S cumulative slices, the configured epoch schedule, mean or vote
aggregation. lira.py's `train_plain` shadows are one plain model each, so their confidences would not be
calibrated to the store's (a sliced model sees early slices in more steps than late ones). Here every
shadow is a store without the store: the engine's own layout (keyed-hash shards, seeded slices), its
own optimizer loop (training.run_steps) and schedule, on a random half of the pool, with nothing recorded.
The pool is the training split followed by the test split, so every row the bench asks about, forgotten
training rows and held-out test rows, is IN for half of the shadows and OUT for the other half. A shadow
trains on |pool| / 2 rows (UCI Adult: 24,421) where the target trains on the training split (32,561).

Members are the forgotten rows, non-members every test row; the target's model is scored with the online
variant (IN and OUT Gaussians, the variance pooled below 64 shadows), the offline one reported beside it.
Before forgetting the forgotten rows are members, so the AUC there is the attack's power on that set; after
RETRAIN they are not, and an unlearning strategy should leave them where RETRAIN does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from forgetd.server.bench.lira import Lira, LiraConfig, LiraMetrics, attack_metrics, logit_confidence, membership
from forgetd.server.bench.mia import PredictProba
from forgetd.server.bench.report import Check, Results
from forgetd.server.config import EngineConfig
from forgetd.server.data import Dataset
from forgetd.server.engine.model import MLPShape, ModelSnapshot, init_params
from forgetd.server.engine.training import (
    OptState,
    config_epochs,
    derive_seed,
    deterministic,
    make_layout,
    run_steps,
)
from forgetd.server.vocabulary import DPUS, HS, OHS, RETRAIN, SISA

__all__ = ["LiraProbe", "train_like_the_store", "has_power", "lira_checks", "both_axes_checks", "lira_markdown",
           "POWER_FLOOR", "AUC_TOLERANCE"]

POWER_FLOOR = 0.55  # a forget set gives the attack power when its AUC's whole 95% interval lies above this
AUC_TOLERANCE = 0.02  # how far a strategy's AUC may sit from RETRAIN's (with overlapping intervals)
_CHECKED = (DPUS, HS, OHS)  # the approximate strategies read against RETRAIN


def train_like_the_store(X: np.ndarray, y: np.ndarray, cfg: EngineConfig, seed: int, num_classes: int,
                         device: str) -> PredictProba:
    """A model trained on (X, y) exactly as Engine.train trains a store with `cfg` (seed replaced), without
    checkpoints or increments: the shards' live parameters, aggregated as the store aggregates them."""
    ids = [str(i) for i in range(len(y))]
    layouts = make_layout(ids, cfg.shards, cfg.slices, seed)
    shape = MLPShape(X.shape[1], cfg.hidden_sizes, num_classes)
    dev = torch.device(device)
    epochs = config_epochs(cfg)
    params = []
    with deterministic():
        for k, lay in enumerate(layouts):
            last: list[OptState] = []  # theta_S; the earlier checkpoints are not kept

            def keep_last(_s: int, state: OptState) -> None:
                last[:] = [state]

            p0 = init_params(shape, derive_seed(seed, "init", k))
            zeros = torch.zeros_like(p0)
            run_steps(shape=shape, layout=lay, X=torch.from_numpy(np.ascontiguousarray(X[lay.members])).to(dev),
                      y=torch.from_numpy(np.ascontiguousarray(y[lay.members])).to(dev),
                      alive=np.ones(len(lay.members), bool), start=OptState(p0, zeros, zeros.clone(), 0), first=1,
                      seed=seed, shard=k, epochs=epochs, batch_size=cfg.batch_size,
                      learning_rate=cfg.learning_rate, record_upto=0,
                      on_step=keep_last)
            params.append(last[-1].params.detach())
    snapshot = ModelSnapshot(0, "", (), shape, tuple(params), cfg.aggregation, device)

    def predict_proba(Q: np.ndarray) -> np.ndarray:
        with deterministic():
            return snapshot.predict_proba(Q)

    return predict_proba


class LiraProbe:
    """LiRA's shadow statistics on the pool (training split, then test split), ready to score store models."""

    def __init__(self, attack: Lira, num_train: int, resamples: int, seed: int) -> None:
        self.attack = attack
        self.num_train = num_train
        self.nonmembers = np.arange(num_train, attack.X_pool.shape[0])  # every test row
        self.resamples = resamples
        self.seed = seed

    @classmethod
    def train(cls, ds: Dataset, cfg: EngineConfig, *, shadows: int, seed: int, resamples: int = 1000,
              progress: Callable[[int], None] | None = None) -> LiraProbe:
        X = np.concatenate([ds.X_train, ds.X_test]).astype(np.float32)
        y = np.concatenate([ds.y_train, ds.y_test]).astype(np.int64)
        lcfg = LiraConfig(shadows=shadows, epochs=cfg.epochs, batch_size=cfg.batch_size,
                          learning_rate=cfg.learning_rate, hidden_sizes=cfg.hidden_sizes, seed=seed,
                          resamples=resamples, device=cfg.device)
        keep = membership(shadows, len(y), seed)  # (shadows, pool): each row IN for exactly half
        phi = np.empty(keep.shape, dtype=np.float64)
        seconds = []
        for s in range(shadows):
            t0 = time.perf_counter()
            model = train_like_the_store(X[keep[s]], y[keep[s]], cfg, derive_seed(seed, "lira.shadow", s) % 2**62,
                                         ds.num_classes, cfg.device)
            phi[s] = logit_confidence(model(X), y)
            seconds.append(time.perf_counter() - t0)
            if progress is not None:
                progress(s + 1)
        return cls(Lira(X, y, keep, phi, lcfg, tuple(seconds)), len(ds.y_train), resamples, seed)

    def measure(self, proba: PredictProba, forgot: np.ndarray) -> dict[str, Any]:
        """The attack on `forgot` (training-split positions) against every test row, online and offline."""
        online = self._metrics(proba, forgot, "online")
        offline = self._metrics(proba, forgot, "offline")
        return {**_json(online), "offline_auc": offline.auc, "offline_auc_interval": list(offline.auc_interval)}

    def _metrics(self, proba: PredictProba, forgot: np.ndarray, variant: str) -> LiraMetrics:
        members = self.attack.scores(proba, forgot, variant)
        nonmembers = self.attack.scores(proba, self.nonmembers, variant)
        return attack_metrics(members, nonmembers, resamples=self.resamples, seed=self.seed)

    def most_vulnerable(self, count: int, exclude: np.ndarray | None = None) -> np.ndarray:
        """`count` training rows with the widest IN/OUT separation, none of `exclude`, in that order."""
        ranked = self.attack.most_vulnerable(among=np.arange(self.num_train))
        return ranked[~np.isin(ranked, exclude)][:count] if exclude is not None else ranked[:count]

    def describe(self) -> dict[str, Any]:
        s = np.asarray(self.attack.shadow_seconds)
        return {"shadows": self.attack.config.shadows, "pool": int(self.attack.X_pool.shape[0]),
                "shadow_rows": int(self.attack.keep[0].sum()), "nonmembers": int(self.nonmembers.size),
                "global_variance": self.attack.config.global_variance, "resamples": self.resamples,
                "shadow_seconds_total": float(s.sum()), "shadow_seconds_mean": float(s.mean())}


def _json(m: LiraMetrics) -> dict[str, Any]:
    out = asdict(m)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def has_power(entry: dict[str, Any]) -> bool:
    """Whether an attack entry (before forgetting) tells members from non-members clearly: its whole AUC
    interval above POWER_FLOOR."""
    return bool(entry["auc_interval"][0] > POWER_FLOOR)


def _overlap(a: list[float], b: list[float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def _forget_sets(results: Results) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, before-forgetting entry, strategies) of each forget set the run attacked with LiRA."""
    sets = []
    if "lira" in results.get("original", {}):
        sets.append(("random", results["original"]["lira"], results["strategies"]))
    v = results.get("vulnerable")
    if v and "lira" in v.get("original", {}):
        sets.append(("most vulnerable", v["original"]["lira"], v["strategies"]))
    return sets


def lira_checks(results: Results) -> list[Check]:
    """The LiRA targets: power before forgetting on some forget set; after, each approximate strategy within
    AUC_TOLERANCE of RETRAIN's AUC with overlapping 95% intervals, per forget set."""
    sets = _forget_sets(results)
    if not sets:
        return []
    power = [f"{name} {o['auc']:.3f} [{o['auc_interval'][0]:.3f}, {o['auc_interval'][1]:.3f}]" for name, o, _ in sets]
    out = [Check(f"LiRA clearly above chance before forgetting (AUC interval above {POWER_FLOOR}) on a forget set",
                 "target", "; ".join(power), any(has_power(o) for _, o, _ in sets))]
    for name, _, strategies in sets:
        if RETRAIN not in strategies or "lira" not in strategies[RETRAIN]:
            continue
        ref = strategies[RETRAIN]["lira"]
        for k in _CHECKED:
            if k not in strategies or "lira" not in strategies[k]:
                continue
            e = strategies[k]["lira"]
            ok = abs(e["auc"] - ref["auc"]) <= AUC_TOLERANCE and _overlap(e["auc_interval"], ref["auc_interval"])
            out.append(Check(f"{k.upper()}: LiRA AUC on the {name} forget set within {AUC_TOLERANCE} of RETRAIN's, "
                             "intervals overlapping", "target",
                             f"{e['auc']:.3f} [{e['auc_interval'][0]:.3f}, {e['auc_interval'][1]:.3f}] vs "
                             f"{ref['auc']:.3f} [{ref['auc_interval'][0]:.3f}, {ref['auc_interval'][1]:.3f}]", ok))
    return out


def both_axes_checks(results: Results) -> list[Check]:
    """Beating the paper on both axes at once, per approximate strategy: at least 10x faster than SISA in mean
    time per request, within 0.3 points of RETRAIN's accuracy, and (when LiRA ran) the random forget set's
    LiRA AUC within AUC_TOLERANCE of RETRAIN's."""
    s = results["strategies"]
    if SISA not in s or RETRAIN not in s:
        return []
    out = []
    for k in (HS, OHS, DPUS):
        if k not in s:
            continue
        speed = s[SISA]["mean_seconds"] / s[k]["mean_seconds"]
        points = 100 * (s[k]["accuracy"] - s[RETRAIN]["accuracy"])
        measured = f"{speed:.1f}x SISA, {points:+.2f} points from RETRAIN"
        ok = speed >= 10 and abs(points) <= 0.3
        if "lira" in s[k] and "lira" in s[RETRAIN]:
            gap = s[k]["lira"]["auc"] - s[RETRAIN]["lira"]["auc"]
            measured += f", LiRA AUC {gap:+.3f} from RETRAIN's"
            ok = ok and abs(gap) <= AUC_TOLERANCE
        out.append(Check(f"{k.upper()}: >= 10x faster than SISA and within 0.3 points of RETRAIN at once"
                         + (f" (LiRA AUC within {AUC_TOLERANCE})" if "lira" in s[k] else ""), "target", measured, ok))
    return out


def _row(name: str, e: dict[str, Any]) -> str:
    def iv(key: str) -> str:
        lo, hi = e[f"{key}_interval"]
        return f"{e[key]:.3f} [{lo:.3f}, {hi:.3f}]"

    return (f"| {name} | {iv('auc')} | {iv('tpr_at_0_1pct_fpr')} | {iv('tpr_at_1pct_fpr')} | "
            f"{e['offline_auc']:.3f} | {e['n_members']} |")


def lira_markdown(results: Results) -> str:
    """results.md's LiRA section: one table per forget set, before forgetting and after each strategy."""
    sets = _forget_sets(results)
    if not sets:
        return ""
    d = results.get("lira", {})
    lines = ["", f"LiRA (online; {d.get('shadows')} shadow models trained like the store on halves of a "
                 f"{d.get('pool')}-row pool; non-members: {d.get('nonmembers')} test rows; 95% bootstrap intervals "
                 f"from {d.get('resamples')} resamples):"]
    for name, before, strategies in sets:
        lines += ["", f"| {name} forget set | AUC [95%] | TPR@0.1%FPR [95%] | TPR@1%FPR [95%] | offline AUC | members |",
                  "|---|---:|---:|---:|---:|---:|", _row("before forgetting", before)]
        lines += [_row(k.upper(), v["lira"]) for k, v in strategies.items() if "lira" in v]
    return "\n".join(lines) + "\n"
