"""`forgetd ledger ...` driven in-process with click's CliRunner: exact output and exit codes."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from forgetd.ledger import Head, Ledger
from forgetd.ledger.cli import ledger as ledger_cli
from forgetd.ledger.schema import TRIGGERS_SQL

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "ledger.db"
    with Ledger(p, clock=lambda: T0) as book:
        for i in range(1, 6):
            book.append("forget.requested", {"request": f"r{i}"}, event_id=f"id-{i}")
    return p


def _head(path: Path, size: int | None = None) -> Head:
    with Ledger(path, readonly=True) as book:
        return book.head(size)


def _delete_row(path: Path, seq: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER entries_no_delete")
    conn.execute("DELETE FROM entries WHERE seq = ?", (seq,))
    conn.execute(TRIGGERS_SQL["entries_no_delete"])
    conn.close()


def test_every_command_has_help(runner: CliRunner) -> None:
    for args in ([], ["verify"], ["show"], ["head"], ["bench"]):
        result = runner.invoke(ledger_cli, [*args, "-h"])
        assert result.exit_code == 0, result.output
        assert result.output.startswith("Usage: ")


def test_verify_ok(runner: CliRunner, path: Path) -> None:
    head = _head(path)
    result = runner.invoke(ledger_cli, ["verify", str(path)])
    assert result.exit_code == 0
    assert result.output == f"ok: 5 entries verified; head {head.to_hex()}\n"
    result = runner.invoke(ledger_cli, ["verify", str(path), "--jobs", "2", "--expect-head", _head(path, 3).to_hex()])
    assert result.exit_code == 0
    assert result.output == f"ok: 5 entries verified, consistent with the expected head at size 3; head {head.to_hex()}\n"


def test_verify_names_the_first_bad_seq(runner: CliRunner, path: Path) -> None:
    _delete_row(path, 3)
    result = runner.invoke(ledger_cli, ["verify", str(path)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == "seq 3: missing: the next row has seq 4 (expected seq 3, actual seq 4)"
    assert lines[-1].startswith("Error: verification failed: first bad seq 3; ")


def test_verify_truncated_tail_against_a_kept_head(runner: CliRunner, path: Path) -> None:
    kept = _head(path).to_hex()
    _delete_row(path, 5)
    assert runner.invoke(ledger_cli, ["verify", str(path)]).exit_code == 0
    result = runner.invoke(ledger_cli, ["verify", str(path), "--expect-head", kept])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        "Error: verification failed: first bad seq 5; 1 problem: seq 5: the ledger has 4 entries but the expected "
        "head has 5: the tail from seq 5 was truncated (expected size >= 5, actual size 4)")


def test_verify_json(runner: CliRunner, path: Path) -> None:
    result = runner.invoke(ledger_cli, ["verify", str(path), "--json"])
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert report["ok"] is True and report["entries"] == 5 and report["first_bad_seq"] is None
    assert report["head_hex"] == _head(path).to_hex()
    _delete_row(path, 2)
    result = runner.invoke(ledger_cli, ["verify", str(path), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ok"] is False and report["first_bad_seq"] == 2
    assert report["problems"][0]["seq"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["verify"], "Error: Missing argument 'PATH'."),
        (["verify", "/no/such/ledger.db"], "Error: Invalid value for 'PATH': File '/no/such/ledger.db' does not exist."),
        (["verify", "{path}", "--expect-head", "zz"],
         "Error: Invalid value for '--expect-head': a head is 144 hex characters (size 8 bytes, chain 32, root 32), got 2"),
        (["verify", "{path}", "--expect-head", "g" * 144], "Error: Invalid value for '--expect-head': a head must be hexadecimal"),
        (["show", "{path}", "--from", "0"], "Error: Invalid value for '--from': 0 is not in the range x>=1."),
        (["verify", "{path}", "--jobs", "0"], "Error: Invalid value for '--jobs': 0 is not in the range x>=1."),
        (["nope"], "Error: No such command 'nope'."),
    ],
)
def test_usage_errors_exit_2(runner: CliRunner, path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(ledger_cli, [a.replace("{path}", str(path)) for a in args])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == message


def test_show(runner: CliRunner, path: Path) -> None:
    result = runner.invoke(ledger_cli, ["show", str(path), "--from", "4"])
    assert result.exit_code == 0
    assert result.output == (
        "      4  2025-01-02T03:04:05.000000Z  forget.requested    id-4  {\"request\":\"r4\"}\n"
        "      5  2025-01-02T03:04:05.000000Z  forget.requested    id-5  {\"request\":\"r5\"}\n"
    )
    result = runner.invoke(ledger_cli, ["show", str(path), "--json", "--limit", "2"])
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [entry["seq"] for entry in lines] == [1, 2]
    with Ledger(path, readonly=True) as book:
        assert lines[0] == book.entry(1).to_dict()


def test_head(runner: CliRunner, path: Path) -> None:
    head = _head(path)
    result = runner.invoke(ledger_cli, ["head", str(path)])
    assert result.exit_code == 0 and result.output == head.to_hex() + "\n"
    result = runner.invoke(ledger_cli, ["head", str(path), "--json"])
    assert json.loads(result.output) == {**head.to_dict(), "hex": head.to_hex()}


def test_head_of_a_file_that_is_not_a_ledger(runner: CliRunner, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    conn = sqlite3.connect(bogus)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    result = runner.invoke(ledger_cli, ["head", str(bogus)])
    assert result.exit_code == 1
    assert result.output == f"Error: {bogus} is not a forgetd ledger (application_id 0x0)\n"


def test_bench_smoke(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(ledger_cli, ["bench", "--appends", "8", "--batched", "20", "--batch-size", "5",
                                        "--entries", "300", "--runs", "1", "--dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    figures = {f["name"]: f for f in json.loads(result.output[result.output.index("["):])}
    for name in ("durable single appends (ledger)", "raw SQLite inserts, same settings", "ledger / raw SQLite",
                 "batched appends", "verify_ledger at 300 entries, 1 process", "inclusion proof at 300 entries",
                 "inclusion proof size at 300 entries"):
        assert figures[name]["value"] > 0, name
    assert figures["inclusion proof size at 300 entries"]["value"] == 9 * 32  # ceil(log2(300)) hashes
    table = runner.invoke(ledger_cli, ["bench", "--appends", "4", "--batched", "4", "--entries", "10", "--runs", "1",
                                       "--dir", str(tmp_path)])
    assert table.exit_code == 0
    assert "figure" in table.output and "verify_ledger at 10 entries" in table.output
    assert list(tmp_path.iterdir()) == []  # scratch ledgers are removed


def test_the_forgetd_entry_point_wires_the_group(runner: CliRunner, path: Path) -> None:
    from forgetd.client.cli.main import main

    result = runner.invoke(main, ["ledger", "head", str(path)])
    assert result.exit_code == 0 and result.output == _head(path).to_hex() + "\n"
