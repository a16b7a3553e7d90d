"""INFLUENCE and CERTIFIED through a real daemon and `forgetd verify`: both replay bitwise, the certified budget
arithmetic is checked (a tampered figure is named), and the gold standard: after 50 forgets it passes, against a
tampered live parameter file it fails with its figures named, and its audit.gold entries verify."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import running_daemon, train_small_store
from forgetd.client import Client
from forgetd.client.audit import audit
from forgetd.client.audit.chain import check_chain
from forgetd.client.errors import FailedPrecondition
from forgetd.ledger import Ledger


def train_linear_store(path: Path, rows: int = 400) -> Path:
    from forgetd.server.config import EngineConfig
    from forgetd.server.data import load_dataset
    from forgetd.server.engine.engine import Engine

    Engine.train(load_dataset("synthetic", n=rows, seed=0),
                 EngineConfig(model="linear", slices=4, device="cpu", l2=1e-2), path).close()
    return path


def forget_each(store: Path, strategies: list[str], **config: Any) -> list[Any]:
    """One sample per request through a daemon, in order, each waited for; the receipts."""
    with running_daemon(store, **config) as running, Client(running.address) as client:
        ids = running.runtime.engine.sample_ids()
        return [client.forget([ids[i]], strategy=s, timeout=120) for i, s in enumerate(strategies)]


def rewrite_ledger(store: Path, change: Callable[[dict[str, Any]], bool]) -> None:
    """The ledger rebuilt with every hash recomputed, `change` applied to each forget.applied payload: a
    rewrite only a kept head could tell from the chain, so what catches it is the replay."""
    path = store / "ledger.sqlite"
    with Ledger(path, readonly=True) as old:
        entries = list(old.entries())
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    changed = 0
    with Ledger(path) as new:
        rows = []
        for e in entries:
            payload = json.loads(json.dumps(e.payload))
            if e.type == "forget.applied" and changed == 0 and change(payload):
                changed += 1
            rows.append((e.type, payload, e.event_id))
        new.append_many(rows)
    assert changed == 1


@pytest.fixture(scope="module")
def certified(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A linear store after 18 CERTIFIED forgets, an INFLUENCE (which voids the certificate) and one more CERTIFIED,
    which must then retrain its shard."""
    store = train_linear_store(tmp_path_factory.mktemp("certified") / "store")
    forget_each(store, ["certified"] * 18 + ["influence", "certified"])
    return store


def test_influence_on_the_mlp_replays_bitwise(tmp_path: Path) -> None:
    store = train_small_store(tmp_path / "store")
    receipts = forget_each(store, ["influence", "hs", "influence", "sisa"])
    assert receipts[0].result.guarantee == "approximate" and receipts[0].result.influence[0].cg_iterations >= 1
    report = audit(store)
    assert report.ok, report.text()
    assert report.check("replay").figures["bitwise"] is True and report.check("replay").figures["replayed"] == 4


def test_certified_batches_replay_with_their_budget_arithmetic(certified: Path) -> None:
    report = audit(certified)
    assert report.ok, report.text()
    events = check_chain(certified, None, None)[2]
    assert events is not None
    shards = [b.details["certified"]["shards"][0] for b in events.batches if b.details and "certified" in b.details]
    assert len(shards) == 19 and any(s["retrained"] for s in shards)  # the budget ran out at least once


def test_a_certified_receipt_carries_its_certificate(tmp_path: Path) -> None:
    store = train_linear_store(tmp_path / "store")
    (receipt,) = forget_each(store, ["certified"])
    cert = receipt.result.certificate
    assert receipt.result.guarantee == "certified" and cert is not None
    assert (cert.epsilon, cert.delta) == (1.0, 1e-5) and cert.shards[0].bound_spent > 0
    assert cert.shards[0].budget_left == pytest.approx(cert.budget - cert.shards[0].bound_spent)
    assert receipt.samples[0].guarantee == "certified"


@pytest.mark.parametrize("field,value", [("budget_left", "0.5"), ("retrained", True)])
def test_a_tampered_budget_in_the_ledger_is_caught_by_verify(certified: Path, tmp_path: Path, field: str,
                                                             value: object) -> None:
    store = tmp_path / "store"
    shutil.copytree(certified, store)

    def tamper(payload: dict[str, Any]) -> bool:
        if "certified" not in payload:
            return False
        payload["certified"]["shards"][0][field] = value
        return True

    rewrite_ledger(store, tamper)
    report = audit(store)
    assert report.check("chain").status == "passed"
    assert report.check("replay").status == "failed", report.text()
    problem = str(report.check("replay").problems[0])
    assert f"certified.shards[0].{field}" in problem and "differs on replay" in problem


def test_certified_on_an_mlp_daemon_is_failed_precondition_and_writes_nothing(tmp_path: Path) -> None:
    store = train_small_store(tmp_path / "store")
    with running_daemon(store) as running, Client(running.address) as client:
        size = client.head().head.size
        with pytest.raises(FailedPrecondition, match="--model linear"):
            client.forget(running.runtime.engine.sample_ids()[:1], strategy="certified")
        info = client.model()
        assert "certified" not in info.supported_strategies and "influence" in info.supported_strategies
        assert client.head().head.size == size
    with Ledger(store / "ledger.sqlite", readonly=True) as ledger:
        assert [e.type for e in ledger.entries()] == ["genesis"]


