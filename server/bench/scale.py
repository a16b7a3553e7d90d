"""`forgetd bench scale`: how the store, start-up, training and Forget admission grow with the data, each
figure beside its baseline measured in the same run, at several fractions of n.

    forgetd bench scale --rows 280367 --features 600 --fractions 0.5,1.0 --out bench-out/scale
    # -> results.json, results.md, one PNG per figure against n; each target printed met or missed

Per size: a store trained with the paper's MLP (S slices, E epochs, the default budget) on a data set of that
many rows, served once by `forgetd serve` in a subprocess and timed to its first Predict (startup.py), then
walked part by part (scale_figures.py); the row store's formats side by side (rows_bench.py); the engine's
training beside bare torch loops recording the same increments and recording nothing (increments_bench.py).
Once per run, since what it measures does not depend on n: Forget acknowledgements from concurrent clients
beside raw single-commit SQLite on the same disk (admission.py).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from forgetd.server.bench.admission import admission_figures
from forgetd.server.bench.increments_bench import purchase_like, training_throughput
from forgetd.server.bench.rows_bench import row_store_figures
from forgetd.server.bench.scale_figures import store_figures, training_samples
from forgetd.server.bench.scale_plots import plot_scale
from forgetd.server.bench.scale_report import format_markdown, format_verdicts, verdict_dicts, verdicts
from forgetd.server.bench.startup import startup_figures
from forgetd.server.config import EngineConfig
from forgetd.server.data import Dataset, load_dataset
from forgetd.server.engine.engine import Engine
from forgetd.server.errors import ForgetdError, InvalidConfig
from forgetd.server.vocabulary import EPOCH_SCHEDULES, FLOAT16_INCREMENTS, INCREMENT_PRECISIONS, PER_STEP_SCHEDULE
from forgetd.server.vocabulary import INCREMENTS_CODECS, ZSTD_INCREMENTS

__all__ = ["ScaleBench", "PARTS_MEASURED", "DATA_KINDS", "run_scale_bench", "write_report", "scale"]

PARTS_MEASURED = ("store", "startup", "rows", "admission", "training")  # what --skip may leave out
DATA_KINDS = ("purchase-like", "synthetic")
PURCHASE_ROWS, PURCHASE_FEATURES, PURCHASE_CLASSES = 280_367, 600, 100
ADMISSION_ROUNDS = 4  # the admission runs alternate with raw SQLite's this many times, so disk noise hits both


@dataclass(frozen=True)
class ScaleBench:
    rows: int = PURCHASE_ROWS  # n, the training rows at fraction 1.0
    features: int = PURCHASE_FEATURES
    classes: int = PURCHASE_CLASSES
    fractions: tuple[float, ...] = (0.5, 1.0)
    # increments_bench's purchase_like (binary features, 100 classes: Purchase-100's shape), or
    # server/data/synthetic.py, whose exact draw holds ~70 bytes per feature value at its peak (19 GB at
    # Purchase's shape), so it suits sizes up to a fraction of n on a small machine.
    data: str = "purchase-like"
    slices: int = 10
    epochs: int = 1
    epoch_schedule: str = PER_STEP_SCHEDULE
    increments: str = FLOAT16_INCREMENTS
    codec: str = ZSTD_INCREMENTS  # EngineConfig.increments_codec
    clients: int = 8  # concurrent Forget clients, and SQLite writers beside them
    forgets: int = 400  # Forgets per admission run (its own store, of four times as many rows)
    skip: tuple[str, ...] = ()
    work: Path | None = None  # where stores and the SQLite baseline live (the disk measured); a temp folder

    def __post_init__(self) -> None:
        if not self.fractions or any(not 0 < f <= 1 for f in self.fractions):
            raise InvalidConfig(f"fractions are {self.fractions}; give fractions of --rows in (0, 1], e.g. 0.5,1.0")
        if len(set(self.fractions)) != len(self.fractions):
            raise InvalidConfig(f"fractions {self.fractions} repeat a value; give each size once")
        if min(self.fractions) * self.rows < 20 * self.slices:
            raise InvalidConfig(f"the smallest size ({min(self.fractions)} x {self.rows} rows) is too small for "
                                f"{self.slices} slices; raise --rows or the smallest fraction")
        if self.features < 2 or self.classes < 2:
            raise InvalidConfig("features and classes must each be at least 2")
        for name, value, known in (("data", self.data, DATA_KINDS), ("epoch_schedule", self.epoch_schedule, EPOCH_SCHEDULES),
                                   ("increments", self.increments, INCREMENT_PRECISIONS),
                                   ("codec", self.codec, INCREMENTS_CODECS), ("skip", None, PARTS_MEASURED)):
            bad = [v for v in (self.skip if value is None else (value,)) if v not in known]
            if bad:
                raise InvalidConfig(f"{name} {', '.join(map(repr, bad))} unknown; choose from {', '.join(known)}")
        if self.clients < 1 or self.forgets < self.clients * ADMISSION_ROUNDS:
            raise InvalidConfig(f"{self.forgets} forgets for {self.clients} clients in {ADMISSION_ROUNDS} rounds: "
                                f"give at least {self.clients * ADMISSION_ROUNDS}")

    @property
    def sizes(self) -> list[int]:
        return sorted({max(1, round(f * self.rows)) for f in self.fractions})

    def engine_config(self) -> EngineConfig:
        return EngineConfig(slices=self.slices, epochs=self.epochs, epoch_schedule=self.epoch_schedule,
                            increments=self.increments, increments_codec=self.codec, device="cpu")

    def description(self) -> str:
        return (f"{self.data} data, {self.features} features, {self.classes} classes; the paper's MLP (128, 128), "
                f"S = {self.slices}, E = {self.epochs} ({self.epoch_schedule}), {self.increments} increments ({self.codec}), the "
                f"default budget, CPU; sizes {', '.join(f'{n:,}' for n in self.sizes)} training rows; "
                f"admission: {self.clients} clients, {self.forgets} Forgets on a store of its own")


def _dataset(bench: ScaleBench, n: int) -> Dataset:
    if bench.data == "purchase-like":
        return purchase_like(n, bench.features, classes=bench.classes)
    return load_dataset("synthetic", n=n, features=bench.features, classes=bench.classes, seed=0)


def _part(run: dict[str, Any], name: str, measure: Callable[[], dict[str, Any]],
          progress: Callable[[str], None]) -> None:
    """run[name] = measure(), timed; a part that fails is recorded with its error (its figures then read as
    not measured) so that one broken part does not throw away the others of a long run."""
    started = time.perf_counter()
    try:
        run[name] = measure()
    except Exception as exc:  # noqa: BLE001 - reported in results.json and results.md, and printed
        run[name] = {"error": f"{type(exc).__name__}: {exc}"}
        progress(f"n = {run['n']:,}: {name} failed, left out: {run[name]['error']}")
    run["seconds"][name] = time.perf_counter() - started


def _measure_size(bench: ScaleBench, n: int, work: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    run: dict[str, Any] = {"n": n, "features": bench.features, "seconds": {}}
    if {"store", "startup"} - set(bench.skip):
        progress(f"n = {n:,}: drawing the data set and training the store")
        ds = _dataset(bench, n)
        store = work / f"store-{n}"
        started = time.perf_counter()
        Engine.train(ds, bench.engine_config(), store).close()
        run["seconds"]["train_store"] = time.perf_counter() - started
        if "startup" not in bench.skip:
            progress(f"n = {n:,}: serving the store, timing the daemon's first Predict")
            _part(run, "startup", lambda: _startup(store), progress)
        if "store" not in bench.skip:  # after the first serve: the ledger and the genesis vault are part of it
            _part(run, "store", lambda: _store(bench, store, ds), progress)
        del ds
        shutil.rmtree(store, ignore_errors=True)
    if "rows" not in bench.skip:
        progress(f"n = {n:,}: the row store's formats side by side")
        _part(run, "rows", lambda: _rows(n, bench.features, work), progress)
    if "training" not in bench.skip:
        progress(f"n = {n:,}: training beside the bare torch loops")
        _part(run, "training", lambda: _training(bench, n, work), progress)
    return run


def _store(bench: ScaleBench, store: Path, ds: Dataset) -> dict[str, Any]:
    figures = store_figures(store, len(ds.train_ids), bench.features)
    figures["samples_read"], figures["samples_recorded"] = training_samples(ds.train_ids, bench.engine_config(),
                                                                            figures["m"])
    return figures


def _startup(store: Path) -> dict[str, Any]:
    figures = startup_figures(store)
    return {"first_predict_seconds": figures["first_predict_seconds"], "serving_seconds": figures["serving_seconds"],
            "rss_bytes": round(figures["vm_rss_gib"] * 2**30), "hwm_bytes": round(figures["vm_hwm_gib"] * 2**30),
            "detail": figures}


def _rows(n: int, features: int, work: Path) -> dict[str, Any]:
    figures = row_store_figures(n, features, subset=min(1000, (n - 101) // 2), folder=work)
    return {"rows_over_raw": figures["v2"]["ratio"], "rows_v1_over_raw": figures["v1"]["ratio"], "detail": figures}


def _admission(bench: ScaleBench, work: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    """Admission on a store of its own: what it measures (the ledger's commits) does not depend on n."""
    figures = admission_figures(bench.clients, bench.forgets, work, progress=progress, rounds=ADMISSION_ROUNDS)
    raw = figures["raw_sqlite_commits_per_s"]
    # The yardstick is the better of raw SQLite's two rates: with one fsync per commit, more writers mostly
    # queue on the write lock, so the daemon is held to the best single-commit rate this disk gave.
    return {"acks_per_second": figures["forgets_per_s"][str(bench.clients)],
            "sqlite_commits_per_second": max(raw["1"], raw[str(bench.clients)]),
            "sqlite_1_thread_commits_per_second": raw["1"],
            "sqlite_n_threads_commits_per_second": raw[str(bench.clients)], "detail": figures}


def _training(bench: ScaleBench, n: int, work: Path) -> dict[str, Any]:
    """The whole Engine.train build per sample read (what an operator waits for) beside the bare loops."""
    figures = training_throughput(n, bench.features, bench.slices, bench.epochs, bench.epoch_schedule,
                                  bench.increments, codec=bench.codec, work_dir=work)
    cpu = {name: figures[f"{name}_user_s"] + figures[f"{name}_system_s"] for name in ("build", "bare_recording")}
    return {"train_seconds": figures["us_per_sample_build"] * figures["samples_read"] / 1e6,
            # CPU seconds too: on a shared machine the wall clock also counts other people's work
            "train_cpu_seconds": cpu["build"], "cpu_over_recording": cpu["build"] / cpu["bare_recording"],
            "engine_us_per_sample": figures["us_per_sample_build"],
            "engine_loop_us_per_sample": figures["us_per_sample_loop"],
            "recording_us_per_sample": figures["us_per_sample_bare_recording"],
            "bare_us_per_sample": figures["us_per_sample_bare"], "detail": figures}


def run_scale_bench(bench: ScaleBench, out: Path, progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Measure every size, judge the targets, write results.json, results.md and the plots into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    if bench.work is not None:
        bench.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="forgetd-scale-", dir=bench.work) as tmp:
        runs = [_measure_size(bench, n, Path(tmp), progress) for n in bench.sizes]
        if "admission" not in bench.skip:
            progress(f"admission: {bench.clients} clients acknowledging Forgets, and raw SQLite beside them")
            _part(runs[-1], "admission", lambda: _admission(bench, Path(tmp), progress), progress)
    config = {**asdict(bench), "work": None if bench.work is None else str(bench.work), "sizes": bench.sizes,
              "description": bench.description()}
    return write_report({"config": config, "runs": runs}, out, progress)


def write_report(results: dict[str, Any], out: Path, progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Judge `results`' runs and write results.json, results.md and the plots into `out`: what a run ends
    with, and how a results.json is rendered again (its measured figures untouched) when the rules change."""
    targets, grown = verdicts(results["runs"])
    results = {"config": results["config"], "runs": results["runs"], "verdicts": verdict_dicts(targets),
               "growth": verdict_dicts(grown)}
    (out / "results.md").write_text(format_markdown(results))
    results["plots"] = [p.name for p in plot_scale(results, out)]
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    progress(format_verdicts(targets, grown))
    return results


def _floats(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: give comma-separated fractions such as 0.5,1.0") from None


@click.command("scale")
@click.option("--rows", type=click.IntRange(min=1), default=PURCHASE_ROWS, show_default=True, help="n: training rows at fraction 1.")
@click.option("--features", type=click.IntRange(min=2), default=PURCHASE_FEATURES, show_default=True)
@click.option("--classes", type=click.IntRange(min=2), default=PURCHASE_CLASSES, show_default=True)
@click.option("--fractions", default="0.5,1.0", show_default=True, callback=_floats, help="Sizes, as fractions of n.")
@click.option("--data", type=click.Choice(DATA_KINDS), default="purchase-like", show_default=True,
              help="purchase-like: binary features like Purchase-100's; synthetic: server/data/synthetic.py.")
@click.option("--increments", type=click.Choice(INCREMENT_PRECISIONS), default=FLOAT16_INCREMENTS, show_default=True)
@click.option("--increments-codec", "codec", type=click.Choice(INCREMENTS_CODECS), default=ZSTD_INCREMENTS,
              show_default=True)
@click.option("--forgets", type=click.IntRange(min=1), default=400, show_default=True,
              help="Forgets per admission run, on a store of its own (n does not change what it measures).")
@click.option("--skip", "skip", multiple=True, type=click.Choice(PARTS_MEASURED), help="Leave a part out (repeatable).")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), help="Folder for the stores (the disk measured).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("bench-out/scale"), show_default=True)
def scale(rows: int, features: int, classes: int, fractions: tuple[float, ...], data: str, increments: str,
          codec: str, forgets: int, skip: tuple[str, ...], work: Path | None, out: Path) -> None:
    """Store size, increments, daemon start-up and memory, training time and Forget admission at several
    sizes, each beside its baseline from the same run, with every target met or missed."""
    try:
        bench = ScaleBench(rows=rows, features=features, classes=classes, fractions=fractions, data=data,
                           increments=increments, codec=codec, forgets=forgets, skip=skip, work=work)
        run_scale_bench(bench, out, progress=lambda m: click.echo(m, err=True))
    except ForgetdError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {out}/results.json, results.md and the plots")
