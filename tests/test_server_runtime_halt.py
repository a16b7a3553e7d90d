"""A forget batch that fails: a transient failure is retried and applied without a restart; a lasting one sets
the Unlearning service NOT_SERVING with its reason (health, GetModel, the waiting caller) until it clears.

The failures are real where they can be: a second SQLite connection holding a read on the row store past
its busy timeout. A full disk is injected at the one call that writes a parameter file, since a test cannot
fill the file system under a shared machine.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from forgetd.ledger import Ledger, verify_ledger
from forgetd.server.engine.engine import Engine
from forgetd.server.runtime.events import LedgerFold
from forgetd.server.store import layout
from forgetd.server.store.rows import RowStore
from forgetd.v1 import common_pb2, inference_service_pb2 as ipb, unlearning_service_pb2 as upb

from helpers import running_daemon

DPUS = common_pb2.STRATEGY_DPUS
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
UNLEARNING = "forgetd.v1.UnlearningService"


def fold_ledger(store: Path) -> LedgerFold:
    fold = LedgerFold()
    with Ledger(store / "ledger.sqlite") as ledger:
        for e in ledger.entries():
            fold.add(e.seq, e.type, e.leaf_hash, e.payload)
    return fold


def failing_parameter_writes(monkeypatch: pytest.MonkeyPatch, failing: Callable[[], bool]) -> None:
    """Every parameter or optimizer file the engine writes fails with ENOSPC while `failing()` says so."""
    real = layout.save_array

    def save_array(path: Path, array) -> None:
        if failing():
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, array)

    monkeypatch.setattr(layout, "save_array", save_array)


class LogWatch(logging.Handler):
    """Sets `seen` once a record of the forgetd.server logger contains `text`."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.WARNING)
        self.text, self.seen = text, threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


@pytest.fixture
def retries() -> Iterator[LogWatch]:
    watch = LogWatch("retrying in")
    logger = logging.getLogger("forgetd.server")
    logger.addHandler(watch)
    yield watch
    logger.removeHandler(watch)


def test_a_transient_write_failure_is_retried_and_applied_without_a_restart(store: Path, monkeypatch,
                                                                            retries: LogWatch) -> None:
    failures = [2]

    def failing() -> bool:
        failures[0] -= 1
        return failures[0] >= 0

    failing_parameter_writes(monkeypatch, failing)
    with running_daemon(store) as running:  # the default retry window (60 s): two failures stay transient
        inference, unlearning = running.stubs()
        answer = unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:3"], strategy=DPUS, request_id="r",
                                                     wait=True), timeout=120)
        assert answer.status == upb.FORGET_STATUS_APPLIED and answer.result.model_version == 1
        assert failures[0] < 0 and retries.seen.is_set()  # it did fail, twice, and was retried
        health = health_pb2_grpc.HealthStub(running.channel)
        assert health.Check(health_pb2.HealthCheckRequest(service=UNLEARNING)).status == SERVING
        assert inference.GetModel(ipb.GetModelRequest()).unlearning_halted_reason == ""
    fold = fold_ledger(store)
    assert fold.pending() == [] and not fold.applied_by_request["r"].recovered
    assert verify_ledger(store / "ledger.sqlite").ok
    with Engine.open(store, device="cpu") as engine:
        assert engine.version == 1 and not engine.has_sample("synthetic:3")


