"""`forgetd bench shards`: a forget's per-shard work on each executor (server/executors), in the same run.

One store (K=8 shards by default, trained once) is copied for each executor; each copy is opened with its
executor and given the same bursts: one coalesced forget naming `per_shard` ids of every shard, so every
shard retrains. The executors take turns burst by burst (the order rotating), so load on the machine falls on
all of them alike; the figures are medians over the bursts. Beside them: the speed-up over inline, the
process pool's start cost (spawning the workers and importing torch in them), and Ray's: its start, the round
trip of an empty task, and the bytes a shard task moves through its object store (the pickled task inputs
there, and the shard's new state back). Every burst's digest must be the same under each executor.

    forgetd bench shards [--rows 60000 --features 64] [--adult DIR] [--shards 8] [--bursts 3] [--workers 2]
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np

from forgetd.server.config import EngineConfig
from forgetd.server.data import Dataset, load_dataset
from forgetd.server.engine.engine import Engine
from forgetd.server.errors import ForgetdError, InvalidConfig
from forgetd.server.executors import ExecutorSpec, ShardExecutor, make_executor
from forgetd.server.executors.base import default_workers
from forgetd.server.executors.ray_executor import RayExecutor
from forgetd.server.vocabulary import EXECUTORS, INLINE_EXECUTOR, PER_STEP_SCHEDULE, PROCESS_EXECUTOR, RAY_EXECUTOR
from forgetd.server.vocabulary import RETRAIN, SISA

__all__ = ["ShardsBenchConfig", "run_shards_bench", "format_shards", "shards"]

BENCH_STRATEGIES = (SISA, RETRAIN)  # strategies that retrain in every shard a burst names
ROUND_TRIPS = 50  # empty Ray tasks timed for the per-task overhead


def _available_executors() -> tuple[str, ...]:
    return tuple(k for k in EXECUTORS if k != RAY_EXECUTOR or importlib.util.find_spec("ray") is not None)


@dataclass(frozen=True)
class ShardsBenchConfig:
    rows: int = 60_000  # synthetic rows (80% train); ignored with `adult`
    features: int = 64
    adult: Path | None = None  # a folder holding adult.data and adult.test: the UCI Adult set instead
    shards: int = 8
    slices: int = 4
    epochs: int = 1
    hidden_sizes: tuple[int, ...] = (128, 128)
    bursts: int = 3
    per_shard: int = 2  # ids of every shard in one burst
    strategy: str = SISA
    workers: int = 2
    executors: tuple[str, ...] = field(default_factory=_available_executors)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("rows", "features", "shards", "slices", "epochs", "bursts", "per_shard", "workers"):
            if getattr(self, name) < 1:
                raise InvalidConfig(f"shards bench: {name} is {getattr(self, name)}; give 1 or more")
        if self.strategy not in BENCH_STRATEGIES:
            raise InvalidConfig(f"shards bench: strategy is {self.strategy!r}; choose one of {', '.join(BENCH_STRATEGIES)}")
        unknown = [k for k in self.executors if k not in EXECUTORS]
        if unknown or not self.executors:
            raise InvalidConfig(f"shards bench: executors {','.join(self.executors) or '(none)'}; "
                                f"name some of {', '.join(EXECUTORS)}")
        if INLINE_EXECUTOR not in self.executors:
            raise InvalidConfig("shards bench: the executors must include inline, the baseline of the speed-up")


def _warm(i: int) -> int:
    """An empty task: run once per worker, it makes each import this module (and so torch and the engine)."""
    return os.getpid() + 0 * i


def _dataset(cfg: ShardsBenchConfig) -> Dataset:
    if cfg.adult is not None:
        return load_dataset("adult", cfg.adult)
    return load_dataset("synthetic", n=cfg.rows, features=cfg.features, seed=cfg.seed)


def _start(kind: str, workers: int) -> tuple[ShardExecutor, float]:
    """A `kind` executor, and the seconds its workers took to start (0 for inline): a first map of empty tasks,
    so the pool's processes (or a local Ray and its workers) are up and warm."""
    executor: ShardExecutor = make_executor(ExecutorSpec(kind, workers=workers))
    t0 = time.perf_counter()
    if executor.remote:
        executor.map(_warm, list(range(workers)))
    return executor, time.perf_counter() - t0


def _engines(cfg: ShardsBenchConfig, data: Dataset, root: Path, opened: dict[str, Engine],
             starts: dict[str, float], say: Callable[[str], None]) -> float:
    """One engine per executor into `opened`, each on its own copy of one store trained by the first (the process
    pool when there is one, so its warm workers train too); returns the training's seconds."""
    config = EngineConfig(shards=cfg.shards, slices=cfg.slices, epochs=cfg.epochs, epoch_schedule=PER_STEP_SCHEDULE,
                          hidden_sizes=cfg.hidden_sizes, seed=cfg.seed, device="cpu")
    first = PROCESS_EXECUTOR if PROCESS_EXECUTOR in cfg.executors else INLINE_EXECUTOR
    executor, starts[first] = _start(first, cfg.workers)
    say(f"training {data.name}: {len(data.train_ids)} rows, K={cfg.shards}, on the {first} executor")
    t0 = time.perf_counter()
    opened[first] = Engine.train(data, config, root / first, executor=executor)
    train_s = time.perf_counter() - t0
    for kind in cfg.executors:
        if kind != first:
            executor, starts[kind] = _start(kind, cfg.workers)
            opened[kind] = Engine.open(shutil.copytree(root / first, root / kind), device="cpu", executor=executor)
        say(f"{kind}: started in {starts[kind]:.2f} s")
    return train_s


