"""The increments benchmarks: what the stored precision costs and saves, and what training pays to record.

`precision_error` trains an Adult store per stored precision from the same seed (float32, float16, int8
increments), applies the same DPUS forgets to each and reports their accuracy and parameter distance to float32
beside the bytes saved.
`training_throughput` trains a store on a Purchase-shaped set (random rows, 100 classes) and times it in the
same run as a bare torch loop of the same MLP, Adam and batches, recording the same increments into a RAM
array written once, and as that loop without recording: microseconds per sample read, user and system seconds.
`codec_figures` trains the same store with the increments files as .npy (codec none) and as zstd frames, per
precision, and reports their bytes, the ratio and the median training time of each (--codec).

    forgetd bench increments [--adult DIR] [--forgets 100] [--rows N --features 600 --epoch-schedule per-step]
                             [--codec] [--repeats 3]
"""

from __future__ import annotations

import json
import resource
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
import torch.nn.functional as F

from forgetd.server.config import EngineConfig
from forgetd.server.data import load_dataset
from forgetd.server.data.dataset import Dataset
from forgetd.server.engine.engine import Engine
from forgetd.server.engine.model import MLPShape, forward, init_params, model_shape
from forgetd.server.engine.increments import create_increments
from forgetd.server.engine.increments_codec import IncrementRows
from forgetd.server.engine.schedule import config_epochs, cost, epochs_per_step
from forgetd.server.engine.training import OptState, derive_seed, deterministic, make_layout, num_batches, run_steps
from forgetd.server.vocabulary import DPUS, EPOCH_SCHEDULES, FLOAT16_INCREMENTS, FLOAT32_INCREMENTS
from forgetd.server.vocabulary import INCREMENT_PRECISIONS, INCREMENTS_CODECS, MLP, NO_INCREMENTS_CODEC, PER_STEP_SCHEDULE
from forgetd.server.vocabulary import ZSTD_INCREMENTS

__all__ = ["training_throughput", "precision_error", "codec_figures", "purchase_like", "increments_command"]

PURCHASE_CLASSES = 100


