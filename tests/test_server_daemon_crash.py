"""The daemon as a process: SIGKILL at random moments never loses or repeats an acknowledged Forget, and
SIGTERM/SIGINT finish the forget in progress and exit 0."""

from __future__ import annotations

import random
import signal
import threading
import uuid
from pathlib import Path

import grpc
import pytest

from forgetd.ledger import Ledger, verify_ledger
from forgetd.server.runtime.events import LedgerFold
from forgetd.v1 import common_pb2, inference_service_pb2 as ipb, inference_service_pb2_grpc
from forgetd.v1 import unlearning_service_pb2 as upb, unlearning_service_pb2_grpc

CHEAP = [common_pb2.STRATEGY_DPUS, common_pb2.STRATEGY_SISA, common_pb2.STRATEGY_HS, common_pb2.STRATEGY_OHS]


def stubs(channel: grpc.Channel):
    return (inference_service_pb2_grpc.InferenceServiceStub(channel),
            unlearning_service_pb2_grpc.UnlearningServiceStub(channel))


def fold_ledger(store: Path) -> LedgerFold:
    """The ledger's state; LedgerFold raises if a request or a subject was applied twice."""
    fold = LedgerFold()
    with Ledger(store / "ledger.sqlite") as ledger:
        for e in ledger.entries():
            fold.add(e.seq, e.type, e.leaf_hash, e.payload)
    return fold


def check_restarted(address: str, store: Path, sent: dict[str, tuple[list[str], int]], acked: set[str]) -> None:
    """After a restart: every request that reached the ledger is applied exactly once, the ledger verifies,
    and the live model is the one the last forget.applied published."""
    with grpc.insecure_channel(address) as channel:
        inference, unlearning = stubs(channel)
        requested = fold_ledger(store).requests
        assert acked <= set(requested), f"acknowledged but not in the ledger: {acked - set(requested)}"
        for rid in requested:
            ids, strategy = sent[rid]
            # Re-sending the same request waits for it (the first answer) and must write nothing new.
            answer = unlearning.Forget(upb.ForgetRequest(sample_ids=ids, strategy=strategy, request_id=rid, wait=True),
                                       timeout=120)
            assert answer.status == upb.FORGET_STATUS_APPLIED
        fold = fold_ledger(store)  # raises on any double application
        assert fold.pending() == [] and set(fold.applied_by_request) == set(requested)
        assert all(len(fold.requests[r].subjects) == 1 for r in requested)
        model = inference.GetModel(ipb.GetModelRequest())
        live = fold.live_model()
        assert live is not None and (model.version, model.digest) == (live.version, live.digest)
        assert model.forgotten_count == len(fold.forgotten) == len(requested)
    report = verify_ledger(store / "ledger.sqlite")
    assert report.ok, report.problems


@pytest.mark.slow
def test_sigkill_at_random_moments_never_loses_or_repeats_an_acknowledged_forget(store: Path, daemon_process) -> None:
    rng = random.Random(20261123)
    sent: dict[str, tuple[list[str], int]] = {}
    acked: set[str] = set()
    sample = iter(range(300))
    for round_ in range(20):
        proc = daemon_process(store, "--log-level", "warning")
        address = proc.wait_serving()
        check_restarted(address, store, sent, acked)
        kill_after = rng.randint(0, 3)  # acknowledgements to wait for; then a random delay, then SIGKILL
        enough = threading.Event()
        stream_done = threading.Event()

        def stream() -> None:
            with grpc.insecure_channel(address) as channel:
                _, unlearning = stubs(channel)
                count = 0
                try:
                    for _ in range(kill_after + 4):  # bounded, so 20 rounds never run out of samples
                        rid, ids, strategy = str(uuid.uuid4()), [f"synthetic:{next(sample)}"], rng.choice(CHEAP)
                        sent[rid] = (ids, strategy)
                        unlearning.Forget(upb.ForgetRequest(sample_ids=ids, strategy=strategy, request_id=rid),
                                          timeout=30)
                        acked.add(rid)
                        count += 1
                        if count >= kill_after:
                            enough.set()
                except grpc.RpcError:
                    pass  # the daemon died under us: expected
                finally:
                    enough.set()
                    stream_done.set()

        sender = threading.Thread(target=stream, name=f"forgets-round-{round_}")
        sender.start()
        enough.wait(60)
        stream_done.wait(rng.uniform(0.0, 0.08))  # the random moment (returns early only if the stream died)
        proc.kill()
        sender.join()
    proc = daemon_process(store, "--log-level", "warning")
    check_restarted(proc.wait_serving(), store, sent, acked)
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0, proc.log
    assert len(acked) >= 20  # the rounds did forget something


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_termination_signal_during_a_forget_completes_it_and_exits_0(store: Path, daemon_process, sig) -> None:
    proc = daemon_process(store)
    address = proc.wait_serving()
    answers: list[upb.ForgetResponse] = []
    errors: list[BaseException] = []

    def waited_forget() -> None:
        with grpc.insecure_channel(address) as channel:
            try:
                answers.append(stubs(channel)[1].Forget(upb.ForgetRequest(
                    sample_ids=["synthetic:1", "synthetic:299"], strategy=common_pb2.STRATEGY_RETRAIN,
                    request_id="in-flight", wait=True), timeout=120))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    caller = threading.Thread(target=waited_forget)
    caller.start()
    with grpc.insecure_channel(address) as channel:
        unlearning = stubs(channel)[1]
        while True:  # the signal goes once the request is durable, i.e. the daemon is working on it
            try:
                unlearning.GetForgetRequest(upb.GetForgetRequestRequest(request_id="in-flight"))
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND
    proc.signal(sig)
    caller.join()
    assert errors == [] and answers[0].status == upb.FORGET_STATUS_APPLIED
    assert proc.wait() == 0, proc.log
    assert "stopped" in proc.log
    fold = fold_ledger(store)
    assert fold.pending() == [] and not fold.applied_by_request["in-flight"].recovered
    assert verify_ledger(store / "ledger.sqlite").ok
