"""`forgetd predict | forget | status | model` driven in-process with CliRunner: help, usage errors (exit 2),
failed calls (exit 1, one `Error: ...` line on stderr), and real answers from a live daemon on port 0,
with a token and over mTLS."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from forgetd.client.cli.main import main

from helpers import RunningDaemon, running_daemon
from helpers import Pki

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
         "Error: Invalid value for '--strategy': 'fastest' is not one of 'auto', 'retrain', 'sisa', 'dpus', 'hs', 'ohs', "
             "'influence', 'certified'."),
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


def test_rows_that_cannot_be_packed_are_a_usage_error(runner: CliRunner, closed_address: str) -> None:
    # Refused before anything is sent: exit 2, and no server status code in front of it.
    result = runner.invoke(main, ["predict", "--server", closed_address, "--json", "[[1, 2], [3]]"])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        "Error: Invalid value for '--json': row 1 has 1 values but row 0 has 2: rows must be equally long"
    )


def test_a_csv_with_a_bad_cell_names_its_line(runner: CliRunner, closed_address: str, tmp_path: Path) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("f0,f1\n1,2\n3,x\n")
    result = runner.invoke(main, ["predict", "--server", closed_address, "--csv", str(data)])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == f"Error: Invalid value for '--csv': {data} line 3 column 2: 'x' is not a number"


# ------------------------------------------------------------------------------------------------ live daemon

TOKEN = "cli-test-token"


def _run(runner: CliRunner, address: str, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(main, [*args, "--server", address])
    return result.exit_code, result.stdout, result.stderr


def _num_features(runner: CliRunner, address: str) -> int:
    code, out, _ = _run(runner, address, "model", "--json")
    assert code == 0
    return json.loads(out)["num_features"]


def test_model_prints_the_live_version(runner: CliRunner, daemon: RunningDaemon) -> None:
    code, out, err = _run(runner, daemon.address, "model")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "version   0 (ledger seq 1)"
    assert re.fullmatch(r"digest    [0-9a-f]{64}", lines[1])
    assert lines[2] == "forgotten 0 samples"
    assert [line.split()[0] for line in lines] == [
        "version", "digest", "forgotten", "shape", "sharding", "strategy", "accuracy", "device", "head", "origin",
        "verifier",
    ]
    assert re.fullmatch(r"head key  [0-9a-f]{64} \(Ed25519; verifies the signed ledger heads\)", lines[-3])
    assert re.fullmatch(r"origin    forgetd/[0-9a-f]{16}", lines[-2])
    assert re.fullmatch(r"verifier  forgetd/[0-9a-f]{16}\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44} \(checks the heads' C2SP "
                        r"checkpoints, e\.g\. with Go's sumdb/note\)", lines[-1])
    code, out, _ = _run(runner, daemon.address, "model", "--json")
    info = json.loads(out)
    assert (code, info["version"], info["config"]["default_strategy"] in ("hs", "ohs")) == (0, 0, True)


def test_predict_from_json_and_csv_agree(runner: CliRunner, daemon: RunningDaemon, tmp_path: Path) -> None:
    f = _num_features(runner, daemon.address)
    rows = [[(i + j) % 5 / 5 for j in range(f)] for i in range(3)]
    data = tmp_path / "rows.csv"
    data.write_text(",".join(f"f{j}" for j in range(f)) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    code, from_json, err = _run(runner, daemon.address, "predict", "--json", json.dumps(rows))
    assert (code, err) == (0, "")
    lines = from_json.splitlines()
    assert re.fullmatch(r"model version 0 \(digest [0-9a-f]{64}\)", lines[0])
    assert lines[1] == "row\tlabel\tprobabilities" and len(lines) == 5
    assert [line.split("\t")[0] for line in lines[2:]] == ["0", "1", "2"]
    assert _run(runner, daemon.address, "predict", "--csv", str(data)) == (0, from_json, "")
    code, out, _ = _run(runner, daemon.address, "predict", "--json", json.dumps(rows), "--output", "json")
    answer = json.loads(out)
    assert code == 0 and answer["model_version"] == 0 and len(answer["probabilities"]) == len(answer["labels"]) == 3


def test_a_bad_predict_is_the_servers_message_and_exit_1(runner: CliRunner, daemon: RunningDaemon) -> None:
    f = _num_features(runner, daemon.address)
    code, out, err = _run(runner, daemon.address, "predict", "--json", json.dumps([[0.0] * (f + 1)]))
    assert (code, out) == (1, "")
    assert err == f"Error: INVALID_ARGUMENT: columns is {f + 1} but the model takes {f} features per row\n"


def test_forget_prints_the_applied_receipt(runner: CliRunner, daemon: RunningDaemon) -> None:
    code, out, err = _run(runner, daemon.address, "forget", "synthetic:3", "synthetic:4", "--strategy", "dpus",
                          "--request-id", "cli-1")  # fmt: skip
    assert (code, err) == (0, "")
    head, *samples = out.splitlines()
    assert head == "request cli-1 applied: model version 1, strategy dpus (approximate), ledger seq 2 -> 3"
    assert [s.split(":")[0] + ":" + s.split(":")[1] for s in samples] == ["  synthetic:3", "  synthetic:4"]
    assert all(s.endswith(", dpus (approximate), forgotten at seq 3") for s in samples)
    # The same request id again: the first answer, nothing new written.
    assert _run(runner, daemon.address, "forget", "synthetic:3", "synthetic:4", "--strategy", "dpus",
                "--request-id", "cli-1") == (0, out, "")  # fmt: skip
    # Status comes later, from a server that keeps no raw id once applied: the same lines, samples by ref.
    code, status, err = _run(runner, daemon.address, "status", "cli-1")
    status_head, *status_samples = status.splitlines()
    assert (code, err, status_head) == (0, "", head)
    assert [s.split(":", 1)[1] for s in status_samples] == [s.split(":", 2)[2] for s in samples]
    assert all(s.startswith("  subject ") for s in status_samples)
    code, out, _ = _run(runner, daemon.address, "status", "cli-1", "--json")
    receipt = json.loads(out)
    assert (code, receipt["status"], receipt["result"]["model_version"]) == (0, "applied", 1)
    assert len(bytes.fromhex(receipt["requested_leaf_hash"])) == 32


def test_forget_without_wait_is_acknowledged_durable(runner: CliRunner, daemon: RunningDaemon) -> None:
    code, out, err = _run(runner, daemon.address, "forget", "synthetic:9", "--strategy", "sisa", "--no-wait",
                          "--request-id", "cli-2", "--json")  # fmt: skip
    receipt = json.loads(out)
    assert (code, err, receipt["request_id"], receipt["requested_seq"]) == (0, "", "cli-2", 2)
    assert receipt["status"] in ("pending", "applied")  # the worker may be quick


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["forget", "synthetic:1", "nope"],
         "Error: NOT_FOUND: unknown sample id(s), not in the training data: 'nope' (ids look like 'synthetic:0')"),
        (["status", "never"], "Error: NOT_FOUND: no Forget with request_id 'never' is in the ledger"),
    ],
)
def test_server_refusals_are_one_line_and_exit_1(runner: CliRunner, daemon: RunningDaemon, args, message) -> None:
    assert _run(runner, daemon.address, *args) == (1, "", message + "\n")


def test_a_forget_past_its_deadline_says_how_to_look_it_up(runner: CliRunner, daemon: RunningDaemon) -> None:
    # The ledger's write lock, held here, keeps the request from becoming durable: the deadline passes on any
    # machine (a 1 ms deadline on a fast retrain was a race the forget sometimes won).
    lock = sqlite3.connect(daemon.runtime.engine.ledger_path, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        code, out, err = _run(runner, daemon.address, "forget", "synthetic:1", "--strategy", "retrain",
                              "--request-id", "slow", "--timeout", "0.5")  # fmt: skip
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert (code, out) == (1, "")
    assert err == ("Error: DEADLINE_EXCEEDED: Deadline Exceeded (the forget may still be applied: "
                   "see `forgetd status slow`)\n")  # fmt: skip


def test_forget_with_and_without_the_token_file(runner: CliRunner, store: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")  # a trailing newline, as editors write it
    with running_daemon(store, token=TOKEN) as running:
        assert _run(runner, running.address, "forget", "synthetic:1") == (
            1, "", "Error: UNAUTHENTICATED: this call needs a bearer token: send metadata "
            "'authorization: Bearer <token>'\n",
        )  # fmt: skip
        code, out, err = _run(runner, running.address, "forget", "synthetic:1", "--token-file", str(token_file))
        assert (code, err) == (0, "") and " applied: model version 1," in out


def test_commands_over_mtls(runner: CliRunner, store: Path, pki: Pki, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "client.pem").write_bytes(pki.client_cert)
    (tmp_path / "client.key").write_bytes(pki.client_key)
    tls = ["--tls-ca", str(pki.client_ca), "--tls-cert", str(tmp_path / "client.pem"),
           "--tls-key", str(tmp_path / "client.key")]  # fmt: skip
    with running_daemon(store, tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.client_ca,
                        channel_credentials=_mtls(pki)) as running:  # fmt: skip
        address = f"localhost:{running.address.rsplit(':', 1)[1]}"  # the name the server certificate carries
        code, out, err = _run(runner, address, "model", *tls)
        assert (code, err, out.splitlines()[0]) == (0, "", "version   0 (ledger seq 1)")
        code, out, err = _run(runner, address, "forget", "synthetic:2", "--strategy", "dpus", *tls)
        assert (code, err) == (0, "") and " applied: model version 1," in out
        code, _, err = _run(runner, address, "model", "--tls-ca", str(pki.client_ca), "--timeout", "5")
        assert code == 1 and err.startswith("Error: UNAVAILABLE: ")  # no client certificate: refused


def _mtls(pki: Pki):  # noqa: F811
    import grpc

    return grpc.ssl_channel_credentials(pki.ca, pki.client_key, pki.client_cert)
