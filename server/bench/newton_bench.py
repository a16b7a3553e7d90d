"""`forgetd bench unlearning`'s rows for the Newton strategies (results["newton"]): INFLUENCE on the bench's MLP,
and the linear family (CERTIFIED, and SISA, HS and RETRAIN on it), each strategy on its own copy of a store
trained from the same data, shards, slices and seed.

INFLUENCE on the MLP solves a conjugate-gradient system over every retained row per request (seconds on Adult),
so it runs the first `influence_requests` of the bench's requests, not all of them; the linear strategies run
every request, interleaved like the MLP's. Membership inference is the bench's own two attacks, the shadow
models trained like the store under attack (MLP shadows for INFLUENCE, linear ones for the linear family).

CERTIFIED's cost per removal is measured apart from publishing a version, on the same sequence of removals:
the engine's step (engine/linear.py: the Hessian kept per shard and downdated by the removed rows, formed
afresh only when the weights drifted too far for the bound) beside the baseline that forms the Hessian of the
remaining rows for every removal (certified.certify_removal), in the same run.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from forgetd.server.bench.measure import Run, ShadowTrainer, attacks, summary
from forgetd.server.config import EngineConfig
from forgetd.server.data import Dataset
from forgetd.server.engine.certified import LinearModel, RetrainRequired, certify_removal, perturbation
from forgetd.server.engine.engine import Engine
from forgetd.server.engine.linear import (
    LinearShard,
    ScaledRows,
    certified_config,
    certified_step,
    noise_seed,
    scaled_rows,
    train_shard,
)
from forgetd.server.engine.training import TRAIN_THREADS
from forgetd.server.vocabulary import CERTIFIED, HS, INFLUENCE, LINEAR, RETRAIN, SISA

__all__ = ["LINEAR_STRATEGIES", "run_newton", "newton_markdown"]

LINEAR_STRATEGIES = (CERTIFIED, SISA, HS, RETRAIN)


def run_newton(ecfg: EngineConfig, ds: Dataset, ids: list[str], work: Path, *, seed: int, shadows: int,
               influence_requests: int, mlp_shadow: ShadowTrainer, base: Path) -> dict[str, Any]:
    """INFLUENCE on a copy of the MLP store at `base`, then the linear family, then CERTIFIED's removal cost."""
    position = {sid: i for i, sid in enumerate(ds.train_ids)}
    out: dict[str, Any] = {"influence_requests": min(influence_requests, len(ids))}
    some = ids[: out["influence_requests"]]
    if some:
        shutil.copytree(base, work / "influence")
        with Engine.open(work / "influence", device=ecfg.device) as eng:
            entry, _ = _forgets(eng, some, INFLUENCE)
            entry["accuracy"] = eng.evaluate()
            entry.update(attacks(eng.snapshot().predict_proba, ds, np.sort([position[i] for i in some]), mlp_shadow,
                                 seed, shadows))
        shutil.rmtree(work / "influence")
        out["mlp"] = {INFLUENCE: entry}
    lcfg = dataclasses.replace(ecfg, model=LINEAR)
    out["linear_config"] = lcfg.to_json_dict()
    t0 = time.perf_counter()
    Engine.train(ds, lcfg, work / "linear").close()
    out["linear_train_seconds"] = time.perf_counter() - t0
    shadow = ShadowTrainer(lcfg, work, ds.num_features, ds.num_classes, lambda: None)
    out["linear"] = _linear_rows(work, ds, ids, lcfg, seed, shadows, shadow, np.sort([position[i] for i in ids]))
    out["removal"] = _removal_cost(work / "linear", ids, lcfg)
    shutil.rmtree(work / "linear")
    return out