def _bursts(engine: Engine, cfg: ShardsBenchConfig) -> list[list[str]]:
    """`cfg.bursts` + 1 disjoint id lists (the first a warm-up: first-use costs, not counted), each
    `cfg.per_shard` ids from every shard, drawn with the seed."""
    ids = engine.sample_ids()
    by_shard: dict[int, list[str]] = {}
    for sample in engine.plan(ids, cfg.strategy).samples:
        by_shard.setdefault(sample.shard, []).append(sample.sample_id)
    rng = np.random.default_rng(cfg.seed)
    need = (cfg.bursts + 1) * cfg.per_shard
    drawn = {k: [members[i] for i in rng.choice(len(members), need, replace=False)]
             for k, members in sorted(by_shard.items()) if len(members) >= need}
    if len(drawn) < cfg.shards:
        raise InvalidConfig(f"shards bench: some shard holds fewer than {need} rows; give more --rows or fewer --bursts")
    return [[sid for k in drawn for sid in drawn[k][b * cfg.per_shard:(b + 1) * cfg.per_shard]]
            for b in range(cfg.bursts + 1)]


def _task_bytes(engine: Engine, ids: list[str], strategy: str) -> dict[str, float]:
    """What one shard task of a burst moves through Ray's object store, as pickle protocol 5 writes it (Ray's
    serializer keeps numpy buffers out of band, at the same size): its inputs there, the shard's state back."""
    tasks = engine.shard_tasks(ids, strategy)
    inputs = [len(pickle.dumps(t, protocol=5)) for t in tasks]
    rows = [t.X.nbytes + t.y.nbytes for t in tasks]
    # What comes back is the shard's checkpoints (parameters and optimizer state) and its alive flags: the
    # bytes of its checkpoint files, which hold exactly those arrays.
    back = [t.alive.nbytes + sum(os.path.getsize(Path(t.root) / "artifacts" / name) for logical, name in t.files
                                 if logical.endswith((".params", ".optim"))) for t in tasks]
    return {"input_bytes_per_task": statistics.median(inputs), "rows_bytes_per_task": statistics.median(rows),
            "result_bytes_per_task": statistics.median(back), "tasks_per_burst": len(tasks)}


def _ray_round_trip(engine: Engine) -> float:
    executor = engine.executor
    assert isinstance(executor, RayExecutor)
    once = executor.round_trip()
    once()  # a warm worker: the first empty task may start one
    times = []
    for _ in range(ROUND_TRIPS):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _take_turns(engines: dict[str, Engine], bursts: list[list[str]], strategy: str,
                say: Callable[[str], None]) -> tuple[dict[str, list[float]], dict[str, list[str]], list[int]]:
    """Each burst on each engine, the order rotating by burst: seconds (but the warm-up's) and digests per
    executor, samples read."""
    kinds = list(engines)
    seconds: dict[str, list[float]] = {k: [] for k in kinds}
    digests: dict[str, list[str]] = {k: [] for k in kinds}
    read: list[int] = []
    for b, ids in enumerate(bursts):
        for kind in kinds[b % len(kinds):] + kinds[:b % len(kinds)]:
            t0 = time.perf_counter()
            report = engines[kind].forget(ids, strategy)
            took = time.perf_counter() - t0
            digests[kind].append(report.digest)
            say(f"{'warm-up' if b == 0 else f'burst {b}'}: {kind} {took:.2f} s")
            if b == 0:
                continue
            seconds[kind].append(took)
            if kind == INLINE_EXECUTOR:
                read.append(report.samples_read)
    return seconds, digests, read


