"""`forgetd bench unlearning`: the hybrid-unlearning paper's evaluation (section 4.4), measured on forgetd.

    config = BenchConfig(data="adult:PATH/TO/adult", requests=100, epochs=5, budget=32561)
    results = run_bench(config, "bench-out/adult")       # writes results.json, results.md and PNG plots

Protocol (the hybrid paper's evaluation, section 4.4; strategies as docs/unlearning.md defines them): train one store; for each strategy, on its own copy of that
store, forget the same random single-sample requests one after another, timing each call; then measure test
accuracy and membership inference on the forgotten samples. The strategies take turns request by request
(each still sees its own requests in order), so load from other work on the machine falls on all of them. A burst run forgets the same ids as one coalesced
request, again on a fresh copy. RETRAIN's final model is the model trained from scratch without the forgotten
samples: it is the reference every membership-inference figure is read against. LiRA (privacy.py) trains
its shadows the way the store is trained and attacks the forgotten rows before forgetting and after each
strategy; when those rows give it no power, the whole protocol runs again on the rows it finds most
vulnerable. `--sweep` (sweeps.py) varies S, K or m instead of running this protocol.

Nothing here is mocked or sampled down: every number is one forgetd engine call on the real store.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
from tqdm import tqdm

from forgetd.server.bench import BENCH_STRATEGIES
from forgetd.server.bench.mia import PredictProba
from forgetd.server.bench.measure import Run, ShadowTrainer, attacks, forget_one, summary
from forgetd.server.bench.newton_bench import newton_markdown, run_newton
from forgetd.server.bench.privacy import LiraProbe, both_axes_checks, has_power, lira_checks, lira_markdown
from forgetd.server.bench.report import Check, Results, assess, write_markdown
from forgetd.server.bench.sweeps import SWEEPS, run_sweep, sweep_markdown
from forgetd.server.config import EngineConfig
from forgetd.server.data import DATA_SPEC_HELP, Dataset, load_dataset, parse_data_spec
from forgetd.server.engine.engine import Engine
from forgetd.server.engine.training import derive_seed
from forgetd.server.errors import DataError, ForgetdError, InvalidConfig
from forgetd.server.vocabulary import EPOCH_SCHEDULES, RETRAIN, SISA, resolve_device

__all__ = ["BenchConfig", "BENCH_STRATEGIES", "VULNERABLE_SETS", "run_bench", "assess", "Check", "parse_data_spec",
           "write_markdown", "markdown"]

VULNERABLE_SETS = ("auto", "always", "never")


@dataclass(frozen=True)
class BenchConfig:
    """One bench run. Engine settings left as None take EngineConfig's defaults (the paper's MLP)."""

    data: str  # adult:DIR | csv:PATH | npz:PATH | synthetic
    requests: int = 100  # random single-sample requests, handled one after another (the paper's 100)
    slices: int | None = None  # S (EngineConfig default 10)
    shards: int | None = None  # K (the paper uses 1)
    epochs: int | None = None  # E, as the schedule reads it (EngineConfig.epochs)
    budget: int | None = None  # phi in samples read; sets m (None: half a full retrain)
    seed: int = 0  # training seed and the seed that draws the requests
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    rows: int = 2000  # rows of the synthetic data set (ignored for other kinds)
    shadows: int = 4  # shadow models of the shadow attack, each trained on half the training split
    burst: bool = True  # also time the same ids as one coalesced request per strategy
    epoch_schedule: str | None = None  # sisa | per-step (EngineConfig's default when None)
    lira_shadows: int = 64  # LiRA's shadow models, trained like the store (privacy.py); 0 = no LiRA
    # A second forget set of the rows LiRA finds most vulnerable: "auto" when the random rows give the attack
    # no power before forgetting (privacy.has_power), "always", or "never".
    vulnerable: str = "auto"
    newton: bool = True  # also the Newton strategies' rows: INFLUENCE on the MLP, the linear family (newton_bench.py)
    influence_requests: int = 10  # INFLUENCE on the MLP costs a CG solve over every row: the first N requests
    newton_only: bool = False  # only those rows (the five SISA-family strategies, LiRA and bursts skipped)

    def __post_init__(self) -> None:
        self._data_spec()
        for name in ("requests", "rows", "shadows", "seed", "lira_shadows"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidConfig(f"{name} is {value!r}; give a whole number")
        if self.requests < 1:
            raise InvalidConfig(f"requests is {self.requests}; give at least 1 (the paper uses 100)")
        if self.rows < 10:
            raise InvalidConfig(f"rows is {self.rows}; a synthetic data set needs at least 10 rows")
        if self.shadows < 1:
            raise InvalidConfig(f"shadows is {self.shadows}; the shadow attack needs at least 1 shadow model")
        if self.lira_shadows != 0 and self.lira_shadows < 4:
            raise InvalidConfig(f"lira_shadows is {self.lira_shadows}; give 0 (no LiRA) or at least 4 (the paper: 64)")
        if self.vulnerable not in VULNERABLE_SETS:
            raise InvalidConfig(f"vulnerable is {self.vulnerable!r}; choose one of {', '.join(VULNERABLE_SETS)}")
        self.engine_config()  # engine settings are validated by the engine's own rules

    def _data_spec(self) -> tuple[str, str | None]:
        try:
            return parse_data_spec(self.data)
        except DataError as exc:
            raise InvalidConfig(str(exc)) from None  # a setting of the run, like every other one here

    def engine_config(self) -> EngineConfig:
        default = EngineConfig()
        return EngineConfig(
            shards=default.shards if self.shards is None else self.shards,
            slices=default.slices if self.slices is None else self.slices,
            epochs=default.epochs if self.epochs is None else self.epochs,
            epoch_schedule=default.epoch_schedule if self.epoch_schedule is None else self.epoch_schedule,
            budget=self.budget,  # None is EngineConfig's own default: half a full retrain
            seed=self.seed,
            device=self.device,
        )

    def load(self) -> Dataset:
        kind, path = self._data_spec()
        return load_dataset(kind, path, **({"n": self.rows, "seed": self.seed} if kind == "synthetic" else {}))


def run_bench(config: BenchConfig, out_dir: str | Path, *, quiet: bool = False,
              dataset: Dataset | None = None) -> Results:
    """Run the whole protocol and write results.json, results.md and the plots into `out_dir`. results.json
    is rewritten after every strategy ("complete": false until the end), so a long run that is stopped still
    leaves what it measured."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = dataset if dataset is not None else config.load()
    if config.requests > len(ds.train_ids):
        raise InvalidConfig(f"requests is {config.requests} but the training split has {len(ds.train_ids)} rows; ask for fewer")
    if len(ds.test_ids) < 2:
        raise InvalidConfig(f"the data set has {len(ds.test_ids)} test rows; membership inference needs held-out rows")
    ecfg = config.engine_config()
    ecfg = dataclasses.replace(ecfg, device=resolve_device(ecfg.device))
    rng = np.random.default_rng(config.seed)
    forgot = np.sort(rng.choice(len(ds.train_ids), size=config.requests, replace=False))
    order = rng.permutation(forgot)  # request order, independent of position in the data
    ids = [ds.train_ids[i] for i in order]

    results: Results = {"config": {}, "strategies": {}, "complete": False}
    work = Path(tempfile.mkdtemp(prefix=".bench-", dir=out))
    run = _BenchRun(config, ecfg, ds, forgot, ids, work, quiet)
    try:
        original_proba = run.train_base(results)
        with run.progress(config.shadows, "shadow models") as sbar:
            shadow = ShadowTrainer(ecfg, work, ds.num_features, ds.num_classes, lambda: sbar.update(1))
            # Before any forgetting: how visible the samples we are about to forget are (the attack's power).
            results["original"] = attacks(original_proba, ds, forgot, shadow, config.seed, config.shadows)
        vulnerable = None if config.newton_only else run.lira(results, original_proba)
        _write(out, results)
        if not config.newton_only:
            run.requests(results, shadow)
            _write(out, results)
        if config.newton or config.newton_only:
            results["newton"] = run_newton(ecfg, ds, ids, work, seed=config.seed, shadows=config.shadows, base=work / "base",
                                           influence_requests=config.influence_requests, mlp_shadow=shadow)
            _write(out, results)
        if vulnerable is not None:
            run.vulnerable(results, shadow, vulnerable, original_proba)
            _write(out, results)
        if config.burst and not config.newton_only:
            run.bursts(results, lambda: _write(out, results))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _finish(results, out)
    return results


