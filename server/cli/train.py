"""`forgetd train`: load a data set, train a store for forgetting, print what it cost."""

from __future__ import annotations

import sys
from typing import Any

import click

from forgetd.server.cli.options import DEVICE, executor_options
from forgetd.server.data.spec import DATA_SPEC_HELP, ID_SCHEMES, parse_data_spec
from forgetd.server.errors import DataError, ForgetdError
from forgetd.server.executors import ExecutorSpec
from forgetd.server.vocabulary import AGGREGATIONS, DEFAULT_STRATEGIES, EPOCH_SCHEDULES, INCREMENT_PRECISIONS, MODELS
from forgetd.server.vocabulary import INCREMENTS_CODECS


def _parse_data(spec: str) -> tuple[str, str | None]:
    try:
        return parse_data_spec(spec)
    except DataError:
        raise click.BadParameter(f"{spec!r}; give {DATA_SPEC_HELP}", param_hint="--data") from None


def _parse_hidden(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}; give widths separated by commas, e.g. 128,128", param_hint="--hidden") from None


_HELP = "Train a model store for forgetting (SISA slices, recorded increments, threshold m).\n\n" + "\n\n".join(
    ["Sample ids, what `forgetd forget` takes, by --data kind:"]
    + [f"{kind}: {scheme}" for kind, scheme in ID_SCHEMES.items()])


@click.command(help=_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", "data_spec", required=True, help=f"Training data: {DATA_SPEC_HELP}.")
@click.option("--store", "store_dir", required=True, type=click.Path(file_okay=False), help="New store directory.")
@click.option("--shards", type=int, help="Shards K (default 1).")
@click.option("--slices", type=int, help="Slices S per shard (default 10).")
@click.option("--epochs", type=int, help="Epochs E (default 5): spread over the steps (sisa) or in each (per-step).")
@click.option("--epoch-schedule", type=click.Choice(EPOCH_SCHEDULES),
              help="E spread over the steps as SISA's code does (sisa, the default) or E in every step (per-step).")
@click.option("--increments", type=click.Choice(INCREMENT_PRECISIONS),
              help="Stored precision of the recorded increments: float16 (the default) halves their bytes, and DPUS "
              "subtracts each step's delta rounded to nearest (on Adult: the same accuracy after 100 forgets); "
              "float32 keeps every delta exactly at twice the disk; int8 (127 levels of one scale per step) is a "
              "quarter of float32, but ends 100 Adult forgets 116x farther from float32 than float16 does (0.8 % "
              "of DPUS's own move), so it is not the default.")
@click.option("--increments-codec", type=click.Choice(INCREMENTS_CODECS),
              help="How the increments files are encoded: zstd (the default) stores each row as one zstd frame, "
              "decoded to the same bits, so DPUS and every digest are unchanged; on Purchase-shaped data (600 "
              "binary features, 100 classes, 30,000 rows) it keeps 0.63 of float16's bytes, 0.49 of int8's and 0.57 "
              "of float32's; none keeps plain .npy files.")
@click.option("--batch-size", type=int, help="Batch size (default 128).")
@click.option("--learning-rate", type=float, help="Adam learning rate (default 0.005).")
@click.option("--hidden", help="Hidden layer widths, e.g. 128,128 (the default).")
@click.option("--budget", type=int, help="Samples a forget may read when retraining; sets m (default: half a full retrain).")
@click.option("--seed", type=int, help="Training seed (default 0).")
@click.option("--strategy", "default_strategy", type=click.Choice(DEFAULT_STRATEGIES), help="What 'auto' means (default hs).")
@click.option("--aggregation", type=click.Choice(AGGREGATIONS), help="How shards combine (default mean).")
@click.option("--device", type=DEVICE, help="Training device (default auto).")
@click.option("--model", type=click.Choice(MODELS), help="Model family: mlp, or linear (logistic regression, the family "
              "certified removal needs; default mlp).")
@click.option("--epsilon", type=float, help="Linear family: the certificate's epsilon (default 1).")
@click.option("--delta", type=float, help="Linear family: the certificate's delta (default 1e-5).")
@click.option("--l2", type=float, help="Linear family: the objective's L2 coefficient lambda (default 1e-5).")
@click.option("--sigma", type=float, help="Linear family: the objective's noise standard deviation (default 1).")
@click.option("--rows", type=int, default=2000, show_default=True, help="Rows of the synthetic data set.")
@click.option("--id-column", help="CSV: the column holding sample ids.")
@click.option("--label-column", help="CSV: the column holding labels.")
@click.option("--unknown-category", type=click.Choice(("error", "zeros")),
              help="Adult, CSV: what Predict does with a category the training data lacks (default error: refuse).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@executor_options
def train(data_spec: str, store_dir: str, rows: int, id_column: str | None, label_column: str | None,
          unknown_category: str | None, hidden: str | None, quiet: bool, executor: ExecutorSpec,
          **settings: Any) -> None:
    from tqdm import tqdm

    from forgetd.server.config import EngineConfig
    from forgetd.server.data import load_dataset
    from forgetd.server.engine.engine import Engine

    kind, path = _parse_data(data_spec)
    options: dict[str, Any] = {"n": rows} if kind == "synthetic" else {}
    if kind == "csv":
        options = {"id_column": id_column, "label_column": label_column}
    if unknown_category is not None:  # the loaders without categories refuse it, naming the option
        options["unknown_category"] = unknown_category
    settings["hidden_sizes"] = _parse_hidden(hidden)
    try:
        config = EngineConfig(**{k: v for k, v in settings.items() if v is not None})
        dataset = load_dataset(kind, path, **options)
        # A bar only on a terminal: in a log or a pipe its carriage returns would run into the next line.
        with tqdm(total=0, unit="batch", disable=quiet or not sys.stderr.isatty(), desc="training") as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            engine = Engine.train(dataset, config, store_dir, progress=progress, executor=executor)
        with engine:
            click.echo(
                f"store        {engine.store_dir}\n"
                f"data         {dataset.name}: {len(dataset.train_ids)} train, {len(dataset.test_ids)} test rows\n"
                f"model        {config.model}, K={config.shards} S={config.slices} E={config.epochs} ({config.epoch_schedule}) "
                f"on {engine.device}, "
                f"digest {engine.digest()[:16]}\n"
                f"time         {engine.train_seconds:.1f} s\n"
                f"accuracy     {engine.evaluate():.4f} test, {engine.training_accuracy:.4f} train\n"
                f"threshold    m={engine.m} (budget {engine.budget} samples read): slices "
                f"{config.slices - engine.m + 1}..{config.slices} retrain, 1..{config.slices - engine.m} update\n"
                f"increments   {engine.increments_bytes} bytes ({engine.increments_bytes / 2**20:.1f} MiB)"
            )
    except ForgetdError as exc:
        raise click.ClickException(str(exc)) from exc
