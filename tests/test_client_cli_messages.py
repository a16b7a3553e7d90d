"""The command line's messages, exactly: what is refused before a call is a usage error (exit 2) without a
server status code; a server address is checked before a channel is made; `serve` says nothing before it
knows it can serve; progress bars only on a terminal; a failed receipt check is one line on one stream;
a CSV's first row is a header only when none of it is a number; sample ids are explained."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from forgetd.client.cli.main import main
from forgetd.ledger.store import TRIGGERS_SQL

from helpers import REPO, RunningDaemon, running_daemon

FORGETD = str(Path(sys.executable).with_name("forgetd"))  # the console script, as a user runs it


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def usage_error(result: object) -> str:
    assert getattr(result, "exit_code") == 2, getattr(result, "output")
    return str(getattr(result, "stderr")).splitlines()[-1]


@pytest.mark.parametrize(("server", "message"), [
    ("", "the address is empty; give HOST:PORT, e.g. 127.0.0.1:50051"),
    ("localhost", "'localhost' is not HOST:PORT; give e.g. 127.0.0.1:50051"),
    ("host:notaport", "'host:notaport' is not HOST:PORT: the port 'notaport' is not a number"),
    ("localhost:99999", "'localhost:99999': port 99999 is out of range; give a port from 1 to 65535"),
    ("localhost:0", "'localhost:0': port 0 is out of range; give a port from 1 to 65535"),
])  # fmt: skip
@pytest.mark.parametrize("command", [["model"], ["status", "r"], ["forget", "a"], ["predict", "--json", "[[1]]"],
                                     ["verify", "--store", "."], ["receipt", "verify", "README.md"]])
def test_a_bad_server_address_is_a_usage_error(runner: CliRunner, command: list[str], server: str,
                                               message: str) -> None:
    result = runner.invoke(main, [*command, "--server", server])
    assert usage_error(result) == f"Error: Invalid value for '--server': {message}"


def test_an_empty_server_address_prints_no_grpc_internals() -> None:
    done = subprocess.run([FORGETD, "model", "--server", ""], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["Usage: forgetd model [OPTIONS]", "Try 'forgetd model --help' for help.", "",
                                        "Error: Invalid value for '--server': the address is empty; give HOST:PORT, "
                                        "e.g. 127.0.0.1:50051"]


def test_other_grpc_targets_pass_through(runner: CliRunner, tmp_path: Path) -> None:
    # A unix socket nobody listens on: the call fails (exit 1), the address was not refused (exit 2).
    result = runner.invoke(main, ["model", "--server", f"unix:{tmp_path / 'none.sock'}", "--timeout", "2"])
    assert result.exit_code == 1 and result.stderr.startswith("Error: UNAVAILABLE: ")


@pytest.mark.parametrize(("rows", "message"), [
    ("[[1, 2], [3]]", "row 1 has 1 values but row 0 has 2: rows must be equally long"),
    ('[[1, "a"]]', "rows must hold numbers: must be real number, not str"),
    ("[]", "no rows; give at least one row of numbers"),
])  # fmt: skip
def test_rows_refused_before_sending_are_usage_errors(runner: CliRunner, rows: str, message: str) -> None:
    result = runner.invoke(main, ["predict", "--server", "127.0.0.1:9", "--json", rows])
    assert usage_error(result) == f"Error: Invalid value for '--json': {message}"


@pytest.mark.parametrize(("text", "message"), [
    ("f0,f1\n", "{f} holds no rows of numbers"),
    ("f0,f1\n1,2\n3,\n", "{f} line 3 column 2: '' is not a number"),
])  # fmt: skip
def test_csv_rows_refused_before_sending(runner: CliRunner, tmp_path: Path, text: str, message: str) -> None:
    data = tmp_path / "rows.csv"
    data.write_text(text)
    result = runner.invoke(main, ["predict", "--server", "127.0.0.1:9", "--csv", str(data)])
    assert usage_error(result) == f"Error: Invalid value for '--csv': {message.format(f=data)}"


def test_a_headerless_csv_is_all_rows_even_after_a_byte_order_mark(runner: CliRunner, daemon: RunningDaemon,
                                                                   tmp_path: Path) -> None:
    features = daemon.runtime.engine.num_features
    data = tmp_path / "rows.csv"
    data.write_text("\ufeff" + ",".join(["0.5"] * features) + "\n" + ",".join(["1"] * features) + "\n",
                    encoding="utf-8")
    result = runner.invoke(main, ["predict", "--server", daemon.address, "--csv", str(data), "--output", "json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["labels"]) == 2


def test_serve_on_a_missing_store_prints_only_the_error(runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    result = runner.invoke(main, ["serve", "--store", str(missing), "--listen", "127.0.0.1:0"])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {missing}: no forgetd store here (train one with `forgetd train --store "
                             f"{missing}`)\n")


def test_serve_without_the_subject_key_is_one_error_line(runner: CliRunner, store: Path) -> None:
    (store / "keys" / "subject.key").unlink()
    result = runner.invoke(main, ["serve", "--store", str(store), "--listen", "127.0.0.1:0"])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {store / 'keys' / 'subject.key'}: missing; it is the deployment's subject key, "
                             "without which no sample id can be matched to the ledger: restore it from a backup of "
                             "this store\n")


def test_train_shows_no_progress_bar_when_stderr_is_not_a_terminal(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["train", "--data", "synthetic", "--rows", "200", "--slices", "2", "--epochs", "1",
                                  "--epoch-schedule", "per-step", "--hidden", "8", "--device", "cpu",
                                  "--store", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert result.stderr == "" and result.stdout.startswith("store ")


def test_train_help_explains_the_sample_ids(runner: CliRunner) -> None:
    text = " ".join(runner.invoke(main, ["train", "-h"]).output.split())
    for scheme in ("adult: adult.data:<line>, the row's 1-based line number in adult.data (the first row is "
                   "adult.data:1)", "csv: the row's value in --id-column, exactly as written",
                   "npz: the strings of the file's `ids` array", "synthetic: synthetic:<n>, n from 0"):
        assert scheme in text


def test_not_found_shows_what_an_id_looks_like(runner: CliRunner, daemon: RunningDaemon) -> None:
    result = runner.invoke(main, ["forget", "7", "--server", daemon.address])
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == ("Error: NOT_FOUND: unknown sample id(s), not in the training data: '7' "
                             "(ids look like 'synthetic:0')\n")


def _forgotten_with_receipt(store: Path, tmp_path: Path) -> Path:
    receipt = tmp_path / "receipt.json"
    with running_daemon(store) as running:
        result = CliRunner().invoke(main, ["forget", "synthetic:5", "--json", "--server", running.address])
        assert result.exit_code == 0, result.output
    receipt.write_text(result.stdout)
    return receipt


def test_a_failed_receipt_check_is_one_line_on_stderr_only(store: Path, tmp_path: Path) -> None:
    receipt = _forgotten_with_receipt(store, tmp_path)
    ledger = sqlite3.connect(store / "ledger.sqlite", isolation_level=None)
    for name in TRIGGERS_SQL:
        ledger.execute(f"DROP TRIGGER {name}")
    ledger.execute("DELETE FROM entries WHERE seq = (SELECT MAX(seq) FROM entries)")  # a truncated tail
    ledger.close()
    result = CliRunner().invoke(main, ["receipt", "verify", str(receipt), "--store", str(store)])
    assert (result.exit_code, result.stdout) == (1, "")
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: receipt ") and " does not hold: " in line
    as_json = CliRunner().invoke(main, ["receipt", "verify", str(receipt), "--store", str(store), "--json"])
    assert (as_json.exit_code, as_json.stderr, json.loads(as_json.stdout)["ok"]) == (1, "", False)


def test_verify_shows_no_progress_bar_when_stderr_is_not_a_terminal(store: Path, tmp_path: Path) -> None:
    _forgotten_with_receipt(store, tmp_path)
    result = CliRunner().invoke(main, ["verify", "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert result.stderr == "" and "replayed" in result.stdout
