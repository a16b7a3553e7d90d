"""Open Inference Protocol v2 tensors to and from numpy: datatypes, raw bytes, and the gRPC messages; pure
functions, no servicer (the HTTP body is oip_http.py's, on these same pieces).

gRPC: an input's data is either in its typed `contents` field or in the request's `raw_input_contents`
(little-endian bytes, one entry per input in input order; a BYTES element is a 4-byte little-endian length
and then the bytes), never both. The answer uses the form the request used: raw for raw, which is also the
only form tritonclient.grpc reads for numeric outputs.

Decoded arrays own their memory, in native byte order, with shape as sent; BYTES become object arrays of
`bytes`. Every refusal is a TensorError that names the tensor and what to send instead.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forgetd.oip import grpc_service_pb2 as pb

from ..errors import InvalidRequest

Parameter = bool | int | float | str


class TensorError(InvalidRequest):
    """A tensor of an inference request is malformed: the message names it and says what to send instead."""


# The protocol's datatypes forgetd reads and writes. BF16 is left out: numpy has no bfloat16.
DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
# The typed `contents` field of each datatype (InferTensorContents); FP16 has none, so it travels raw only.
TYPED_FIELD: dict[str, str] = {
    "BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}
_KNOWN = ", ".join(DTYPES)


@dataclass(frozen=True)
class RequestedOutput:
    """An output the client asked for by name; `binary` is HTTP's per-output `binary_data`, None if unset."""

    name: str
    binary: bool | None = None


@dataclass(frozen=True)
class InferRequest:
    """A decoded inference request, either front's."""

    inputs: Mapping[str, np.ndarray]  # by name, in request order
    outputs: tuple[RequestedOutput, ...] = ()  # empty: every output of the model
    binary: bool = False  # gRPC: raw_input_contents was used; HTTP: the binary_data_output parameter
    id: str = ""
    parameters: Mapping[str, Parameter] = field(default_factory=dict)

    def binary_output(self, name: str) -> bool:
        """Whether output `name` is answered as bytes (raw / binary extension) rather than typed values."""
        for output in self.outputs:
            if output.name == name and output.binary is not None:
                return output.binary
        return self.binary


def datatype_of(array: np.ndarray) -> str:
    """The protocol datatype of an output array (str and bytes arrays are BYTES)."""
    if array.dtype.kind in "OSU":
        return "BYTES"
    for name, dtype in DTYPES.items():
        if array.dtype == dtype:
            return name
    raise TypeError(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype")


# --------------------------------------------------------------------------------------- checks


def check_datatype(name: str, datatype: object) -> np.dtype[Any]:
    """The numpy dtype of a datatype named in a request, or a TensorError listing the supported ones."""
    if not isinstance(datatype, str) or datatype not in DTYPES:
        raise TensorError(f"input '{name}': datatype {datatype!r} is not supported; use one of {_KNOWN}")
    return DTYPES[datatype]


def check_shape(name: str, shape: object) -> tuple[int, ...]:
    """A request's shape as a tuple, refusing anything but a list of non-negative integers."""
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise TensorError(f"input '{name}': shape must be a list of integers, got {shape!r}")
    dims = list(shape)
    if any(d < 0 for d in dims):
        raise TensorError(f"input '{name}': shape {dims} has a negative dimension; send the actual sizes")
    return tuple(dims)


def object_array(items: Sequence[bytes], dims: tuple[int, ...]) -> np.ndarray:
    """A BYTES tensor: an object array of the elements (np.array would make a fixed-width `S` array, which
    drops trailing NUL bytes)."""
    array = np.empty(len(items), dtype=object)
    array[:] = list(items)
    return array.reshape(dims)


def check_count(name: str, shape: tuple[int, ...], count: int, where: str) -> None:
    """TensorError unless `where` (the field that carried the data) holds as many elements as `shape` needs."""
    want = math.prod(shape)
    if count != want:
        raise TensorError(f"input '{name}': shape {list(shape)} needs {want} elements but {where} holds {count}")


def narrow(name: str, values: np.ndarray, datatype: str) -> np.ndarray:
    """Values widened by their carrier (int32 field, JSON number) cast to the datatype, refusing overflow."""
    dtype = DTYPES[datatype]
    if dtype.kind in "iu" and values.size:
        info = np.iinfo(dtype)
        low, high = int(values.min()), int(values.max())
        if low < info.min or high > info.max:
            raise TensorError(f"input '{name}': value {low if low < info.min else high} is out of range for "
                              f"{datatype} ({info.min}..{info.max})")
    return values.astype(dtype)


# ------------------------------------------------------------------------------------- raw bytes


def decode_raw(name: str, raw: bytes, datatype: object, shape: object) -> np.ndarray:
    """One tensor from its raw little-endian bytes (BYTES: length-prefixed elements)."""
    dims, dtype = check_shape(name, shape), check_datatype(name, datatype)
    if datatype == "BYTES":
        elements = _split_bytes(name, raw)
        check_count(name, dims, len(elements), "its raw BYTES data")
        return object_array(elements, dims)
    want = math.prod(dims) * dtype.itemsize
    if len(raw) != want:
        raise TensorError(f"input '{name}': raw data has {len(raw)} bytes but shape {list(dims)} of {datatype} "
                          f"needs {want} ({math.prod(dims)} elements of {dtype.itemsize} bytes)")
    array = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype)  # a copy, native order
    if datatype == "BOOL" and array.view(np.uint8).max(initial=0) > 1:
        raise TensorError(f"input '{name}': raw BOOL bytes must be 0 or 1")
    return array.reshape(dims)


