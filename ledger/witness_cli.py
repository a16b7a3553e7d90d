"""`forgetd witness`: run a c2sp.org/tlog-witness for the given logs (library: witness.py, witness_server.py)."""

from __future__ import annotations

from pathlib import Path

import click

from .errors import LedgerError
from .note_keys import NoteVerifier, parse_verifier_key
from .signing import load_or_create_signing_key
from .witness import Witness


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise click.ClickException(f"--listen takes HOST:PORT (port 0..65535, 0 for any free one), got {value!r}")
    return host, int(port)


def _logs(values: tuple[str, ...]) -> dict[str, list[NoteVerifier]]:
    logs: dict[str, list[NoteVerifier]] = {}
    for value in values:
        origin, sep, vkey = value.partition("=")
        if not sep or not origin or not vkey:
            raise click.ClickException(f"--log takes ORIGIN=VERIFIERKEY, got {value!r}")
        logs.setdefault(origin, []).append(parse_verifier_key(vkey))
    return logs


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--listen", default="127.0.0.1:0", show_default=True, metavar="HOST:PORT",
              help="Where to serve POST /add-checkpoint (port 0: any free port, printed at start).")
@click.option("--state", "state_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The SQLite file of what the witness has cosigned (created if missing).")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The witness's Ed25519 key, PKCS#8 PEM, mode 0600 (created if missing).")
@click.option("--log", "logs", multiple=True, required=True, metavar="ORIGIN=VERIFIERKEY",
              help="A log to witness: its origin line and its verifier key (repeat for more logs or keys).")
@click.option("--name", default=None, help="The witness's key name (default: forgetd-witness/<key id>).")
def witness(listen: str, state_path: Path, key_path: Path, logs: tuple[str, ...], name: str | None) -> None:
    """Cosign checkpoints of the given logs that are consistent with those cosigned before (c2sp.org/tlog-witness).

    Prints one line, its verifier key and where it listens, then serves until interrupted."""
    try:
        from .witness_server import WitnessServer  # Starlette and uvicorn, only for this command
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"forgetd witness needs Starlette and uvicorn ({exc.name} is missing): "
                                   "pip install 'forgetd[witness]'") from exc
    host, port = _listen(listen)
    try:
        trusted = _logs(logs)
        server = WitnessServer(Witness(state_path, load_or_create_signing_key(key_path), trusted, name=name), host, port)
    except (LedgerError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"witness {server.witness.vkey} listening on {server.url}")
    server.serve_forever()
