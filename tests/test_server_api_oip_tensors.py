"""The Open Inference Protocol tensor codec against tritonclient, the protocol's reference client: requests it
builds decode bitwise equal to its numpy input, answers we encode read back bitwise equal through its own
result classes, and every malformed tensor is refused with a message that says what to fix."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tritonclient.grpc import _utils as grpc_utils
from tritonclient.grpc import service_pb2 as triton_pb
from tritonclient.utils import np_to_triton_dtype

from forgetd.oip import grpc_service_pb2 as pb
from forgetd.server.api.oip_http import HEADER_LENGTH, decode_http_request, encode_http_response
from forgetd.server.api.oip_tensors import (
    InferRequest,
    RequestedOutput,
    TensorError,
    decode_grpc_request,
    encode_grpc_response,
)
from forgetd.server.errors import InvalidRequest

NUMERIC = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
           np.uint32, np.uint64, np.bool_]


def assert_bitwise(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    if want.dtype == object:
        assert got.dtype == object
        assert [bytes(v) for v in got.ravel()] == [bytes(v) for v in want.ravel()]
    else:
        assert got.dtype == want.dtype
        assert got.tobytes() == want.tobytes()


def bytes_tensor(*items: bytes, shape: tuple[int, ...] | None = None) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = list(items)
    return array.reshape(shape or (len(items),))


def odd_floats() -> np.ndarray:
    # Bit patterns a float conversion would lose: signed zero, a payload NaN, a denormal, infinities.
    bits = np.array([0x00000000, 0x80000000, 0x7FC12345, 0x00000001, 0x7F800000, 0xFF800000], dtype="<u4")
    return bits.view("<f4").reshape(2, 3)


# ---------------------------------------------------------------------------------------------- gRPC helpers


def triton_grpc_request(arrays: dict[str, np.ndarray], outputs: list | None = None, request_id: str = "r-1",
                        parameters: dict | None = None) -> triton_pb.ModelInferRequest:
    inputs = []
    for name, array in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)  # raw_input_contents, as tritonclient always sends
        inputs.append(tensor)
    return grpc_utils._get_inference_request(
        model_name="clf", inputs=inputs, model_version="", request_id=request_id, outputs=outputs,
        sequence_id=0, sequence_start=False, sequence_end=False, priority=0, timeout=None, parameters=parameters)


def over_the_wire(request: triton_pb.ModelInferRequest) -> pb.ModelInferRequest:
    return pb.ModelInferRequest.FromString(request.SerializeToString())


def read_back_grpc(response: pb.ModelInferResponse) -> grpcclient.InferResult:
    return grpcclient.InferResult(triton_pb.ModelInferResponse.FromString(response.SerializeToString()))


def typed_input(request: pb.ModelInferRequest, name: str, datatype: str, shape: list[int], **contents) -> None:
    tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
    for field, values in contents.items():
        getattr(tensor.contents, field).extend(values)


# ------------------------------------------------------------------------------------------------ gRPC


@pytest.mark.parametrize("dtype", NUMERIC)
def test_a_tritonclient_grpc_request_decodes_bitwise(dtype: type) -> None:
    want = (np.arange(12) % 2 == 1) if dtype is np.bool_ else np.arange(-6, 6).astype(dtype)
    decoded = decode_grpc_request(over_the_wire(triton_grpc_request({"x": want.reshape(3, 4)})))
    assert decoded.binary
    assert_bitwise(decoded.inputs["x"], want.reshape(3, 4))
    assert decoded.inputs["x"].flags.writeable  # its own memory, safe to hand to torch


def test_raw_floats_keep_every_bit_and_bytes_keep_nul_and_empty_elements() -> None:
    words = bytes_tensor(b"", b"a\x00", b"\xff\xfe", b"longer word", shape=(2, 2))
    request = triton_grpc_request({"features": odd_floats(), "words": words})
    decoded = decode_grpc_request(over_the_wire(request))
    assert list(decoded.inputs) == ["features", "words"]
    assert_bitwise(decoded.inputs["features"], odd_floats())
    assert_bitwise(decoded.inputs["words"], words)


def test_the_request_id_outputs_and_parameters_come_through() -> None:
    outputs = [grpcclient.InferRequestedOutput("probabilities")]
    request = triton_grpc_request({"x": np.zeros((1, 4), np.float32)}, outputs, "req-7", {"k": 3, "tag": "a"})
    decoded = decode_grpc_request(over_the_wire(request))
    assert decoded.id == "req-7"
    assert decoded.outputs == (RequestedOutput("probabilities"),)
    assert decoded.parameters == {"k": 3, "tag": "a"}


def test_a_typed_contents_request_decodes_each_datatype_from_its_field() -> None:
    request = pb.ModelInferRequest(model_name="clf")
    typed_input(request, "f32", "FP32", [2, 2], fp32_contents=[0.5, -1.25, 3.0, 1e-3])
    typed_input(request, "f64", "FP64", [3], fp64_contents=[0.1, 0.2, 0.3])
    typed_input(request, "i32", "INT32", [1, 2], int_contents=[-(2**31), 2**31 - 1])
    typed_input(request, "i64", "INT64", [2], int64_contents=[-(2**63), 2**63 - 1])
    typed_input(request, "u8", "UINT8", [2], uint_contents=[0, 255])
    typed_input(request, "b", "BOOL", [2], bool_contents=[True, False])
    typed_input(request, "s", "BYTES", [2], bytes_contents=[b"x\x00", b""])
    got = decode_grpc_request(request).inputs
    assert not decode_grpc_request(request).binary
    assert_bitwise(got["f32"], np.array([[0.5, -1.25], [3.0, 1e-3]], np.float32))
    assert_bitwise(got["f64"], np.array([0.1, 0.2, 0.3]))
    assert_bitwise(got["i32"], np.array([[-(2**31), 2**31 - 1]], np.int32))
    assert_bitwise(got["i64"], np.array([-(2**63), 2**63 - 1], np.int64))
    assert_bitwise(got["u8"], np.array([0, 255], np.uint8))
    assert_bitwise(got["b"], np.array([True, False]))
    assert_bitwise(got["s"], bytes_tensor(b"x\x00", b""))


def test_a_raw_answer_reads_back_bitwise_through_tritonclients_infer_result() -> None:
    outputs = {"probabilities": np.array([[0.25, 0.75], [1.0, 0.0]], np.float32), "labels": bytes_tensor(b"a", b"bc"),
               "classes": np.array([1, 0], np.int64), "odd": odd_floats()}
    request = decode_grpc_request(over_the_wire(triton_grpc_request({"x": np.zeros((2, 4), np.float32)})))
    response = encode_grpc_response(outputs, request, model_name="clf", model_version="3")
    assert (response.model_name, response.model_version, response.id) == ("clf", "3", "r-1")
    assert len(response.raw_output_contents) == 4 and not response.outputs[0].HasField("contents")
    result = read_back_grpc(response)
    for name, want in outputs.items():
        assert_bitwise(result.as_numpy(name), want)


def test_a_typed_request_gets_a_typed_answer() -> None:
    request = pb.ModelInferRequest()
    typed_input(request, "x", "FP32", [1, 2], fp32_contents=[1.0, 2.0])
    outputs = {"p": np.array([[0.25, 0.75]], np.float32), "n": np.array([7], np.int64), "s": bytes_tensor(b"z")}
    response = encode_grpc_response(outputs, decode_grpc_request(request), model_name="clf")
    assert len(response.raw_output_contents) == 0
    p, n, s = response.outputs
    assert (p.datatype, list(p.shape), list(p.contents.fp32_contents)) == ("FP32", [1, 2], [0.25, 0.75])
    assert (n.datatype, list(n.contents.int64_contents)) == ("INT64", [7])
    assert list(s.contents.bytes_contents) == [b"z"]
    assert read_back_grpc(response).as_numpy("s").tolist() == [b"z"]  # the one typed field tritonclient reads


def test_an_fp16_output_makes_a_typed_answer_raw_since_fp16_has_no_typed_field() -> None:
    request = decode_grpc_request(pb.ModelInferRequest())
    outputs = {"h": np.array([1.5], np.float16), "p": np.array([0.5], np.float32)}
    response = encode_grpc_response(outputs, request, model_name="clf")
    assert len(response.raw_output_contents) == 2
    assert_bitwise(read_back_grpc(response).as_numpy("h"), outputs["h"])


def refusal(request: pb.ModelInferRequest) -> str:
    with pytest.raises(TensorError) as info:
        decode_grpc_request(request)
    assert isinstance(info.value, InvalidRequest)  # so the fronts answer INVALID_ARGUMENT / HTTP 400
    return str(info.value)


def test_a_request_mixing_typed_and_raw_contents_is_refused() -> None:
    request = over_the_wire(triton_grpc_request({"x": np.zeros(2, np.float32)}))
    typed_input(request, "y", "FP32", [1], fp32_contents=[1.0])
    request.raw_input_contents.append(b"\x00" * 4)
    assert refusal(request) == ("input 'y' has typed contents but the request also has raw_input_contents; "
                                "send every input one way, not both")


def test_raw_contents_must_have_one_entry_per_input() -> None:
    request = over_the_wire(triton_grpc_request({"x": np.zeros(2, np.float32), "y": np.zeros(2, np.float32)}))
    del request.raw_input_contents[1]
    assert refusal(request) == ("raw_input_contents has 1 entries for 2 inputs; send one entry per input, "
                                "in the order of `inputs`")


def test_truncated_raw_bytes_are_refused_with_both_sizes() -> None:
    request = over_the_wire(triton_grpc_request({"x": np.zeros((2, 3), np.float32)}))
    request.raw_input_contents[0] = request.raw_input_contents[0][:-1]
    assert refusal(request) == ("input 'x': raw data has 23 bytes but shape [2, 3] of FP32 needs 24 "
                                "(6 elements of 4 bytes)")


@pytest.mark.parametrize("raw, message", [
    (b"\x05\x00", "raw BYTES data ends inside the 4-byte length of element 0"),
    (struct.pack("<I", 1) + b"a" + struct.pack("<I", 9) + b"abc", "raw BYTES element 1 claims 9 bytes but 3 remain"),
    (struct.pack("<I", 1) + b"a", "shape [2] needs 2 elements but its raw BYTES data holds 1"),
])
def test_malformed_raw_bytes_tensors_are_refused(raw: bytes, message: str) -> None:
    request = pb.ModelInferRequest(raw_input_contents=[raw])
    request.inputs.add(name="s", datatype="BYTES", shape=[2])
    assert message in refusal(request)


@pytest.mark.parametrize("datatype, shape, contents, message", [
    ("FP32", [2, 3], {"fp32_contents": [1.0] * 5},
     "input 'x': shape [2, 3] needs 6 elements but contents.fp32_contents holds 5"),
    ("FLOAT32", [1], {"fp32_contents": [1.0]},
     "input 'x': datatype 'FLOAT32' is not supported; use one of BOOL, UINT8,"),
    ("BF16", [1], {}, "datatype 'BF16' is not supported"),
    ("FP32", [2], {"int_contents": [1, 2]},
     "input 'x': datatype FP32 takes contents.fp32_contents, not contents.int_contents"),
    ("FP16", [1], {}, "input 'x': FP16 has no typed contents field; send it in raw_input_contents"),
    ("INT8", [2], {"int_contents": [1, 300]}, "input 'x': value 300 is out of range for INT8 (-128..127)"),
    ("UINT16", [1], {"uint_contents": [70000]}, "value 70000 is out of range for UINT16 (0..65535)"),
    ("FP32", [-1, 2], {"fp32_contents": [1.0, 2.0]}, "input 'x': shape [-1, 2] has a negative dimension"),
    ("FP32", [2], {}, "shape [2] needs 2 elements but contents.fp32_contents holds 0"),
])
def test_malformed_typed_tensors_are_refused(datatype: str, shape: list[int], contents: dict, message: str) -> None:
    request = pb.ModelInferRequest()
    typed_input(request, "x", datatype, shape, **contents)
    assert message in refusal(request)


def test_a_raw_bool_byte_other_than_0_or_1_is_refused() -> None:
    request = pb.ModelInferRequest(raw_input_contents=[b"\x01\x02"])
    request.inputs.add(name="b", datatype="BOOL", shape=[2])
    assert refusal(request) == "input 'b': raw BOOL bytes must be 0 or 1"


def test_an_input_sent_twice_is_refused() -> None:
    request = pb.ModelInferRequest()
    typed_input(request, "x", "FP32", [1], fp32_contents=[1.0])
    typed_input(request, "x", "FP32", [1], fp32_contents=[2.0])
    assert refusal(request) == "input 'x' appears twice; send each input once"


def test_shared_memory_and_classification_are_refused_not_ignored() -> None:
    shm = grpcclient.InferInput("x", [4], "FP32")
    shm.set_shared_memory("region", 16)
    request = grpc_utils._get_inference_request("clf", [shm], "", "", None, 0, False, False, 0, None, None)
    assert refusal(over_the_wire(request)) == ("tensor 'x': shared memory is not supported; "
                                               "send the data in the request")
    top_k = [grpcclient.InferRequestedOutput("p", class_count=2)]
    request = triton_grpc_request({"x": np.zeros(4, np.float32)}, top_k)
    assert refusal(over_the_wire(request)) == ("output 'p': the classification extension is not supported; "
                                               "ask for the probabilities and take the top classes")


# ---------------------------------------------------------------------------------------------- HTTP helpers


def triton_http_body(arrays: dict[str, np.ndarray], binary: bool | dict[str, bool] = True,
                     outputs: list | None = None, **kwargs) -> tuple[bytes, dict[str, str]]:
    inputs = []
    for name, array in arrays.items():
        as_binary = binary if isinstance(binary, bool) else binary[name]
        tensor = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array, binary_data=as_binary)
        inputs.append(tensor)
    body, json_size = httpclient.InferenceServerClient.generate_request_body(inputs, outputs=outputs, **kwargs)
    return body, ({} if json_size is None else {HEADER_LENGTH: str(json_size)})


def read_back_http(body: bytes, headers: dict[str, str]) -> httpclient.InferResult:
    length = headers.get(HEADER_LENGTH)
    return httpclient.InferResult.from_response_body(body, header_length=None if length is None else int(length))


def http_refusal(body: bytes, headers: dict[str, str] | None = None) -> str:
    with pytest.raises(TensorError) as info:
        decode_http_request(body, headers or {})
    return str(info.value)


def json_body(*inputs: dict, **extra) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


# ------------------------------------------------------------------------------------------------ HTTP


@pytest.mark.parametrize("dtype", NUMERIC)
def test_a_tritonclient_http_binary_body_decodes_bitwise(dtype: type) -> None:
    want = ((np.arange(6) % 3 == 0) if dtype is np.bool_ else np.arange(-3, 3).astype(dtype)).reshape(2, 3)
    body, headers = triton_http_body({"x": want})
    assert HEADER_LENGTH in headers
    assert_bitwise(decode_http_request(body, headers).inputs["x"], want)


@pytest.mark.parametrize("dtype", NUMERIC)
def test_a_tritonclient_http_json_body_decodes_bitwise(dtype: type) -> None:
    want = ((np.arange(6) % 3 == 0) if dtype is np.bool_ else np.arange(-3, 3).astype(dtype)).reshape(3, 2)
    if np.dtype(dtype).kind == "f":
        want = (want / 7).astype(dtype)  # values with no short decimal form
    body, headers = triton_http_body({"x": want}, binary=False)
    assert headers == {}
    assert_bitwise(decode_http_request(body, headers).inputs["x"], want)


def test_binary_and_json_inputs_mix_in_one_body_with_odd_floats_and_bytes() -> None:
    words = bytes_tensor(b"\xff\x00", b"", b"abc")
    body, headers = triton_http_body({"a": odd_floats(), "b": np.array([1, 2], np.int64), "w": words},
                                     binary={"a": True, "b": False, "w": True}, request_id="q", parameters={"k": 1})
    decoded = decode_http_request(body, {h.lower(): v for h, v in headers.items()})  # header names: any case
    assert list(decoded.inputs) == ["a", "b", "w"]
    assert_bitwise(decoded.inputs["a"], odd_floats())
    assert_bitwise(decoded.inputs["b"], np.array([1, 2], np.int64))
    assert_bitwise(decoded.inputs["w"], words)
    assert decoded.id == "q" and decoded.parameters["k"] == 1


def test_utf8_strings_in_json_decode_to_bytes() -> None:
    body, headers = triton_http_body({"w": np.array(["héllo", ""], dtype=object)}, binary=False)
    assert_bitwise(decode_http_request(body, headers).inputs["w"], bytes_tensor("héllo".encode(), b""))


def test_nested_json_data_is_read_in_row_major_order() -> None:
    body = json_body({"name": "x", "shape": [2, 2], "datatype": "INT32", "data": [[1, 2], [3, 4]]})
    assert_bitwise(decode_http_request(body, {}).inputs["x"], np.array([[1, 2], [3, 4]], np.int32))


OUTPUTS = {"probabilities": np.array([[0.1, 0.9], [0.5, 0.5]], np.float32), "classes": np.array([1, 0], np.int64),
           "labels": bytes_tensor(b"cat", b"dog")}


def test_without_requested_outputs_tritonclient_asks_for_binary_and_reads_it_back_bitwise() -> None:
    body, headers = triton_http_body({"x": np.zeros((2, 4), np.float32)}, request_id="r-9")
    request = decode_http_request(body, headers)
    assert request.binary and request.outputs == ()
    out_body, out_headers = encode_http_response(OUTPUTS, request, model_name="clf", model_version="2")
    assert out_headers["Content-Type"] == "application/octet-stream"
    result = read_back_http(out_body, out_headers)
    assert result.get_response()["model_name"] == "clf" and result.get_response()["id"] == "r-9"
    for name, want in OUTPUTS.items():
        assert_bitwise(result.as_numpy(name), want)


def test_each_output_is_binary_or_json_as_its_binary_data_parameter_says() -> None:
    outputs = [httpclient.InferRequestedOutput("probabilities", binary_data=False),
               httpclient.InferRequestedOutput("classes", binary_data=True),
               httpclient.InferRequestedOutput("labels", binary_data=False)]
    request = decode_http_request(*triton_http_body({"x": np.zeros((2, 4), np.float32)}, outputs=outputs))
    assert request.outputs == (RequestedOutput("probabilities", False), RequestedOutput("classes", True),
                               RequestedOutput("labels", False))
    body, headers = encode_http_response(OUTPUTS, request, model_name="clf")
    header = json.loads(body[:int(headers[HEADER_LENGTH])])
    as_json = [("data" in o, "parameters" in o) for o in header["outputs"]]
    assert as_json == [(True, False), (False, True), (True, False)]
    result = read_back_http(body, headers)
    assert_bitwise(result.as_numpy("probabilities"), OUTPUTS["probabilities"])  # exact through JSON too
    assert_bitwise(result.as_numpy("classes"), OUTPUTS["classes"])
    assert result.as_numpy("labels").tolist() == ["cat", "dog"]  # JSON strings, as tritonclient reads them


def test_an_all_json_answer_has_no_length_header() -> None:
    request = decode_http_request(json_body({"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}), {})
    body, headers = encode_http_response({"p": np.array([0.25], np.float32)}, request, model_name="clf")
    assert headers == {"Content-Type": "application/json"}
    assert_bitwise(read_back_http(body, headers).as_numpy("p"), np.array([0.25], np.float32))


@pytest.mark.parametrize("array, message", [
    (np.array([np.nan], np.float32), "output 'p' holds NaN or infinity, which JSON cannot carry; request it with "
                                     "binary_data: true"),
    (bytes_tensor(b"\xff"), "output 'p' is not UTF-8, which JSON cannot carry; request it with binary_data: true"),
])
def test_an_output_json_cannot_carry_is_refused_with_the_fix(array: np.ndarray, message: str) -> None:
    request = InferRequest(inputs={})
    with pytest.raises(TensorError, match="^" + message.replace("(", r"\(")):
        encode_http_response({"p": array}, request, model_name="clf")


def test_binary_data_sizes_must_account_for_the_body_exactly() -> None:
    body, headers = triton_http_body({"x": np.zeros(4, np.float32)})
    assert http_refusal(body[:-1], headers) == ("input 'x': binary_data_size is 16 but only 15 bytes of binary "
                                                "data are left after the JSON header")
    assert http_refusal(body + b"\x00", headers) == ("the body has 1 bytes after the JSON header that no input's "
                                                     "binary_data_size accounts for; check "
                                                     "Inference-Header-Content-Length")


def test_a_bad_length_header_is_refused() -> None:
    body, _ = triton_http_body({"x": np.zeros(4, np.float32)})
    for value in ("-3", "ten", str(len(body) + 1)):
        assert http_refusal(body, {HEADER_LENGTH: value}) == (
            f"Inference-Header-Content-Length is {value!r}; it must be the byte length of the JSON at the start "
            f"of the body (0..{len(body)})")


@pytest.mark.parametrize("body, message", [
    (b"{not json", "the request body is not valid JSON (Expecting property name enclosed in double quotes"),
    (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [NaN]}]}',
     "the request body is not valid JSON (NaN is not JSON); send an object with an 'inputs' list"),
    (b"[1, 2]", "the request body must be a JSON object with an 'inputs' list"),
    (b'{"outputs": []}', "'inputs' must be a list of objects, got None"),
    (b'\xff\xfe{', "the request body is not valid JSON"),
])
def test_bad_json_is_refused(body: bytes, message: str) -> None:
    assert http_refusal(body).startswith(message)


@pytest.mark.parametrize("tensor, message", [
    ({"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1.0, 2.0, 3.0]},
     "input 'x': shape [2, 2] needs 4 elements but 'data' holds 3"),
    ({"name": "x", "shape": [1], "datatype": "float", "data": [1.0]},
     "input 'x': datatype 'float' is not supported; use one of BOOL"),
    ({"name": "x", "shape": [2], "datatype": "INT32", "data": [1, 2.5]}, "input 'x': INT32 data must be integers"),
    ({"name": "x", "shape": [1], "datatype": "BOOL", "data": [1]}, "input 'x': BOOL data must be true or false"),
    ({"name": "x", "shape": [1], "datatype": "FP32", "data": ["1"]}, "input 'x': FP32 data must be numbers"),
    ({"name": "x", "shape": [1], "datatype": "INT64", "data": [2**64]}, "input 'x': a value is out of range for INT64"),
    ({"name": "x", "shape": [1], "datatype": "UINT8", "data": [-1]}, "input 'x': a value is out of range for UINT8"),
    ({"name": "x", "shape": [1], "datatype": "INT16", "data": [40000]},
     "input 'x': value 40000 is out of range for INT16 (-32768..32767)"),
    ({"name": "x", "shape": [1], "datatype": "BYTES", "data": [5]}, "input 'x': BYTES data in JSON must be strings"),
    ({"name": "x", "shape": "2", "datatype": "FP32", "data": [1.0]}, "input 'x': shape must be a list of integers"),
    ({"name": "x", "shape": [1], "datatype": "FP32"}, "input 'x' has no 'data' and no binary_data_size"),
    ({"name": "x", "shape": [1], "datatype": "FP32", "data": 1.0}, "input 'x': 'data' must be a list"),
    ({"shape": [1], "datatype": "FP32", "data": [1.0]}, "inputs[0] has no 'name' string"),
    ({"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0], "parameters": {"binary_data_size": 4}},
     "input 'x' has both 'data' and binary_data_size; send its data one way"),
    ({"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": "4"}},
     "input 'x': binary_data_size must be a byte count, got '4'"),
])
def test_malformed_json_tensors_are_refused(tensor: dict, message: str) -> None:
    assert http_refusal(json_body(tensor)).startswith(message)


@pytest.mark.parametrize("extra, message", [
    ({"parameters": {"binary_data_output": "yes"}}, "parameters.binary_data_output must be true or false"),
    ({"outputs": [{"name": "p", "parameters": {"binary_data": 1}}]}, "output 'p': binary_data must be true or false"),
    ({"outputs": [{"name": "p", "parameters": {"classification": 2}}]}, "output 'p': the classification extension"),
    ({"outputs": [{"parameters": {}}]}, "outputs[0] has no 'name' string"),
    ({"id": 7}, "id must be a string, got 7"),
])
def test_malformed_request_fields_are_refused(extra: dict, message: str) -> None:
    tensor = {"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}
    assert http_refusal(json_body(tensor, **extra)).startswith(message)


# ---------------------------------------------------------------------------------------- round-trip properties


DATATYPES = st.sampled_from([*NUMERIC, object])
SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)


@st.composite
def tensors(draw: st.DrawFn, finite: bool = False) -> np.ndarray:
    dtype, shape = draw(DATATYPES), draw(SHAPES)
    if dtype is object:
        items = draw(st.lists(st.binary(max_size=6), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
        return bytes_tensor(*items, shape=shape) if items else np.empty(shape, dtype=object)
    elements = hnp.from_dtype(np.dtype(dtype), allow_nan=not finite, allow_infinity=not finite)
    return draw(hnp.arrays(dtype, shape, elements=elements))


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(tensors(), tensors())
def test_grpc_round_trip_through_tritonclient_is_bitwise(x: np.ndarray, y: np.ndarray) -> None:
    request = decode_grpc_request(over_the_wire(triton_grpc_request({"x": x, "y": y})))
    assert_bitwise(request.inputs["x"], x)
    assert_bitwise(request.inputs["y"], y)
    result = read_back_grpc(encode_grpc_response({"a": x, "b": y}, request, model_name="clf"))
    assert_bitwise(result.as_numpy("a"), x)
    assert_bitwise(result.as_numpy("b"), y)


@PROPERTY
@given(tensors())
def test_grpc_typed_answers_decode_back_as_typed_requests(x: np.ndarray) -> None:
    response = encode_grpc_response({"x": x}, InferRequest(inputs={}), model_name="clf")
    request = pb.ModelInferRequest(raw_input_contents=response.raw_output_contents)
    output = response.outputs[0]  # InferOutputTensor has InferInputTensor's fields and numbers
    request.inputs.add().CopyFrom(pb.ModelInferRequest.InferInputTensor.FromString(output.SerializeToString()))
    got = decode_grpc_request(request).inputs["x"]
    if x.dtype.kind == "f":  # through float fields a NaN keeps its NaN-ness, not necessarily its payload
        assert got.dtype == x.dtype and np.array_equal(got, x, equal_nan=True)
    else:
        assert_bitwise(got, x)


@PROPERTY
@given(tensors(), tensors(finite=True), st.booleans())
def test_http_round_trip_through_tritonclient_is_bitwise(x: np.ndarray, y: np.ndarray, y_binary: bool) -> None:
    # JSON carries no NaN, infinity or arbitrary bytes; `y` goes as JSON when it can.
    y_binary = y_binary or y.dtype == object
    body, headers = triton_http_body({"x": x, "y": y}, binary={"x": True, "y": y_binary})
    request = decode_http_request(body, headers)
    assert_bitwise(request.inputs["x"], x)
    assert_bitwise(request.inputs["y"], y)
    outputs = [httpclient.InferRequestedOutput("a", binary_data=True),
               httpclient.InferRequestedOutput("b", binary_data=y_binary)]
    request = decode_http_request(*triton_http_body({"x": x}, outputs=outputs))
    result = read_back_http(*encode_http_response({"a": x, "b": y}, request, model_name="clf"))
    assert_bitwise(result.as_numpy("a"), x)
    assert_bitwise(result.as_numpy("b"), y)
