"""Docs that are tested: every CLI command has help and is named in the README, and the README's quick start
shows exactly the two Makefile targets that CI runs."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from forgetd.client.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _walk(group: click.Group, ctx: click.Context, prefix: str) -> list[str]:
    names = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, f"'{prefix} {name}' is listed but cannot be loaded"
        path = f"{prefix} {name}"
        names.append(path)
        if isinstance(cmd, click.Group):
            names.extend(_walk(cmd, click.Context(cmd, info_name=name, parent=ctx), path))
    return names


COMMANDS = _walk(main, click.Context(main, info_name="forgetd"), "forgetd")


def test_the_cli_has_every_command_of_the_design() -> None:
    expected = {"forgetd serve", "forgetd train", "forgetd predict", "forgetd forget", "forgetd status",
                "forgetd model", "forgetd verify", "forgetd receipt verify", "forgetd ledger verify",
                "forgetd ledger show", "forgetd ledger head", "forgetd ledger bench",
                "forgetd bench serving", "forgetd bench unlearning"}
    assert expected <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(main, [*command.split()[1:], "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_in_the_readme(command: str) -> None:
    assert f"`{command}" in README or f"{command} " in README, f"README.md does not mention '{command}'"


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("forgetd, version ")


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci.splitlines()[-1]
    assert "make test" in README and "make run" in README