class _BenchRun:
    """The steps of one run, on stores under `work`: the base store, a copy per strategy, a copy per burst."""

    def __init__(self, config: BenchConfig, ecfg: EngineConfig, ds: Dataset, forgot: np.ndarray, ids: list[str],
                 work: Path, quiet: bool) -> None:
        self.config, self.ecfg, self.ds, self.forgot, self.ids, self.work = config, ecfg, ds, forgot, ids, work
        self.quiet = quiet
        self.probe: LiraProbe | None = None  # LiRA's shadows, once trained (`lira`)

    def lira(self, results: Results, original: PredictProba) -> np.ndarray | None:
        """Trains LiRA's shadows and attacks the forget set before forgetting; returns the second forget set
        (the most vulnerable training rows, in request order) when the config asks for one, else None."""
        c = self.config
        if c.lira_shadows == 0:
            return None
        with self.progress(c.lira_shadows, "LiRA shadows") as bar:
            self.probe = LiraProbe.train(self.ds, self.ecfg, shadows=c.lira_shadows, seed=c.seed,
                                         progress=lambda done: bar.update(done - bar.n))
        results["lira"] = self.probe.describe()
        results["original"]["lira"] = self.probe.measure(original, self.forgot)
        if c.vulnerable == "never" or (c.vulnerable == "auto" and has_power(results["original"]["lira"])):
            return None
        rows = self.probe.most_vulnerable(len(self.forgot))  # may overlap the random set: another copy forgets them
        return np.random.default_rng(derive_seed(c.seed, "bench.vulnerable")).permutation(rows)

    def vulnerable(self, results: Results, shadow: ShadowTrainer, order: np.ndarray, original: PredictProba) -> None:
        """The whole request protocol again, on the most vulnerable rows: results["vulnerable"]."""
        forgot = np.sort(order)
        sub: Results = {"strategies": {}}
        run = _BenchRun(self.config, self.ecfg, self.ds, forgot, [self.ds.train_ids[i] for i in order], self.work,
                        self.quiet)
        run.probe = self.probe
        assert self.probe is not None
        sub["original"] = {"lira": self.probe.measure(original, forgot)}
        run.requests(sub, shadow)
        results["vulnerable"] = {"request_ids": run.ids, **sub}

    def progress(self, total: int, desc: str, unit: str = "it") -> tqdm:
        return tqdm(total=total, desc=desc, unit=unit, disable=self.quiet, leave=False)

    def train_base(self, results: Results) -> PredictProba:
        """Trains the base store, records the run's settings in results["config"]; the base model's predict_proba."""
        with self.progress(0, "training", unit="batch") as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            base = Engine.train(self.ds, self.ecfg, self.work / "base", progress=progress)
        with base:
            results["config"] = self._settings(base)
            return base.snapshot().predict_proba

    def _settings(self, base: Engine) -> dict[str, Any]:
        import torch

        device, ds = self.ecfg.device, self.ds
        return {
            **{k: v for k, v in asdict(self.config).items() if k not in ("device",)},
            "engine": self.ecfg.to_json_dict(),
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
            "request_ids": self.ids,
        }

    def _copy(self, name: str) -> Engine:
        dst = self.work / name
        shutil.copytree(self.work / "base", dst)
        return Engine.open(dst, device=self.ecfg.device)

    def requests(self, results: Results, shadow: ShadowTrainer) -> None:
        """Every request on every strategy's copy, then each copy's accuracy, digest and attacks."""
        # Interleaved: request i goes to every strategy before request i+1 goes to any, so a change in the
        # machine's load over the run (other work on a shared machine) weighs on every strategy alike.
        runs = {k: Run() for k in BENCH_STRATEGIES}
        with ExitStack() as stack:
            engines = {k: stack.enter_context(self._copy(k)) for k in BENCH_STRATEGIES}
            with self.progress(len(self.ids) * len(engines), "requests", unit="forget") as bar:
                for i, sid in enumerate(self.ids):
                    turn = BENCH_STRATEGIES[i % len(engines):] + BENCH_STRATEGIES[: i % len(engines)]  # no fixed first
                    for k in turn:
                        forget_one(engines[k], sid, k, runs[k])
                        bar.update(1)
            for k, eng in engines.items():
                entry = summary(runs[k])
                entry["accuracy"] = eng.evaluate()
                entry["digest"] = eng.digest()
                entry.update(attacks(eng.snapshot().predict_proba, self.ds, self.forgot, shadow, self.config.seed,
                                     self.config.shadows))
                entry["burst_seconds"] = None
                if self.probe is not None:
                    entry["lira"] = self.probe.measure(eng.snapshot().predict_proba, self.forgot)
                results["strategies"][k] = entry
        for k in BENCH_STRATEGIES:
            shutil.rmtree(self.work / k)

    def bursts(self, results: Results, written: Callable[[], None]) -> None:
        """All the requests' ids as one coalesced forget, per strategy on a fresh copy; `written()` after each."""
        for k in tqdm(BENCH_STRATEGIES, desc="bursts", disable=self.quiet, leave=False):
            entry = results["strategies"][k]
            with self._copy(f"{k}-burst") as eng:
                t0 = time.perf_counter()
                burst = eng.forget(self.ids, k)
                entry["burst_seconds"] = time.perf_counter() - t0
                entry["burst_samples_read"] = burst.samples_read
                entry["burst_accuracy"] = eng.evaluate()
                entry["burst_guarantee"] = burst.guarantee.upper()
            shutil.rmtree(self.work / f"{k}-burst")
            written()


