"""A CERTIFIED removal's certificate in every front: the HTTP `/unlearn` answer carries it (POST, once applied, and
GET), GetModel lists the live linear model's certified budget per shard and its epoch schedule, and `forgetd
model` prints both; an MLP has no budget and a SISA batch no certificate."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from helpers import RunningDaemon, running_daemon, train_small_store
from forgetd.client import Client
from forgetd.client.cli.main import main


def train_linear_store(path: Path) -> Path:
    from forgetd.server.config import EngineConfig
    from forgetd.server.data import load_dataset
    from forgetd.server.engine.engine import Engine

    Engine.train(load_dataset("synthetic", n=400, seed=0),
                 EngineConfig(model="linear", slices=4, shards=2, device="cpu", l2=1e-2), path).close()
    return path


@pytest.fixture(scope="module")
def linear(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningDaemon, httpx.Client]]:
    store = train_linear_store(tmp_path_factory.mktemp("linear") / "store")
    with running_daemon(store, http_listen="127.0.0.1:0") as running, \
            httpx.Client(base_url=f"http://127.0.0.1:{running.daemon.http_port}", timeout=60.0) as http:
        yield running, http


def unlearn(http: httpx.Client, sample_id: str, method: str) -> tuple[str, dict[str, Any]]:
    key = str(uuid.uuid4())
    posted = http.post("/unlearn", json={"sample_id": sample_id, "method": method}, headers={"Idempotency-Key": key})
    assert posted.status_code in (200, 202), posted.text
    done = http.get(f"/unlearn/{key}", params={"wait": "true", "timeout": 60}).json()
    assert done["status"] == "applied", done
    return key, done


def test_the_http_answer_of_a_certified_removal_carries_its_certificate(
        linear: tuple[RunningDaemon, httpx.Client]) -> None:
    running, http = linear
    sid = running.runtime.engine.sample_ids()[0]
    key, done = unlearn(http, sid, "certified")
    cert = done["result"]["certificate"]
    assert cert["epsilon"] == 1.0 and cert["delta"] == 1e-5 and cert["sigma"] == 1.0
    assert cert["budget"] == pytest.approx(1.0 / math.sqrt(2 * math.log(1.5 / 1e-5)))
    assert cert["retrains"] == 0 and len(cert["shards"]) == 1
    shard = cert["shards"][0]
    assert shard["shard"] == done["samples"][0]["shard"] and shard["removed"] >= 1 and not shard["retrained"]
    assert 0 < shard["step_bound"] <= shard["bound_spent"] and shard["budget_left"] == pytest.approx(
        cert["budget"] - shard["bound_spent"])
    again = http.post("/unlearn", json={"sample_id": sid, "method": "certified"}, headers={"Idempotency-Key": key})
    assert again.status_code == 200 and again.json()["result"]["certificate"] == cert  # the POST body has it too
    _, sisa = unlearn(http, running.runtime.engine.sample_ids()[0], "sisa")
    assert sisa["result"]["certificate"] is None


def test_get_model_lists_the_certified_budget_and_the_epoch_schedule(linear: tuple[RunningDaemon, httpx.Client]) -> None:
    running, http = linear
    with Client(running.address) as client:
        before = client.model()
        assert before.config.epoch_schedule == "sisa" and len(before.certified_budget) == 2
        unlearn(http, running.runtime.engine.sample_ids()[0], "certified")
        after = client.model()
    spent = {b.shard: b.bound_spent for b in before.certified_budget}
    moved = [b for b in after.certified_budget if b.bound_spent > spent[b.shard]]
    assert len(moved) == 1 and moved[0].budget_left == pytest.approx(moved[0].budget - moved[0].bound_spent)
    assert moved[0].epsilon_spent > 0 and not moved[0].voided
    result = CliRunner().invoke(main, ["model", "--server", running.address])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("certified") and "left over 2 shards" in line for line in lines), result.output
    assert f"shard {moved[0].shard}: spent {moved[0].bound_spent:.6g}" in result.output
    assert "sisa schedule" in result.output


def test_an_mlp_has_no_budget_and_reports_its_schedule(tmp_path: Path) -> None:
    store = train_small_store(tmp_path / "store")  # trained with the per-step schedule
    with running_daemon(store) as running, Client(running.address) as client:
        info = client.model()
        assert info.certified_budget == () and info.config.epoch_schedule == "per-step"
        result = CliRunner().invoke(main, ["model", "--server", running.address])
    assert result.exit_code == 0 and "certified" not in result.output and "per-step schedule" in result.output
