"""`forgetd verify` and `forgetd receipt verify`: thin commands over forgetd.client.audit and .receipts.

The report goes to stdout (a summary, or JSON with --json), the replay's progress bar to stderr when that is
a terminal. A failed verification prints its report and then one `Error: ...` line, exit code 1; a failed
receipt check prints only the `Error: ...` line (or, with --json, only the JSON); a bad command line exits 2.

SIGTERM and SIGHUP stop `verify` the way Ctrl-C does, by an exception, so the replay's scratch copy (which
holds rows of forgotten samples) is removed on the way out; one `Error: ...` line, exit code 128 + signal.
A SIGKILL cannot be caught: the next verify, seal or daemon start removes what it left.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TypeVar

import click

from forgetd.client.cli.commands import server_address
from forgetd.client.errors import ForgetdClientError, InvalidReceipt
from forgetd.client.types import Receipt, load_receipt, receipt_from_json
from forgetd.ledger import Ed25519Verifier, Head, InvalidHead, LedgerError, parse_verifier_key, read_checkpoint

if TYPE_CHECKING:
    from forgetd.client.audit import AuditReport
    from forgetd.client.client import Client

_R = TypeVar("_R")

_DIR = click.Path(exists=True, file_okay=False, path_type=Path)
_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _head(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Head | None:
    if value is None:
        return None
    try:
        return Head.from_hex(value)
    except InvalidHead as exc:
        raise click.BadParameter(str(exc)) from None


def _receipt(_ctx: click.Context, _param: click.Parameter, value: Path | None) -> Receipt | None:
    if value is None:
        return None
    try:
        return load_receipt(value)
    except InvalidReceipt as exc:
        raise click.BadParameter(str(exc)) from None


class _Stopped(BaseException):
    """A SIGTERM or SIGHUP arrived: a BaseException, like KeyboardInterrupt, so no `except Exception` keeps it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_stop() -> Iterator[None]:
    """Inside: SIGTERM and SIGHUP raise _Stopped in the main thread (handlers restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise _Stopped(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _verifier_key(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Ed25519Verifier | None:
    if value is None:
        return None
    try:
        verifier = parse_verifier_key(value)
    except LedgerError as exc:
        raise click.BadParameter(str(exc)) from None
    if not isinstance(verifier, Ed25519Verifier):
        raise click.BadParameter("that is a witness's cosignature key; give the deployment's checkpoint verifier key")
    return verifier


def _device(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None or value in ("cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
        return value
    raise click.BadParameter(f"{value!r} is not cpu, cuda or cuda:N")


def _print(report: AuditReport, as_json: bool) -> None:
    click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True) if as_json else report.text())


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--store", type=_DIR, required=True, help="The model store to audit (its ledger, vault and data).")
@click.option("--server", metavar="ADDR", callback=server_address,
              help="Also check the daemon at host:port serves the ledger head's model.")
@click.option("--expect-head", metavar="HEX", callback=_head, help="A head kept from earlier (144 hex characters).")
@click.option("--receipt", type=_FILE, callback=_receipt, help="A Forget receipt (JSON) whose head must still hold.")
@click.option("--chain-only", is_flag=True, help="Stop after the chain check (no torch needed).")
@click.option("--key-file", type=_FILE, help="The deployment's subject key. Default: the store's keys/subject.key.")
@click.option("--device", callback=_device, help="Where to replay (cpu, cuda:0). Default: the training device when present, else cpu.")
@click.option("--seal", is_flag=True,
              help="After every check passed: record audit.verified and replace the vault with the verified state.")
@click.option("--gold", is_flag=True, help="Also retrain from scratch on the live rows and compare with the live model "
              "(records an audit.gold ledger entry).")
@click.option("--gold-epsilon", type=click.FloatRange(min=0), default=0.5, show_default=True,
              help="--gold passes within this many test-accuracy points.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(store: Path, server: str | None, expect_head: Head | None, receipt: Receipt | None, chain_only: bool,
           key_file: Path | None, device: str | None, seal: bool, gold: bool, gold_epsilon: float,
           as_json: bool) -> None:  # fmt: skip
    """Audit a store by replay: chain, genesis vault, replay, data, and (with --server) the live model."""
    from forgetd.client.audit import audit

    if expect_head is not None and receipt is not None:
        raise click.UsageError("give at most one of --expect-head and --receipt")
    if (seal or gold) and chain_only:
        raise click.UsageError(f"{'--seal' if seal else '--gold'} needs the full audit; drop --chain-only")
    try:
        with _signals_stop():
            report = audit(store, expect_head=expect_head, receipt=receipt, server=server, chain_only=chain_only,
                           key_file=key_file, device=device, progress=not as_json and sys.stderr.isatty(), seal=seal,
                           gold=gold, gold_epsilon=gold_epsilon)
    except ForgetdClientError as exc:
        raise click.ClickException(str(exc)) from exc
    except _Stopped as stopped:
        name = signal.Signals(stopped.signum).name
        click.echo(f"Error: stopped by {name} before the audit finished; its scratch copy is removed", err=True)
        sys.exit(128 + stopped.signum)
    _print(report, as_json)
    if not report.ok:
        failed = [c for c in report.checks if c.status == "failed"]
        raise click.ClickException(f"verification failed: {failed[0].name}: {failed[0].summary}" if failed
                                   else "verification failed")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def receipt() -> None:
    """Check a Forget receipt (the JSON `forgetd forget --json` prints) or export one as a c2sp.org/tlog-proof."""


@receipt.command("verify")
@click.argument("receipt_file", metavar="RECEIPT", type=_FILE)
@click.option("--server", metavar="ADDR", callback=server_address,
              help="Check against this daemon's ledger (host:port).")
@click.option("--store", type=_DIR, help="Check against the ledger file of this store.")
@click.option("--verifier-key", metavar="VKEY", callback=_verifier_key,
              help="Check offline with the deployment's checkpoint verifier key (`forgetd model` prints it).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def receipt_verify(receipt_file: Path, server: str | None, store: Path | None, verifier_key: Ed25519Verifier | None,
                   as_json: bool) -> None:
    """Prove a receipt's entries are still in the ledger and the ledger only grew since; RECEIPT is a JSON receipt
    or a tlog-proof file (`forgetd receipt export`). With --verifier-key alone the check is offline: the
    signatures and the inclusion proofs, not what the ledger holds now."""
    from forgetd.client import receipts, tlog

    if sum(x is not None for x in (server, store, verifier_key)) != 1:
        raise click.UsageError("give exactly one of --server ADDR, --store DIR or --verifier-key VKEY")
    data = _read(receipt_file)
    result: receipts.ReceiptReport | tlog.TlogProofReport
    if tlog.is_tlog_proof(data):
        if store is not None:
            result = tlog.verify_tlog_proof_with_store(data, store)
        elif verifier_key is not None:
            result = tlog.verify_tlog_proof_offline(data, verifier_key)
        else:
            result = _with_client(server, lambda c: tlog.verify_tlog_proof_with_client(data, c))
    else:
        parsed = _parse_receipt(receipt_file, data)
        if store is not None:
            result = receipts.verify_receipt_with_store(parsed, store)
        elif verifier_key is not None:
            result = receipts.verify_receipt_offline(parsed, verifier_key)
        else:
            result = _with_client(server, lambda c: receipts.verify_receipt_with_client(parsed, c))
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
        if not result.ok:
            sys.exit(1)  # the JSON says why; the same again on stderr would only repeat it
    elif not result.ok:  # one line, on stderr only
        what = f"receipt {result.request_id}" if isinstance(result, receipts.ReceiptReport) else str(receipt_file)
        raise click.ClickException(f"{what} does not hold: {result.problems[0]}")
    else:
        click.echo(result.summary())


@receipt.command("export")
@click.argument("receipt_file", metavar="RECEIPT", type=_FILE, callback=_receipt)
@click.option("--tlog-proof", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the c2sp.org/tlog-proof@v1 file.")
@click.option("--entry", type=click.Choice(["applied", "requested"]), default=None,
              help="Which entry to prove. Default: forget.applied once applied, else forget.requested.")
def receipt_export(receipt_file: Receipt, out: Path, entry: str | None) -> None:
    """Write one of the receipt's entries as a c2sp.org/tlog-proof: its leaf index (seq - 1), the inclusion proof
    and the receipt head's signed checkpoint (with any witness cosignatures), verifiable offline."""
    from forgetd.client.tlog import receipt_tlog_proof

    try:
        proof = receipt_tlog_proof(receipt_file, entry)
        out.write_bytes(proof.to_bytes())
    except (InvalidReceipt, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {out}: seq {proof.seq} of receipt {receipt_file.request_id}, in a checkpoint of "
               f"{read_checkpoint(proof.checkpoint).size} entries")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot read it ({exc.strerror})") from exc


def _parse_receipt(path: Path, data: bytes) -> Receipt:
    try:
        return receipt_from_json(json.loads(data))
    except ValueError as exc:  # InvalidReceipt is one, and so is a JSON syntax error
        raise click.ClickException(f"{path} is neither a tlog-proof nor a JSON receipt: {exc}") from exc


def _with_client(server: str | None, check: Callable[[Client], _R]) -> _R:
    from forgetd.client.client import Client

    assert server is not None  # the one of the three left
    try:
        with Client(server) as client:
            return check(client)
    except ForgetdClientError as exc:  # an unreachable server: one line, not a traceback
        raise click.ClickException(str(exc)) from exc