def _finish(results: Results, out: Path) -> None:
    s = results["strategies"]
    results["config"]["load_average_at_end"] = list(os.getloadavg())
    if not s:  # --newton-only: newton_bench.py's rows are the run
        results["complete"] = True
        results["plots"] = []
        _write(out, results)
        return
    # Exact unlearning, checked bitwise: SISA after every request is the model RETRAIN trained from scratch.
    results["sisa_equals_retrain"] = s[SISA]["digest"] == s[RETRAIN]["digest"]
    results["config"]["load_average_at_end"] = list(os.getloadavg())
    results["checks"] = [asdict(c) for c in assess(results) + lira_checks(results) + both_axes_checks(results)]
    results["complete"] = True
    _write(out, results)
    from forgetd.server.bench.plots import plot_results  # matplotlib: only once there is something to plot

    from forgetd.server.bench.lira_plots import plot_lira

    results["plots"] = [str(p) for p in plot_results(results, out)]
    results["plots"] += [str(p) for p in (plot_lira(results, out),) if p is not None]
    _write(out, results)


def _write(out: Path, results: Results) -> None:
    tmp = out / ".results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, out / "results.json")
    (out / "results.md").write_text(markdown(results))


def markdown(results: Results) -> str:
    """results.md: the strategies' table and checks, then LiRA's tables."""
    return write_markdown(results) + lira_markdown(results) + newton_markdown(results)


