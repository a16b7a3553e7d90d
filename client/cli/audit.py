"""`forgetd verify` and `forgetd receipt verify`: thin commands over forgetd.client.audit and .receipts.

The report goes to stdout (a summary, or JSON with --json), the replay's progress bar to stderr. A failed
verification prints its report and then one `Error: ...` line, exit code 1; a bad command line exits 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from forgetd.client.errors import ForgetdClientError, InvalidReceipt
from forgetd.client.types import Receipt, load_receipt
from forgetd.ledger import Head, InvalidHead

if TYPE_CHECKING:
    from forgetd.client.audit import AuditReport

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


def _device(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None or value in ("cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
        return value
    raise click.BadParameter(f"{value!r} is not cpu, cuda or cuda:N")


def _print(report: AuditReport, as_json: bool) -> None:
    click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True) if as_json else report.text())


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--store", type=_DIR, required=True, help="The model store to audit (its ledger, vault and data).")
@click.option("--server", metavar="ADDR", help="Also check the daemon at host:port serves the ledger head's model.")
@click.option("--expect-head", metavar="HEX", callback=_head, help="A head kept from earlier (144 hex characters).")
@click.option("--receipt", type=_FILE, callback=_receipt, help="A Forget receipt (JSON) whose head must still hold.")
@click.option("--chain-only", is_flag=True, help="Stop after the chain check (no torch needed).")
@click.option("--key-file", type=_FILE, help="The deployment's subject key. Default: the store's keys/subject.key.")
@click.option("--device", callback=_device, help="Where to replay (cpu, cuda:0). Default: the training device when present, else cpu.")
@click.option("--seal", is_flag=True,
              help="After every check passed: record audit.verified and replace the vault with the verified state.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(store: Path, server: str | None, expect_head: Head | None, receipt: Receipt | None, chain_only: bool,
           key_file: Path | None, device: str | None, seal: bool, as_json: bool) -> None:  # fmt: skip
    """Audit a store by replay: chain, genesis vault, replay, data, and (with --server) the live model."""
    from forgetd.client.audit import audit

    if expect_head is not None and receipt is not None:
        raise click.UsageError("give at most one of --expect-head and --receipt")
    if seal and chain_only:
        raise click.UsageError("--seal needs the full audit; drop --chain-only")
    try:
        report = audit(store, expect_head=expect_head, receipt=receipt, server=server, chain_only=chain_only,
                       key_file=key_file, device=device, progress=not as_json, seal=seal)
    except ForgetdClientError as exc:
        raise click.ClickException(str(exc)) from exc
    _print(report, as_json)
    if not report.ok:
        failed = [c for c in report.checks if c.status == "failed"]
        raise click.ClickException(f"verification failed: {failed[0].name}: {failed[0].summary}" if failed
                                   else "verification failed")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def receipt() -> None:
    """Check a Forget receipt (the JSON `forgetd forget --json` prints)."""


@receipt.command("verify")
@click.argument("receipt_file", metavar="RECEIPT", type=_FILE, callback=_receipt)
@click.option("--server", metavar="ADDR", help="Check against this daemon's ledger (host:port).")
@click.option("--store", type=_DIR, help="Check against the ledger file of this store.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def receipt_verify(receipt_file: Receipt, server: str | None, store: Path | None, as_json: bool) -> None:
    """Prove the receipt's entries are still in the ledger and the ledger only grew since."""
    from forgetd.client.receipts import verify_receipt_with_client, verify_receipt_with_store

    if (server is None) == (store is None):
        raise click.UsageError("give exactly one of --server ADDR or --store DIR")
    if store is not None:
        result = verify_receipt_with_store(receipt_file, store)
    else:
        from forgetd.client.client import Client

        assert server is not None  # exactly one of the two, checked above
        with Client(server) as client:
            result = verify_receipt_with_client(receipt_file, client)
    click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True) if as_json else result.summary())
    if not result.ok:
        raise click.ClickException(f"receipt {result.request_id} does not hold: {result.problems[0]}")
