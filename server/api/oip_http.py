"""The Open Inference Protocol's HTTP/REST inference body to and from numpy, with Triton's binary tensor
extension (what tritonclient.http sends by default); pure functions, no server.

The body is JSON, `{"id", "inputs": [{"name", "shape", "datatype", "data"}], "outputs", "parameters"}`. When
the `Inference-Header-Content-Length` header is present the JSON is only that many leading bytes, and each
input whose parameters carry `binary_data_size` takes that many bytes, in input order, from what follows
(raw little-endian, as in oip_tensors). An output is answered in binary when its `binary_data` parameter, or
else the request's `binary_data_output` parameter, is true; otherwise as JSON `data`, flat, row-major.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .oip_tensors import (
    InferRequest,
    RequestedOutput,
    TensorError,
    bytes_elements,
    check_count,
    check_datatype,
    check_no_shared_memory,
    check_output_parameters,
    check_shape,
    datatype_of,
    decode_raw,
    encode_raw,
    narrow,
    object_array,
)

HEADER_LENGTH = "Inference-Header-Content-Length"


def decode_http_request(body: bytes, headers: Mapping[str, str]) -> InferRequest:
    """An inference request from an HTTP body and its headers (names compared case-insensitively)."""
    lengths = [v for k, v in headers.items() if k.lower() == HEADER_LENGTH.lower()]
    json_size = _header_length(lengths[0], len(body)) if lengths else len(body)
    doc = _load_json(body[:json_size])
    binary, offset = body[json_size:], 0
    inputs: dict[str, np.ndarray] = {}
    for i, spec in enumerate(_list(doc, "inputs", required=True)):
        name, raw_size = _input_header(spec, i)
        if name in inputs:
            raise TensorError(f"input '{name}' appears twice; send each input once")
        if raw_size is None:
            inputs[name] = _decode_json_input(name, spec)
            continue
        if offset + raw_size > len(binary):
            raise TensorError(f"input '{name}': binary_data_size is {raw_size} but only {len(binary) - offset} "
                              "bytes of binary data are left after the JSON header")
        chunk = binary[offset:offset + raw_size]
        inputs[name] = decode_raw(name, chunk, spec.get("datatype"), check_shape(name, spec.get("shape")))
        offset += raw_size
    if offset != len(binary):
        raise TensorError(f"the body has {len(binary) - offset} bytes after the JSON header that no input's "
                          "binary_data_size accounts for; check Inference-Header-Content-Length")
    params = _parameters(doc, "the request")
    default = params.get("binary_data_output", False)
    if not isinstance(default, bool):
        raise TensorError(f"parameters.binary_data_output must be true or false, got {default!r}")
    outputs = tuple(_requested_http(spec, i) for i, spec in enumerate(_list(doc, "outputs", required=False)))
    request_id = doc.get("id", "")
    if not isinstance(request_id, str):
        raise TensorError(f"id must be a string, got {request_id!r}")
    return InferRequest(inputs, outputs, default, request_id, params)


def _header_length(value: str, body_size: int) -> int:
    if not value.strip().isdigit() or int(value) > body_size:
        raise TensorError(f"{HEADER_LENGTH} is {value!r}; it must be the byte length of the JSON at the "
                          f"start of the body (0..{body_size})")
    return int(value)


def _load_json(text: bytes) -> dict[str, Any]:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    try:
        doc = json.loads(text, parse_constant=refuse)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise TensorError(f"the request body is not valid JSON ({exc}); send an object with an 'inputs' list")
    if not isinstance(doc, dict):
        raise TensorError("the request body must be a JSON object with an 'inputs' list")
    return doc


def _list(doc: Mapping[str, Any], key: str, *, required: bool) -> list[dict[str, Any]]:
    items = doc.get(key, None if required else [])
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise TensorError(f"'{key}' must be a list of objects, got {items!r}"[:200])
    return items


def _parameters(doc: Mapping[str, Any], owner: str) -> dict[str, Any]:
    value = doc.get("parameters", {})
    if not isinstance(value, dict):
        raise TensorError(f"{owner}: 'parameters' must be an object, got {value!r}"[:200])
    return value


def _input_header(spec: Mapping[str, Any], index: int) -> tuple[str, int | None]:
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise TensorError(f"inputs[{index}] has no 'name' string")
    params = _parameters(spec, f"input '{name}'")
    check_no_shared_memory(name, params)
    size = params.get("binary_data_size")
    if size is None:
        return name, None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise TensorError(f"input '{name}': binary_data_size must be a byte count, got {size!r}")
    if "data" in spec:
        raise TensorError(f"input '{name}' has both 'data' and binary_data_size; send its data one way")
    return name, size


def _requested_http(spec: Mapping[str, Any], index: int) -> RequestedOutput:
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise TensorError(f"outputs[{index}] has no 'name' string")
    params = _parameters(spec, f"output '{name}'")
    check_output_parameters(name, params)
    binary = params.get("binary_data")
    if binary is not None and not isinstance(binary, bool):
        raise TensorError(f"output '{name}': binary_data must be true or false, got {binary!r}")
    return RequestedOutput(name, binary)


def _decode_json_input(name: str, spec: Mapping[str, Any]) -> np.ndarray:
    datatype, dims = spec.get("datatype"), check_shape(name, spec.get("shape"))
    dtype = check_datatype(name, datatype)
    assert isinstance(datatype, str)  # check_datatype accepted it
    if "data" not in spec:
        raise TensorError(f"input '{name}' has no 'data' and no binary_data_size; send its values")
    values = _flatten(name, spec["data"])
    check_count(name, dims, len(values), "'data'")
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in values):
            raise TensorError(f"input '{name}': BYTES data in JSON must be strings; send bytes as binary data")
        return object_array([v.encode() for v in values], dims)
    _check_json_kinds(name, datatype, values)
    carrier = {"f": np.float64, "u": np.uint64, "i": np.int64, "b": np.bool_}[dtype.kind]
    try:
        wide: np.ndarray = np.array(values, dtype=carrier)
    except OverflowError:
        raise TensorError(f"input '{name}': a value is out of range for {datatype}") from None
    return narrow(name, wide, datatype).reshape(dims)


def _flatten(name: str, data: object) -> list[Any]:
    if not isinstance(data, list):
        raise TensorError(f"input '{name}': 'data' must be a list (flat or nested, in row-major order)")
    values: list[Any] = []
    stack: list[Iterable[Any]] = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            values.append(item)
        else:
            stack.pop()
    return values


def _check_json_kinds(name: str, datatype: str, values: list[Any]) -> None:
    if datatype == "BOOL":
        ok, what = all(isinstance(v, bool) for v in values), "true or false"
    elif datatype.startswith("FP"):
        ok, what = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values), "numbers"
    else:
        ok, what = all(isinstance(v, int) and not isinstance(v, bool) for v in values), "integers"
    if not ok:
        raise TensorError(f"input '{name}': {datatype} data must be {what}")


def encode_http_response(outputs: Mapping[str, np.ndarray], request: InferRequest, *, model_name: str,
                         model_version: str = "", parameters: Mapping[str, Any] | None = None,
                         ) -> tuple[bytes, dict[str, str]]:
    """The body and headers answering `request`: each output as JSON `data`, or as binary data after the
    JSON when `request.binary_output(name)`; the length header is set only when something is binary."""
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.id:
        doc["id"] = request.id
    if parameters:
        doc["parameters"] = dict(parameters)
    entries, blobs = [], []
    for name, array in outputs.items():
        entry: dict[str, Any] = {"name": name, "datatype": datatype_of(array), "shape": list(array.shape)}
        if request.binary_output(name):
            blobs.append(encode_raw(array))
            entry["parameters"] = {"binary_data_size": len(blobs[-1])}
        else:
            entry["data"] = _json_data(name, array)
        entries.append(entry)
    doc["outputs"] = entries
    header = json.dumps(doc, allow_nan=False, separators=(",", ":")).encode()
    if not blobs:
        return header, {"Content-Type": "application/json"}
    return header + b"".join(blobs), {"Content-Type": "application/octet-stream",
                                      HEADER_LENGTH: str(len(header))}


def _json_data(name: str, array: np.ndarray) -> list[Any]:
    if datatype_of(array) == "BYTES":
        try:
            return [v.decode() for v in bytes_elements(array)]
        except UnicodeDecodeError:
            raise TensorError(f"output '{name}' is not UTF-8, which JSON cannot carry; "
                              "request it with binary_data: true") from None
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise TensorError(f"output '{name}' holds NaN or infinity, which JSON cannot carry; "
                          "request it with binary_data: true")
    return array.ravel(order="C").tolist()
