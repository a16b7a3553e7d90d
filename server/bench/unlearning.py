"""`forgetd bench unlearning`: the hybrid-unlearning paper's evaluation (section 4.4), measured on forgetd.

    config = BenchConfig(data="adult:../shared/datasets/adult", requests=100, epochs=2, budget=65122)
    results = run_bench(config, "bench-out/adult")       # writes results.json, results.md and PNG plots

Protocol (../shared/UNLEARNING.md, Evaluation): train one store; for each strategy, on its own copy of that
store, forget the same random single-sample requests one after another, timing each call; then measure test
accuracy and membership inference on the forgotten samples. The strategies take turns request by request
(each still sees its own requests in order), so load from other work on the machine falls on all of them. A burst run forgets the same ids as one coalesced
request, again on a fresh copy. RETRAIN's final model is the model trained from scratch without the forgotten
samples: it is the reference every membership-inference figure is read against.

Nothing here is mocked or sampled down: every number is one forgetd engine call on the real store.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forgetd.server.config import EngineConfig
from forgetd.server.data.loaders import Dataset, load_dataset
from forgetd.server.engine.engine import Engine
from forgetd.server.vocabulary import resolve_device
from forgetd.server.errors import InvalidConfig
from forgetd.server.bench.mia import PredictProba, model_loss_attack, shadow_attack

__all__ = ["BenchConfig", "BENCH_STRATEGIES", "run_bench", "assess", "Check", "parse_data_spec", "write_markdown"]

# Cheapest first, so a long run's partial results.json already holds the fast strategies.
BENCH_STRATEGIES = ("dpus", "hs", "ohs", "sisa", "retrain")
DATA_KINDS_HELP = "adult:DIR, csv:PATH, npz:PATH or synthetic"


def parse_data_spec(spec: str) -> tuple[str, str | None]:
    """("adult", "DIR") from "adult:DIR"; ("synthetic", None) from "synthetic"."""
    kind, _, path = spec.partition(":")
    if kind == "synthetic" and not path:
        return kind, None
    if kind in ("adult", "csv", "npz") and path:
        return kind, path
    raise InvalidConfig(f"data is {spec!r}; give {DATA_KINDS_HELP}")


@dataclass(frozen=True)
class BenchConfig:
    """One bench run. Engine settings left as None take EngineConfig's defaults (the paper's MLP)."""

    data: str  # adult:DIR | csv:PATH | npz:PATH | synthetic
    requests: int = 100  # random single-sample requests, handled one after another (the paper's 100)
    slices: int | None = None  # S (EngineConfig default 10)
    shards: int | None = None  # K (the paper uses 1)
    epochs: int | None = None  # E per step
    budget: int | None = None  # phi in samples read; sets m (None: half a full retrain)
    seed: int = 0  # training seed and the seed that draws the requests
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    rows: int = 2000  # rows of the synthetic data set (ignored for other kinds)
    shadows: int = 4  # shadow models of the shadow attack, each trained on half the training split
    burst: bool = True  # also time the same ids as one coalesced request per strategy

    def __post_init__(self) -> None:
        parse_data_spec(self.data)
        for name in ("requests", "rows", "shadows", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidConfig(f"{name} is {value!r}; give a whole number")
        if self.requests < 1:
            raise InvalidConfig(f"requests is {self.requests}; give at least 1 (the paper uses 100)")
        if self.rows < 10:
            raise InvalidConfig(f"rows is {self.rows}; a synthetic data set needs at least 10 rows")
        if self.shadows < 1:
            raise InvalidConfig(f"shadows is {self.shadows}; the shadow attack needs at least 1 shadow model")
        self.engine_config()  # engine settings are validated by the engine's own rules

    def engine_config(self) -> EngineConfig:
        given = {"slices": self.slices, "shards": self.shards, "epochs": self.epochs, "budget": self.budget}
        return EngineConfig(seed=self.seed, device=self.device, **{k: v for k, v in given.items() if v is not None})

    def load(self) -> Dataset:
        kind, path = parse_data_spec(self.data)
        return load_dataset(kind, path, **({"n": self.rows, "seed": self.seed} if kind == "synthetic" else {}))


# -- measuring one strategy ---------------------------------------------------------------------------------


@dataclass
class _Run:
    seconds: list[float] = field(default_factory=list)
    samples_read: list[int] = field(default_factory=list)
    guarantees: Counter[str] = field(default_factory=Counter)
    routes: Counter[str] = field(default_factory=Counter)  # what each sample got: dpus | sisa | ohs | retrain
    residue_steps: int = 0


def _forget_one(engine: Engine, sid: str, strategy: str, run: _Run) -> None:
    t0 = time.perf_counter()
    result = engine.forget([sid], strategy)
    run.seconds.append(time.perf_counter() - t0)  # wall time of the whole call, publish included
    run.samples_read.append(result.samples_read)
    run.guarantees[result.guarantee] += 1
    run.routes.update(s.strategy for s in result.samples)
    run.residue_steps += result.residue_steps


def _copy_store(base: Path, work: Path, name: str) -> Path:
    dst = work / name
    shutil.copytree(base, dst)
    return dst


class _ShadowTrainer:
    """train_fn for mia.shadow_attack: a forgetd store with the bench's own MLP and settings (no increments
    recorded: the budget covers a full retrain, so m = S). Memoised, so the shadow models are trained once and
    every strategy's model faces the same attack classifier."""

    def __init__(self, config: EngineConfig, work: Path, num_features: int, num_classes: int, tick: Callable[[], None]) -> None:
        self._config = EngineConfig(**{**asdict(config), "budget": 2**62})
        self._work = work
        self._names = tuple(f"f{j}" for j in range(num_features))
        self._num_classes = num_classes
        self._tick = tick
        self._cache: dict[tuple[int, str], PredictProba] = {}

    def __call__(self, X: np.ndarray, y: np.ndarray, seed: int) -> PredictProba:
        key = (seed, hashlib.sha256(np.ascontiguousarray(X).tobytes() + np.ascontiguousarray(y).tobytes()).hexdigest())
        if key not in self._cache:
            ds = Dataset(name=f"shadow{seed}", feature_names=self._names, train_ids=[f"shadow:{i}" for i in range(len(y))],
                         X_train=X, y_train=y, test_ids=(), X_test=np.zeros((0, len(self._names)), np.float32),
                         y_test=np.zeros(0, np.int64), num_classes=self._num_classes)
            store = self._work / f"shadow-{len(self._cache)}"
            with Engine.train(ds, EngineConfig(**{**asdict(self._config), "seed": seed % 2**62}), store) as eng:
                self._cache[key] = eng.snapshot().predict_proba
            shutil.rmtree(store)
            self._tick()
        return self._cache[key]


