"""The gRPC API end to end against a real daemon on port 0: every answer, every error, nothing written on errors."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import uuid
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from forgetd.ledger import BadSignature, Head, InclusionProof, Ledger, verify_ledger
from forgetd.ledger.proofs import ConsistencyProof
from forgetd.server.config import MIB
from forgetd.server.engine.engine import Engine
from forgetd.server.api.status import INTERNAL_MESSAGE
from forgetd.v1 import common_pb2, inference_service_pb2 as ipb, unlearning_service_pb2 as upb

from helpers import RunningDaemon, running_daemon

DPUS, SISA = common_pb2.STRATEGY_DPUS, common_pb2.STRATEGY_SISA


def rows(n: int, features: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, features)).astype("<f4")


def predict_request(x: np.ndarray) -> ipb.PredictRequest:
    return ipb.PredictRequest(features=x.tobytes(), rows=x.shape[0], columns=x.shape[1])


def ledger_size(store: Path) -> int:
    with Ledger(store / "ledger.sqlite") as ledger:
        return ledger.size


def call_error(fn, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(request)
    return info.value


def head_of(proto: common_pb2.LedgerHead) -> Head:
    return Head(proto.size, proto.chain_hash, proto.merkle_root)


def check_inclusion(proof: common_pb2.InclusionProof, leaf: bytes, head: common_pb2.LedgerHead) -> None:
    assert proof.tree_size == head.size
    InclusionProof(proof.seq, proof.tree_size, leaf, tuple(proof.hashes)).verify(head_of(head))


# ------------------------------------------------------------------------------------------------ health, reflection


def test_health_is_serving_for_the_server_and_each_service(daemon: RunningDaemon) -> None:
    stub = health_pb2_grpc.HealthStub(daemon.channel)
    for service in ("", "forgetd.v1.InferenceService", "forgetd.v1.UnlearningService"):
        assert stub.Check(health_pb2.HealthCheckRequest(service=service)).status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_both_services_and_health(daemon: RunningDaemon) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(daemon.channel)
    answers = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for s in next(answers).list_services_response.service}
    assert {"forgetd.v1.InferenceService", "forgetd.v1.UnlearningService", "grpc.health.v1.Health"} <= names


def test_health_is_not_serving_while_loading_and_from_the_start_of_shutdown(store: Path, monkeypatch) -> None:
    from forgetd.server.runtime import runtime as worker
    from forgetd.server import ServerConfig, create_server

    release = threading.Event()
    real_open = worker.Runtime.open.__func__

    def slow_open(cls, config):  # holds loading until the test has looked at health
        release.wait(60)
        return real_open(cls, config)

    monkeypatch.setattr(worker.Runtime, "open", classmethod(slow_open))
    daemon, port = create_server(ServerConfig(store=store, listen="127.0.0.1:0"))
    starter = threading.Thread(target=daemon.start)
    starter.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            watch = health.Watch(health_pb2.HealthCheckRequest(service=""), wait_for_ready=True, timeout=60)
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            inference = daemon_stubs(channel)[0]
            err = call_error(inference.GetModel, ipb.GetModelRequest())
            assert err.code() == grpc.StatusCode.UNAVAILABLE and "loading its model" in err.details()
            release.set()
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            starter.join()
            stopper = threading.Thread(target=daemon.stop, kwargs={"grace": 5.0})
            stopper.start()
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()
            stopper.join()
    finally:
        release.set()
        starter.join()
        daemon.stop(grace=0)


def daemon_stubs(channel: grpc.Channel):
    from forgetd.v1 import inference_service_pb2_grpc, unlearning_service_pb2_grpc

    return (inference_service_pb2_grpc.InferenceServiceStub(channel),
            unlearning_service_pb2_grpc.UnlearningServiceStub(channel))


# ------------------------------------------------------------------------------------------------ inference


def test_predict_answers_with_the_live_models_probabilities(daemon: RunningDaemon) -> None:
    inference, _ = daemon.stubs()
    model = inference.GetModel(ipb.GetModelRequest())
    x = rows(5, model.num_features)
    answer = inference.Predict(predict_request(x))
    proba = np.array(answer.probabilities, dtype=np.float32).reshape(answer.rows, answer.classes)
    assert (answer.rows, answer.classes) == (5, model.num_classes)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert list(answer.labels) == proba.argmax(axis=1).tolist()
    assert (answer.model_version, answer.model_digest) == (0, model.digest)
    with Engine.open(daemon.store, device="cpu") as engine:  # parity with the engine itself
        np.testing.assert_allclose(proba, engine.predict_proba(x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("make", "want"),
    [
        (lambda f: ipb.PredictRequest(features=b"", rows=0, columns=f), "rows is 0: send at least one row"),
        (lambda f: predict_request(rows(2, f + 1)), "columns is {g} but the model takes {f} features per row"),
        (lambda f: ipb.PredictRequest(features=rows(2, f).tobytes(), rows=3, columns=f), "3 rows x {f} columns"),
        (lambda f: predict_request(np.full((1, f), np.nan, dtype="<f4")), "features row 0 column 0 is nan"),
        (lambda f: predict_request(np.where(np.eye(2, f) > 0, np.inf, 0).astype("<f4")), "row 0 column 0 is inf"),
        (lambda f: predict_request(rows(9, f)), "rows is 9, above this server's limit of 8; split the batch"),
    ],
)
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # see test_server_runtime_predictor.py
def test_a_bad_predict_is_invalid_argument_naming_the_problem(store: Path, make, want: str) -> None:
    with running_daemon(store, max_predict_rows=8) as running:
        inference, _ = running.stubs()
        f = inference.GetModel(ipb.GetModelRequest()).num_features
        err = call_error(inference.Predict, make(f))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert want.format(f=f, g=f + 1) in err.details()


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning",  # see test_server_runtime_predictor.py
                            "ignore:overflow encountered:RuntimeWarning")
def test_features_that_overflow_the_model_are_invalid_argument_not_nan_probabilities(store: Path) -> None:
    # Finite but huge: row 1 lines up with hidden unit 0's weights, so float32 overflows there. The proto promises
    # probabilities in [0, 1]; the daemon refuses instead of answering NaN.
    with Engine.open(store, device="cpu") as engine:
        snapshot = engine.snapshot()
    fan_in, _ = snapshot.shape.layers[0]
    w0 = snapshot.params[0][:fan_in].numpy()  # hidden unit 0's weights (the weight matrix is row-major (out, in))
    assert np.abs(w0).sum() > 1.0  # the premise: 3.4e38 * that sum is past float32's largest value
    x = rows(3, fan_in)
    x[1] = np.float32(3.4e38) * np.sign(w0)
    with running_daemon(store) as running:
        inference, _ = running.stubs()
        err = call_error(inference.Predict, predict_request(x))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "features row 1 overflow the model" in err.details()
        assert inference.Predict(predict_request(x[[0, 2]])).rows == 2  # the same daemon serves sane rows


def test_a_batch_above_grpcs_4_mib_default_is_served_up_to_the_configured_limit(store: Path) -> None:
    options = [("grpc.max_send_message_length", 16 * MIB), ("grpc.max_receive_message_length", 16 * MIB)]
    with running_daemon(store, max_message_bytes=8 * MIB, max_predict_rows=200_000, channel_options=options) as running:
        inference, _ = running.stubs()
        f = inference.GetModel(ipb.GetModelRequest()).num_features
        n = 5 * MIB // (4 * f)  # a 5 MiB batch
        assert inference.Predict(predict_request(rows(n, f))).rows == n
        err = call_error(inference.Predict, predict_request(rows(9 * MIB // (4 * f), f)))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # above the limit: gRPC refuses it itself


def test_get_model_fills_every_field(daemon: RunningDaemon) -> None:
    inference, unlearning = daemon.stubs()
    model = inference.GetModel(ipb.GetModelRequest())
    with Engine.open(daemon.store, device="cpu") as engine:
        cfg = engine.config
        assert (model.version, model.digest, list(model.shard_digests)) == (0, engine.digest(), engine.shard_digests())
        assert (model.config.shards, model.config.slices, model.config.epochs, model.config.batch_size) == (
            cfg.shards, cfg.slices, cfg.epochs, cfg.batch_size)
        assert model.config.learning_rate == pytest.approx(cfg.learning_rate)
        assert tuple(model.config.hidden_sizes) == cfg.hidden_sizes and model.config.seed == cfg.seed
        assert model.config.budget_samples == engine.budget > 0
        assert model.config.default_strategy == common_pb2.STRATEGY_HS and model.config.aggregation == "mean"
        assert model.threshold_m == engine.m >= 1
        assert model.training_accuracy == pytest.approx(engine.training_accuracy) and 0 < model.training_accuracy <= 1
        assert (model.num_features, model.num_classes) == (engine.num_features, engine.num_classes)
    assert model.forgotten_count == 0 and model.device == "cpu" and model.ledger_seq == 1  # genesis
    head = unlearning.GetLedgerHead(upb.GetLedgerHeadRequest()).head
    assert model.head_public_key == head.public_key.hex() and len(head.public_key) == 32


def test_an_unexpected_failure_is_internal_with_a_generic_message_and_a_logged_stack(
        daemon: RunningDaemon, caplog: pytest.LogCaptureFixture) -> None:
    inference, _ = daemon.stubs()
    runtime = daemon.runtime

    def broken(x):
        raise RuntimeError("CUDA error: device-side assert at /pytorch/aten/src/secret.cu:42")

    runtime.live = dataclasses.replace(runtime.live, predict=broken)
    with caplog.at_level(logging.ERROR, logger="forgetd.server"):
        err = call_error(inference.Predict, predict_request(rows(1, runtime.info.num_features)))
    assert err.code() == grpc.StatusCode.INTERNAL and err.details() == INTERNAL_MESSAGE
    assert "secret.cu" not in err.details()
    assert any("Predict failed" in r.message and r.exc_info for r in caplog.records)


# ------------------------------------------------------------------------------------------------ forget


def test_a_waited_forget_is_applied_with_a_receipt_that_proves_both_entries(daemon: RunningDaemon) -> None:
    inference, unlearning = daemon.stubs()
    answer = unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:3", "synthetic:7"], strategy=DPUS, wait=True))
    assert answer.status == upb.FORGET_STATUS_APPLIED and uuid.UUID(answer.request_id).version == 4
    r, result = answer.receipt, answer.result
    assert (r.requested_seq, r.applied_seq) == (2, 3) and r.head.size == 3
    check_inclusion(r.requested_proof, r.requested_leaf_hash, r.head)
    check_inclusion(r.applied_proof, r.applied_leaf_hash, r.head)
    assert result.model_version == 1 and result.strategy == DPUS and result.guarantee == common_pb2.GUARANTEE_APPROXIMATE
    assert [s.sample_id for s in answer.samples] == ["synthetic:3", "synthetic:7"]
    assert all(s.applied_seq == 3 and s.slice >= 1 and len(s.subject_ref) == 64 for s in answer.samples)
    model = inference.GetModel(ipb.GetModelRequest())
    assert (model.version, model.digest, model.forgotten_count, model.ledger_seq) == (1, result.model_digest, 2, 3)
    assert inference.Predict(predict_request(rows(1, model.num_features))).model_version == 1
    with Ledger(daemon.store / "ledger.sqlite") as ledger:  # the ledger holds refs, never the ids
        entries = list(ledger.entries())
        assert r.requested_leaf_hash == entries[1].leaf_hash and r.applied_leaf_hash == entries[2].leaf_hash
        assert not any(b"synthetic:" in e.envelope for e in entries)
    assert verify_ledger(daemon.store / "ledger.sqlite").ok


def test_a_forget_without_wait_is_acknowledged_pending_then_applied(daemon: RunningDaemon) -> None:
    _, unlearning = daemon.stubs()
    ack = unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:11"], strategy=SISA, request_id="req-1"))
    assert ack.request_id == "req-1" and ack.status in (upb.FORGET_STATUS_PENDING, upb.FORGET_STATUS_APPLIED)
    check_inclusion(ack.receipt.requested_proof, ack.receipt.requested_leaf_hash, ack.receipt.head)
    # The same request again with wait: the first request's answer once applied, nothing written twice.
    done = unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:11"], strategy=SISA, request_id="req-1", wait=True))
    assert done.status == upb.FORGET_STATUS_APPLIED and done.receipt.requested_seq == ack.receipt.requested_seq
    status = unlearning.GetForgetRequest(upb.GetForgetRequestRequest(request_id="req-1")).forget
    assert status.status == upb.FORGET_STATUS_APPLIED and status.result == done.result
    assert status.samples[0].applied_seq == done.receipt.applied_seq and status.samples[0].strategy == SISA
    assert ledger_size(daemon.store) == 3


def test_a_repeated_request_id_returns_the_first_answer_and_writes_nothing(daemon: RunningDaemon) -> None:
    _, unlearning = daemon.stubs()
    request = upb.ForgetRequest(sample_ids=["synthetic:5"], strategy=DPUS, request_id="same", wait=True)
    first = unlearning.Forget(request)
    size = ledger_size(daemon.store)
    again = unlearning.Forget(request)
    assert ledger_size(daemon.store) == size
    assert (again.request_id, again.status, again.result, list(again.samples)) == (
        first.request_id, first.status, first.result, list(first.samples))
    assert (again.receipt.requested_seq, again.receipt.applied_seq) == (first.receipt.requested_seq, first.receipt.applied_seq)
    err = call_error(unlearning.Forget, upb.ForgetRequest(sample_ids=["synthetic:6"], request_id="same"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "request_id 'same' was already used" in err.details()
    assert ledger_size(daemon.store) == size


def test_forgetting_an_already_forgotten_id_succeeds_and_points_to_the_entry_that_forgot_it(daemon: RunningDaemon) -> None:
    inference, unlearning = daemon.stubs()
    first = unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:8"], strategy=DPUS, wait=True))
    again = unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:8", "synthetic:9"], strategy=DPUS, wait=True))
    assert again.status == upb.FORGET_STATUS_APPLIED
    by_id = {s.sample_id: s for s in again.samples}
    assert by_id["synthetic:8"].applied_seq == first.receipt.applied_seq
    assert by_id["synthetic:9"].applied_seq == again.receipt.applied_seq > first.receipt.applied_seq
    only_old = unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:8"], strategy=SISA, wait=True))
    assert only_old.status == upb.FORGET_STATUS_APPLIED
    assert only_old.samples[0].applied_seq == first.receipt.applied_seq
    assert only_old.result.model_version == again.result.model_version == 2  # nothing left to change
    assert inference.GetModel(ipb.GetModelRequest()).forgotten_count == 2
    assert verify_ledger(daemon.store / "ledger.sqlite").ok


@pytest.mark.parametrize(
    ("request_", "code", "want"),
    [
        (upb.ForgetRequest(), grpc.StatusCode.INVALID_ARGUMENT, "sample_ids is empty"),
        (upb.ForgetRequest(sample_ids=["synthetic:1", "synthetic:1"]), grpc.StatusCode.INVALID_ARGUMENT,
         "sample id 'synthetic:1' appears more than once"),
        (upb.ForgetRequest(sample_ids=[f"synthetic:{i}" for i in range(4)]), grpc.StatusCode.INVALID_ARGUMENT,
         "has 4 ids, above this server's limit of 3"),
        (upb.ForgetRequest(sample_ids=["synthetic:1"], strategy=99), grpc.StatusCode.INVALID_ARGUMENT,
         "strategy 99 is not a known Strategy value"),
        (upb.ForgetRequest(sample_ids=["synthetic:1", "no-such-id"]), grpc.StatusCode.NOT_FOUND,
         "unknown sample id(s), not in the training data: 'no-such-id'"),
    ],
)
def test_a_bad_forget_is_refused_with_its_code_and_nothing_is_written(store: Path, request_, code, want: str) -> None:
    with running_daemon(store, max_forget_ids=3) as running:
        inference, unlearning = running.stubs()
        size = ledger_size(store)
        err = call_error(unlearning.Forget, request_)
        assert err.code() == code and want in err.details()
        assert ledger_size(store) == size == 1  # genesis only
        assert inference.GetModel(ipb.GetModelRequest()).version == 0


def test_get_forget_request_for_an_unknown_or_empty_id(daemon: RunningDaemon) -> None:
    _, unlearning = daemon.stubs()
    err = call_error(unlearning.GetForgetRequest, upb.GetForgetRequestRequest(request_id="never"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "no Forget with request_id 'never'" in err.details()
    err = call_error(unlearning.GetForgetRequest, upb.GetForgetRequestRequest())
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "request_id is empty" in err.details()


# ------------------------------------------------------------------------------------------------ the ledger


def test_read_ledger_streams_the_stored_entries_from_a_seq(daemon: RunningDaemon) -> None:
    _, unlearning = daemon.stubs()
    for i in (1, 2):
        unlearning.Forget(upb.ForgetRequest(sample_ids=[f"synthetic:{20 + i}"], strategy=DPUS, wait=True))
    streamed = [r.entry for r in unlearning.ReadLedger(upb.ReadLedgerRequest())]
    assert [e.seq for e in streamed] == [1, 2, 3, 4, 5]
    assert [e.type for e in streamed] == ["genesis"] + ["forget.requested", "forget.applied"] * 2
    with Ledger(daemon.store / "ledger.sqlite") as ledger:
        for got, want in zip(streamed, ledger.entries()):
            assert (got.envelope, got.leaf_hash, got.chain_hash, got.event_id, got.recorded_at) == (
                want.envelope, want.leaf_hash, want.chain_hash, want.event_id, want.recorded_at)
            assert got.leaf_hash == hashlib.sha256(b"\x00" + got.envelope).digest()
    assert [r.entry.seq for r in unlearning.ReadLedger(upb.ReadLedgerRequest(start_seq=2, limit=2))] == [2, 3]
    assert list(unlearning.ReadLedger(upb.ReadLedgerRequest(start_seq=99))) == []


def test_ledger_head_is_signed_and_proves_inclusion_and_consistency(daemon: RunningDaemon) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    _, unlearning = daemon.stubs()
    old = unlearning.GetLedgerHead(upb.GetLedgerHeadRequest()).head
    unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:30"], strategy=DPUS, wait=True))
    answer = unlearning.GetLedgerHead(upb.GetLedgerHeadRequest(consistency_from_size=old.size, inclusion_seqs=[1, 3]))
    head = answer.head
    assert head.size == 3 and len(head.signature) == 64
    from forgetd.ledger import signing

    signing.verify_signed_head(signing.SignedHead(head_of(head), head.signature, head.public_key), head.public_key)
    with pytest.raises(BadSignature):  # the signature covers this head, not the older one
        signing.verify_signed_head(signing.SignedHead(head_of(old), head.signature, head.public_key))
    Ed25519PublicKey.from_public_bytes(head.public_key)  # a well-formed raw key
    c = answer.consistency
    ConsistencyProof(c.old_size, c.new_size, tuple(c.hashes)).verify(head_of(old), head_of(head))
    with Ledger(daemon.store / "ledger.sqlite") as ledger:
        for proof in answer.inclusions:
            check_inclusion(proof, ledger.entry(proof.seq).leaf_hash, head)
    for bad, want in [(upb.GetLedgerHeadRequest(inclusion_seqs=[4]), "inclusion seq 4 is not in the ledger"),
                      (upb.GetLedgerHeadRequest(consistency_from_size=9), "consistency_from_size 9 is beyond")]:
        err = call_error(unlearning.GetLedgerHead, bad)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and want in err.details()


def test_a_restarted_daemon_serves_the_same_version_and_writes_no_second_genesis(store: Path) -> None:
    with running_daemon(store) as running:
        _, unlearning = running.stubs()
        done = unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:40"], strategy=SISA, wait=True))
    with running_daemon(store) as running:
        inference, unlearning = running.stubs()
        model = inference.GetModel(ipb.GetModelRequest())
        assert (model.version, model.digest, model.ledger_seq) == (1, done.result.model_digest, 3)
        status = unlearning.GetForgetRequest(upb.GetForgetRequestRequest(request_id=done.request_id)).forget
        assert status.status == upb.FORGET_STATUS_APPLIED and status.samples[0].sample_id == ""  # only the ref survives
        assert status.samples[0].subject_ref == done.samples[0].subject_ref
    assert ledger_size(store) == 3


def test_a_sample_id_in_another_unicode_normal_form_names_the_same_sample(tmp_path: Path) -> None:
    from forgetd.server.config import EngineConfig
    from forgetd.server.data import Dataset

    from helpers import SMALL_CONFIG

    composed, decomposed = "caf\u00e9", "cafe\u0301"  # the same id, NFC and NFD
    rng = np.random.default_rng(0)
    ds = Dataset(name="nfc", feature_names=tuple(f"f{i}" for i in range(4)),
                 train_ids=(composed, *(f"row-{i}" for i in range(119))),
                 X_train=rng.normal(size=(120, 4)).astype(np.float32), y_train=rng.integers(0, 2, 120),
                 test_ids=(), X_test=np.zeros((0, 4), np.float32), y_test=np.zeros(0, np.int64), num_classes=2)
    Engine.train(ds, EngineConfig(**{**SMALL_CONFIG, "device": "cpu"}), tmp_path / "store").close()
    with running_daemon(tmp_path / "store") as running:
        _, unlearning = running.stubs()
        err = call_error(unlearning.Forget, upb.ForgetRequest(sample_ids=[composed, decomposed]))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "same id after Unicode NFC" in err.details()
        done = unlearning.Forget(upb.ForgetRequest(sample_ids=[decomposed], strategy=DPUS, wait=True))
        assert done.status == upb.FORGET_STATUS_APPLIED and done.result.model_version == 1
        again = unlearning.Forget(upb.ForgetRequest(sample_ids=[composed], strategy=DPUS, wait=True))
        assert again.samples[0].applied_seq == done.receipt.applied_seq  # already forgotten, by that entry
