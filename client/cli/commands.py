"""`forgetd predict | forget | status | model`: each opens a Client, makes one call and prints the answer.

Output is for people by default and JSON with `--json` (`--output json` for predict, whose `--json` takes
the input rows). A failed call is one `Error: CODE: message` line on stderr with exit code 1; a bad
command line is click's usage error, exit code 2, and so is everything refused before a call is made (a
server address that is not HOST:PORT, rows that are not a table of numbers): the CODE prefix is kept for
what a server answered.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click

from forgetd.client.client import Client, TlsConfig
from forgetd.client.errors import DeadlineExceeded, ForgetdClientError, InvalidRows
from forgetd.client.records import holds_text, read_csv
from forgetd.client.types import STRATEGIES, ModelInfo, Prediction, Receipt, to_jsonable

DEFAULT_SERVER = "127.0.0.1:50051"  # where `forgetd serve` listens by default

_F = TypeVar("_F", bound=Callable[..., Any])
_PEM = click.Path(exists=True, dir_okay=False, path_type=Path)


# gRPC target schemes passed through as they are (the channel parses them); anything else must be HOST:PORT.
_SCHEMES = ("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:")


def check_address(value: str) -> str:
    """`value` if it is HOST:PORT with a port from 1 to 65535 (or a gRPC target with a scheme); ValueError with
    what is wrong otherwise, checked here so that a typo is a usage error, not a connection failure."""
    if value.startswith(_SCHEMES):
        return value
    host, sep, port = value.rpartition(":")
    if not value:
        raise ValueError("the address is empty; give HOST:PORT, e.g. 127.0.0.1:50051")
    if not sep or not host:
        raise ValueError(f"{value!r} is not HOST:PORT; give e.g. 127.0.0.1:50051")
    if not port.isdigit():
        raise ValueError(f"{value!r} is not HOST:PORT: the port {port!r} is not a number")
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: port {int(port)} is out of range; give a port from 1 to 65535")
    return value


def server_address(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """A click callback: --server as check_address accepts it, a usage error otherwise."""
    if value is None:
        return None
    try:
        return check_address(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def connection_options(*, timeout: float = 10.0) -> Callable[[_F], _F]:
    """--server, --token-file, the TLS flags and --timeout, shared by every command that talks to a daemon."""
    options = [
        click.option("--server", metavar="ADDR", default=DEFAULT_SERVER, show_default=True, callback=server_address,
                     envvar="FORGETD_SERVER", help="The daemon's host:port (env FORGETD_SERVER)."),
        click.option("--token-file", type=_PEM, help="File holding the bearer token that Forget needs."),
        click.option("--tls-ca", type=_PEM, help="PEM CA certificate that signs the server's; turns TLS on."),
        click.option("--tls-cert", type=_PEM, help="PEM client certificate for mTLS (with --tls-key)."),
        click.option("--tls-key", type=_PEM, help="PEM private key of --tls-cert."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=timeout, show_default=True,
                     help="Seconds to wait for the answer."),
    ]  # fmt: skip

    def decorate(command: _F) -> _F:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _client(server: str, token_file: Path | None, tls_ca: Path | None, tls_cert: Path | None,
            tls_key: Path | None, timeout: float) -> Client:  # fmt: skip
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together: give both for mTLS, or neither")
    tls = TlsConfig.from_files(tls_ca, tls_cert, tls_key) if tls_ca or tls_cert else None
    token = token_file.read_text().strip() if token_file else None
    return Client(server, token=token, tls=tls, timeout=timeout)


@contextlib.contextmanager
def _reported(client: Client, *, on_timeout: str = "") -> Iterator[Client]:
    """Closes the client; a failed call becomes click's one-line `Error: ...` and exit code 1."""
    try:
        with client:
            yield client
    except DeadlineExceeded as exc:
        raise click.ClickException(f"{exc}{on_timeout}") from exc
    except InvalidRows:
        raise  # refused before sending: the command makes it a usage error
    except ForgetdClientError as exc:
        raise click.ClickException(str(exc)) from exc


def _json(value: Any) -> str:
    return json.dumps(to_jsonable(value), indent=2, sort_keys=True)


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _read_csv(stream: TextIO) -> list[list[float]]:
    """The rows of a CSV of numbers. The first line is a header only when none of its cells is a number: a
    headerless first row with one bad cell is a data row whose bad cell is named, not a header to skip."""
    rows: list[list[float]] = []
    for line_no, cells in enumerate(csv.reader(stream), start=1):
        if line_no == 1 and cells:
            cells[0] = cells[0].removeprefix("\ufeff")  # the byte-order mark spreadsheets write
        if not cells:
            continue
        values = [_number(c) for c in cells]
        if line_no == 1 and all(v is None for v in values):
            continue
        bad = next((j for j, v in enumerate(values) if v is None), None)
        if bad is not None:
            raise click.BadParameter(f"{stream.name} line {line_no} column {bad + 1}: {cells[bad]!r} is not a number",
                                     param_hint="'--csv'")
        rows.append([v for v in values if v is not None])
    if not rows:
        raise click.BadParameter(f"{stream.name} holds no rows of numbers", param_hint="'--csv'")
    return rows


