"""`forgetd serve --gold-retrain`: a gold-standard check out of tolerance is answered by a full retrain, recorded
as `model.retrained`, which the next check passes and `forgetd verify` replays bitwise; a tampered digest in it
is named; a retrain published but not recorded before a crash is recorded at restart, and a failed check whose
retrain never ran is answered at restart; the option needs --gold-every.

The check is made to fail by a DPUS forget (approximate) held to a tolerance of 0 points: a real gap that the
replay reproduces, so verify can pass on the store afterwards (a tampered parameter file would fail it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from helpers import running_daemon, train_small_store
from forgetd.client import Client
from forgetd.client.audit import audit
from forgetd.client.cli.main import main
from forgetd.ledger import Ledger
from forgetd.server import ServerConfig
from forgetd.server.errors import InvalidConfig

DRIFT = 30  # samples one DPUS forget removes: enough to move test accuracy on the small store
GOLD = dict(gold_every=1, gold_epsilon=0.0)


def entries(store: Path) -> list[tuple[int, str, dict[str, Any]]]:
    with Ledger(store / "ledger.sqlite", readonly=True) as ledger:
        return [(e.seq, e.type, dict(e.payload)) for e in ledger.entries()]


def types(store: Path) -> list[str]:
    return [t for _, t, _ in entries(store)]


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store whose first gold check failed and was answered by a retrain, whose own check passed."""
    store = train_small_store(tmp_path_factory.mktemp("retrain") / "store")
    with running_daemon(store, gold_retrain=True, **GOLD) as running, Client(running.address) as client:
        ids = running.runtime.engine.sample_ids()
        client.forget(ids[:DRIFT], strategy="dpus", timeout=120)
        assert running.runtime.retrains is not None and running.runtime.retrains.wait_for(1, timeout=120)
        assert running.runtime.gold.wait_for_checks(2, timeout=120)
        info = client.model()
        assert info.gold is not None and info.gold.passed and info.gold.checks == 2 and info.gold.failures == 1
        assert info.version == 2 and running.runtime.metrics.value("forgetd_gold_breached") == 0
    return store


def test_a_failed_check_is_answered_by_a_retrain_that_passes_the_next_check_and_verifies(retrained: Path) -> None:
    log = entries(retrained)
    assert [t for _, t, _ in log] == ["genesis", "forget.requested", "forget.applied", "audit.gold",
                                      "model.retrained", "audit.gold"]
    (_, _, applied), (gold_seq, _, failed), (seq, _, event), (_, _, passed) = log[2], log[3], log[4], log[5]
    assert failed["passed"] is False and float(failed["gap_points"]) != 0.0
    assert event["gold_seq"] == gold_seq and event["recovered"] is False and event["device"] == "cpu"
    assert event["model"]["version"] == applied["model"]["version"] + 1 and event["samples_read"] > 0
    assert passed["passed"] is True and passed["model"] == {k: event["model"][k] for k in ("version", "digest")}
    assert float(passed["parameter_distance"]) == 0.0  # the retrain is the gold standard's reference, bitwise
    report = audit(retrained)
    assert report.ok, report.text()
    assert f"model.retrained at seq {seq}" in report.check("replay").summary and report.check("replay").figures["retrains"] == 1


def test_a_tampered_model_retrained_digest_fails_verify_naming_the_entry(retrained: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(retrained, store)
    path = store / "ledger.sqlite"
    with Ledger(path, readonly=True) as old:
        rows = [(e.type, json.loads(json.dumps(e.payload)), e.event_id) for e in old.entries()]
    seq = next(i + 1 for i, (t, _, _) in enumerate(rows) if t == "model.retrained")
    model = rows[seq - 1][1]["model"]
    model["digest"] = model["shard_digests"][0] = "0" * 64  # every hash recomputed: only the replay can tell
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with Ledger(path) as new:  # the later check, which names the true digest (a chain finding), left out
        new.append_many(rows[:seq])
    report = audit(store)
    replay = report.check("replay")
    assert not report.ok and replay.status == "failed", report.text()
    problem = replay.problems[0]
    assert problem.seq == seq and "model.retrained" in str(problem) and "differ" in str(problem), str(problem)


def test_a_retrain_published_before_a_crash_is_recorded_at_restart(tmp_path: Path) -> None:
    from forgetd.server.engine.engine import Engine

    store = train_small_store(tmp_path / "store")
    with running_daemon(store, **GOLD) as running, Client(running.address) as client:  # no retrain: alarm only
        client.forget(running.runtime.engine.sample_ids()[:DRIFT], strategy="dpus", timeout=120)
        assert running.runtime.gold.wait_for_checks(1, timeout=120)
    gold_seq = len(entries(store))
    assert types(store)[-1] == "audit.gold" and entries(store)[-1][2]["passed"] is False
    with Engine.open(store) as engine:  # what the worker's engine call commits before the daemon dies
        digest = engine.retrain_all(gold_seq).digest
    with running_daemon(store, gold_retrain=True, **GOLD) as running:
        assert running.runtime.live.version == 2 and running.runtime.live.digest == digest
    _, kind, event = entries(store)[-1]
    assert kind == "model.retrained" and event["recovered"] is True and event["gold_seq"] == gold_seq
    assert event["model"]["digest"] == digest and types(store).count("model.retrained") == 1
    report = audit(store)
    assert report.ok, report.text()


def test_a_failed_check_without_its_retrain_is_answered_at_restart(tmp_path: Path) -> None:
    store = train_small_store(tmp_path / "store")
    with running_daemon(store, **GOLD) as running, Client(running.address) as client:
        client.forget(running.runtime.engine.sample_ids()[:DRIFT], strategy="dpus", timeout=120)
        assert running.runtime.gold.wait_for_checks(1, timeout=120)
    gold_seq = len(entries(store))
    with running_daemon(store, gold_retrain=True, **GOLD) as running:
        assert running.runtime.retrains is not None and running.runtime.retrains.wait_for(1, timeout=120)
        assert running.runtime.live.version == 2
    retrains = [p for _, t, p in entries(store) if t == "model.retrained"]
    assert len(retrains) == 1 and retrains[0]["gold_seq"] == gold_seq and retrains[0]["recovered"] is False


def test_gold_retrain_needs_gold_every(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="give --gold-every N too, or drop --gold-retrain"):
        ServerConfig(store=tmp_path, gold_retrain=True)
    store = train_small_store(tmp_path / "store")
    result = CliRunner().invoke(main, ["serve", "--store", str(store), "--gold-retrain"])
    assert result.exit_code == 1 and "--gold-every" in result.output.strip().splitlines()[-1], result.output
    assert not (store / "ledger.sqlite").exists()  # refused before anything was written
    assert "--gold-retrain" in CliRunner().invoke(main, ["serve", "-h"]).output