def _attacks(proba: PredictProba, ds: Dataset, forgot: np.ndarray, shadow: _ShadowTrainer, seed: int, shadows: int) -> dict[str, Any]:
    X_f, y_f = ds.X_train[forgot], ds.y_train[forgot]
    loss = model_loss_attack(proba, X_f, y_f, ds.X_test, ds.y_test)
    sh = shadow_attack(shadow, ds.X_train, ds.y_train, proba, X_f, y_f, X_reference=ds.X_test,
                       y_reference=ds.y_test, num_shadows=shadows, seed=seed)
    return {"mia_auc": loss.auc, "mia_auc_se": _auc_se(loss.auc, loss.n_members, loss.n_nonmembers),
            "mia_tpr_at_1pct_fpr": loss.tpr_at_1pct_fpr, "shadow_member_rate": sh.member_rate,
            "shadow_test_member_rate": sh.reference_member_rate, "shadow_attack_auc": sh.attack_auc}


def _auc_se(auc: float, n_members: int, n_nonmembers: int) -> float:
    """Hanley & McNeil's (1982) standard error of an AUC. With 100 forgotten samples it is about 0.03: the
    noise floor against which "within 0.05 of RETRAIN's AUC" has to be read."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_members - 1) * (q1 - auc**2) + (n_nonmembers - 1) * (q2 - auc**2)) / (n_members * n_nonmembers)
    return float(np.sqrt(max(var, 0.0)))


def _summary(run: _Run) -> dict[str, Any]:
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


# -- the run ------------------------------------------------------------------------------------------------


def run_bench(config: BenchConfig, out_dir: str | Path, *, quiet: bool = False,
              dataset: Dataset | None = None) -> dict[str, Any]:
    """Run the whole protocol and write results.json, results.md and the plots into `out_dir`. results.json
    is rewritten after every strategy ("complete": false until the end), so a long run that is stopped still
    leaves what it measured."""
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = dataset if dataset is not None else config.load()
    if config.requests > len(ds.train_ids):
        raise InvalidConfig(f"requests is {config.requests} but the training split has {len(ds.train_ids)} rows; ask for fewer")
    if len(ds.test_ids) < 2:
        raise InvalidConfig(f"the data set has {len(ds.test_ids)} test rows; membership inference needs held-out rows")
    ecfg = config.engine_config()
    device = resolve_device(ecfg.device)
    ecfg = EngineConfig(**{**asdict(ecfg), "device": device})
    rng = np.random.default_rng(config.seed)
    forgot = np.sort(rng.choice(len(ds.train_ids), size=config.requests, replace=False))
    order = rng.permutation(forgot)  # request order, independent of position in the data
    ids = [ds.train_ids[i] for i in order]

    import torch

    results: dict[str, Any] = {"config": {}, "strategies": {}, "complete": False}
    work = Path(tempfile.mkdtemp(prefix=".bench-", dir=out))
    try:
        with tqdm(total=0, unit="batch", desc="training", disable=quiet, leave=False) as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            base = Engine.train(ds, ecfg, work / "base", progress=progress)
        with base:
            results["config"] = {
                **{k: v for k, v in asdict(config).items() if k not in ("device",)},
                "engine": ecfg.to_json_dict(),
                "device": device,
                "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else platform.processor() or platform.machine(),
                "torch": torch.__version__,
                "cpu_count": os.cpu_count(),
                # Timings share the machine: the load says how much other work ran beside them.
                "load_average_at_start": list(os.getloadavg()),
                "dataset": ds.name,
                "data_digest": ds.digest(),
                "num_train": len(ds.train_ids),
                "num_test": len(ds.test_ids),
                "m": base.m,
                "budget": base.budget,
                "increments_bytes": base.increments_bytes,
                "train_seconds": base.train_seconds,
                "accuracy_before": base.evaluate(),
                "request_ids": ids,
            }
            original_proba = base.snapshot().predict_proba
        with tqdm(total=config.shadows, desc="shadow models", disable=quiet, leave=False) as sbar:
            shadow = _ShadowTrainer(ecfg, work, ds.num_features, ds.num_classes, lambda: sbar.update(1))
            # Before any forgetting: how visible the samples we are about to forget are (the attack's power).
            results["original"] = _attacks(original_proba, ds, forgot, shadow, config.seed, config.shadows)
        _write(out, results)

        # Interleaved: request i goes to every strategy before request i+1 goes to any, so a change in the
        # machine's load over the run (other work on a shared machine) weighs on every strategy alike.
        runs = {k: _Run() for k in BENCH_STRATEGIES}
        with ExitStack() as stack:
            engines = {k: stack.enter_context(Engine.open(_copy_store(work / "base", work, k), device=device))
                       for k in BENCH_STRATEGIES}
            with tqdm(total=len(ids) * len(engines), desc="requests", unit="forget", disable=quiet, leave=False) as bar:
                for i, sid in enumerate(ids):
                    turn = BENCH_STRATEGIES[i % len(engines):] + BENCH_STRATEGIES[: i % len(engines)]  # no fixed first
                    for k in turn:
                        _forget_one(engines[k], sid, k, runs[k])
                        bar.update(1)
            for k, eng in engines.items():
                entry = _summary(runs[k])
                entry["accuracy"] = eng.evaluate()
                entry["digest"] = eng.digest()
                entry.update(_attacks(eng.snapshot().predict_proba, ds, forgot, shadow, config.seed, config.shadows))
                entry["burst_seconds"] = None
                results["strategies"][k] = entry
        for k in BENCH_STRATEGIES:
            shutil.rmtree(work / k)
        _write(out, results)

        if config.burst:
            for k in tqdm(BENCH_STRATEGIES, desc="bursts", disable=quiet, leave=False):
                entry = results["strategies"][k]
                with Engine.open(_copy_store(work / "base", work, f"{k}-burst"), device=device) as eng:
                    t0 = time.perf_counter()
                    burst = eng.forget(ids, k)
                    entry["burst_seconds"] = time.perf_counter() - t0
                    entry["burst_samples_read"] = burst.samples_read
                    entry["burst_accuracy"] = eng.evaluate()
                    entry["burst_guarantee"] = burst.guarantee
                shutil.rmtree(work / f"{k}-burst")
                _write(out, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    s = results["strategies"]
    # Exact unlearning, checked bitwise: SISA after every request is the model RETRAIN trained from scratch.
    results["sisa_equals_retrain"] = s["sisa"]["digest"] == s["retrain"]["digest"]
    results["config"]["load_average_at_end"] = list(os.getloadavg())
    results["checks"] = [asdict(c) for c in assess(results)]
    results["complete"] = True
    _write(out, results)
    from forgetd.server.bench.plots import plot_results

    results["plots"] = [str(p) for p in plot_results(results, out)]
    _write(out, results)
    return results


def _write(out: Path, results: dict[str, Any]) -> None:
    tmp = out / ".results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, out / "results.json")
    (out / "results.md").write_text(write_markdown(results))


# -- reading the results against the paper's claims and our targets ------------------------------------------


@dataclass(frozen=True)
class Check:
    """One claim or target, measured."""

    name: str  # what is claimed
    source: str  # "paper" | "target"
    measured: str  # the number(s), in words
    met: bool


def assess(results: dict[str, Any]) -> list[Check]:
    """Each of the paper's claims and our targets against the measured numbers (a full run's results)."""
    s = results["strategies"]
    if not all(k in s for k in BENCH_STRATEGIES):
        return []
    t = {k: v["mean_seconds"] for k, v in s.items()}
    pts = {k: 100 * v["accuracy"] for k, v in s.items()}
    hs_x, ohs_x = t["sisa"] / t["hs"], t["sisa"] / t["ohs"]
    # The same ratio in samples read: what the speed-up would be with no fixed cost per request (publishing a
    # version, erasing rows) and no noise from other work on the machine.
    read = {k: max(v["samples_read"], 1) for k, v in s.items()}
    hs_r, ohs_r = read["sisa"] / read["hs"], read["sisa"] / read["ohs"]
    ref_auc = s["retrain"]["mia_auc"]
    out = [
        Check("HS 6x-8x faster than SISA", "paper", f"{hs_x:.1f}x (samples read {hs_r:.1f}x)", 6 <= hs_x),
        Check("OHS 1.5x-6x faster than SISA", "paper", f"{ohs_x:.1f}x (samples read {ohs_r:.1f}x)", 1.5 <= ohs_x),
        Check("HS >= 6x faster than SISA", "target", f"{hs_x:.1f}x (samples read {hs_r:.1f}x)", hs_x >= 6),
        Check("OHS >= 2x faster than SISA", "target", f"{ohs_x:.1f}x (samples read {ohs_r:.1f}x)", ohs_x >= 2),
        Check("DPUS up to 5 points less accurate than HS", "paper",
              f"DPUS {pts['dpus']:.2f}, HS {pts['hs']:.2f} ({pts['hs'] - pts['dpus']:+.2f} points)",
              0 <= pts["hs"] - pts["dpus"] <= 5),
        Check("HS within 0.5 points of SISA", "paper+target", f"HS {pts['hs']:.2f}, SISA {pts['sisa']:.2f}",
              abs(pts["hs"] - pts["sisa"]) <= 0.5),
        Check("OHS comparable to SISA (within 0.5 points)", "paper", f"OHS {pts['ohs']:.2f}, SISA {pts['sisa']:.2f}",
              abs(pts["ohs"] - pts["sisa"]) <= 0.5),
        Check("OHS within 0.3 points of RETRAIN", "target", f"OHS {pts['ohs']:.2f}, RETRAIN {pts['retrain']:.2f}",
              abs(pts["ohs"] - pts["retrain"]) <= 0.3),
    ]
    for k in ("dpus", "hs", "ohs", "sisa"):
        a = s[k]["mia_auc"]
        out.append(Check(f"{k.upper()}: forgotten samples' attack AUC within 0.05 of RETRAIN's", "target",
                         f"{a:.3f} vs {ref_auc:.3f}", abs(a - ref_auc) <= 0.05))
    for k in ("dpus", "hs", "ohs", "sisa"):
        rate, test_rate = s[k]["shadow_member_rate"], s[k]["shadow_test_member_rate"]
        ref = s["retrain"]["shadow_member_rate"]
        out.append(Check(f"{k.upper()}: shadow attack calls forgotten samples members no more than for RETRAIN (+0.05)",
                         "paper", f"{rate:.2f} (RETRAIN {ref:.2f}, test rows {test_rate:.2f})", rate <= ref + 0.05))
    n = results["config"]["requests"]
    for k in ("hs", "ohs", "sisa"):
        b = s[k]["burst_seconds"]
        if b is not None:
            out.append(Check(f"{k.upper()}: burst of {n} coalesced requests under 3x one SISA request", "target",
                             f"{b:.2f} s vs 3 x {t['sisa']:.2f} s", b < 3 * t["sisa"]))
    return out


def write_markdown(results: dict[str, Any]) -> str:
    c = results["config"]
    lines = []
    if c:
        e = c["engine"]
        lines += [
            f"Data {c['dataset']} ({c['num_train']} train, {c['num_test']} test rows); MLP {e['hidden_sizes']}, "
            f"batch {e['batch_size']}, Adam lr {e['learning_rate']}; K={e['shards']}, S={e['slices']}, E={e['epochs']}, "
            f"budget {c['budget']} samples read (m={c['m']}); {c['requests']} single-sample requests; "
            f"device {c['device']} ({c['device_name']}), torch {c['torch']}. Accuracy before forgetting "
            f"{100 * c['accuracy_before']:.2f}%; training took {c['train_seconds']:.1f} s.",
            "",
        ]
    lines += [
        "| strategy | mean s/request | p50 s | p95 s | x SISA | accuracy % | MIA AUC ± SE | TPR@1%FPR | shadow member rate | samples read | burst s | guarantees |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    s = results["strategies"]
    for k, v in s.items():
        speed = f"{s['sisa']['mean_seconds'] / v['mean_seconds']:.1f}" if "sisa" in s else "-"
        burst = "-" if v["burst_seconds"] is None else f"{v['burst_seconds']:.3f}"
        g = ", ".join(f"{n} {kind}" for kind, n in v["guarantees"].items())
        lines.append(
            f"| {k.upper()} | {v['mean_seconds']:.4f} | {v['p50_seconds']:.4f} | {v['p95_seconds']:.4f} | {speed} | "
            f"{100 * v['accuracy']:.2f} | {v['mia_auc']:.3f} ± {v.get('mia_auc_se', float('nan')):.3f} | {v['mia_tpr_at_1pct_fpr']:.2f} | "
            f"{v['shadow_member_rate']:.2f} | {v['samples_read']} | {burst} | {g} |"
        )
    if "original" in results:
        o = results["original"]
        lines += ["", f"Before forgetting, the same samples: MIA AUC {o['mia_auc']:.3f} ± {o.get('mia_auc_se', float('nan')):.3f}, TPR@1%FPR "
                      f"{o['mia_tpr_at_1pct_fpr']:.2f}, shadow member rate {o['shadow_member_rate']:.2f} "
                      f"(test rows {o['shadow_test_member_rate']:.2f}; shadow attack AUC on shadow data "
                      f"{o['shadow_attack_auc']:.3f})."]
    if "sisa_equals_retrain" in results:
        lines += ["", f"SISA's final model is bitwise RETRAIN's: {'yes' if results['sisa_equals_retrain'] else 'NO'}."]
    if results.get("checks"):
        lines += ["", "| claim or target | source | measured | met |", "|---|---|---|---|"]
        lines += [f"| {ch['name']} | {ch['source']} | {ch['measured']} | {'met' if ch['met'] else 'missed'} |"
                  for ch in results["checks"]]
    if not results.get("complete"):
        lines += ["", "Partial results: the run has not finished."]
    return "\n".join(lines) + "\n"


# -- the command (wired into `forgetd bench` by client/cli.py) ------------------------------------------------------------------

import click  # noqa: E402


@click.command("unlearning", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", required=True, help=f"Training data: {DATA_KINDS_HELP}.")
@click.option("--requests", type=int, default=100, show_default=True, help="Random single-sample forget requests.")
@click.option("--slices", type=int, help="Slices S per shard (default 10).")
@click.option("--shards", type=int, help="Shards K (default 1, as in the paper).")
@click.option("--epochs", type=int, help="Epochs E per step (default 5).")
@click.option("--budget", type=int, help="Samples a forget may read when retraining; sets m (default: half a full retrain).")
@click.option("--seed", type=int, default=0, show_default=True, help="Training seed; also draws the requests.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--rows", type=int, default=2000, show_default=True, help="Rows of the synthetic data set.")
@click.option("--shadows", type=int, default=4, show_default=True, help="Shadow models of the shadow attack.")
@click.option("--no-burst", is_flag=True, help="Skip the coalesced-burst runs.")
@click.option("--out", "out_dir", default="bench-out", show_default=True, type=click.Path(file_okay=False),
              help="Folder for results.json, results.md and the PNG plots.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def unlearning(out_dir: str, no_burst: bool, quiet: bool, **settings: Any) -> None:
    """Measure DPUS, SISA, HS, OHS and RETRAIN: time per request, accuracy, membership inference."""
    from forgetd.server.errors import ForgetdError

    try:
        results = run_bench(BenchConfig(burst=not no_burst, **settings), out_dir, quiet=quiet)
    except ForgetdError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(write_markdown(results), nl=False)
    click.echo(f"results      {Path(out_dir) / 'results.json'}, results.md, " + ", ".join(Path(p).name for p in results["plots"]))
