"""`forgetd bench paper-shapes`: time and storage on synthetic data of the shapes of the hybrid paper's other
data sets (Purchase, Census, Olympics), for a machine that does not hold those files.

    results = run_paper_shapes(PaperShapesConfig(fraction=0.1), "docs/results/paper-shapes")

Per shape: one store trained on SYNTHETIC rows of the paper's row and feature counts (times `fraction`), its
bytes on disk by part (the row store, the recorded increments, the checkpoints, the rest), then the mean
wall time of one forget under SISA, HS, OHS and DPUS over the same `requests` random training ids, each
strategy on its own copy of the store and the strategies taking turns request by request (as `forgetd bench
unlearning` does), so the machine's load falls on all of them alike. Accuracy on synthetic labels says
nothing about the real sets and is reported only as a check that training ran.

The rows are drawn here rather than by the synthetic loader, whose exact-arithmetic recipe needs four float64
copies of the feature matrix (several GB at these sizes): Purchase-shaped rows are 0/1 (as Purchase's
purchase indicators are), the others standard normal, and the label is the best class of a random linear
score plus noise. Every number is labelled synthetic; the real sets load with `--data purchase:NPZ`,
`census:DIR` and `olympics:CSV`.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from forgetd.server.bench.measure import Run, forget_one, summary
from forgetd.server.config import EngineConfig
from forgetd.server.data.dataset import Dataset
from forgetd.server.engine.engine import Engine
from forgetd.server.errors import ForgetdError, InvalidConfig
from forgetd.server.store.layout import StorePaths
from forgetd.server.vocabulary import DPUS, HS, OHS, SISA, resolve_device

__all__ = ["PAPER_SHAPES", "PaperShape", "PaperShapesConfig", "run_paper_shapes", "store_bytes", "shaped_dataset"]

STRATEGIES = (SISA, HS, OHS, DPUS)


@dataclass(frozen=True)
class PaperShape:
    """A data set's shape as the hybrid paper reports it (section 4.1): samples, features, classes."""

    name: str
    rows: int
    features: int
    classes: int
    binary: bool  # 0/1 features (Purchase) rather than standard normal ones


# The paper trains a binary classifier on every set (section 4.3); Purchase keeps its published 100 classes,
# the wider output layer being part of what its shape costs.
PAPER_SHAPES = (
    PaperShape("purchase", 311_519, 600, 100, True),
    PaperShape("census", 299_285, 432, 2, False),
    PaperShape("olympics", 206_165, 1_016, 2, False),
)


@dataclass(frozen=True)
class PaperShapesConfig:
    """One run. `epochs` 3 is the least the default (sisa) epoch schedule takes over 10 slices: fewer leave
    the last slice without an epoch."""

    fraction: float = 1.0  # of each shape's rows (features and classes stay the paper's)
    requests: int = 10
    epochs: int = 3
    slices: int | None = None  # EngineConfig's default (10) when None
    seed: int = 0
    device: str = "cpu"
    shapes: tuple[str, ...] = tuple(s.name for s in PAPER_SHAPES)
    test_fraction: float = 0.2  # of the drawn rows held out (the paper's counts are of the whole set)

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction <= 1.0:
            raise InvalidConfig(f"fraction is {self.fraction}; choose a value in (0, 1]")
        if self.requests < 1:
            raise InvalidConfig(f"requests is {self.requests}; give at least 1")
        known = {s.name for s in PAPER_SHAPES}
        unknown = [s for s in self.shapes if s not in known]
        if unknown or not self.shapes:
            raise InvalidConfig(f"shapes {list(self.shapes)}: choose among {', '.join(sorted(known))}")
        self.engine_config()

    def engine_config(self) -> EngineConfig:
        default = EngineConfig()
        return EngineConfig(epochs=self.epochs, slices=default.slices if self.slices is None else self.slices,
                            seed=self.seed, device=self.device)


