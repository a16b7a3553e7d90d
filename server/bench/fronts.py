"""The Open Inference Protocol's two forms in `forgetd bench serving`: 1-row ModelInfer over gRPC beside
forgetd.v1 Predict, and 1-row REST infer beside a bare uvicorn echo, all in the run that times Predict.

ModelInfer is sent the way tritonclient.grpc sends it (raw little-endian bytes in raw_input_contents) with
the protocol's own stubs, so the client does the same protobuf work as for Predict and the ratio is the
server's. REST infer is sent the way tritonclient.http sends it (a JSON header, then the tensor in Triton's
binary extension, binary outputs asked for), over one kept-alive connection. Its baseline is an ASGI app
that answers every POST with the daemon's own answer, prebuilt, served by the same HttpFront (uvicorn in a
thread of the daemon's process): what is left between the two is the route, the codec and the model.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from forgetd.oip import grpc_service_pb2 as pb, grpc_service_pb2_grpc as pb_grpc
from forgetd.v1 import inference_service_pb2, inference_service_pb2_grpc

from forgetd.server.api.http.server import HttpFront
from forgetd.server.api.oip_model import INPUT, MODEL_NAME

__all__ = ["FrontTargets", "HttpEcho", "interleaved", "one_row_calls", "model_infer_request", "rest_request",
           "http_answer", "FRONTS"]

REST_PATH = f"/v2/models/{MODEL_NAME}/infer"
# The calls timed at 1 row, in the order they are printed; "predict" and "echo" are serving.py's.
FRONTS = ("predict", "echo", "model_infer", "rest", "rest_echo")


@dataclass(frozen=True)
class FrontTargets:
    """Where the load generator (a child process: this must pickle) sends each kind of call, and what."""

    grpc: str  # the daemon's gRPC address
    echo: str  # the bare gRPC echo's
    http_port: int  # the daemon's HTTP front
    http_echo_port: int  # the bare uvicorn echo
    predict: bytes  # a serialized 1-row PredictRequest
    model_infer: bytes  # the same row as a serialized ModelInferRequest
    rest_body: bytes  # and as a REST body with the binary extension
    rest_headers: tuple[tuple[str, str], ...]


def model_infer_request(features: np.ndarray) -> pb.ModelInferRequest:
    """features (rows, F) float32 as tritonclient.grpc sends them: raw bytes, no typed contents."""
    request = pb.ModelInferRequest(model_name=MODEL_NAME)
    request.inputs.add(name=INPUT, datatype="FP32", shape=list(features.shape))
    request.raw_input_contents.append(features.astype("<f4").tobytes())
    return request


def rest_request(features: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """features (rows, F) float32 as tritonclient.http sends them: JSON header, binary tensor, binary outputs."""
    raw = features.astype("<f4").tobytes()
    header = json.dumps({"inputs": [{"name": INPUT, "shape": list(features.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(raw)}}],
                         "parameters": {"binary_data_output": True}}).encode()
    return header + raw, {"Content-Type": "application/octet-stream",
                          "Inference-Header-Content-Length": str(len(header))}


def http_answer(port: int, body: bytes, headers: Mapping[str, str]) -> tuple[bytes, dict[str, str]]:
    """The daemon's answer to one REST infer (the echo's prebuilt reply), with the headers that frame it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", REST_PATH, body=body, headers=dict(headers))
        response = conn.getresponse()
        content = response.read()
        if response.status != 200:
            raise RuntimeError(f"REST infer answered {response.status}: {content[:200]!r}")
        framing = ("Content-Type", "Inference-Header-Content-Length")
        return content, {k: v for k in framing if (v := response.getheader(k)) is not None}
    finally:
        conn.close()


class HttpEcho:
    """The REST baseline: a bare ASGI app answering every request with one prebuilt reply, on HttpFront."""

    def __init__(self, body: bytes, headers: Mapping[str, str]) -> None:
        self._body = body
        self._headers = [(b"content-length", str(len(body)).encode())] + [
            (k.lower().encode(), v.encode()) for k, v in headers.items()]
        self.front = HttpFront(self, "127.0.0.1:0")

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:  # read the body, as the daemon's route must
            message = await receive()
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": self._headers})
        await send({"type": "http.response.body", "body": self._body})


def one_row_calls(stack: contextlib.ExitStack, targets: FrontTargets) -> dict[str, Callable[[], object]]:
    """The five 1-row calls, each on its own channel or kept-alive connection, opened on `stack`."""
    ours = stack.enter_context(grpc.insecure_channel(targets.grpc))
    echo = stack.enter_context(grpc.insecure_channel(targets.echo))
    predict = inference_service_pb2.PredictRequest.FromString(targets.predict)
    infer = pb.ModelInferRequest.FromString(targets.model_infer)
    stub, echo_stub = (inference_service_pb2_grpc.InferenceServiceStub(c) for c in (ours, echo))
    oip = pb_grpc.GRPCInferenceServiceStub(ours)
    headers = dict(targets.rest_headers)

    def rest(port: int) -> Callable[[], object]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        stack.callback(conn.close)

        def call() -> bytes:
            conn.request("POST", REST_PATH, body=targets.rest_body, headers=headers)
            return conn.getresponse().read()

        return call

    return {"predict": lambda: stub.Predict(predict), "echo": lambda: echo_stub.Predict(predict),
            "model_infer": lambda: oip.ModelInfer(infer), "rest": rest(targets.http_port),
            "rest_echo": rest(targets.http_echo_port)}


def interleaved(calls: Mapping[str, Callable[[], object]], n: int, blocks: int = 10) -> dict[str, list[float]]:
    """n timed calls of each, taking turns in blocks so machine noise hits all alike, after a warm-up of each."""
    for call in calls.values():
        _timed(call, 20)
    out: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(blocks):
        for name, call in calls.items():
            out[name] += _timed(call, max(1, n // blocks))
    return out


def _timed(call: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        out.append(time.perf_counter() - t)
    return out
