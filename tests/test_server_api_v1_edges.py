"""The gRPC API at its edges: identifiers in other Unicode forms, ids long enough to overflow a status,
bytes that are not the message, the proof limit, answers whose guarantees must agree, the accuracies
GetModel reports, and the discovery services (health List, reflection v1)."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from forgetd.ledger import Ledger
from forgetd.server.api.status import MAX_MESSAGE_BYTES
from forgetd.server.engine.engine import Engine
from forgetd.v1 import common_pb2, inference_service_pb2 as ipb, unlearning_service_pb2 as upb

from helpers import RunningDaemon

DPUS, SISA, HS = common_pb2.STRATEGY_DPUS, common_pb2.STRATEGY_SISA, common_pb2.STRATEGY_HS
EXACT, APPROXIMATE = common_pb2.GUARANTEE_EXACT, common_pb2.GUARANTEE_APPROXIMATE


def ledger_size(store: Path) -> int:
    with Ledger(store / "ledger.sqlite") as ledger:
        return ledger.size


def call_error(fn, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(request)
    return info.value


# ------------------------------------------------------------------------------------------------ identifiers


def test_a_request_id_in_another_unicode_normal_form_is_the_same_request(daemon: RunningDaemon) -> None:
    decomposed, composed = "cafe\u0301", "caf\u00e9"
    _, unlearning = daemon.stubs()
    first = unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:3"], strategy=DPUS, request_id=decomposed,
                                                wait=True))
    assert first.status == upb.FORGET_STATUS_APPLIED and first.request_id == composed
    size = ledger_size(daemon.store)
    again = unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:3"], strategy=DPUS, request_id=composed))
    assert (again.receipt.requested_seq, again.receipt.applied_seq) == (first.receipt.requested_seq,
                                                                        first.receipt.applied_seq)
    assert ledger_size(daemon.store) == size  # nothing written twice
    status = unlearning.GetForgetRequest(upb.GetForgetRequestRequest(request_id=decomposed)).forget
    assert status.status == upb.FORGET_STATUS_APPLIED and status.request_id == composed
    with Ledger(daemon.store / "ledger.sqlite") as ledger:
        assert ledger.entry(first.receipt.requested_seq).payload["request_id"] == composed


def test_a_request_id_with_control_characters_is_refused_before_anything_is_written(daemon: RunningDaemon) -> None:
    _, unlearning = daemon.stubs()
    err = call_error(unlearning.GetForgetRequest, upb.GetForgetRequestRequest(request_id="a\x00b"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "control characters" in err.details()
    assert ledger_size(daemon.store) == 1


def test_long_ids_are_cut_where_errors_echo_them_and_the_status_arrives(daemon: RunningDaemon) -> None:
    _, unlearning = daemon.stubs()
    # Five unknown ids of 1,024 characters, each two UTF-8 bytes: echoed whole, the status message would be
    # ~30 KB once percent-encoded, past gRPC's 8 KiB of metadata (RESOURCE_EXHAUSTED "Stream removed").
    long_ids = ["\u00e9" * 1020 + f"{i:04d}" for i in range(5)]
    err = call_error(unlearning.Forget, upb.ForgetRequest(sample_ids=long_ids))
    assert err.code() == grpc.StatusCode.NOT_FOUND, err.details()
    assert "unknown sample id(s)" in err.details() and "and 2 more" in err.details()
    assert len(err.details().encode()) <= MAX_MESSAGE_BYTES
    err = call_error(unlearning.Forget, upb.ForgetRequest(sample_ids=[long_ids[0], long_ids[0]]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "appears more than once" in err.details()
    assert len(err.details().encode()) <= MAX_MESSAGE_BYTES
    err = call_error(unlearning.GetForgetRequest, upb.GetForgetRequestRequest(request_id="\u00e9" * 20_000))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "longer than 128 characters" in err.details()
    assert len(err.details().encode()) <= MAX_MESSAGE_BYTES
    assert ledger_size(daemon.store) == 1


# ------------------------------------------------------------------------------------------------ malformed bytes


def raw_unary(channel: grpc.Channel, method: str):
    return channel.unary_unary(method)  # no serializers: the test sends and receives bytes


@pytest.mark.parametrize(
    ("method", "data", "message_type"),
    [
        ("/forgetd.v1.UnlearningService/Forget", b"\x1a\x02\xc3\x28", "forgetd.v1.ForgetRequest"),  # bad UTF-8
        ("/forgetd.v1.UnlearningService/Forget", b"\xff\xff\xff", "forgetd.v1.ForgetRequest"),  # not protobuf
        ("/forgetd.v1.UnlearningService/GetForgetRequest", b"\x0a\x05ab", "forgetd.v1.GetForgetRequestRequest"),
        ("/forgetd.v1.InferenceService/Predict", b"\x0a\xff\x01", "forgetd.v1.PredictRequest"),  # truncated
        ("/grpc.health.v1.Health/Check", b"\x0a\x01\xff", "grpc.health.v1.HealthCheckRequest"),
    ],
)
def test_bytes_that_are_not_the_message_are_invalid_argument_naming_it(daemon: RunningDaemon, method: str,
                                                                      data: bytes, message_type: str) -> None:
    err = call_error(raw_unary(daemon.channel, method), data)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert message_type in err.details() and "Exception deserializing" not in err.details()
    assert ledger_size(daemon.store) == 1


def test_a_malformed_request_to_a_streaming_method_is_invalid_argument_too(daemon: RunningDaemon) -> None:
    stream = daemon.channel.unary_stream("/forgetd.v1.UnlearningService/ReadLedger")
    with pytest.raises(grpc.RpcError) as info:
        list(stream(b"\x08"))  # a varint field with no value
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "forgetd.v1.ReadLedgerRequest" in info.value.details()
    reflect = daemon.channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    with pytest.raises(grpc.RpcError) as info:
        list(reflect(iter([b"\xff\xff"])))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# ------------------------------------------------------------------------------------------------ proofs


def test_inclusion_proofs_per_call_are_capped_at_the_documented_limit(daemon: RunningDaemon) -> None:
    from forgetd.server.runtime.ledger_writer import MAX_INCLUSION_PROOFS

    _, unlearning = daemon.stubs()
    assert MAX_INCLUSION_PROOFS == 1000  # the number unlearning_service.proto states
    answer = unlearning.GetLedgerHead(upb.GetLedgerHeadRequest(inclusion_seqs=[1] * MAX_INCLUSION_PROOFS))
    assert len(answer.inclusions) == MAX_INCLUSION_PROOFS
    err = call_error(unlearning.GetLedgerHead, upb.GetLedgerHeadRequest(inclusion_seqs=[1] * (MAX_INCLUSION_PROOFS + 1)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "at most 1000 per call" in err.details()


# ------------------------------------------------------------------------------------------------ what the answers say


def outcome_of(answer: upb.ForgetResponse, sample_id: str) -> upb.SampleOutcome:
    return next(s for s in answer.samples if s.sample_id == sample_id)


def test_re_forgetting_reports_what_actually_removed_the_sample(daemon: RunningDaemon) -> None:
    _, unlearning = daemon.stubs()
    first = unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:8"], strategy=DPUS, wait=True))
    assert first.result.guarantee == APPROXIMATE and first.samples[0].guarantee == APPROXIMATE
    # Again, asking for an exact strategy: nothing is retrained, so nothing may claim EXACT or SISA.
    again = unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:8"], strategy=SISA, wait=True))
    assert again.result.model_version == first.result.model_version  # nothing changed
    assert (again.result.strategy, again.result.guarantee) == (DPUS, APPROXIMATE)
    assert (again.samples[0].strategy, again.samples[0].guarantee) == (common_pb2.STRATEGY_DPUS, APPROXIMATE)
    assert again.samples[0].applied_seq == first.receipt.applied_seq
    # One old sample and one new: each says its own; the result names no single strategy and is not EXACT.
    mixed = unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:8", "synthetic:9"], strategy=SISA, wait=True))
    new = outcome_of(mixed, "synthetic:9")
    assert new.guarantee == EXACT and new.applied_seq == mixed.receipt.applied_seq
    assert mixed.result.strategy == common_pb2.STRATEGY_UNSPECIFIED and mixed.result.guarantee == APPROXIMATE
    status = unlearning.GetForgetRequest(upb.GetForgetRequestRequest(request_id=again.request_id)).forget
    assert (status.result.strategy, status.result.guarantee) == (DPUS, APPROXIMATE)


def test_a_sample_forgotten_exactly_stays_exact_when_forgotten_again(daemon: RunningDaemon) -> None:
    _, unlearning = daemon.stubs()
    first = unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:12"], strategy=SISA, wait=True))
    again = unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:12"], strategy=DPUS, wait=True))
    assert (first.result.guarantee, again.result.guarantee) == (EXACT, EXACT)
    assert again.result.strategy == SISA and again.samples[0].guarantee == EXACT


def test_get_model_reports_training_and_test_accuracy_for_what_they_are(daemon: RunningDaemon) -> None:
    inference, _ = daemon.stubs()
    model = inference.GetModel(ipb.GetModelRequest())
    with Engine.open(daemon.store, device="cpu") as engine:
        assert model.training_accuracy == pytest.approx(engine.training_accuracy)
        assert model.test_accuracy == pytest.approx(engine.evaluate(), abs=1e-6)  # version 0: training time's
        committed = json.loads((daemon.store / "genesis.json").read_text())["test_accuracy_ppm"] / 1e6
    assert model.test_accuracy == pytest.approx(committed) and 0 < model.test_accuracy <= 1


# ------------------------------------------------------------------------------------------------ discovery


def test_health_list_names_every_service_and_its_status(daemon: RunningDaemon) -> None:
    statuses = health_pb2_grpc.HealthStub(daemon.channel).List(health_pb2.HealthListRequest()).statuses
    for service in ("", "forgetd.v1.InferenceService", "forgetd.v1.UnlearningService", "inference.GRPCInferenceService"):
        assert statuses[service].status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_answers_under_v1_and_v1alpha(daemon: RunningDaemon, version: str) -> None:
    info = daemon.channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,  # v1 is the same wire format
    )
    asks = [reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="forgetd.v1.UnlearningService"),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="grpc.reflection.v1.ServerReflection")]
    listed, unlearning, itself = list(info(iter(asks)))
    names = {s.name for s in listed.list_services_response.service}
    assert {"forgetd.v1.InferenceService", "forgetd.v1.UnlearningService", "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} <= names
    assert unlearning.file_descriptor_response.file_descriptor_proto  # grpcurl can describe the API
    assert itself.file_descriptor_response.file_descriptor_proto, itself.error_response
