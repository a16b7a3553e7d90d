"""`forgetd serve` and `forgetd bench serving` as a user meets them: help, errors, the demo default, a tiny bench."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from forgetd.client.cli.main import main


def test_serve_has_help_naming_every_flag() -> None:
    result = CliRunner().invoke(main, ["serve", "-h"])
    assert result.exit_code == 0
    for flag in ("--store", "--listen", "--device", "--token-file", "--tls-cert", "--tls-key", "--tls-client-ca",
                 "--http-listen", "--max-forget-ids", "--max-predict-rows", "--max-message-mib"):
        assert flag in result.output


def test_serve_refuses_a_bad_configuration_with_one_error_line(tmp_path: Path, store: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not really a certificate")
    empty = tmp_path / "token"
    empty.write_text("\n")
    cases = [
        (["--store", str(store), "--tls-cert", str(cert)], "Error: TLS needs both --tls-cert and --tls-key"),
        (["--store", str(store), "--listen", "nowhere"], "Error: listen address 'nowhere' is not HOST:PORT"),
        (["--store", str(store), "--token-file", str(empty)], f"Error: {empty} is empty; put the bearer token"),
        (["--store", str(tmp_path / "missing")], "Error: " + str(tmp_path / "missing") + ": no forgetd store here"),
    ]
    with socket.socket() as taken:  # a port another process holds
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        result = CliRunner().invoke(main, ["serve", "--store", str(store), "--listen", busy])
        assert result.exit_code == 1 and f"Error: cannot listen on {busy}" in result.output, result.output
    for args, want in cases:
        result = CliRunner().invoke(main, ["serve", *args])
        assert result.exit_code == 1, result.output
        assert result.output.strip().splitlines()[-1].startswith(want), result.output


def test_device_flags_take_what_the_vocabulary_accepts() -> None:
    from forgetd.server.cli.options import DEVICE

    assert [DEVICE.convert(d, None, None) for d in ("auto", "cpu", "cuda", "cuda:1")] == ["auto", "cpu", "cuda", "cuda:1"]
    for command, required in ((["serve"], []), (["train"], ["--data", "synthetic", "--store", "s"]),
                              (["bench", "serving"], [])):
        result = CliRunner().invoke(main, [*command, *required, "--device", "tpu"])
        assert result.exit_code == 2, result.output
        assert "Invalid value for '--device': device is 'tpu'; choose auto, cpu, cuda or cuda:N" in result.output
        assert "--device [auto|cpu|cuda[:N]]" in CliRunner().invoke(main, [*command, "-h"]).output


def test_bench_serving_names_the_strategies_it_takes() -> None:
    help_ = CliRunner().invoke(main, ["bench", "serving", "-h"]).output
    assert "[default: dpus,hs,ohs,sisa,retrain]" in help_
    result = CliRunner().invoke(main, ["bench", "serving", "--strategies", "dpus,auto"])
    assert result.exit_code == 2
    assert "unknown strategy 'auto'; choose from retrain, sisa, dpus, hs, ohs" in result.output


@pytest.mark.slow
def test_serve_without_a_store_trains_the_demo_once_and_serves_it(tmp_path: Path, daemon_process) -> None:
    env = {"XDG_DATA_HOME": str(tmp_path / "data")}
    first = daemon_process(None, env=env)
    first.wait_serving()
    first.signal(signal.SIGTERM)
    assert first.wait() == 0, first.log
    assert "training the built-in demo model" in first.log and "serving model version 0" in first.log
    demo = tmp_path / "data" / "forgetd" / "demo"
    assert (demo / "ledger.sqlite").exists()
    again = daemon_process(None, env=env)
    again.wait_serving()
    again.signal(signal.SIGINT)
    assert again.wait() == 0, again.log
    assert "using the demo store" in again.log and "training" not in again.log


def test_bench_serving_runs_tiny_and_reports_every_figure(tmp_path: Path) -> None:
    args = ["bench", "serving", "--train-rows", "200", "--latency-calls", "20", "--throughput-calls", "10",
            "--batch-sizes", "8", "--acks", "3", "--forgets", "2", "--strategies", "dpus,sisa", "--device", "cpu"]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output[result.output.index("{"):])
    assert set(figures["predict"]) == {"1 row", "8 rows"}
    assert all(p["forgetd_p50_ms"] > 0 and p["echo_p50_ms"] > 0 and p["p50_ratio"] > 0 for p in figures["predict"].values())
    assert set(figures["forget_done_ms"]) == {"dpus", "sisa"} and figures["forget_ack_ms"]["p50"] > 0
    assert set(figures["fronts"]) == {"predict", "echo", "model_infer", "rest", "rest_echo"}
    assert all(figures["front_ratios"].values())