def test_gold_passes_after_50_forgets_and_its_entry_verifies(tmp_path: Path) -> None:
    store = train_linear_store(tmp_path / "store", rows=1200)
    forget_each(store, ["certified", "sisa"] * 25)
    report = audit(store, gold=True)
    assert report.ok, report.text()
    gold = report.check("gold")
    assert gold.figures["passed"] is True and float(gold.figures["label_agreement"]) > 0.99
    assert float(gold.figures["parameter_distance"]) < 0.1
    again = audit(store)  # the audit.gold entry the first audit recorded is read back and accepted
    assert again.ok, again.text()
    events = check_chain(store, None, None)[2]
    assert events is not None and [g.seq for g in events.golds] == [gold.figures["ledger_seq"]]


def test_gold_fails_on_a_tampered_live_parameter_file_with_the_figures_named(tmp_path: Path) -> None:
    store = train_small_store(tmp_path / "store")
    forget_each(store, ["sisa", "retrain"])
    manifest = json.loads((store / "CURRENT.json").read_text())
    path = store / "artifacts" / manifest["files"]["shard0.params"]
    params = np.load(path)
    params[-1] = -params[-1]  # the live row negated: the model now prefers the wrong class
    path.unlink()
    np.save(path, params)
    report = audit(store, gold=True)
    gold = report.check("gold")
    assert gold.status == "failed" and report.check("data").status == "failed"
    problem = str(gold.problems[0])
    assert "test-accuracy points from one retrained from scratch" in problem and "accuracy" in problem
    assert "parameter distance" in problem and float(gold.figures["gap_points"]) < -0.5


def test_the_daemon_checks_the_gold_standard_every_n_forgets(tmp_path: Path) -> None:
    store = train_small_store(tmp_path / "store")
    with running_daemon(store, gold_every=2) as running, Client(running.address) as client:
        ids = running.runtime.engine.sample_ids()
        for sid in ids[:4]:
            client.forget([sid], strategy="sisa", timeout=120)
        assert running.runtime.gold.wait_for_checks(2, timeout=120)
        info = client.model()
        assert info.gold is not None and info.gold.passed and info.gold.checks == 2 and info.gold.failures == 0
        assert running.runtime.metrics.value("forgetd_gold_checks_total") == 2
        assert running.runtime.metrics.value("forgetd_gold_breached") == 0
    with Ledger(store / "ledger.sqlite", readonly=True) as ledger:
        golds = [e for e in ledger.entries() if e.type == "audit.gold"]
    assert len(golds) == 2 and all(g.payload["by"] == "daemon" and g.payload["passed"] for g in golds)
    assert audit(store).ok


def test_gold_over_grpc_is_absent_before_a_check(tmp_path: Path) -> None:
    from forgetd.v1 import common_pb2, inference_service_pb2

    store = train_small_store(tmp_path / "store")
    with running_daemon(store) as running:
        inference, _ = running.stubs()
        reply = inference.GetModel(inference_service_pb2.GetModelRequest(), timeout=30)
        assert not reply.HasField("gold") and reply.config.model == "mlp"
        assert common_pb2.STRATEGY_CERTIFIED not in reply.supported_strategies


def test_unlearn_over_http_takes_both_methods_and_refuses_certified_on_an_mlp(tmp_path: Path) -> None:
    import httpx

    linear, mlp = train_linear_store(tmp_path / "linear"), train_small_store(tmp_path / "mlp")
    with running_daemon(linear, http_listen="127.0.0.1:0") as running, \
            httpx.Client(base_url=f"http://127.0.0.1:{running.daemon.http_port}", timeout=60.0) as http:
        ids = running.runtime.engine.sample_ids()
        for sid, method in ((ids[0], "certified"), (ids[1], "influence")):
            posted = http.post("/unlearn", json={"sample_id": sid, "method": method})
            assert posted.status_code in (200, 202), posted.text
            done = http.get(f"/unlearn/{posted.json()['request_id']}", params={"wait": "true", "timeout": 60}).json()
            assert done["status"] == "applied" and done["samples"][0]["strategy"] == method
            assert done["result"]["guarantee"] == ("certified" if method == "certified" else "approximate")
    with running_daemon(mlp, http_listen="127.0.0.1:0") as running, \
            httpx.Client(base_url=f"http://127.0.0.1:{running.daemon.http_port}", timeout=60.0) as http:
        refused = http.post("/unlearn", json={"sample_id": running.runtime.engine.sample_ids()[0],
                                              "method": "certified"})
        assert refused.status_code == 409 and "--model linear" in refused.json()["error"]
        assert int(running.runtime.ledger.size()) == 1  # genesis alone: nothing was written


def test_a_linear_store_is_served_and_its_live_check_passes(tmp_path: Path) -> None:
    store = train_linear_store(tmp_path / "store")
    with running_daemon(store) as running, Client(running.address) as client:
        client.forget(running.runtime.engine.sample_ids()[:1], strategy="certified", timeout=120)
        X = running.runtime.engine._store.X_test[:8]
        got = np.array(client.predict(X.tolist()).probabilities)
        np.testing.assert_allclose(got, running.runtime.engine.predict_proba(X), atol=1e-6)  # the one-layer forward
        report = audit(store, server=running.address)  # Predict on the daemon matches the store's parameters
        assert report.ok and report.check("live").status == "passed", report.text()
