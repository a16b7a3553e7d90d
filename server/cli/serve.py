"""`forgetd serve`: build a ServerConfig from flags, run the daemon until SIGTERM or SIGINT, exit 0."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import click

from forgetd.ledger import LedgerError

from forgetd.server.cli.options import DEVICE, executor_options
from forgetd.server.config import DEFAULT_LISTEN, LEDGER_READS, MIB, ServerConfig
from forgetd.server.daemon.server import create_server
from forgetd.server.errors import ForgetdError, StoreError
from forgetd.server.executors import ExecutorSpec
from forgetd.server.runtime.events import MalformedEvent

log = logging.getLogger("forgetd.server")

# The built-in demo: small enough to train in a few seconds on a laptop CPU, large enough to show every
# strategy (10 slices, so both the update and the retrain regions are populated).
DEMO_ROWS = 2000
DEMO_SLICES = 10
DEMO_EPOCHS = 3
DEMO_SCHEDULE = "per-step"  # E epochs in every step: what the README's serving figures were measured on


def default_demo_store() -> Path:
    """Where `forgetd serve` without --store keeps its demo model: $XDG_DATA_HOME/forgetd/demo."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "forgetd" / "demo"


def ensure_demo_store(path: Path) -> Path:
    """Trains the synthetic demo model into `path` unless a complete store is already there."""
    from forgetd.server.config import EngineConfig
    from forgetd.server.data import load_dataset
    from forgetd.server.engine.engine import Engine

    try:
        Engine.open(path, device="cpu").close()  # opens only if complete (training renames into place)
        log.info("using the demo store at %s", path)
        return path
    except StoreError:
        if path.exists() and any(path.iterdir()):
            raise
    log.info("training the built-in demo model into %s (a few seconds)", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = load_dataset("synthetic", n=DEMO_ROWS, seed=0)
    Engine.train(data, EngineConfig(slices=DEMO_SLICES, epochs=DEMO_EPOCHS, epoch_schedule=DEMO_SCHEDULE), path).close()
    return path


def _refuse_unservable(store: Path) -> None:
    """StoreError for a store that is not there, has lost its subject key or is held by another daemon, before
    a port is bound or a line printed (the daemon's engine checks the same again, and takes the writer lock)."""
    from forgetd.server.engine.state import StoreMeta, read_subject_key
    from forgetd.server.store.layout import StorePaths
    from forgetd.server.store.lock import check_not_held

    paths = StorePaths(store)
    StoreMeta.read(paths)
    read_subject_key(paths)
    check_not_held(store)


def _read_token(path: Path | None) -> str | None:
    if path is None:
        return None
    token = path.read_text().strip()
    if not token:
        raise click.ClickException(f"{path} is empty; put the bearer token on its first line")
    return token


def _witnesses(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    # The verifier key's base64 may end in "=", a URL rarely holds one: split at the first.
    pairs = tuple((url, key) for url, _, key in (v.partition("=") for v in values))
    bad = next((v for v, (url, key) in zip(values, pairs) if not url or not key), None)
    if bad is not None:
        raise click.BadParameter(f"{bad!r} is not URL=VERIFIERKEY (e.g. http://127.0.0.1:7380=forgetd-witness/...)")
    return pairs


@click.command("serve", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--store", type=click.Path(file_okay=False, path_type=Path),
              help="A trained store (forgetd train). Default: train and serve the built-in demo model.")
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, help="HOST:PORT; port 0 picks a free one.")
@click.option("--http-listen", metavar="HOST:PORT",
              help="Also serve HTTP here: the Open Inference Protocol's REST form and the HTTP API. Default: off.")
@click.option("--device", type=DEVICE, default="auto", show_default=True,
              help="Where the live model is held and Predict runs; auto = cuda when present.")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File with the bearer token that Forget requires.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="PEM certificate chain.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="PEM private key.")
@click.option("--tls-client-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM CA bundle: require client certificates it signed (mTLS).")
@click.option("--max-forget-ids", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Sample ids one Forget may name.")
@click.option("--max-predict-rows", type=click.IntRange(min=1), default=65_536, show_default=True,
              help="Rows one Predict may carry.")
@click.option("--max-message-mib", type=click.IntRange(min=4), default=64, show_default=True,
              help="Message size limit in MiB: gRPC messages and HTTP bodies (gRPC's default is 4).")
@click.option("--sla-seconds", type=click.FloatRange(min=0, min_open=True),
              help="Unlearning SLA: the target mean seconds from acknowledging a Forget to serving the model without "
                   "it; past it, forgetd_sla_breached is 1 and GetModel says so. Default: none.")
@click.option("--sla-window", type=click.IntRange(min=1), default=20, show_default=True,
              help="Applied forget batches the SLA mean is taken over.")
@click.option("--gold-every", type=click.IntRange(min=1), metavar="N",
              help="After every N applied forgets, retrain from scratch at low priority and compare with the live "
                   "model (an audit.gold ledger entry; out of tolerance, forgetd_gold_breached is 1). Default: off.")
@click.option("--gold-epsilon", type=click.FloatRange(min=0), default=0.5, show_default=True,
              help="The gold standard's tolerance: test accuracy points between live and retrained.")
@click.option("--gold-retrain", is_flag=True,
              help="When a gold-standard check is out of tolerance, retrain every shard from scratch on the live rows "
                   "and serve that as the next version (a model.retrained ledger entry). Needs --gold-every.")
@click.option("--checkpoint-origin", metavar="ORIGIN",
              help="The origin line of the ledger's C2SP checkpoints, e.g. example.com/forgetd; committed in genesis "
                   "when a new store is first served (an existing ledger keeps its own). Default: forgetd/<key id>.")
@click.option("--witness", "witnesses", multiple=True, metavar="URL=VERIFIERKEY", callback=_witnesses,
              help="A c2sp.org/tlog-witness to ask for cosignatures of every new head (its submission URL and the "
                   "verifier key `forgetd witness` prints); repeat for more. Default: none, nothing is sent.")
@click.option("--witness-quorum", type=click.IntRange(min=1), metavar="N",
              help="Witnesses that must cosign a head before the forgets in it count as published. Default: all.")
@click.option("--grace-seconds", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="On SIGTERM/SIGINT, the drain's length: the forget in progress and the calls in flight get this "
                   "long, and no queued batch starts that would end later (it is applied after the restart).")
@click.option("--ledger-reads", type=click.Choice(LEDGER_READS), default="open", show_default=True,
              help="Who may read the ledger (ReadLedger, GetLedgerHead, GetForgetRequest): open = anyone (auditors; "
                   "entries hold subject refs, never sample ids), token = the --token-file token's holder.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning"]), default="info", show_default=True)
