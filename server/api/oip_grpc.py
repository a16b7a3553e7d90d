"""`inference.GRPCInferenceService` on the daemon's gRPC port: the Open Inference Protocol v2 (the KServe v2
API) plus Triton's ModelConfig, ModelStatistics and RepositoryIndex, so tritonclient, KServe and MLServer
clients and perf_analyzer-style tools work unchanged.

A thin translation onto OipModel (oip_model.py). Its own error table: a malformed tensor is
INVALID_ARGUMENT, an unknown model or version NOT_FOUND, a daemon still loading UNAVAILABLE, anything else
INTERNAL with a generic message (the stack goes to the log).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from importlib import metadata
from typing import Any, TypeVar

import grpc

from forgetd.oip import grpc_service_pb2 as pb, grpc_service_pb2_grpc as pb_grpc, model_config_pb2 as mc
from forgetd.server.api.oip_model import EXTENSIONS, PLATFORM, Durations, ModelNotFound, OipModel, TensorSpec
from forgetd.server.api.oip_tensors import decode_grpc_request, encode_grpc_response
from forgetd.server.errors import InvalidRequest, NotServing

log = logging.getLogger("forgetd.server")

SERVICE_NAME = "inference.GRPCInferenceService"
# Most specific first; not listed = INTERNAL.
STATUS_TABLE: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (ModelNotFound, grpc.StatusCode.NOT_FOUND),
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (NotServing, grpc.StatusCode.UNAVAILABLE),
)
_DATATYPE_TO_CONFIG = {"FP32": mc.TYPE_FP32, "FP64": mc.TYPE_FP64, "INT64": mc.TYPE_INT64, "BYTES": mc.TYPE_STRING}

_Handler = TypeVar("_Handler", bound=Callable[..., Any])


def _answer_errors(handler: _Handler) -> _Handler:
    @functools.wraps(handler)
    def wrapped(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return handler(self, request, context)
        except Exception as exc:  # noqa: BLE001 - the table decides; unknown errors are logged, never leaked
            for cls, code in STATUS_TABLE:
                if isinstance(exc, cls):
                    context.abort(code, str(exc))
            log.exception("OIP %s failed", handler.__name__)
            context.abort(grpc.StatusCode.INTERNAL, "internal error; the server's log has the details")

    return wrapped  # type: ignore[return-value]


def _version() -> str:
    try:
        return metadata.version("forgetd")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _tensor_metadata(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(name=spec.name, datatype=spec.datatype, shape=list(spec.shape))


def _durations(d: Durations) -> pb.StatisticDuration:
    return pb.StatisticDuration(count=d.count, ns=d.ns)


class OipServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, model: OipModel) -> None:
        self._model = model

    def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)  # the process answers: that is liveness

    def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._model.server_ready())

    def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.ServicerContext) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self._model.ready(request.name, request.version))

    def ServerMetadata(self, request: pb.ServerMetadataRequest,
                       context: grpc.ServicerContext) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="forgetd", version=_version(), extensions=list(EXTENSIONS))

    @_answer_errors
    def ModelMetadata(self, request: pb.ModelMetadataRequest,
                      context: grpc.ServicerContext) -> pb.ModelMetadataResponse:
        live = self._model.check(request.name, request.version)
        return pb.ModelMetadataResponse(
            name=self._model.name, versions=[live], platform=PLATFORM,
            inputs=[_tensor_metadata(s) for s in self._model.inputs()],
            outputs=[_tensor_metadata(s) for s in self._model.outputs()])

    @_answer_errors
    def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.ServicerContext) -> pb.ModelInferResponse:
        decoded = decode_grpc_request(request)
        answer = self._model.infer(request.model_name, request.model_version, decoded)
        response = encode_grpc_response(answer.outputs, decoded, model_name=self._model.name,
                                        model_version=answer.version)
        for key, value in answer.parameters.items():
            if isinstance(value, int):
                response.parameters[key].int64_param = value
            else:
                response.parameters[key].string_param = value
        return response

    @_answer_errors
    def ModelConfig(self, request: pb.ModelConfigRequest, context: grpc.ServicerContext) -> pb.ModelConfigResponse:
        self._model.check(request.name, request.version)

        def dims(spec: TensorSpec) -> list[int]:
            return list(spec.shape)

        config = mc.ModelConfig(
            name=self._model.name, platform=PLATFORM, backend="forgetd", max_batch_size=0,
            input=[mc.ModelInput(name=s.name, data_type=_DATATYPE_TO_CONFIG[s.datatype], dims=dims(s))
                   for s in self._model.inputs()],
            output=[mc.ModelOutput(name=s.name, data_type=_DATATYPE_TO_CONFIG[s.datatype], dims=dims(s))
                    for s in self._model.outputs()])
        return pb.ModelConfigResponse(config=config)

    @_answer_errors
    def ModelStatistics(self, request: pb.ModelStatisticsRequest,
                        context: grpc.ServicerContext) -> pb.ModelStatisticsResponse:
        if request.name:  # empty name = every model
            self._model.check(request.name, request.version)
        stats = self._model.stats
        with stats.lock:
            infer = pb.InferStatistics(success=_durations(stats.success), fail=_durations(stats.fail),
                                       compute_infer=_durations(stats.compute_infer))
            entry = pb.ModelStatistics(name=self._model.name, version=self._model.live_version(),
                                       last_inference=stats.last_inference_ms,
                                       inference_count=stats.inference_count,
                                       execution_count=stats.execution_count, inference_stats=infer)
        return pb.ModelStatisticsResponse(model_stats=[entry])

    @_answer_errors
    def RepositoryIndex(self, request: pb.RepositoryIndexRequest,
                        context: grpc.ServicerContext) -> pb.RepositoryIndexResponse:
        ready = self._model.server_ready()
        entry = pb.RepositoryIndexResponse.ModelIndex(
            name=self._model.name, version=self._model.live_version() if ready else "",
            state="READY" if ready else "UNAVAILABLE", reason="" if ready else "the daemon is loading its model")
        return pb.RepositoryIndexResponse(models=[entry])


def add_oip_servicer(model: OipModel, server: grpc.Server) -> None:
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(OipServicer(model), server)