def test_a_lasting_failure_halts_forgetting_with_its_reason_and_it_resumes_once_the_cause_clears(
        store: Path, monkeypatch) -> None:
    broken = threading.Event()
    broken.set()
    failing_parameter_writes(monkeypatch, broken.is_set)
    with running_daemon(store, apply_retry_seconds=0.5) as running:
        inference, unlearning = running.stubs()
        health = health_pb2_grpc.HealthStub(running.channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=UNLEARNING), timeout=120)
        assert next(watch).status == SERVING
        stuck = upb.ForgetRequest(sample_ids=["synthetic:3"], strategy=DPUS, request_id="stuck", wait=True)
        with pytest.raises(grpc.RpcError) as info:
            unlearning.Forget(stuck, timeout=120)
        err = info.value
        assert err.code() == grpc.StatusCode.UNAVAILABLE, err.details()
        assert "forgetting is halted" in err.details() and "no space left" in err.details().lower()
        assert "durable at seq 2" in err.details()

        assert next(watch).status == NOT_SERVING  # the Unlearning service only
        for service in ("", "forgetd.v1.InferenceService"):
            assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == SERVING
        model = inference.GetModel(ipb.GetModelRequest())
        assert "no space left" in model.unlearning_halted_reason.lower() and model.version == 0
        with pytest.raises(grpc.RpcError) as info:  # no new request is taken while halted
            unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:4"], strategy=DPUS))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "forgetting is halted" in info.value.details()

        broken.clear()  # the disk has room again: the worker's next try succeeds, no restart
        assert next(watch).status == SERVING
        watch.cancel()
        done = unlearning.Forget(stuck, timeout=120)
        assert done.status == upb.FORGET_STATUS_APPLIED and done.result.model_version == 1
        assert inference.GetModel(ipb.GetModelRequest()).unlearning_halted_reason == ""
    fold = fold_ledger(store)
    assert fold.pending() == [] and list(fold.applied_by_request) == ["stuck"]
    assert verify_ledger(store / "ledger.sqlite").ok


def test_a_reader_holding_the_row_store_delays_the_erasure_and_the_worker_finishes_it_itself(
        store: Path, retries: LogWatch) -> None:
    victim = "synthetic:299"  # no other id has it as a prefix, so a byte search finds only its own row
    with RowStore.open(store / "rows.sqlite") as rows:
        features = rows.load([victim])[1][0].tobytes()
    reader = sqlite3.connect(store / "rows.sqlite", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM meta").fetchone()  # a read snapshot the erasure's checkpoint waits on
    answers: list[upb.ForgetResponse] = []
    with running_daemon(store) as running:
        _, unlearning = running.stubs()
        caller = threading.Thread(target=lambda: answers.append(unlearning.Forget(upb.ForgetRequest(
            sample_ids=[victim], strategy=DPUS, request_id="held", wait=True), timeout=300)))
        caller.start()
        assert retries.seen.wait(120), "the erasure never failed: the reader did not hold the row store"
        status = unlearning.GetForgetRequest(upb.GetForgetRequestRequest(request_id="held")).forget
        assert status.status == upb.FORGET_STATUS_PENDING  # not applied while its row's pages survive
        reader.execute("ROLLBACK")
        reader.close()
        caller.join(300)
        assert answers and answers[0].status == upb.FORGET_STATUS_APPLIED
        for path in store.glob("rows.sqlite*"):  # gone from the row store now, not at the next restart
            data = path.read_bytes()
            assert victim.encode() not in data and features not in data, path
    fold = fold_ledger(store)
    assert fold.pending() == [] and not fold.applied_by_request["held"].recovered
    assert verify_ledger(store / "ledger.sqlite").ok


def test_a_failure_that_leaves_the_store_in_no_known_state_halts_forgetting_until_a_restart(
        store: Path, monkeypatch) -> None:
    real = Engine.forget

    def publishes_untagged_then_fails(self, ids, strategy="auto", *, request_ids=()):
        real(self, ids, strategy)  # a new version without this batch's tag: a retry could not tell what it holds
        raise RuntimeError("lost track of the store")

    monkeypatch.setattr(Engine, "forget", publishes_untagged_then_fails)
    with running_daemon(store) as running:  # the default retry window: this halt does not wait for it
        inference, unlearning = running.stubs()
        health = health_pb2_grpc.HealthStub(running.channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=UNLEARNING), timeout=120)
        assert next(watch).status == SERVING
        with pytest.raises(grpc.RpcError) as info:
            unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:3"], strategy=DPUS, wait=True), timeout=120)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "restart the daemon" in info.value.details()
        assert "lost track" not in info.value.details()  # another library's words stay in the log
        assert next(watch).status == NOT_SERVING
        watch.cancel()
        assert "restart the daemon" in inference.GetModel(ipb.GetModelRequest()).unlearning_halted_reason
