"""The `forgetd` command: click groups whose subcommands live beside the library they drive.

Subcommands are imported lazily, so `forgetd ledger verify` and `forgetd verify --chain-only` work on a
client-only install (no torch), and only the commands that train or serve need the server extra. The tables
below are the whole wiring: server/ and client/ never import each other to register a command.
"""

from __future__ import annotations

import importlib
from importlib import metadata

import click

# name -> "module:attribute"; each module owns its commands, these tables only wire them in.
_COMMANDS: dict[str, str] = {
    "ledger": "forgetd.ledger.cli:ledger",
    "train": "forgetd.server.cli.train:train",
    "serve": "forgetd.server.cli.serve:serve",
    "predict": "forgetd.client.cli.commands:predict",
    "forget": "forgetd.client.cli.commands:forget",
    "status": "forgetd.client.cli.commands:status",
    "model": "forgetd.client.cli.commands:model",
    "verify": "forgetd.client.cli.audit:verify",
    "receipt": "forgetd.client.cli.audit:receipt",
    "witness": "forgetd.ledger.witness_cli:witness",
}
_BENCH_COMMANDS: dict[str, str] = {
    "serving": "forgetd.server.bench.serving:serving",
    "unlearning": "forgetd.server.bench.unlearning:unlearning",
    "audit": "forgetd.client.audit.bench:audit_command",
    "reliability": "forgetd.server.bench.reliability:reliability",
    "admission": "forgetd.server.bench.admission:admission",
    "paper-shapes": "forgetd.server.bench.paper_shapes:paper_shapes",
    "scale": "forgetd.server.bench.scale:scale",
    "increments": "forgetd.server.bench.increments_bench:increments_command",
    "shards": "forgetd.server.bench.shards:shards",
}


class _LazyGroup(click.Group):
    """A group whose commands are named in a table and imported on first use."""

    def __init__(self, *args: object, lazy: dict[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self._lazy) | set(super().list_commands(ctx)))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self._lazy.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name in ("torch", "numpy", "matplotlib"):
                raise click.ClickException(
                    f"'{ctx.command_path} {cmd_name}' needs the server extra: pip install 'forgetd[server]'"
                ) from exc
            raise
        command = getattr(module, attr)
        assert isinstance(command, click.Command)
        return command


def _version() -> str:
    try:
        return metadata.version("forgetd")
    except metadata.PackageNotFoundError:  # running from a source tree without an install
        return "0+unknown"


_SETTINGS = {"help_option_names": ["-h", "--help"]}


@click.group(cls=_LazyGroup, lazy=_COMMANDS, context_settings=_SETTINGS)
@click.version_option(_version(), "--version", prog_name="forgetd")
def main() -> None:
    """forgetd: a model server that can prove it forgot."""


@main.group(cls=_LazyGroup, lazy=_BENCH_COMMANDS, context_settings=_SETTINGS)
def bench() -> None:
    """Benchmarks that print figures beside a baseline: serving, unlearning (the paper's evaluation), audit,
    reliability (crashes, tampering, bad inputs)."""


if __name__ == "__main__":
    main()
