"""`forgetd ledger ...`: verify, show, head, checkpoint and bench, each a thin layer over the library."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .checkpoint import ledger_checkpoint
from .errors import InvalidHead, LedgerError
from .model import Head
from .signing import load_or_create_signing_key
from .store import Ledger
from .verify import verify_ledger

LEDGER_PATH = click.Path(exists=True, dir_okay=False, path_type=Path)
STORE_HEAD_KEY = Path("keys") / "head_ed25519.key"  # where `forgetd serve` keeps the head key, beside the ledger


class HeadParam(click.ParamType):
    """A head as 144 hex characters: size (8 bytes, big-endian) || chain hash (32) || Merkle root (32)."""

    name = "HEX"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Head:
        if isinstance(value, Head):
            return value
        try:
            return Head.from_hex(value)
        except InvalidHead as exc:
            self.fail(str(exc), param, ctx)


def _open(path: Path) -> Ledger:
    try:
        return Ledger(path, readonly=True)
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def ledger() -> None:
    """The deletion ledger: verify it, read it, print its head or a signed checkpoint, benchmark it."""


@ledger.command()
@click.argument("path", type=LEDGER_PATH)
@click.option("--expect-head", type=HeadParam(), help="A head kept from earlier (hex, from `forgetd ledger head`): "
              "the ledger must still hold it as a prefix.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Processes to check rows with (default: one per idle CPU, up to 4, for 20,000 entries or more).")
@click.pass_context
def verify(ctx: click.Context, path: Path, expect_head: Head | None, as_json: bool, jobs: int | None) -> None:
    """Recompute every hash of the ledger at PATH. Exit 0 when everything holds, 1 naming the first bad seq."""
    report = verify_ledger(path, expect_head=expect_head, jobs=jobs)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        ctx.exit(0 if report.ok else 1)
    if report.ok:
        click.echo(report.summary())
        return
    for problem in report.problems:
        click.echo(problem)
    if report.problems_omitted:
        click.echo(f"... and {report.problems_omitted} more")
    raise click.ClickException(report.summary())


@ledger.command()
@click.argument("path", type=LEDGER_PATH)
@click.option("--from", "start", type=click.IntRange(min=1), default=1, show_default=True, help="First seq to show.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most this many entries.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def show(path: Path, start: int, limit: int | None, as_json: bool) -> None:
    """Print the entries of the ledger at PATH, from seq --from on."""
    with _open(path) as book:
        stop = None if limit is None else start + limit
        for entry in book.entries(start, stop):
            if as_json:
                click.echo(json.dumps(entry.to_dict(), sort_keys=True, ensure_ascii=False))
            else:
                payload = json.dumps(entry.payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                click.echo(f"{entry.seq:>7}  {entry.recorded_at}  {entry.type:<18}  {entry.event_id}  {payload}")


@ledger.command()
@click.argument("path", type=LEDGER_PATH)
@click.option("--json", "as_json", is_flag=True, help="Print size, chain hash and Merkle root as JSON.")
def head(path: Path, as_json: bool) -> None:
    """Print the current head of the ledger at PATH as hex (the form --expect-head takes)."""
    with _open(path) as book:
        current = book.head()
    if as_json:
        click.echo(json.dumps({**current.to_dict(), "hex": current.to_hex()}, indent=2))
    else:
        click.echo(current.to_hex())


@ledger.command()
@click.argument("path", type=LEDGER_PATH)
@click.option("--origin", default=None,
              help="The log's origin line (default: the one a forgetd genesis committed, else forgetd/<key id>).")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The Ed25519 head key (default: keys/head_ed25519.key beside PATH, as in a forgetd store).")
def checkpoint(path: Path, origin: str | None, key_path: Path | None) -> None:
    """Print the current head of the ledger at PATH as a signed C2SP checkpoint (c2sp.org/tlog-checkpoint)."""
    key_path = path.parent / STORE_HEAD_KEY if key_path is None else key_path
    if not key_path.is_file():
        raise click.ClickException(f"no head key at {key_path}: pass --key")
    try:
        key = load_or_create_signing_key(key_path)  # it exists: this only loads it, checking its mode
        with _open(path) as book:
            if origin is None and len(book) and book.entry(1).type == "genesis":
                committed = book.entry(1).payload.get("checkpoint_origin")  # a forgetd store's own origin
                origin = committed if isinstance(committed, str) else None
            click.echo(ledger_checkpoint(book, key, origin).decode(), nl=False)
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from exc


@ledger.command()
@click.option("--appends", type=click.IntRange(min=4), default=2000, show_default=True,
              help="Durable single appends (and as many raw SQLite inserts).")
@click.option("--grouped", type=click.IntRange(min=4), default=4000, show_default=True,
              help="Group-commit appends per writer count, in the same rounds as the raw SQLite inserts.")
@click.option("--writers", type=click.IntRange(min=1, max=256), multiple=True, default=(8, 32), show_default=True,
              help="Writer threads appending through group commit, each waiting for its own entry (repeatable).")
@click.option("--batched", type=click.IntRange(min=1), default=20000, show_default=True, help="Batched appends in all.")
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True, help="Appends per transaction.")
@click.option("--entries", "verify_entries", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Ledger size for the verification and proof figures.")
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True, help="verify_ledger runs (median).")
@click.option("--dir", "workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to put the scratch ledgers (default: a temporary directory).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def bench(appends: int, grouped: int, writers: tuple[int, ...], batched: int, batch_size: int, verify_entries: int,
          runs: int, workdir: Path | None, as_json: bool) -> None:
    """Measure appends (beside raw SQLite with the same durability), group commit, verification and proofs."""
    from .bench import format_table, run_bench  # keeps `forgetd ledger verify` start-up lean

    figures = run_bench(workdir, appends=appends, grouped=grouped, writers=tuple(dict.fromkeys(writers)),
                        batched=batched, batch_size=batch_size,
                        verify_entries=verify_entries, verify_runs=runs,
                        progress=lambda message: click.echo(f"... {message}", err=True))
    click.echo(json.dumps([f.to_dict() for f in figures], indent=2) if as_json else format_table(figures))