def _split_bytes(name: str, raw: bytes) -> list[bytes]:
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise TensorError(f"input '{name}': raw BYTES data ends inside the 4-byte length of element "
                              f"{len(elements)}; each element is a little-endian uint32 length, then the bytes")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise TensorError(f"input '{name}': raw BYTES element {len(elements)} claims {size} bytes but "
                              f"{len(raw) - offset} remain")
        elements.append(raw[offset:offset + size])
        offset += size
    return elements


def encode_raw(array: np.ndarray) -> bytes:
    """An array's raw little-endian bytes in row-major order (BYTES: length-prefixed elements)."""
    if datatype_of(array) == "BYTES":
        return b"".join(struct.pack("<I", len(v)) + v for v in bytes_elements(array))
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def bytes_elements(array: np.ndarray) -> list[bytes]:
    """A BYTES array's elements in row-major order; str elements are sent as UTF-8."""
    return [v.encode() if isinstance(v, str) else bytes(v) for v in array.ravel(order="C")]


# ------------------------------------------------------------------------------------------ gRPC


def decode_grpc_request(request: pb.ModelInferRequest) -> InferRequest:
    """The inputs of a ModelInferRequest, with what the answer must look like."""
    raw = list(request.raw_input_contents)
    if raw:
        typed = [t.name for t in request.inputs if t.HasField("contents")]
        if typed:
            raise TensorError(f"input '{typed[0]}' has typed contents but the request also has "
                              "raw_input_contents; send every input one way, not both")
        if len(raw) != len(request.inputs):
            raise TensorError(f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
                              "send one entry per input, in the order of `inputs`")
    inputs: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        check_no_shared_memory(tensor.name, tensor.parameters)
        if tensor.name in inputs:
            raise TensorError(f"input '{tensor.name}' appears twice; send each input once")
        if raw:
            inputs[tensor.name] = decode_raw(tensor.name, raw[i], tensor.datatype, list(tensor.shape))
        else:
            inputs[tensor.name] = _decode_typed(tensor)
    outputs = tuple(_requested_grpc(o) for o in request.outputs)
    params = {k: _grpc_parameter(v) for k, v in request.parameters.items()}
    return InferRequest(inputs, outputs, bool(raw), request.id, params)


def _decode_typed(tensor: pb.ModelInferRequest.InferInputTensor) -> np.ndarray:
    name, dims = tensor.name, check_shape(tensor.name, list(tensor.shape))
    check_datatype(name, tensor.datatype)
    wanted = TYPED_FIELD.get(tensor.datatype)
    if wanted is None:
        raise TensorError(f"input '{name}': {tensor.datatype} has no typed contents field; "
                          "send it in raw_input_contents")
    present = [f.name for f, _ in tensor.contents.ListFields()]
    stray = [f for f in present if f != wanted]
    if stray:
        raise TensorError(f"input '{name}': datatype {tensor.datatype} takes contents.{wanted}, "
                          f"not contents.{stray[0]}")
    values = getattr(tensor.contents, wanted)
    check_count(name, dims, len(values), f"contents.{wanted}")
    if tensor.datatype == "BYTES":
        return object_array(values, dims)
    wide: np.ndarray = np.array(values, dtype=np.uint64 if wanted.startswith("uint") else None)
    return narrow(name, wide, tensor.datatype).reshape(dims)


def check_no_shared_memory(name: str, parameters: Mapping[str, Any]) -> None:
    """Triton's shared-memory extension is not offered: its parameters are refused, not ignored."""
    if any(key.startswith("shared_memory") for key in parameters):
        raise TensorError(f"tensor '{name}': shared memory is not supported; send the data in the request")


def check_output_parameters(name: str, parameters: Mapping[str, Any]) -> None:
    """A requested output's parameters: neither shared memory nor the classification extension."""
    check_no_shared_memory(name, parameters)
    if "classification" in parameters:
        raise TensorError(f"output '{name}': the classification extension is not supported; "
                          "ask for the probabilities and take the top classes")


def _requested_grpc(output: pb.ModelInferRequest.InferRequestedOutputTensor) -> RequestedOutput:
    check_output_parameters(output.name, output.parameters)
    return RequestedOutput(output.name)


def _grpc_parameter(parameter: pb.InferParameter) -> Parameter:
    which = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, which) if which else ""


def encode_grpc_response(outputs: Mapping[str, np.ndarray], request: InferRequest, *, model_name: str,
                         model_version: str = "") -> pb.ModelInferResponse:
    """A ModelInferResponse with `outputs` in the form `request` used: raw if it sent raw, else typed
    (raw as well when an output's datatype has no typed field, since the protocol allows no mix)."""
    response = pb.ModelInferResponse(model_name=model_name, model_version=model_version, id=request.id)
    arrays = list(outputs.items())
    raw = request.binary or any(datatype_of(a) not in TYPED_FIELD for _, a in arrays)
    for name, array in arrays:
        datatype = datatype_of(array)
        tensor = response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
        if raw:
            response.raw_output_contents.append(encode_raw(array))
        elif datatype == "BYTES":
            tensor.contents.bytes_contents.extend(bytes_elements(array))
        else:
            getattr(tensor.contents, TYPED_FIELD[datatype]).extend(array.ravel(order="C").tolist())
    return response
