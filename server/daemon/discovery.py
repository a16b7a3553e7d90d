"""What a client asks to find and check the daemon's services: grpc.health.v1 (Check, Watch and List) and
server reflection under both of its names, grpc.reflection.v1 (what grpcurl and current tools ask first)
and grpc.reflection.v1alpha (older tools).

grpcio-health-checking 1.85 leaves Health.List UNIMPLEMENTED and grpcio-reflection 1.85 ships only
v1alpha; both are filled in here rather than by a dependency. The reflection v1 protocol is v1alpha's
renamed, field for field, so v1alpha's servicer answers v1 calls on the wire unchanged, and v1's descriptor
is made from v1alpha's, renamed, so reflection can describe itself under either name.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

__all__ = ["Health", "REFLECTION_V1", "enable_reflection"]

_V1ALPHA_PACKAGE = reflection_pb2.DESCRIPTOR.package  # grpc.reflection.v1alpha
_V1_PACKAGE = "grpc.reflection.v1"
_V1_FILE = "grpc/reflection/v1/reflection.proto"
REFLECTION_V1 = f"{_V1_PACKAGE}.ServerReflection"


class Health(health.HealthServicer):
    """grpc_health's servicer, plus List (every service's status as last set here) and `end_watches`, which ends
    the Watch streams: a stream is a call in flight, and the daemon's drain would otherwise wait its whole
    grace for the load balancers' watches to hang up."""

    def __init__(self) -> None:
        self._statuses: dict[str, int] = {}
        self._statuses_lock = threading.Lock()
        self._frozen = False  # after enter_graceful_shutdown the base ignores set(); so does the list
        self._watchers: set[Callable[[health_pb2.HealthCheckResponse | None], None]] = set()
        super().__init__()  # marks self.Watch (ours) as answering through a callback

    def set(self, service: str, status: int) -> None:
        with self._statuses_lock:
            if not self._frozen:
                self._statuses[service] = status
        super().set(service, status)

    def enter_graceful_shutdown(self) -> None:
        super().enter_graceful_shutdown()  # sets every service NOT_SERVING through set() above
        with self._statuses_lock:
            self._frozen = True

    def Watch(self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext,
              send_response_callback: Callable[[health_pb2.HealthCheckResponse | None], None] | None = None) -> Any:
        if send_response_callback is not None:
            callback = send_response_callback
            with self._statuses_lock:
                self._watchers.add(callback)
            context.add_callback(lambda: self._forget_watcher(callback))
        return super().Watch(request, context, send_response_callback)

    def _forget_watcher(self, callback: Callable[[health_pb2.HealthCheckResponse | None], None]) -> None:
        with self._statuses_lock:
            self._watchers.discard(callback)

    def end_watches(self) -> None:
        """Ends every Watch stream (status OK), after the last status it sent (NOT_SERVING, at shutdown)."""
        with self._statuses_lock:
            watchers, self._watchers = list(self._watchers), set()
        for callback in watchers:
            try:
                callback(None)
            except Exception:  # noqa: BLE001 - a stream that ended meanwhile; nothing to end
                pass

    def List(self, request: health_pb2.HealthListRequest,
             context: grpc.ServicerContext) -> health_pb2.HealthListResponse:
        with self._statuses_lock:
            statuses = dict(self._statuses)
        return health_pb2.HealthListResponse(
            statuses={name: health_pb2.HealthCheckResponse(status=status) for name, status in statuses.items()})


def enable_reflection(service_names: Sequence[str], server: grpc.Server) -> None:
    """Reflection over `service_names` (plus both reflection services), answered under v1 and v1alpha."""
    _register_v1_descriptor()
    names = (*service_names, reflection.SERVICE_NAME, REFLECTION_V1)
    servicer = reflection.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    method = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(REFLECTION_V1,
                                                                          {"ServerReflectionInfo": method}),))


def _register_v1_descriptor() -> None:
    """Adds grpc/reflection/v1/reflection.proto to the default pool, from v1alpha's file renamed (once; a
    later grpcio-reflection that ships v1 itself has put it there already)."""
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(_V1_FILE)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name, proto.package = _V1_FILE, _V1_PACKAGE
    proto.ClearField("options")
    old, new = f".{_V1ALPHA_PACKAGE}.", f".{_V1_PACKAGE}."
    for message in proto.message_type:
        for field in message.field:
            if field.type_name.startswith(old):
                field.type_name = new + field.type_name[len(old):]
    for service in proto.service:
        for m in service.method:
            m.input_type = new + m.input_type[len(old):]
            m.output_type = new + m.output_type[len(old):]
    pool.Add(proto)
