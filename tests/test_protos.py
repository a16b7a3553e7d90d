"""The .proto files are the spec: the committed stubs must be what they generate, and Buf's lint must pass."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor, ServiceDescriptor

from forgetd import oip
from forgetd.oip import grpc_service_pb2, model_config_pb2

# After forgetd.oip on purpose: both define `inference.*`, and importing them together is part of the test.
from tritonclient.grpc import model_config_pb2 as triton_model_config_pb2
from tritonclient.grpc import service_pb2 as triton_service_pb2

REPO = Path(__file__).resolve().parents[1]
PROTOS = REPO / "protos"
COMMITTED = (PROTOS / "forgetd" / "v1", PROTOS / "inference")
# What tritonclient's gRPC client calls and the OIP front answers.
SERVED = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
          "ModelConfig", "ModelStatistics", "RepositoryIndex")


def _generate_module():
    # protos/ is not a package; load generate.py by path so the test uses exactly what `make stubs` runs.
    spec = importlib.util.spec_from_file_location("forgetd_protos_generate", PROTOS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_the_protos(tmp_path: Path) -> None:
    written = _generate_module().generate(tmp_path)
    fresh = {str(p.relative_to(tmp_path)): p.read_bytes() for p in written}
    committed = {str(p.relative_to(PROTOS)): p.read_bytes() for d in COMMITTED for p in d.glob("*_pb2*.py*")}
    assert any(name.startswith("inference/") for name in fresh), "generate.py wrote no OIP stubs"
    assert sorted(fresh) == sorted(committed), "stub files differ from the .proto files: run `make stubs`"
    stale = [name for name in sorted(fresh) if fresh[name] != committed[name]]
    assert not stale, f"stale stubs {stale}: run `make stubs` and commit them with the .proto change"


def _buf() -> str:
    # The buf-bin package puts `buf` beside the interpreter; fall back to one on PATH.
    beside = Path(sys.executable).parent / "buf"
    found = str(beside) if beside.exists() else shutil.which("buf")
    if found is None:
        pytest.fail("buf not found: install the test extra (buf-bin), e.g. `make test`")
    return found


def test_buf_lint_passes() -> None:
    result = subprocess.run([_buf(), "lint"], cwd=PROTOS, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"buf lint failed:\n{result.stdout}{result.stderr}"


def test_the_oip_stubs_import_as_forgetd_oip_from_their_own_pool() -> None:
    assert grpc_service_pb2.__name__ == "forgetd.oip.grpc_service_pb2"
    assert grpc_service_pb2.DESCRIPTOR.pool is oip.POOL is model_config_pb2.DESCRIPTOR.pool
    assert grpc_service_pb2.DESCRIPTOR.pool is not descriptor_pool.Default()
    assert grpc_service_pb2.ModelInferRequest is not triton_service_pb2.ModelInferRequest


def test_the_oip_descriptors_are_byte_for_byte_tritonclients() -> None:
    # The strongest form of "same wire format": the vendored text compiles to the descriptor tritonclient
    # was built from. A tritonclient bump that changes it fails here first: re-vendor (LICENSE-NOTE.md).
    for ours, theirs in ((model_config_pb2, triton_model_config_pb2), (grpc_service_pb2, triton_service_pb2)):
        assert ours.DESCRIPTOR.name == theirs.DESCRIPTOR.name
        assert ours.DESCRIPTOR.serialized_pb == theirs.DESCRIPTOR.serialized_pb, ours.DESCRIPTOR.name


def wire_shape(service: ServiceDescriptor, methods: tuple[str, ...]) -> dict[str, object]:
    """Each served rpc's signature, and every message and enum reachable from it with what reaches the wire:
    field names, numbers, types, repetition, message/enum types and oneof membership."""
    shape: dict[str, object] = {}
    todo: list[Descriptor] = []
    for name in methods:
        method = service.methods_by_name[name]
        shape[f"rpc {name}"] = (method.input_type.full_name, method.output_type.full_name,
                                method.client_streaming, method.server_streaming)
        todo += [method.input_type, method.output_type]
    while todo:
        message = todo.pop()
        if message.full_name in shape:
            continue
        shape[message.full_name] = [
            (f.name, f.number, f.type, f.is_repeated, f.message_type.full_name if f.message_type else "",
             f.enum_type.full_name if f.enum_type else "", f.containing_oneof.name if f.containing_oneof else "")
            for f in message.fields
        ]
        for f in message.fields:
            if f.message_type is not None:
                todo.append(f.message_type)
            if f.enum_type is not None:
                shape[f.enum_type.full_name] = [(v.name, v.number) for v in f.enum_type.values]
    return shape


def _differences(ours: dict[str, object], theirs: dict[str, object]) -> list[str]:
    return sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))


def _service(module: object) -> ServiceDescriptor:
    return module.DESCRIPTOR.services_by_name["GRPCInferenceService"]  # type: ignore[attr-defined]


def test_every_message_of_the_served_rpcs_matches_tritonclient_field_by_field() -> None:
    ours, theirs = _service(grpc_service_pb2), _service(triton_service_pb2)
    assert ours.full_name == "inference.GRPCInferenceService"
    ours_shape, theirs_shape = wire_shape(ours, SERVED), wire_shape(theirs, SERVED)
    assert "inference.ModelConfig" in ours_shape and "inference.InferTensorContents" in ours_shape
    assert _differences(ours_shape, theirs_shape) == []


def test_the_field_comparison_names_a_renumbered_field() -> None:
    # The comparison above must be able to fail: renumber one field in a copy of tritonclient's file.
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(triton_model_config_pb2.DESCRIPTOR.serialized_pb)
    planted = descriptor_pb2.FileDescriptorProto.FromString(triton_service_pb2.DESCRIPTOR.serialized_pb)
    request = next(m for m in planted.message_type if m.name == "ModelInferRequest")
    next(f for f in request.field if f.name == "raw_input_contents").number = 99
    service = pool.AddSerializedFile(planted.SerializeToString()).services_by_name["GRPCInferenceService"]
    differences = _differences(wire_shape(service, SERVED), wire_shape(_service(triton_service_pb2), SERVED))
    assert differences == ["inference.ModelInferRequest"]


def test_get_model_lists_the_epoch_schedule_and_the_certified_budget() -> None:
    from forgetd.v1 import inference_service_pb2

    fields = inference_service_pb2.ModelConfig.DESCRIPTOR.fields_by_name
    assert fields["epoch_schedule"].number == 23 and fields["epoch_schedule"].type == fields["epoch_schedule"].TYPE_STRING
    budget = inference_service_pb2.GetModelResponse.DESCRIPTOR.fields_by_name["certified_budget"]
    assert budget.number == 22 and budget.message_type.name == "ShardBudget"
    assert [f.name for f in budget.message_type.fields] == ["shard", "budget", "bound_spent", "budget_left",
                                                             "epsilon_spent", "removed", "voided"]
    source = (PROTOS / "forgetd" / "v1" / "inference_service.proto").read_text()
    assert "// How the E epochs are laid over the S cumulative steps" in source  # its meaning is commented