def purchase_like(n_rows: int, n_features: int, *, classes: int = PURCHASE_CLASSES, seed: int = 0) -> Dataset:
    """A set shaped like Purchase-100 (binary features, 100 classes from a random linear map): only the
    shape matters here, the figures are times and bytes."""
    rng = np.random.default_rng(seed)
    rows = n_rows + max(1, n_rows // 10)
    X = (rng.random((rows, n_features), dtype=np.float32) < 0.2).astype(np.float32)
    y = (X @ rng.standard_normal((n_features, classes)).astype(np.float32)).argmax(1).astype(np.int64)
    ids = tuple(f"p{i}" for i in range(rows))
    return Dataset(name=f"purchase-like({n_rows}x{n_features})", feature_names=tuple(f"f{j}" for j in range(n_features)),
                   train_ids=ids[:n_rows], X_train=X[:n_rows], y_train=y[:n_rows], test_ids=ids[n_rows:],
                   X_test=X[n_rows:], y_test=y[n_rows:], num_classes=classes)


@contextmanager
def _clock(out: dict[str, float]) -> Iterator[None]:
    """Wall, user and system seconds of the block (this process, all its threads) into `out`."""
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    yield
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    out.update(wall_s=time.perf_counter() - t0, user_s=r1.ru_utime - r0.ru_utime, system_s=r1.ru_stime - r0.ru_stime)


def _bare_loop(shape: MLPShape, X: torch.Tensor, y: torch.Tensor, plan: tuple[int, ...], bounds: list[int],
               cfg: EngineConfig, recorded_steps: int, out_dir: Path | None) -> int:
    """The baseline: steps 1..S of the same MLP, Adam and batch size on growing prefixes, E_s epochs each;
    with `out_dir`, each recorded step's deltas go into a preallocated float32 array in RAM, written once.
    Returns the samples read."""
    flat = torch.nn.Parameter(init_params(shape, 0))
    opt = torch.optim.Adam([flat], lr=cfg.learning_rate, foreach=False)
    gen = torch.Generator().manual_seed(0)
    read = 0
    for s in range(1, len(plan) + 1):
        n, nb = bounds[s], num_batches(bounds[s], cfg.batch_size)
        record = out_dir is not None and s <= recorded_steps
        buf = np.empty((plan[s - 1] * nb, shape.num_params), np.float32) if record else None
        rows = torch.from_numpy(buf) if buf is not None else None
        for e in range(plan[s - 1]):
            order = torch.randperm(n, generator=gen)
            for b in range(nb):
                idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                before = flat.detach().clone() if rows is not None else None
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(forward(shape, flat, X[idx]), y[idx]).backward()
                opt.step()
                if rows is not None and before is not None:
                    torch.sub(flat.detach(), before, out=rows[e * nb + b])
                read += len(idx)
        if buf is not None and out_dir is not None:
            with open(out_dir / f"step{s}.bin", "wb") as f:
                f.write(buf.data)
    return read


def _bare(ds: Dataset, cfg: EngineConfig, m: int, record: bool, work_dir: Path | None) -> dict[str, float]:
    shape = model_shape(MLP, cfg.hidden_sizes, ds.num_features, ds.num_classes)
    plan = epochs_per_step(cfg.slices, cfg.epochs, cfg.epoch_schedule)
    sizes = [len(a) for a in np.array_split(np.arange(len(ds.y_train)), cfg.slices)]
    bounds = [0, *np.cumsum(sizes).tolist()]
    X, y = torch.from_numpy(np.array(ds.X_train)), torch.from_numpy(np.array(ds.y_train))
    out: dict[str, float] = {}
    tmp = Path(tempfile.mkdtemp(prefix="forgetd-bare-", dir=work_dir)) if record else None
    try:
        with deterministic(), _clock(out):
            out["samples"] = _bare_loop(shape, X, y, plan, bounds, cfg, cfg.slices - m, tmp)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _forgetd_loop(ds: Dataset, cfg: EngineConfig, m: int, out_dir: Path) -> dict[str, float]:
    """forgetd's training loop alone (engine/training.run_steps on the one shard, recording into increments
    files made as a store makes them), without the rest of a build: rows, index, checkpoints, fsyncs."""
    shape = model_shape(MLP, cfg.hidden_sizes, ds.num_features, ds.num_classes)
    (lay,) = make_layout(ds.train_ids, 1, cfg.slices, cfg.seed)
    X = torch.from_numpy(np.ascontiguousarray(ds.X_train[lay.members]))
    y = torch.from_numpy(np.ascontiguousarray(ds.y_train[lay.members]))
    p0 = init_params(shape, derive_seed(cfg.seed, "init", 0))
    zeros = torch.zeros_like(p0)

    def sink(s: int, rows: int) -> IncrementRows:
        return create_increments(out_dir / f"step{s}.npy", rows, shape.num_params, cfg.increments, cfg.increments_codec)

    out: dict[str, float] = {}
    with deterministic(), _clock(out):
        run_steps(shape=shape, layout=lay, X=X, y=y, alive=np.ones(len(lay.members), bool),
                  start=OptState(p0, zeros, zeros, 0), first=1, seed=cfg.seed, shard=0, epochs=config_epochs(cfg),
                  batch_size=cfg.batch_size, learning_rate=cfg.learning_rate, record_upto=cfg.slices - m,
                  on_step=lambda s, state: None, increments=sink)
    # What the epochs read (run_steps' own count takes an untouched step's last batch as full).
    out["samples"] = cost([lay.step_size(s) for s in range(1, cfg.slices + 1)], config_epochs(cfg), 1)
    return out


def _per_sample(figures: dict[str, float]) -> float:
    return 1e6 * figures["wall_s"] / max(1.0, figures["samples"])


def training_throughput(n_rows: int, n_features: int, slices: int = 10, epochs: int = 1,
                        schedule: str = PER_STEP_SCHEDULE, increments: str = FLOAT16_INCREMENTS, *,
                        codec: str = ZSTD_INCREMENTS, work_dir: Path | None = None) -> dict[str, Any]:
    """forgetd's training of a Purchase-shaped set (one shard, the paper's MLP and batch, the default budget)
    against, in the same run, a bare loop of the same MLP, Adam and batch size recording the same increments
    into RAM (written once per step) and that loop not recording.

    Returns (us = microseconds per sample read): us_per_sample_{build,loop,bare_recording,bare}: the whole
    `Engine.train` build, forgetd's training loop alone, the two bare loops; ratio_loop_to_bare_recording,
    ratio_build_to_bare_recording and their cpu_ratio_* twins (user + system seconds instead of wall);
    {build,loop,bare_recording,bare}_{user,system}_s (CPU seconds of this process); samples_read,
    increments_bytes and bytes_per_sample_per_param (increments bytes / (training rows x parameters)); m,
    num_params and the configuration."""
    ds = purchase_like(n_rows, n_features)
    cfg = EngineConfig(slices=slices, epochs=epochs, epoch_schedule=schedule, increments=increments,
                       increments_codec=codec, device="cpu")
    root = Path(tempfile.mkdtemp(prefix="forgetd-throughput-", dir=work_dir))
    runs: dict[str, dict[str, float]] = {"build": {}}
    try:
        with _clock(runs["build"]):
            engine = Engine.train(ds, cfg, root / "store")
        m, inc_bytes = int(engine.m), int(engine.increments_bytes)
        runs["build"]["wall_s"] = float(engine.train_seconds)  # the build as the store records it, not the open
        engine.close()
        shutil.rmtree(root / "store")
        (root / "loop").mkdir()
        runs["loop"] = _forgetd_loop(ds, cfg, m, root / "loop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    runs["build"]["samples"] = runs["loop"]["samples"]
    runs["bare_recording"] = _bare(ds, cfg, m, True, work_dir)
    runs["bare"] = _bare(ds, cfg, m, False, work_dir)
    num_params = model_shape(MLP, cfg.hidden_sizes, n_features, ds.num_classes).num_params
    out: dict[str, Any] = {"n_rows": n_rows, "n_features": n_features, "slices": slices, "epochs": epochs,
                           "schedule": schedule, "increments": increments, "codec": codec, "num_params": num_params,
                           "m": m,
                           "samples_read": int(runs["loop"]["samples"])}
    for name, fig in runs.items():
        out[f"us_per_sample_{name}"] = _per_sample(fig)
        out[f"{name}_user_s"], out[f"{name}_system_s"] = fig["user_s"], fig["system_s"]
    cpu = {name: fig["user_s"] + fig["system_s"] for name, fig in runs.items()}
    for name in ("loop", "build"):
        out[f"ratio_{name}_to_bare_recording"] = out[f"us_per_sample_{name}"] / out["us_per_sample_bare_recording"]
        # CPU seconds: the same comparison, less sensitive to other load on the machine than wall time
        out[f"cpu_ratio_{name}_to_bare_recording"] = cpu[name] / cpu["bare_recording"]
    out.update(increments_bytes=inc_bytes, bytes_per_sample_per_param=inc_bytes / (n_rows * num_params))
    return out


def _live(engine: Engine) -> np.ndarray:
    return np.concatenate([p.detach().cpu().numpy().astype(np.float64) for p in engine.snapshot().params])


def _forgotten_store(data: Dataset, ids: list[str], config: dict[str, Any], root: Path) -> dict[str, Any]:
    """Train one store of `data` with `config`, apply a DPUS forget for each of `ids`; its figures and the
    live parameters before and after."""
    engine = Engine.train(data, EngineConfig(**config), root)
    try:
        before = _live(engine)
        for sid in ids:
            engine.forget([sid], DPUS)
        return {"before": before, "after": _live(engine), "accuracy": engine.evaluate(),
                "increments_bytes": int(engine.increments_bytes)}
    finally:
        engine.close()


def precision_error(data: Dataset, *, forgets: int = 100, seed: int = 0, work_dir: Path | None = None,
                    precisions: tuple[str, ...] = INCREMENT_PRECISIONS, **config: Any) -> dict[str, Any]:
    """One store of `data` per precision (float32 first) from the same seed, each given the same `forgets` DPUS
    requests (one sample each, drawn from the training ids with `seed`), compared after the last.

    Returns test accuracy and increments bytes of each (accuracy_<p>, increments_bytes_<p>) and, for float16,
    the parameter distance to float32 (l2_distance, max_abs_distance, relative_to_dpus_move: L2 relative to
    how far DPUS moved the float32 model), accuracy_difference, bytes_saved and fraction_saved; the same
    figures with an _<p> suffix for every other precision (l2_distance_int8, ...)."""
    root = Path(tempfile.mkdtemp(prefix="forgetd-precision-", dir=work_dir))
    ids = [data.train_ids[i] for i in np.random.default_rng(seed).choice(len(data.train_ids), forgets, replace=False)]
    out: dict[str, Any] = {"forgets": forgets, "rows": len(data.train_ids)}
    runs: dict[str, dict[str, Any]] = {}
    try:
        for precision in (FLOAT32_INCREMENTS, *(p for p in precisions if p != FLOAT32_INCREMENTS)):
            # .npy files unless `config` says otherwise: the bytes saved are the precision's alone
            runs[precision] = _forgotten_store(data, ids, {"device": "cpu", "increments_codec": NO_INCREMENTS_CODEC,
                                                           **config, "seed": seed,
                                                           "increments": precision}, root / precision)
            out[f"accuracy_{precision}"] = runs[precision]["accuracy"]
            out[f"increments_bytes_{precision}"] = runs[precision]["increments_bytes"]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ref = runs[FLOAT32_INCREMENTS]
    moved = float(np.linalg.norm(ref["after"] - ref["before"]))
    out["dpus_moved_l2"] = moved
    for precision, run in runs.items():
        if precision == FLOAT32_INCREMENTS:
            continue
        gap = run["after"] - ref["after"]
        figures = {
            "genesis_identical": bool(np.array_equal(ref["before"], run["before"])),
            "l2_distance": float(np.linalg.norm(gap)), "max_abs_distance": float(np.abs(gap).max()),
            "relative_to_dpus_move": float(np.linalg.norm(gap)) / moved if moved else 0.0,
            "accuracy_difference": run["accuracy"] - ref["accuracy"],
            "bytes_saved": ref["increments_bytes"] - run["increments_bytes"],
        }
        figures["fraction_saved"] = figures["bytes_saved"] / max(1, ref["increments_bytes"])
        suffix = "" if precision == FLOAT16_INCREMENTS else f"_{precision}"
        out.update({f"{key}{suffix}": value for key, value in figures.items()})
    return out


def codec_figures(data: Dataset, *, repeats: int = 3, precisions: tuple[str, ...] = INCREMENT_PRECISIONS,
                  work_dir: Path | None = None, **config: Any) -> dict[str, Any]:
    """Per precision, the store of `data` trained `repeats` times with each codec (alternating, so load on the
    machine falls on both alike). Returns, per precision p: bytes_<p>_<codec>, ratio_<p> (zstd bytes / none
    bytes), train_s_<p>_<codec> (the median of the store's recorded training seconds), train_ratio_<p> (zstd's
    median / none's) and same_digest_<p> (the model digests equal: the codec changes no parameter)."""
    root = Path(tempfile.mkdtemp(prefix="forgetd-codec-", dir=work_dir))
    out: dict[str, Any] = {"rows": len(data.train_ids), "repeats": repeats}
    try:
        for precision in precisions:
            seconds: dict[str, list[float]] = {codec: [] for codec in INCREMENTS_CODECS}
            digests: set[str] = set()
            for _ in range(repeats):
                for codec in INCREMENTS_CODECS:
                    cfg = EngineConfig(**{"device": "cpu", **config, "increments": precision, "increments_codec": codec})
                    engine = Engine.train(data, cfg, root / codec)
                    seconds[codec].append(float(engine.train_seconds))
                    out[f"bytes_{precision}_{codec}"] = int(engine.increments_bytes)
                    digests.add(engine.digest())
                    engine.close()
                    shutil.rmtree(root / codec)
            for codec in INCREMENTS_CODECS:
                out[f"train_s_{precision}_{codec}"] = float(np.median(seconds[codec]))
            out[f"ratio_{precision}"] = out[f"bytes_{precision}_{ZSTD_INCREMENTS}"] / max(
                1, out[f"bytes_{precision}_{NO_INCREMENTS_CODEC}"])
            out[f"train_ratio_{precision}"] = (out[f"train_s_{precision}_{ZSTD_INCREMENTS}"]
                                               / out[f"train_s_{precision}_{NO_INCREMENTS_CODEC}"])
            out[f"same_digest_{precision}"] = len(digests) == 1
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


@click.command("increments", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--adult", type=click.Path(file_okay=False, path_type=Path),
              help="The UCI Adult folder (adult.data, adult.test): float16 and int8 beside float32 after DPUS forgets.")
@click.option("--forgets", type=int, default=100, show_default=True, help="DPUS forgets applied to every store.")
@click.option("--rows", type=int, default=0, show_default=True,
              help="Purchase-shaped training rows: forgetd's training beside the bare loops (0: skip).")
@click.option("--features", type=int, default=600, show_default=True)
@click.option("--slices", type=int, default=10, show_default=True)
@click.option("--epochs", type=int, default=1, show_default=True)
@click.option("--epoch-schedule", type=click.Choice(EPOCH_SCHEDULES), default=PER_STEP_SCHEDULE, show_default=True)
@click.option("--increments", type=click.Choice(INCREMENT_PRECISIONS), default=FLOAT16_INCREMENTS, show_default=True)
@click.option("--codec", is_flag=True, help="Instead: each precision's bytes and training time with the increments "
              "files as .npy and as zstd frames, on Adult (--adult) and the Purchase-shaped set (--rows).")
@click.option("--repeats", type=int, default=3, show_default=True, help="--codec: trainings per codec (medians).")
def increments_command(adult: Path | None, forgets: int, rows: int, features: int, slices: int, epochs: int,
                       epoch_schedule: str, increments: str, codec: bool, repeats: int) -> None:
    """What float16 and int8 increments cost in error and save in bytes (--adult), and what training pays to record
    them beside a bare torch loop recording the same increments (--rows), as JSON."""
    if adult is None and not rows:
        raise click.UsageError("give --adult DIR (the precision error), --rows N (the throughput), or both")
    if codec:
        shape: dict[str, Any] = {"slices": slices, "epochs": epochs, "epoch_schedule": epoch_schedule}
        sets = ([load_dataset("adult", adult)] if adult is not None else []) + (
            [purchase_like(rows, features)] if rows else [])
        for data in sets:
            click.echo(json.dumps({"data": data.name, **codec_figures(data, repeats=repeats, **shape)}, indent=2))
        return
    if adult is not None:
        click.echo(json.dumps(precision_error(load_dataset("adult", adult), forgets=forgets), indent=2))
    if rows:
        click.echo(json.dumps(training_throughput(rows, features, slices, epochs, epoch_schedule, increments), indent=2))


if __name__ == "__main__":
    increments_command()
