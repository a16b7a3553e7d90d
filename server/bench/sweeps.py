"""`forgetd bench unlearning --sweep slices|shards|budget`: one setting varied, everything else held.

    results = run_sweep(load_dataset("adult", PATH), EngineConfig(), "slices", "docs/results/sweep-slices",
                        requests=20, seed=0)

- slices: S in {5, 10, 20, 40}; SISA, HS and OHS time per request and accuracy. The hybrid paper says
  retraining gets cheaper as S grows; under the per-step schedule a full training reads E*n*(S+1)/2, so it
  need not (docs/unlearning.md 2.3), and the sweep shows which it is for the schedule it runs.
- shards: K in {1, 2, 4, 8}; SISA and HS time per request against accuracy under both aggregations (mean of
  probabilities and majority vote: one store, its shards' parameters read both ways).
- budget: phi chosen to give m in {1, 2, 3, 4} exactly (phi = the largest shard's cost of retraining the last
  m slices); HS and OHS time and accuracy, the speed-accuracy frontier, beside SISA's and RETRAIN's.

Each point trains its own store and forgets the same random single-sample requests on one copy per strategy,
the strategies taking turns request by request as in the main bench. A point is one store, so accuracy moves
by the few requests only: the figures that differ between points are time, samples read, and accuracy after
forgetting by subtraction.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from forgetd.server.bench.measure import Run, forget_one, summary
from forgetd.server.bench.report import Results
from forgetd.server.config import EngineConfig
from forgetd.server.data import Dataset
from forgetd.server.engine.engine import Engine
from forgetd.server.engine.model import ModelSnapshot
from forgetd.server.engine.training import config_epochs, cost, make_layout
from forgetd.server.errors import InvalidConfig
from forgetd.server.vocabulary import HS, OHS, RETRAIN, SISA, resolve_device

__all__ = ["SWEEPS", "DEFAULT_VALUES", "run_sweep", "budget_for_m", "sweep_markdown"]

SWEEPS = ("slices", "shards", "budget")
DEFAULT_VALUES = {"slices": (5, 10, 20, 40), "shards": (1, 2, 4, 8), "budget": (1, 2, 3, 4)}
_STRATEGIES = {"slices": (HS, OHS, SISA), "shards": (HS, SISA), "budget": (HS, OHS)}
# m changes nothing SISA or RETRAIN computes (only which steps' increments get recorded again), so the budget
# sweep measures them once, at its first point, as the frontier's references.
_REFERENCES = {"budget": (SISA, RETRAIN)}
_HEADER = {"slices": "S", "shards": "K", "budget": "m asked"}


def budget_for_m(ds: Dataset, cfg: EngineConfig, m: int) -> int:
    """The budget phi that gives threshold m: the largest shard's cost of retraining the last m slices."""
    layouts = make_layout(ds.train_ids, cfg.shards, cfg.slices, cfg.seed)
    epochs = config_epochs(cfg)
    return max(cost([lay.step_size(s) for s in range(1, cfg.slices + 1)], epochs, cfg.slices - m + 1)
               for lay in layouts)


def _point_config(sweep: str, value: int, base: EngineConfig, ds: Dataset) -> EngineConfig:
    if sweep == "slices":
        return dataclasses.replace(base, slices=value)
    if sweep == "shards":
        return dataclasses.replace(base, shards=value)
    return dataclasses.replace(base, budget=budget_for_m(ds, base, value))