# -- the command (wired into `forgetd bench` by client/cli/main.py) -------------------------------------------


def _values(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r}; give whole numbers separated by commas, e.g. 5,10,20,40",
                                 param_hint="--values") from None


@click.command("unlearning", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", required=True, help=f"Training data: {DATA_SPEC_HELP}.")
@click.option("--requests", type=int, default=100, show_default=True, help="Random single-sample forget requests.")
@click.option("--slices", type=int, help="Slices S per shard (default 10).")
@click.option("--shards", type=int, help="Shards K (default 1, as in the paper).")
@click.option("--epochs", type=int, help="Epochs E (default 5): spread over the steps (sisa) or in each (per-step).")
@click.option("--budget", type=int, help="Samples a forget may read when retraining; sets m (default: half a full retrain).")
@click.option("--seed", type=int, default=0, show_default=True, help="Training seed; also draws the requests.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--rows", type=int, default=2000, show_default=True, help="Rows of the synthetic data set.")
@click.option("--shadows", type=int, default=4, show_default=True, help="Shadow models of the shadow attack.")
@click.option("--no-burst", is_flag=True, help="Skip the coalesced-burst runs.")
@click.option("--epoch-schedule", type=click.Choice(EPOCH_SCHEDULES), help="Epoch schedule (default sisa).")
@click.option("--lira-shadows", type=int, default=64, show_default=True,
              help="LiRA shadow models, trained like the store; 0 = no LiRA.")
@click.option("--vulnerable", type=click.Choice(VULNERABLE_SETS), default="auto", show_default=True,
              help="Also forget LiRA's most vulnerable rows: auto = when random rows give the attack no power.")
@click.option("--influence-requests", type=int, default=10, show_default=True,
              help="INFLUENCE on the MLP runs the first N requests (each a CG solve over every row).")
@click.option("--no-newton", "no_newton", is_flag=True, help="Skip INFLUENCE and the linear family's rows.")
@click.option("--newton-only", is_flag=True, help="Only INFLUENCE and the linear family's rows.")
@click.option("--sweep", type=click.Choice(SWEEPS), help="Vary one setting instead (sweeps.py): slices, shards or budget (m).")
@click.option("--values", "sweep_values", help="The sweep's values, e.g. 5,10,20,40 (defaults: S 5,10,20,40; K 1,2,4,8; m 1,2,3,4).")
@click.option("--out", "out_dir", default="bench-out", show_default=True, type=click.Path(file_okay=False),
              help="Folder for results.json, results.md and the PNG plots.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def unlearning(out_dir: str, no_burst: bool, no_newton: bool, quiet: bool, sweep: str | None,
               sweep_values: str | None, **settings: Any) -> None:
    """Measure DPUS, SISA, HS, OHS and RETRAIN, INFLUENCE, and the linear family's CERTIFIED, SISA, HS and RETRAIN:
    time per request, accuracy, membership inference."""
    try:
        config = BenchConfig(burst=not no_burst, newton=not no_newton, **settings)
        if sweep is not None:
            results = run_sweep(config.load(), config.engine_config(), sweep, out_dir, requests=config.requests,
                                seed=config.seed, values=_values(sweep_values), quiet=quiet)
            click.echo(sweep_markdown(results), nl=False)
        else:
            results = run_bench(config, out_dir, quiet=quiet)
            click.echo(markdown(results), nl=False)
    except ForgetdError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"results      {Path(out_dir) / 'results.json'}, results.md, " + ", ".join(Path(p).name for p in results["plots"]))
