"""The Open Inference Protocol v2 over HTTP/REST (the KServe v2 API), with Triton's binary tensor extension,
model configuration, statistics and repository index: what tritonclient.http, KServe and MLServer clients
and curl speak. A thin translation onto OipModel, the object the gRPC form (oip_grpc.py) also calls, so
both answer bitwise the same as forgetd.v1 Predict and carry the same response parameters
(`model_version`, `model_digest`, `ledger_seq`).

Statuses: 200; 400 for a request to fix (the message says what), 404 for a model or version not served,
413 for a body over the message limit, 503 while the daemon loads or shuts down. The health and ready
routes answer 200 when the answer is yes and 404/503 with `{"error": ...}` when it is no (the protocol
asks only for "not 200": tritonclient's is_model_ready() is then False), so a load balancer can probe
them as they are.

No route here needs the bearer token, on the same rule as gRPC: only what changes what the model knows
(a forget) does; inference, metadata, statistics and the index are reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from forgetd.server.api.http.context import context_of
from forgetd.server.api.oip_http import decode_http_request, encode_http_response
from forgetd.server.api.oip_model import EXTENSIONS, PLATFORM, Durations, OipModel, TensorSpec
from forgetd.server.errors import NotServing

router = APIRouter(prefix="/v2", tags=["Open Inference Protocol v2"])

_CONFIG_TYPES = {"FP32": "TYPE_FP32", "FP64": "TYPE_FP64", "INT64": "TYPE_INT64", "BYTES": "TYPE_STRING"}  # Triton's
# A body up to this size is decoded, answered and encoded on the event loop: tens of microseconds, less than
# the hop to a worker thread (1-row REST p50 ~20% lower in `forgetd bench serving`). A bigger one goes to a
# thread, so a large batch does not hold up the health checks and small calls behind it.
_INLINE_BODY_BYTES = 64 * 1024


def _model(request: Request) -> OipModel:
    return context_of(request).oip


def _server_version() -> str:
    try:
        return metadata.version("forgetd")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _require_ready(model: OipModel) -> None:
    if not model.server_ready():
        raise NotServing("the daemon is loading its model or shutting down; retry shortly")


def _tensors(specs: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
    return [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)} for s in specs]


def _durations(d: Durations) -> dict[str, int]:
    return {"count": d.count, "ns": d.ns}


# ---------------------------------------------------------------------------------------------- inference
# First in the router: routes are matched in order, one by one, and these are the ones called most.


@router.post("/models/{name}/infer", response_class=Response,
             summary="Inference: JSON, or JSON + binary tensors (Inference-Header-Content-Length)")
@router.post("/models/{name}/versions/{version}/infer", summary="Inference on one version (the live one)",
             response_class=Response)
async def infer(request: Request, name: str, version: str = "") -> Response:
    context = context_of(request)
    body = await context.read_body(request)  # raw bytes: the binary extension follows the JSON header
    if len(body) <= _INLINE_BODY_BYTES:
        content, headers = _answer(context.oip, name, version, body, request.headers)
    else:
        content, headers = await run_in_threadpool(_answer, context.oip, name, version, body, request.headers)
    return Response(content, headers=headers)


def _answer(model: OipModel, name: str, version: str, body: bytes,
            headers: Mapping[str, str]) -> tuple[bytes, dict[str, str]]:
    decoded = decode_http_request(body, headers)
    answer = model.infer(name, version, decoded)
    return encode_http_response(answer.outputs, decoded, model_name=model.name, model_version=answer.version,
                                parameters=answer.parameters)


# ---------------------------------------------------------------------------------------------- server
# These answer from memory in microseconds, so they run on the event loop.


@router.get("", summary="Server metadata: name, version, protocol extensions")
async def server_metadata() -> dict[str, Any]:
    return {"name": "forgetd", "version": _server_version(), "extensions": list(EXTENSIONS)}


@router.get("/health/live", summary="200 while the process answers")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", summary="200 once the model is loaded and the ledger folded; 503 before, and in shutdown")
async def ready(request: Request) -> dict[str, bool]:
    _require_ready(_model(request))
    return {"ready": True}


@router.post("/repository/index", summary="The models this server serves and their state")
async def repository_index(request: Request) -> list[dict[str, str]]:
    model = _model(request)
    if not model.server_ready():
        return [{"name": model.name, "version": "", "state": "UNAVAILABLE",
                 "reason": "the daemon is loading its model or shutting down"}]
    return [{"name": model.name, "version": model.live_version(), "state": "READY"}]


@router.get("/models/stats", summary="Statistics of every model (Triton's statistics extension)")
async def all_statistics(request: Request) -> dict[str, Any]:
    return _statistics(_model(request))


# ---------------------------------------------------------------------------------------------- a model
# Each route is registered with and without /versions/{version}; an empty version means the live one.


@router.get("/models/{name}/ready", summary="200 when the model (the live version) is ready")
@router.get("/models/{name}/versions/{version}/ready", summary="200 when this version is the live one")
async def model_ready(request: Request, name: str, version: str = "") -> dict[str, Any]:
    model = _model(request)
    _require_ready(model)
    model.check(name, version)  # ModelNotFound: 404
    return {"name": model.name, "ready": True}


@router.get("/models/{name}", summary="Model metadata: versions, platform, input and output tensors")
@router.get("/models/{name}/versions/{version}", summary="Metadata of one version")
async def model_metadata(request: Request, name: str, version: str = "") -> dict[str, Any]:
    model = _model(request)
    live = model.check(name, version)
    return {"name": model.name, "versions": [live], "platform": PLATFORM,
            "inputs": _tensors(model.inputs()), "outputs": _tensors(model.outputs())}


@router.get("/models/{name}/config", summary="The model's configuration (Triton's model_configuration extension)")
@router.get("/models/{name}/versions/{version}/config", summary="The configuration of one version")
async def model_config(request: Request, name: str, version: str = "") -> dict[str, Any]:
    model = _model(request)
    model.check(name, version)

    def tensors(specs: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
        return [{"name": s.name, "data_type": _CONFIG_TYPES[s.datatype], "dims": list(s.shape)} for s in specs]

    return {"name": model.name, "platform": PLATFORM, "backend": "forgetd", "max_batch_size": 0,
            "input": tensors(model.inputs()), "output": tensors(model.outputs())}


@router.get("/models/{name}/stats", summary="The model's statistics since the daemon started")
@router.get("/models/{name}/versions/{version}/stats", summary="Statistics of one version")
async def model_statistics(request: Request, name: str, version: str = "") -> dict[str, Any]:
    model = _model(request)
    model.check(name, version)
    return _statistics(model)


def _statistics(model: OipModel) -> dict[str, Any]:
    version = model.live_version() if model.server_ready() else ""
    stats = model.stats
    with stats.lock:
        infer = {"success": _durations(stats.success), "fail": _durations(stats.fail),
                 "compute_infer": _durations(stats.compute_infer)}
        entry = {"name": model.name, "version": version, "last_inference": stats.last_inference_ms,
                 "inference_count": stats.inference_count, "execution_count": stats.execution_count,
                 "inference_stats": infer}
    return {"model_stats": [entry]}
