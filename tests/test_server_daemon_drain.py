"""Shutdown drains within its grace: health keeps answering (NOT_SERVING) while new calls are refused, no
batch starts that would not finish within the grace, stop() returns within it even while a batch runs, and
what was left is applied after the restart, once.

The engine is held at the start of a batch by a gate (the real engine then does the work), so the tests
know which batch is in progress when shutdown begins, without sleeps."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from forgetd.ledger import Ledger, verify_ledger
from forgetd.server import ServerConfig, create_server
from forgetd.server.engine.engine import Engine
from forgetd.server.runtime.events import LedgerFold
from forgetd.server.runtime.pacing import ApplyTimes, Backoff
from forgetd.v1 import common_pb2, inference_service_pb2 as ipb, inference_service_pb2_grpc
from forgetd.v1 import unlearning_service_pb2 as upb, unlearning_service_pb2_grpc

from helpers import running_daemon, wait_serving

DPUS, SISA = common_pb2.STRATEGY_DPUS, common_pb2.STRATEGY_SISA
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


def fold_ledger(store: Path) -> LedgerFold:
    fold = LedgerFold()
    with Ledger(store / "ledger.sqlite") as ledger:
        for e in ledger.entries():
            fold.add(e.seq, e.type, e.leaf_hash, e.payload)
    return fold


@dataclass
class Gate:
    """Holds the next engine.forget until released."""

    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    held = Gate()
    real = Engine.forget

    def forget(self, ids, strategy="auto", *, request_ids=()):
        held.entered.set()
        held.release.wait(120)
        return real(self, ids, strategy, request_ids=request_ids)

    monkeypatch.setattr(Engine, "forget", forget)
    yield held
    held.release.set()


@pytest.fixture
def served(store: Path):
    daemon, port = create_server(ServerConfig(store=store, listen="127.0.0.1:0"))
    daemon.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    wait_serving(channel)
    yield daemon, channel
    channel.close()
    daemon.stop(grace=0)


def test_health_answers_not_serving_while_the_batch_in_progress_drains(served, gate: Gate) -> None:
    daemon, channel = served
    inference = inference_service_pb2_grpc.InferenceServiceStub(channel)
    unlearning = unlearning_service_pb2_grpc.UnlearningServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    answers: list[upb.ForgetResponse] = []
    caller = threading.Thread(target=lambda: answers.append(unlearning.Forget(upb.ForgetRequest(
        sample_ids=["synthetic:5"], strategy=DPUS, request_id="in-flight", wait=True), timeout=120)))
    caller.start()
    assert gate.entered.wait(60)
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=120)
    assert next(watch).status == SERVING
    stopper = threading.Thread(target=daemon.stop, kwargs={"grace": 120.0})
    stopper.start()
    assert next(watch).status == NOT_SERVING
    # The port still answers: health says NOT_SERVING, every other call is refused with UNAVAILABLE.
    for service in ("", "forgetd.v1.InferenceService", "forgetd.v1.UnlearningService"):
        assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == NOT_SERVING
    with pytest.raises(grpc.RpcError) as info:
        inference.GetModel(ipb.GetModelRequest())
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in info.value.details()
    gate.release.set()
    caller.join(120)
    stopper.join(120)
    assert answers and answers[0].status == upb.FORGET_STATUS_APPLIED  # the batch in progress finished
    assert not stopper.is_alive()


def test_no_batch_starts_past_the_grace_and_stop_returns_within_it(store: Path, served, gate: Gate) -> None:
    daemon, channel = served
    unlearning = unlearning_service_pb2_grpc.UnlearningServiceStub(channel)
    unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:5"], strategy=DPUS, request_id="running"))
    assert gate.entered.wait(60)  # the worker holds "running"; "queued" (another strategy) waits behind it
    unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:6"], strategy=SISA, request_id="queued"))
    runtime = daemon.runtime
    stopper = threading.Thread(target=daemon.stop, kwargs={"grace": 0.0})
    stopper.start()
    stopper.join(60)
    assert not stopper.is_alive()  # stop() did not wait for the batch still held in the engine
    gate.release.set()  # the abandoned batch goes on in this process, as a killed daemon's would not
    assert runtime.stop(120)  # waits for that worker: it applies "running" and starts nothing more
    runtime.close()
    fold = fold_ledger(store)
    assert set(fold.applied_by_request) == {"running"} and [r.request_id for r in fold.pending()] == ["queued"]
    with running_daemon(store) as running:  # the restart applies what shutdown left, once
        _, unlearning = running.stubs()
        done = unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:6"], strategy=SISA, request_id="queued",
                                                   wait=True), timeout=120)
        assert done.status == upb.FORGET_STATUS_APPLIED
    fold = fold_ledger(store)
    assert fold.pending() == [] and set(fold.applied_by_request) == {"running", "queued"}
    assert verify_ledger(store / "ledger.sqlite").ok


def test_a_queued_batch_that_fits_in_the_grace_is_applied_before_exit(store: Path, served, gate: Gate) -> None:
    daemon, channel = served
    unlearning = unlearning_service_pb2_grpc.UnlearningServiceStub(channel)
    unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:5"], strategy=DPUS, request_id="running"))
    assert gate.entered.wait(60)
    unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:6"], strategy=SISA, request_id="queued"))
    stopper = threading.Thread(target=daemon.stop, kwargs={"grace": 300.0})
    stopper.start()
    gate.release.set()
    stopper.join(300)
    assert not stopper.is_alive()
    fold = fold_ledger(store)
    assert fold.pending() == [] and set(fold.applied_by_request) == {"running", "queued"}


def test_the_estimate_is_the_worst_measured_rate_plus_the_worst_fixed_time() -> None:
    times = ApplyTimes()
    assert times.estimate(0, lambda: 1.0) == 0.0
    assert times.estimate(100, lambda: 0.01) == pytest.approx(1.0)  # nothing measured yet: the prior rate
    times.record(0, 0.2)  # a batch that read nothing (DPUS): a fixed cost
    times.record(1000, 2.0)  # 2 ms a sample
    times.record(1000, 1.0)
    assert times.estimate(0, lambda: 99.0) == pytest.approx(0.2)
    assert times.estimate(500, lambda: 99.0) == pytest.approx(0.2 + 500 * 0.002)


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(cap=1.0)
    assert [backoff.next() for _ in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


@pytest.mark.slow  # two daemon processes
def test_sigterm_with_no_grace_exits_0_at_once_and_the_restart_applies_the_forget_once(store: Path,
                                                                                      daemon_process) -> None:
    import signal

    proc = daemon_process(store, "--grace-seconds", "0")
    address = proc.wait_serving()
    with grpc.insecure_channel(address) as channel:
        unlearning = unlearning_service_pb2_grpc.UnlearningServiceStub(channel)
        unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:1", "synthetic:299"],
                                            strategy=common_pb2.STRATEGY_RETRAIN, request_id="cut-short"))
    proc.signal(signal.SIGTERM)  # the retrain is queued, running or done: each must end the same way
    assert proc.wait() == 0, proc.log
    assert "stopped" in proc.log
    restarted = daemon_process(store)
    with grpc.insecure_channel(restarted.wait_serving()) as channel:
        unlearning = unlearning_service_pb2_grpc.UnlearningServiceStub(channel)
        done = unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:1", "synthetic:299"],
                                                   strategy=common_pb2.STRATEGY_RETRAIN, request_id="cut-short",
                                                   wait=True), timeout=120)
        assert done.status == upb.FORGET_STATUS_APPLIED and done.result.model_version == 1
    restarted.signal(signal.SIGTERM)
    assert restarted.wait() == 0, restarted.log
    fold = fold_ledger(store)  # raises if anything was applied twice
    assert fold.pending() == [] and list(fold.applied_by_request) == ["cut-short"]
    assert verify_ledger(store / "ledger.sqlite").ok