def run_shards_bench(cfg: ShardsBenchConfig, work_dir: Path | None = None,
                     say: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """The figures of the module docstring as one JSON-able dict."""
    data = _dataset(cfg)
    root = Path(tempfile.mkdtemp(prefix="forgetd-shards-bench-", dir=work_dir))
    opened: dict[str, Engine] = {}
    starts: dict[str, float] = {}
    try:
        train_s = _engines(cfg, data, root, opened, starts, say)
        engines = {kind: opened[kind] for kind in cfg.executors}  # the turns go in the order given
        bursts = _bursts(engines[INLINE_EXECUTOR], cfg)
        moved = _task_bytes(engines[INLINE_EXECUTOR], bursts[0], cfg.strategy)
        round_trip = _ray_round_trip(engines[RAY_EXECUTOR]) if RAY_EXECUTOR in engines else None
        seconds, digests, read = _take_turns(engines, bursts, cfg.strategy, say)
    finally:
        for engine in opened.values():
            engine.close()
        shutil.rmtree(root, ignore_errors=True)
    return _figures(cfg, data, train_s, starts, seconds, digests, read, moved, round_trip)


def _figures(cfg: ShardsBenchConfig, data: Dataset, train_s: float, starts: dict[str, float],
             seconds: dict[str, list[float]], digests: dict[str, list[str]], read: list[int],
             moved: dict[str, float], round_trip: float | None) -> dict[str, Any]:
    inline = statistics.median(seconds[INLINE_EXECUTOR])
    executors = {kind: {"workers": 1 if kind == INLINE_EXECUTOR else cfg.workers,
                        "burst_seconds": times, "median_burst_s": statistics.median(times),
                        "speedup": inline / statistics.median(times), "start_s": starts[kind]}
                 for kind, times in seconds.items()}
    return {
        "config": {**asdict(cfg), "adult": None if cfg.adult is None else str(cfg.adult)},
        "data": data.name, "train_rows": len(data.train_ids), "features": data.num_features,
        "train_s": train_s, "ids_per_burst": cfg.per_shard * cfg.shards,
        "samples_read_per_burst": statistics.median(read),
        "executors": executors,
        "digests_equal": all(d == digests[INLINE_EXECUTOR] for d in digests.values()),
        "ray_round_trip_s": round_trip, **moved, "load_average": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs ({default_workers()} usable), "
                   f"Python {platform.python_version()}",
    }


def format_shards(f: dict[str, Any]) -> str:
    c = f["config"]
    lines = [f"machine: {f['machine']}",
             f"data: {f['data']}, {f['train_rows']:,} training rows x {f['features']} features; K={c['shards']}, "
             f"S={c['slices']}, E={c['epochs']}, MLP {tuple(c['hidden_sizes'])}; trained in {f['train_s']:.1f} s",
             f"burst: one {c['strategy']} forget of {f['ids_per_burst']} ids ({c['per_shard']} per shard), "
             f"{f['samples_read_per_burst']:,.0f} samples read; {c['bursts']} bursts after a warm-up, the executors "
             "taking turns",
             f"load average when done: {f['load_average']}",
             "",
             f"{'executor':<9} {'workers':>7} {'median s/burst':>15} {'speed-up':>9} {'start s':>8}"]
    for kind, e in f["executors"].items():
        start = "-" if kind == INLINE_EXECUTOR else f"{e['start_s']:.2f}"
        lines.append(f"{kind:<9} {e['workers']:>7} {e['median_burst_s']:>15.2f} {e['speedup']:>8.2f}x {start:>8}")
    lines += ["", f"start: process = spawning the pool and importing torch in it; ray = a local Ray and its workers",
              f"per shard task ({f['tasks_per_burst']} a burst): inputs {f['input_bytes_per_task'] / 2**20:.2f} MiB "
              f"pickled (of which the shard's rows {f['rows_bytes_per_task'] / 2**20:.2f} MiB), the shard's new "
              f"state back {f['result_bytes_per_task'] / 2**20:.2f} MiB"]
    if f["ray_round_trip_s"] is not None:
        lines.append(f"ray: an empty task's round trip, median of {ROUND_TRIPS}: {f['ray_round_trip_s'] * 1e3:.2f} ms")
    lines.append(f"digests equal under every executor: {'yes' if f['digests_equal'] else 'NO'}")
    return "\n".join(lines)


@click.command("shards", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--rows", type=click.IntRange(min=1), default=60_000, show_default=True, help="Synthetic rows.")
@click.option("--features", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--adult", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              envvar="FORGETD_ADULT_DIR", show_envvar=True,
              help="A folder holding adult.data and adult.test: the UCI Adult set instead of synthetic rows.")
@click.option("--shards", "n_shards", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--slices", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--bursts", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--per-shard", type=click.IntRange(min=1), default=2, show_default=True, help="Ids of every shard a burst names.")
@click.option("--strategy", type=click.Choice(BENCH_STRATEGIES), default=SISA, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--executors", default=",".join(_available_executors()), show_default=True,
              help="Comma-separated; inline is the baseline and must be among them.")
@click.option("--dir", "work_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Where the stores go (a temporary folder under it, removed at the end).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def shards(rows: int, features: int, adult: Path | None, n_shards: int, slices: int, bursts: int, per_shard: int,
           strategy: str, workers: int, executors: str, work_dir: Path | None, as_json: bool) -> None:
    """A burst of forgets over every shard, inline vs a process pool vs Ray: time per burst and overheads."""
    say = (lambda s: None) if as_json else (lambda s: click.echo(f"  .. {s}", err=True))
    try:
        cfg = ShardsBenchConfig(rows=rows, features=features, adult=adult, shards=n_shards, slices=slices,
                                bursts=bursts, per_shard=per_shard, strategy=strategy, workers=workers,
                                executors=tuple(k.strip() for k in executors.split(",") if k.strip()))
        figures = run_shards_bench(cfg, work_dir, say)
    except ForgetdError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(figures, indent=2) if as_json else format_shards(figures))
