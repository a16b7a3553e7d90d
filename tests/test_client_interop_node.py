"""The Node.js client of tests/interop/ (only @grpc/grpc-js and @grpc/proto-loader, loading protos/ as they
are) against a real daemon: proof that the API works outside Python. `make test` runs npm install first."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from forgetd.client import Client

from helpers import RunningDaemon, running_daemon

INTEROP = Path(__file__).resolve().parent / "interop"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not on PATH: install Node.js (>= 18) to run the interop client"),
    pytest.mark.skipif(
        not (INTEROP / "node_modules" / "@grpc" / "grpc-js").is_dir(),
        reason="tests/interop/node_modules is missing: run `make test` (or `npm install` in tests/interop)",
    ),
]


def _node(address: str, sample_id: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    env = {k: v for k, v in os.environ.items() if k != "FORGETD_TOKEN"} | ({"FORGETD_TOKEN": token} if token else {})
    return subprocess.run([NODE, str(INTEROP / "client.js"), address, sample_id],
                          capture_output=True, text=True, timeout=180, cwd=INTEROP, env=env)  # fmt: skip


def test_the_node_client_predicts_forgets_and_reads_the_ledger(daemon: RunningDaemon) -> None:
    result = _node(daemon.address, "synthetic:42")
    assert result.returncode == 0, f"the Node client failed:\n{result.stdout}{result.stderr}"
    assert result.stdout.startswith("interop: OK: version 0 -> 1, forgot synthetic:42")
    # What Node did is what Python sees: one forget applied, both of its entries in the ledger.
    with Client(daemon.address) as client:
        assert client.model().version == 1
        assert [e.type for e in client.ledger()] == ["genesis", "forget.requested", "forget.applied"]


def test_the_node_client_fails_loudly_on_a_bad_answer(daemon: RunningDaemon) -> None:
    # An unknown sample id: the server answers NOT_FOUND, which the Node client must report, exit 1.
    result = _node(daemon.address, "no-such-id")
    assert result.returncode == 1
    assert result.stderr.startswith("interop: FAIL: gRPC NOT_FOUND: unknown sample id(s)")


def test_the_node_client_sends_the_bearer_token(store: Path) -> None:
    with running_daemon(store, token="node-token") as running:
        refused = _node(running.address, "synthetic:43")
        assert refused.returncode == 1 and refused.stderr.startswith("interop: FAIL: gRPC UNAUTHENTICATED: ")
        result = _node(running.address, "synthetic:43", token="node-token")
        assert result.returncode == 0, f"the Node client failed:\n{result.stdout}{result.stderr}"