def run_sweep(ds: Dataset, base: EngineConfig, sweep: str, out_dir: str | Path, *, requests: int, seed: int,
              values: Sequence[int] | None = None, quiet: bool = False) -> Results:
    """Run `sweep` over `values` (DEFAULT_VALUES when None), `base` giving every other setting, with the same
    `requests` random ids (drawn with `seed`) at every point; write results.json, results.md and sweep.png."""
    if sweep not in SWEEPS:
        raise InvalidConfig(f"sweep is {sweep!r}; choose one of {', '.join(SWEEPS)}")
    vals = tuple(DEFAULT_VALUES[sweep] if values is None else values)
    if not vals or any(not isinstance(v, int) or v < 1 for v in vals):
        raise InvalidConfig(f"sweep values are {list(vals)}; give positive whole numbers, e.g. 5,10,20,40")
    if not 1 <= requests <= len(ds.train_ids):
        raise InvalidConfig(f"requests is {requests}; give 1 to {len(ds.train_ids)} (the training split's rows)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = dataclasses.replace(base, device=resolve_device(base.device))
    rng = np.random.default_rng(seed)
    ids = [ds.train_ids[i] for i in rng.choice(len(ds.train_ids), size=requests, replace=False)]
    results: Results = {"sweep": sweep, "values": list(vals), "requests": requests, "request_ids": ids,
                        "engine": base.to_json_dict(), "dataset": ds.name, "num_train": len(ds.train_ids),
                        "load_average_at_start": list(os.getloadavg()), "points": [], "complete": False}
    work = Path(tempfile.mkdtemp(prefix=".sweep-", dir=out))
    try:
        for i, v in enumerate(tqdm(vals, desc=f"sweep {sweep}", disable=quiet, leave=False)):
            cfg = _point_config(sweep, v, base, ds)
            strategies = _STRATEGIES[sweep] + (_REFERENCES.get(sweep, ()) if i == 0 else ())
            results["points"].append({"value": v, **_measure_point(ds, cfg, ids, strategies, work, quiet)})
            _write(out, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load_average_at_end"] = list(os.getloadavg())
    results["complete"] = True
    from forgetd.server.bench.sweep_plots import plot_sweep  # matplotlib only once there is something to plot

    results["plots"] = [str(plot_sweep(results, out))]
    _write(out, results)
    return results


def _accuracy(snap: ModelSnapshot, ds: Dataset, aggregation: str) -> float:
    if len(ds.y_test) == 0:
        return 0.0
    s = ModelSnapshot(snap.version, snap.digest, snap.shard_digests, snap.shape, snap.params, aggregation, snap.device)
    return float((s.predict_proba(ds.X_test).argmax(1) == ds.y_test).mean())


def _measure_point(ds: Dataset, cfg: EngineConfig, ids: list[str], strategies: Sequence[str], work: Path,
                   quiet: bool) -> dict[str, Any]:
    """Train one store with `cfg`, forget `ids` one by one on a copy per strategy; the point's figures."""
    base_dir = work / "base"
    with Engine.train(ds, cfg, base_dir) as base:
        point: dict[str, Any] = {
            "engine": cfg.to_json_dict(), "epochs_per_step": list(config_epochs(cfg)), "m": base.m,
            "budget": base.budget, "train_seconds": base.train_seconds, "increments_bytes": base.increments_bytes,
            "accuracy_before": {a: _accuracy(base.snapshot(), ds, a) for a in ("mean", "vote")},
            "strategies": {},
        }
    runs = {k: Run() for k in strategies}
    with ExitStack() as stack:
        engines = {}
        for k in strategies:
            shutil.copytree(base_dir, work / k)
            engines[k] = stack.enter_context(Engine.open(work / k, device=cfg.device))
        with tqdm(total=len(ids) * len(strategies), desc=f"{cfg.shards}x{cfg.slices} m={point['m']}", disable=quiet,
                  leave=False) as bar:
            for i, sid in enumerate(ids):
                turn = list(strategies[i % len(strategies):]) + list(strategies[: i % len(strategies)])
                for k in turn:
                    forget_one(engines[k], sid, k, runs[k])
                    bar.update(1)
        for k, eng in engines.items():
            entry = summary(runs[k])
            entry["accuracy"] = {a: _accuracy(eng.snapshot(), ds, a) for a in ("mean", "vote")}
            point["strategies"][k] = entry
    for k in strategies:
        shutil.rmtree(work / k)
    shutil.rmtree(base_dir)
    return point


def sweep_markdown(results: Results) -> str:
    """results.md: one row per (point, strategy)."""
    e = results["engine"]
    lines = [f"Sweep over {results['sweep']} on {results['dataset']} ({results['num_train']} training rows): "
             f"{results['requests']} random single-sample requests per point; K={e['shards']}, S={e['slices']}, "
             f"E={e['epochs']} ({e['epoch_schedule']}), MLP {e['hidden_sizes']}, batch {e['batch_size']} unless varied.",
             "", f"| {_HEADER[results['sweep']]} | m | budget | train s | strategy | mean s/request | p50 s | x SISA | "
             "samples read/request | accuracy % (mean) | accuracy % (vote) | guarantees |",
             "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    with_sisa = [p for p in results["points"] if SISA in p["strategies"]]
    for p in results["points"]:
        s = p["strategies"]
        # x SISA against the point's own SISA; the budget sweep measures SISA once, and m does not change it
        ref = s if SISA in s else (with_sisa[0]["strategies"] if with_sisa and results["sweep"] == "budget" else {})
        sisa = ref[SISA]["mean_seconds"] if SISA in ref else None
        before = p["accuracy_before"]
        lines.append(f"| {p['value']} | {p['m']} | {p['budget']} | {p['train_seconds']:.1f} | before | | | | | "
                     f"{100 * before['mean']:.2f} | {100 * before['vote']:.2f} | |")
        for k, v in s.items():
            x = "-" if sisa is None else f"{sisa / v['mean_seconds']:.1f}"
            g = ", ".join(f"{n} {kind}" for kind, n in v["guarantees"].items())
            lines.append(f"| {p['value']} | {p['m']} | {p['budget']} | | {k.upper()} | {v['mean_seconds']:.4f} | "
                         f"{v['p50_seconds']:.4f} | {x} | {v['samples_read_per_request']:.0f} | "
                         f"{100 * v['accuracy']['mean']:.2f} | {100 * v['accuracy']['vote']:.2f} | {g} |")
    if results["sweep"] == "budget":
        lines += ["", "x SISA: against SISA at the first point; m changes nothing SISA computes."]
    if not results.get("complete"):
        lines += ["", "Partial results: the sweep has not finished."]
    return "\n".join(lines) + "\n"


def _write(out: Path, results: Results) -> None:
    tmp = out / ".results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, out / "results.json")
    (out / "results.md").write_text(sweep_markdown(results))