def _forgets(eng: Engine, ids: list[str], strategy: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    run, details = Run(), []
    for sid in ids:
        t0 = time.perf_counter()
        report = eng.forget([sid], strategy)
        run.seconds.append(time.perf_counter() - t0)
        run.samples_read.append(report.samples_read)
        run.guarantees[report.guarantee.upper()] += 1
        run.routes.update(s.strategy for s in report.samples)
        details.append(report.details)
    entry = summary(run)
    steps = [step for d in details for step in d.get("influence", ())]
    if steps:
        entry["influence"] = {
            "cg_iterations_mean": float(np.mean([s.get("cg_iterations", 0) for s in steps])),
            "damping": dict(Counter(s["damping"] for s in steps)),
            "retrained": sum(bool(s["retrained"]) for s in steps),
            "retained_grad_norm_mean": float(np.mean([float(s.get("retained_grad_norm", "nan")) for s in steps])),
        }
    return entry, details


def _linear_rows(work: Path, ds: Dataset, ids: list[str], lcfg: EngineConfig, seed: int, shadows: int,
                 shadow: ShadowTrainer, forgot: np.ndarray) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    engines = {}
    for k in LINEAR_STRATEGIES:
        shutil.copytree(work / "linear", work / f"linear-{k}")
        engines[k] = Engine.open(work / f"linear-{k}", device=lcfg.device)
    try:
        runs: dict[str, tuple[Run, list[dict[str, Any]]]] = {k: (Run(), []) for k in LINEAR_STRATEGIES}
        for i, sid in enumerate(ids):  # interleaved, like the MLP's rows, so load falls on every strategy alike
            turn = LINEAR_STRATEGIES[i % 4:] + LINEAR_STRATEGIES[: i % 4]
            for k in turn:
                run, details = runs[k]
                t0 = time.perf_counter()
                report = engines[k].forget([sid], k)
                run.seconds.append(time.perf_counter() - t0)
                run.samples_read.append(report.samples_read)
                run.guarantees[report.guarantee.upper()] += 1
                details.append(report.details)
        for k, eng in engines.items():
            entry = summary(runs[k][0])
            entry["accuracy"] = eng.evaluate()
            entry["digest"] = eng.digest()
            entry.update(attacks(eng.snapshot().predict_proba, ds, forgot, shadow, seed, shadows))
            if k == CERTIFIED:
                entry["certified"] = _spent([d["certified"] for d in runs[k][1]], len(ids))
            rows[k] = entry
    finally:
        for k, eng in engines.items():
            eng.close()
            shutil.rmtree(work / f"linear-{k}", ignore_errors=True)
    return rows


def _spent(records: list[dict[str, Any]], requests: int) -> dict[str, Any]:
    """Budget arithmetic over the requests: epsilon the certified steps spent (per 100), retrains, rebuilds."""
    c = records[0]
    budget, sigma, epsilon = float(c["budget"]), float(c["sigma"]), float(c["epsilon"])
    steps = [s for r in records for s in r["shards"]]
    spent = sum(float(s["step_bound"]) for s in steps) / budget * epsilon if budget > 0 else float("inf")
    return {"epsilon": epsilon, "delta": float(c["delta"]), "sigma": sigma, "budget": budget,
            "epsilon_spent_per_100_removals": spent * 100 / requests,
            "retrains": sum(bool(s["retrained"]) for s in steps), "hessian_rebuilds": sum(bool(s["rebuilt"]) for s in steps),
            "budget_left_at_end": float(steps[-1]["budget_left"])}


def _removal_cost(store: Path, ids: list[str], lcfg: EngineConfig) -> dict[str, Any]:
    """ms per removal: the engine's certified step, then (a second pass over the same removals, so neither evicts
    the other's rows from the caches) the baseline that forms the remaining rows' Hessian for every removal."""
    with Engine.open(store, device="cpu") as eng:
        st, index = eng._store.shards[0], eng._store.index
        where = [int(index.local_of[p]) for p in (index.position(eng.subject_key, sid) for sid in ids)
                 if p is not None and int(index.shard_of[p]) == 0]
        assert st.linear is not None
        X_all, C = scaled_rows(st.X, st.linear.scale), eng.num_classes
        rows = ScaledRows(X_all, X_all.to(torch.float32))
        fast, retrains, rebuilds, spent = _timed(where, st.alive.copy(), lambda j, keep, state: _engine_step(
            state, st, j, keep, rows, C, lcfg), st.linear)
        scale = st.linear.scale
        slow, paper_retrains, _, paper_spent = _timed(where, st.alive.copy(), lambda j, keep, model: _baseline_step(
            model, st, j, keep, X_all, C, lcfg, scale), _as_model(st.linear, C, lcfg))
    def ms(xs: list[float]) -> dict[str, float]:
        return {"mean": 1e3 * float(np.mean(xs)), "p50": 1e3 * float(np.median(xs)),
                "p95": 1e3 * float(np.percentile(xs, 95))}
    per_100 = 100 / max(len(fast), 1) * lcfg.epsilon / certified_config(lcfg).budget  # bound -> epsilon, per 100
    return {"removals": len(fast), "engine_ms": ms(fast), "rebuild_every_time_ms": ms(slow), "retrains": retrains,
            "hessian_rebuilds": rebuilds, "threads": TRAIN_THREADS, "epsilon_per_100": spent * per_100,
            "paper_bound_epsilon_per_100": paper_spent * per_100, "paper_bound_retrains": paper_retrains}


def _timed(where: list[int], alive: np.ndarray, step: Any, state: Any) -> tuple[list[float], int, int, float]:
    """Each removal's time, the retrains and rebuilds, and the sum of the steps' bounds, as `step(j, keep, state)
    -> (state, retrained, rebuilt, seconds, step bound)` reported them."""
    times, retrains, rebuilds, spent = [], 0, 0, 0.0
    for j in where:
        alive[j] = False
        state, retrained, rebuilt, seconds, bound = step(j, torch.from_numpy(alive.copy()), state)
        times.append(seconds)
        retrains, rebuilds, spent = retrains + retrained, rebuilds + rebuilt, spent + bound
    return times, retrains, rebuilds, spent


def _engine_step(state: LinearShard, st: Any, j: int, keep: torch.Tensor, rows: ScaledRows, C: int,
                 lcfg: EngineConfig) -> tuple[LinearShard, bool, bool, float, float]:
    t0 = time.perf_counter()
    step = certified_step(state, (st.X[[j]], st.y[[j]]), C, lcfg, lambda: (rows, keep))
    seconds = time.perf_counter() - t0
    if step is None:  # the budget is spent: the engine retrains the shard (not timed: a retrain, not a removal)
        return train_shard(st.X[keep], st.y[keep], C, state.scale, lcfg, 0)[0], True, False, seconds, 0.0
    return step.state, False, step.rebuilt, seconds, step.step_bound


def _baseline_step(model: LinearModel, st: Any, j: int, keep: torch.Tensor, X_all: torch.Tensor, C: int,
                   lcfg: EngineConfig, scale: float) -> tuple[LinearModel, bool, bool, float, float]:
    t0 = time.perf_counter()
    got = certify_removal(model, (X_all[keep], st.y[keep]), (X_all[[j]], st.y[[j]]))
    seconds = time.perf_counter() - t0
    if isinstance(got, RetrainRequired):
        fresh = _as_model(train_shard(st.X[keep], st.y[keep], C, scale, lcfg, 0)[0], C, lcfg)
        return fresh, True, False, seconds, got.step_bound
    return got.model, False, False, seconds, got.step_bound


def _as_model(state: LinearShard, num_classes: int, lcfg: EngineConfig) -> LinearModel:
    config = certified_config(lcfg)
    W = torch.from_numpy(state.weights.copy())
    shape = (int(W.shape[0]), int(W.shape[1]))
    return LinearModel(W, perturbation(noise_seed(lcfg.seed, 0), shape, config.sigma), noise_seed(lcfg.seed, 0),
                       num_classes, config, state.rows, state.data_norm, state.row_norm, state.train_grad_norm,
                       state.bound, state.removed)


def newton_markdown(results: dict[str, Any]) -> str:
    """The Newton strategies' table and CERTIFIED's budget line, for results.md and the README."""
    n = results.get("newton")
    if not n:
        return ""
    lines = ["", "| family | strategy | requests | mean s/request | p50 s | accuracy % | MIA AUC ± SE | shadow member "
                 "rate | guarantees | notes |", "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    rows = [("MLP", k, v) for k, v in n.get("mlp", {}).items()] + [("linear", k, v) for k, v in n["linear"].items()]
    for family, k, v in rows:
        g = ", ".join(f"{c} {kind}" for kind, c in v["guarantees"].items())
        note = ""
        if "influence" in v:
            i = v["influence"]
            note = (f"CG {i['cg_iterations_mean']:.1f} products; damping {i['damping']}; "
                    f"{i['retrained']} fell back to a retrain")
        if "certified" in v:
            c = v["certified"]
            note = (f"epsilon {c['epsilon']:g}, delta {c['delta']:g}: {c['epsilon_spent_per_100_removals']:.3f} "
                    f"epsilon per 100 removals, {c['retrains']} retrains, {c['hessian_rebuilds']} Hessian rebuilds")
        lines.append(f"| {family} | {k.upper()} | {len(v['request_seconds'])} | {v['mean_seconds']:.4f} | "
                     f"{v['p50_seconds']:.4f} | {100 * v['accuracy']:.2f} | {v['mia_auc']:.3f} ± {v['mia_auc_se']:.3f} | "
                     f"{v['shadow_member_rate']:.2f} | {g} | {note} |")
    r = n["removal"]
    lines += ["", f"CERTIFIED removal alone (no publishing), {r['removals']} removals on {r['threads']} thread(s): "
                  f"{r['engine_ms']['mean']:.2f} ms mean (p50 {r['engine_ms']['p50']:.2f}, p95 {r['engine_ms']['p95']:.2f}) "
                  f"with the Hessian kept and downdated ({r['hessian_rebuilds']} rebuilds, {r['retrains']} retrains); "
                  f"forming it afresh for every removal: {r['rebuild_every_time_ms']['mean']:.2f} ms mean "
                  f"(p50 {r['rebuild_every_time_ms']['p50']:.2f}). Epsilon per 100 removals: "
                  f"{r['epsilon_per_100']:.3f} with the engine's bound, {r['paper_bound_epsilon_per_100']:.3f} with "
                  f"the paper's ({r['paper_bound_retrains']} retrains). The linear store trained in "
                  f"{n['linear_train_seconds']:.1f} s."]
    return "\n".join(lines) + "\n"
