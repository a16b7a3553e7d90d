"""The `forgetd` command: one click group whose subcommands live beside the library they drive.

Subcommands are imported lazily, so `forgetd ledger verify` and `forgetd verify` work on a client-only
install (no torch), and only `serve`, `train` and `bench` need the server extra.
"""

from __future__ import annotations

import importlib
from importlib import metadata

import click

# name -> "module:attribute"; each module owns its commands, this table only wires them in.
_COMMANDS: dict[str, str] = {
    "ledger": "forgetd.ledger.cli:ledger",
    "train": "forgetd.server.train_cli:train",
    "serve": "forgetd.server.serve_cli:serve",
    "bench": "forgetd.server.bench_cli:bench",
    "predict": "forgetd.client.commands:predict",
    "forget": "forgetd.client.commands:forget",
    "status": "forgetd.client.commands:status",
    "model": "forgetd.client.commands:model",
    "verify": "forgetd.client.audit_cli:verify",
    "receipt": "forgetd.client.audit_cli:receipt",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(_COMMANDS) | set(super().list_commands(ctx)))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name in ("torch", "numpy"):
                raise click.ClickException(
                    f"'forgetd {cmd_name}' needs the server extra: pip install 'forgetd[server]'"
                ) from exc
            if exc.name == module_name:
                return None  # not built yet on this checkout
            raise
        return getattr(module, attr, None)


def _version() -> str:
    try:
        return metadata.version("forgetd")
    except metadata.PackageNotFoundError:  # running from a source tree without an install
        return "0+unknown"


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", prog_name="forgetd")
def main() -> None:
    """forgetd: a model server that can prove it forgot."""


if __name__ == "__main__":
    main()
