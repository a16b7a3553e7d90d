"""`forgetd predict | forget | status | model` driven in-process with CliRunner: help, usage errors (exit 2),
and failed calls (exit 1, one `Error: ...` line on stderr). The runs against a live daemon are in
tests/test_client_live.py."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from forgetd.client.cli import main

COMMANDS = ("predict", "forget", "status", "model")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def closed_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_every_command_has_help(runner: CliRunner, command: str, flag: str) -> None:
    result = runner.invoke(main, [command, flag])
    assert result.exit_code == 0
    assert f"Usage: main {command} [OPTIONS]" in result.output
    for option in ("--server ADDR", "--token-file FILE", "--tls-ca FILE", "--tls-cert FILE", "--tls-key FILE"):
        assert option in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict"], "Error: give the rows with exactly one of --csv F or --json ROWS"),
        (["predict", "--json", "[[1]]", "--csv", "-"], "Error: give the rows with exactly one of --csv F or --json ROWS"),
        (["predict", "--json", "[[1,"], "Error: Invalid value for '--json': not JSON: Expecting value: line 1 column 5 (char 4)"),
        (["forget"], "Error: Missing argument 'ID...'."),
        (["forget", "a", "--strategy", "fastest"],
         "Error: Invalid value for '--strategy': 'fastest' is not one of 'auto', 'retrain', 'sisa', 'dpus', 'hs', 'ohs'."),
        (["status"], "Error: Missing argument 'REQUEST_ID'."),
        (["model", "--timeout", "0"], "Error: Invalid value for '--timeout': 0.0 is not in the range x>0."),
    ],
)  # fmt: skip
def test_usage_errors_exit_2(runner: CliRunner, args: list[str], message: str) -> None:
    result = runner.invoke(main, args)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == message


def test_a_client_cert_needs_its_key(runner: CliRunner, tmp_path: Path) -> None:
    pem = tmp_path / "client.pem"
    pem.write_text("not read: the flags are checked first")
    result = runner.invoke(main, ["model", "--tls-cert", str(pem)])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == "Error: --tls-cert and --tls-key go together: give both for mTLS, or neither"


def test_a_missing_token_file_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["model", "--token-file", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert f"'{tmp_path / 'nope'}' does not exist." in result.stderr


@pytest.mark.parametrize(
    "args", [["model"], ["status", "r-1"], ["forget", "a"], ["predict", "--json", "[[1.0, 2.0]]"]], ids=COMMANDS[::-1]
)
def test_an_unreachable_server_is_one_error_line_and_exit_1(
    runner: CliRunner, closed_address: str, args: list[str]
) -> None:
    result = runner.invoke(main, [*args, "--server", closed_address, "--timeout", "5"])
    assert result.exit_code == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: UNAVAILABLE: failed to connect to all addresses")


def test_rows_that_cannot_be_packed_exit_1(runner: CliRunner, closed_address: str) -> None:
    result = runner.invoke(main, ["predict", "--server", closed_address, "--json", "[[1, 2], [3]]"])
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: INVALID_ARGUMENT: row 1 has 1 values but row 0 has 2: rows must be equally long\n"
    )


def test_a_csv_with_a_bad_cell_names_its_line(runner: CliRunner, closed_address: str, tmp_path: Path) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("f0,f1\n1,2\n3,x\n")
    result = runner.invoke(main, ["predict", "--server", closed_address, "--csv", str(data)])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {data} line 3: could not convert string to float: 'x'\n"