def _parse_json_rows(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from exc


@click.command()
@connection_options()
@click.option("--csv", "csv_file", type=click.File("r"),
              help="CSV file of rows ('-' for stdin): encoded features, or raw rows such as Adult's files.")
@click.option("--raw", is_flag=True, help="Read --csv as raw rows even if every cell is a number.")
@click.option("--columns", metavar="A,B,C", help="The --csv file's column names, for a raw file without a header.")
@click.option("--json", "json_rows", metavar="ROWS", callback=_parse_json_rows,
              help='Rows as a JSON list of lists, e.g. "[[0.1, 2.0], [1.5, 0.3]]".')  # fmt: skip
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="How to print the answer.")  # fmt: skip
def predict(csv_file: TextIO | None, json_rows: Any, raw: bool, columns: str | None, output: str,
            **conn: Any) -> None:
    """Class probabilities and labels for feature rows, from the live model.

    A --csv file whose first row of data holds text (or with --raw or --columns) is read as raw rows, which
    the server encodes as it encoded its training rows: a header line names the columns (any order; columns
    the model does not take, such as an id or the label, are left out), else --columns does, else they are
    the model's in order (`forgetd model --json` lists them). Without a header, a row with one field more
    than the columns ends with its label, which is dropped: Adult's adult.data and adult.test are read as
    they are (lines starting with '|' are skipped)."""
    if (csv_file is None) == (json_rows is None):
        raise click.UsageError("give the rows with exactly one of --csv F or --json ROWS")
    if csv_file is not None:
        text = csv_file.read()
        if raw or columns is not None or holds_text(text):
            names = None if columns is None else [c.strip() for c in columns.split(",")]
            prediction = _predict_raw(text, csv_file.name, names, conn)
            click.echo(_json(prediction) if output == "json" else _format_prediction(prediction))
            return
        csv_file = _named(text, csv_file.name)
    elif raw or columns is not None:
        raise click.UsageError("--raw and --columns go with --csv")
    rows = _read_csv(csv_file) if csv_file is not None else json_rows
    hint = "'--csv'" if csv_file is not None else "'--json'"
    if isinstance(rows, list) and not rows:
        raise click.BadParameter("no rows; give at least one row of numbers", param_hint=hint)
    try:
        with _reported(_client(**conn)) as client:
            prediction = client.predict(rows)  # InvalidRows is raised before anything is sent
    except InvalidRows as exc:
        raise click.BadParameter(exc.message, param_hint=hint) from None
    click.echo(_json(prediction) if output == "json" else _format_prediction(prediction))


def _predict_raw(text: str, name: str, columns: list[str] | None, conn: dict[str, Any]) -> Prediction:
    """The prediction for a CSV file of raw rows, read against the live model's input schema."""
    try:
        with _reported(_client(**conn)) as client:
            schema = client.model().input_schema
            if schema is None:
                raise click.ClickException("the server does not describe an input schema, so it takes no raw "
                                           "rows; send encoded features")
            return client.predict_records(read_csv(text, name, schema, columns))
    except InvalidRows as exc:
        raise click.BadParameter(exc.message, param_hint="'--csv'") from None


def _named(text: str, name: str) -> TextIO:
    stream = io.StringIO(text)
    stream.name = name  # what the float reader's messages name
    return stream


@click.command()
@connection_options(timeout=300.0)  # a waited forget may retrain shards
@click.argument("ids", metavar="ID...", nargs=-1, required=True)
@click.option("--strategy", type=click.Choice(STRATEGIES), default="auto", show_default=True,
              help="How to forget: auto is the server's default (hs or ohs).")  # fmt: skip
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until applied, or return once the request is durable in the ledger.")  # fmt: skip
@click.option("--request-id", help="Idempotency key: repeating it returns the first answer. Default: a new UUID4.")
@click.option("--json", "as_json", is_flag=True, help="Print the receipt as JSON.")
def forget(ids: tuple[str, ...], strategy: str, wait: bool, request_id: str | None, as_json: bool,
           **conn: Any) -> None:  # fmt: skip
    """Forget training samples by id; prints the receipt (keep it to audit the forget later)."""
    request_id = request_id or str(uuid.uuid4())  # made here so a timeout can say which request to look up
    hint = f" (the forget may still be applied: see `forgetd status {request_id}`)"
    with _reported(_client(**conn), on_timeout=hint) as client:
        receipt = client.forget(list(ids), strategy=strategy, wait=wait, request_id=request_id)
    click.echo(_json(receipt) if as_json else _format_receipt(receipt))