@executor_options
def serve(store: Path | None, listen: str, http_listen: str | None, device: str, token_file: Path | None,
          tls_cert: Path | None, tls_key: Path | None, tls_client_ca: Path | None, max_forget_ids: int,
          max_predict_rows: int, max_message_mib: int, sla_seconds: float | None, sla_window: int,
          checkpoint_origin: str | None, witnesses: tuple[tuple[str, str], ...], witness_quorum: int | None,
          grace_seconds: float, ledger_reads: str, log_level: str, gold_every: int | None, gold_epsilon: float,
          gold_retrain: bool, executor: ExecutorSpec) -> None:
    """Serve a model store over gRPC (and HTTP with --http-listen) until SIGTERM or SIGINT (then finish the
    forget in progress, exit 0)."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s forgetd %(levelname)s %(message)s")
    try:
        config = ServerConfig(
            store=store or ensure_demo_store(default_demo_store()), listen=listen, http_listen=http_listen,
            device=device, token=_read_token(token_file), tls_cert=tls_cert, tls_key=tls_key,
            tls_client_ca=tls_client_ca, max_forget_ids=max_forget_ids, max_predict_rows=max_predict_rows,
            max_message_bytes=max_message_mib * MIB, sla_seconds=sla_seconds, sla_window=sla_window,
            checkpoint_origin=checkpoint_origin, witnesses=witnesses, witness_quorum=witness_quorum,
            ledger_reads=ledger_reads, grace_seconds=grace_seconds, gold_every=gold_every, gold_epsilon=gold_epsilon,
            gold_retrain=gold_retrain, executor=executor.kind, executor_workers=executor.workers,
            ray_address=executor.ray_address,
        )  # fmt: skip
        _refuse_unservable(config.store)
        daemon, _ = create_server(config)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        # Printed whatever the log level: scripts and tests read the bound address (port 0) from it.
        click.echo(f"forgetd: listening on {daemon.address}; loading {config.store}", err=True)
        if daemon.http_address is not None:
            click.echo(f"forgetd: http listening on {daemon.http_address}", err=True)
        daemon.start()
    except (ForgetdError, LedgerError, MalformedEvent) as exc:
        raise click.ClickException(str(exc)) from exc
    while not stop.wait(1.0):  # a timed wait, so the signal handler runs promptly on every platform
        pass
    daemon.stop()
    if daemon.abandoned:  # a batch still runs past the grace: exit now, as a kill would; the restart redoes it
        logging.shutdown()
        os._exit(0)