def shaped_dataset(shape: PaperShape, rows: int, *, seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """`rows` synthetic rows of `shape`'s width and classes (module docstring); ids synthetic:<n>, the last
    `round(rows * test_fraction)` of them the test split."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((shape.features, shape.classes), dtype=np.float32) / np.float32(np.sqrt(shape.features))
    X = np.empty((rows, shape.features), dtype=np.float32)
    y = np.empty(rows, dtype=np.int64)
    for at in range(0, rows, 16_384):  # in blocks: no float64 copy of the whole matrix
        n = min(16_384, rows - at)
        block = ((rng.random((n, shape.features), dtype=np.float32) < 0.05).astype(np.float32) if shape.binary
                 else rng.standard_normal((n, shape.features), dtype=np.float32))
        # 0/1 features with density 0.05: centred and scaled so the score has unit variance, like the normal ones
        score = ((block - 0.05) @ W) / np.float32(np.sqrt(0.05 * 0.95)) if shape.binary else block @ W
        y[at:at + n] = np.argmax(score + 0.3 * rng.standard_normal(score.shape, dtype=np.float32), axis=1)
        X[at:at + n] = block
    n_test = round(rows * test_fraction)
    n_train = rows - n_test
    ids = [f"synthetic:{i}" for i in range(rows)]
    return Dataset(name=f"synthetic {shape.name}-shaped ({rows} x {shape.features}, {shape.classes} classes)",
                   feature_names=tuple(f"x{j}" for j in range(shape.features)), train_ids=tuple(ids[:n_train]),
                   X_train=X[:n_train], y_train=y[:n_train], test_ids=tuple(ids[n_train:]), X_test=X[n_train:],
                   y_test=y[n_train:], num_classes=shape.classes)


def store_bytes(store_dir: Path) -> dict[str, int]:
    """Bytes on disk of a store, by part: rows (the row store), increments, checkpoints (parameters and
    optimizer state), other (index, layout, test split, metadata, keys) and total."""
    paths = StorePaths(store_dir)
    parts = {"rows": 0, "increments": 0, "checkpoints": 0, "other": 0}
    for f in store_dir.rglob("*"):
        if not f.is_file():
            continue
        size = f.stat().st_size
        if f.name.startswith(paths.rows.name):  # rows.sqlite and its -wal, -shm
            parts["rows"] += size
        elif f.parent == paths.artifacts and ".inc." in f.name:
            parts["increments"] += size
        elif f.parent == paths.artifacts:
            parts["checkpoints"] += size
        else:
            parts["other"] += size
    parts["total"] = sum(parts.values())
    return parts


def _run_shape(shape: PaperShape, config: PaperShapesConfig, work: Path, quiet: bool) -> dict[str, Any]:
    rows = max(round(shape.rows * config.fraction), 100)
    t0 = time.perf_counter()
    ds = shaped_dataset(shape, rows, seed=config.seed, test_fraction=config.test_fraction)
    draw_seconds = time.perf_counter() - t0
    ecfg = config.engine_config()
    base = work / "base"
    _say(quiet, f"{shape.name}: training on {len(ds.train_ids)} x {shape.features} synthetic rows")
    with Engine.train(ds, ecfg, base) as engine:
        entry: dict[str, Any] = {
            "shape": asdict(shape), "rows": rows, "num_train": len(ds.train_ids), "num_test": len(ds.test_ids),
            "draw_seconds": draw_seconds, "train_seconds": engine.train_seconds, "m": engine.m,
            "budget": engine.budget, "accuracy_synthetic": engine.evaluate(), "store_bytes": store_bytes(base),
            # the bytes of the increments depend on their stored precision (float32 before the setting existed)
            "increments_precision": str(getattr(ecfg, "increments", "float32")),
        }
    rng = np.random.default_rng(config.seed)
    ids = [ds.train_ids[i] for i in rng.choice(len(ds.train_ids), size=min(config.requests, len(ds.train_ids)),
                                               replace=False)]
    del ds
    runs = {k: Run() for k in STRATEGIES}
    with ExitStack() as stack:
        engines = {}
        for k in STRATEGIES:
            shutil.copytree(base, work / k)
            engines[k] = stack.enter_context(Engine.open(work / k, device=ecfg.device))
        for i, sid in enumerate(ids):
            for k in STRATEGIES[i % len(STRATEGIES):] + STRATEGIES[:i % len(STRATEGIES)]:  # no fixed first
                forget_one(engines[k], sid, k, runs[k])
            _say(quiet, f"{shape.name}: request {i + 1}/{len(ids)} done")
        entry["strategies"] = {k: {**summary(runs[k]), "accuracy_synthetic": engines[k].evaluate()} for k in STRATEGIES}
    for k in STRATEGIES:
        shutil.rmtree(work / k)
    shutil.rmtree(base)
    return entry


def run_paper_shapes(config: PaperShapesConfig, out_dir: str | Path, *, quiet: bool = False) -> dict[str, Any]:
    """Every configured shape in turn; results.json rewritten after each ("complete": false until the end),
    results.md at the end."""
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "synthetic": True, "complete": False, "shapes": {},
        "config": {**asdict(config), "device": resolve_device(config.device), "torch": torch.__version__,
                   "cpu_count": os.cpu_count(), "machine": platform.machine(),
                   "load_average_at_start": list(os.getloadavg()), "started": time.strftime("%Y-%m-%d %H:%M:%S")},
    }
    chosen = [s for s in PAPER_SHAPES if s.name in config.shapes]
    for shape in chosen:
        with tempfile.TemporaryDirectory(prefix=f"forgetd-shape-{shape.name}-") as tmp:
            results["shapes"][shape.name] = _run_shape(shape, config, Path(tmp), quiet)
        _write(out, results)
    results["complete"] = True
    results["config"]["load_average_at_end"] = list(os.getloadavg())
    _write(out, results)
    (out / "results.md").write_text(markdown(results), encoding="utf-8")
    return results


def _write(out: Path, results: dict[str, Any]) -> None:
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, out / "results.json")


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def markdown(results: dict[str, Any]) -> str:
    """The results as a Markdown table, every figure labelled synthetic."""
    c = results["config"]
    lines = [
        "# The paper's other data sets, shape-matched SYNTHETIC runs (`forgetd bench paper-shapes`)", "",
        f"Synthetic rows of each set's shape (the paper's rows x {c['fraction']:g}, its features and classes); "
        f"E = {c['epochs']} (sisa schedule), S = {c['slices'] or 10}, K = 1, MLP 128-128, batch 128, device "
        f"{c['device']}, {c['cpu_count']} CPUs, torch {c['torch']}, load average {c['load_average_at_start'][0]:.1f} at "
        f"the start; mean wall time of one forget over {c['requests']} random training ids, each strategy on its "
        "own copy of the store.", "",
        "| shape (synthetic) | rows (train/test) | features | classes | train | m | store total | rows | "
        "increments | checkpoints | SISA | HS | OHS | DPUS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in results["shapes"].items():
        b, s = e["store_bytes"], e["strategies"]
        times = " | ".join(f"{s[k]['mean_seconds'] * 1000:,.0f} ms" for k in STRATEGIES)
        lines.append(f"| {name} | {e['num_train']:,}/{e['num_test']:,} | {e['shape']['features']:,} | "
                     f"{e['shape']['classes']} | {e['train_seconds']:.1f} s | {e['m']} | {_mib(b['total'])} | "
                     f"{_mib(b['rows'])} | {_mib(b['increments'])} ({e.get('increments_precision', 'float32')}) | "
                     f"{_mib(b['checkpoints'])} | {times} |")
    lines += ["", "Samples read per request (the machine-independent cost) and how the requests were met:", "",
              "| shape (synthetic) | " + " | ".join(k.upper() for k in STRATEGIES) + " |",
              "|---|" + "---|" * len(STRATEGIES)]
    for name, e in results["shapes"].items():
        cells = [f"{e['strategies'][k]['samples_read_per_request']:,.0f} "
                 f"({', '.join(f'{v} {g}' for g, v in e['strategies'][k]['guarantees'].items())})" for k in STRATEGIES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Accuracy on synthetic labels (a check that training ran, not a figure about the real sets): "
              + "; ".join(f"{n} {e['accuracy_synthetic']:.3f}" for n, e in results["shapes"].items()), ""]
    return "\n".join(lines)


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        click.echo(text, err=True)


@click.command("paper-shapes", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", "out_dir", default="bench-out/paper-shapes", show_default=True, help="Results folder.")
@click.option("--fraction", type=float, default=1.0, show_default=True, help="Fraction of each shape's rows.")
@click.option("--requests", type=int, default=10, show_default=True, help="Random single-sample forgets per strategy.")
@click.option("--epochs", type=int, default=3, show_default=True, help="E (3: the least the sisa schedule takes over 10 slices).")
@click.option("--shape", "shapes", multiple=True, type=click.Choice([s.name for s in PAPER_SHAPES]),
              help="Only these shapes (repeatable; default all three).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
def paper_shapes(out_dir: str, fraction: float, requests: int, epochs: int, shapes: tuple[str, ...], device: str,
                 quiet: bool) -> None:
    """Train time, store bytes and time per forget (SISA, HS, OHS, DPUS) on SYNTHETIC data of the shapes of
    the hybrid paper's Purchase, Census and Olympics sets."""
    try:
        config = PaperShapesConfig(fraction=fraction, requests=requests, epochs=epochs, device=device,
                                   shapes=shapes or tuple(s.name for s in PAPER_SHAPES))
        results = run_paper_shapes(config, out_dir, quiet=quiet)
    except ForgetdError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(markdown(results))