@click.command()
@connection_options()
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True, help="Print the receipt as JSON.")
def status(request_id: str, as_json: bool, **conn: Any) -> None:
    """Where an earlier forget stands (pending or applied), by its request id."""
    with _reported(_client(**conn)) as client:
        receipt = client.forget_status(request_id)
    click.echo(_json(receipt) if as_json else _format_receipt(receipt))


@click.command()
@connection_options()
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
def model(as_json: bool, **conn: Any) -> None:
    """The live model: version, digest, configuration and how much it has forgotten."""
    with _reported(_client(**conn)) as client:
        info = client.model()
    click.echo(_json(info) if as_json else _format_model(info))


# -- human-readable output -------------------------------------------------------------------------------


def _format_prediction(p: Prediction) -> str:
    lines = [f"model version {p.model_version} (digest {p.model_digest})", "row\tlabel\tprobabilities"]
    for i, (label, probs) in enumerate(zip(p.labels, p.probabilities)):
        lines.append(f"{i}\t{label}\t" + " ".join(f"{q:.4f}" for q in probs))
    return "\n".join(lines)


def _format_receipt(r: Receipt) -> str:
    if r.result is None:
        head = f"request {r.request_id} pending: durable at ledger seq {r.requested_seq}"
    else:
        head = (
            f"request {r.request_id} applied: model version {r.result.model_version}, strategy "
            f"{r.result.strategy} ({r.result.guarantee}), ledger seq {r.requested_seq} -> {r.applied_seq}"
        )
    samples = [
        # A server keeps no raw id once a request is applied: a later status names the sample by its ref.
        f"  {s.sample_id or 'subject ' + s.subject_ref[:16]}: shard {s.shard} slice {s.slice}"
        + (f", {s.strategy} ({s.guarantee}), forgotten at seq {s.applied_seq}" if s.applied_seq else "")
        for s in r.samples
    ]
    published = ["  published: cosigned by the witness quorum (head size "
                 f"{r.head.size if r.head else '?'})" if r.published else f"  not published: {r.unpublished_reason}"]
    return "\n".join([head, *samples, *(published if r.published or r.unpublished_reason else [])])


def _format_model(m: ModelInfo) -> str:
    c = m.config
    rows = [
        ("version", f"{m.version} (ledger seq {m.ledger_seq})"),
        ("digest", m.digest),
        ("forgotten", f"{m.forgotten_count} samples"),
        ("shape", f"{m.num_features} features -> {m.num_classes} classes, hidden {list(c.hidden_sizes)}"),
        ("sharding", f"{c.shards} shards x {c.slices} slices, threshold m {m.threshold_m}"
                     + (f", {c.epochs} epochs ({c.epoch_schedule} schedule)" if c.epoch_schedule else "")),
        ("strategy", f"auto = {c.default_strategy}"),
        ("accuracy", f"{m.training_accuracy:.4f} at training time"),
        ("device", m.device),
        ("head key", f"{m.head_public_key} (Ed25519; verifies the signed ledger heads)"),
        ("origin", m.checkpoint_origin or "(none: the server predates checkpoints)"),
        ("verifier", f"{m.verifier_key} (checks the heads' C2SP checkpoints, e.g. with Go's sumdb/note)"
         if m.verifier_key else "(none)"),
    ]
    rows.extend(_budget_rows(m))
    return "\n".join(f"{name:<10}{value}" for name, value in rows)


def _budget_rows(m: ModelInfo) -> list[tuple[str, str]]:
    """The linear family's certified budget: the total, then what each shard has spent and has left."""
    if not m.certified_budget:
        return []
    spent = sum(b.bound_spent for b in m.certified_budget)
    left = sum(max(0.0, b.budget_left) for b in m.certified_budget)
    total = [("certified", f"budget {m.certified_budget[0].budget:.6g} per shard: {spent:.6g} spent, {left:.6g} left "
                           f"over {len(m.certified_budget)} shards")]
    return total + [("", f"shard {b.shard}: spent {b.bound_spent:.6g} (epsilon {b.epsilon_spent:.4g}), left "
                         f"{b.budget_left:.6g}, {b.removed} removed since training"
                         + (", voided by an influence step" if b.voided else "")) for b in m.certified_budget]
