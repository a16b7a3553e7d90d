"""Requests that do not parse as their method's message: INVALID_ARGUMENT naming the message, not grpc's
INTERNAL "Exception deserializing request!".

grpc turns any exception of a request deserializer into INTERNAL before a handler runs, so the status table
(server/api/status.py) never sees it. This interceptor gives every method (forgetd.v1, the Open Inference
Protocol, health, reflection) a deserializer that cannot raise: bytes that are not the message (truncated,
a wrong wire type, invalid UTF-8 in a string field) become a `_Malformed` marker, and the wrapped handler
answers it through the table, as InvalidRequest, before the servicer is called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from forgetd.server.api.status import status_for
from forgetd.server.errors import InvalidRequest

__all__ = ["MalformedRequests"]


class _Malformed:
    """What a request that did not parse becomes: the message the client must fix."""

    def __init__(self, message: str) -> None:
        self.message = message


def _tolerant(parse: Callable[[bytes], Any], method: str) -> Callable[[bytes], Any]:
    message_type = getattr(getattr(getattr(parse, "__self__", None), "DESCRIPTOR", None), "full_name", None)
    what = f"a serialized {message_type}" if message_type else f"the request message {method} takes"

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as exc:  # noqa: BLE001 - DecodeError, and UnicodeDecodeError from some runtimes
            # protobuf's DecodeError names the message type and the fault ("String field had bad UTF-8").
            detail = str(exc) if isinstance(exc, DecodeError) else type(exc).__name__
            return _Malformed(f"the request does not parse ({detail}); send {what}, with every string field "
                              "valid UTF-8")

    return deserialize


def _refuse(request: _Malformed, context: grpc.ServicerContext) -> None:
    code, message = status_for(InvalidRequest(request.message))
    context.abort(code, message)


def _checked(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
    for request in requests:
        if isinstance(request, _Malformed):
            _refuse(request, context)
        yield request


def _wrap(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    deserializer = _tolerant(handler.request_deserializer, method)
    serializer = handler.response_serializer
    if handler.unary_unary is not None:
        unary_unary = handler.unary_unary

        def uu(request: Any, context: grpc.ServicerContext) -> Any:
            if isinstance(request, _Malformed):
                _refuse(request, context)
            return unary_unary(request, context)

        return grpc.unary_unary_rpc_method_handler(uu, deserializer, serializer)
    if handler.unary_stream is not None:
        unary_stream = handler.unary_stream

        def us(request: Any, context: grpc.ServicerContext, *callback: Any) -> Any:
            if isinstance(request, _Malformed):
                _refuse(request, context)
            return unary_stream(request, context, *callback)

        # Health.Watch answers through a callback on grpc's own threads (its experimental_* marks); keep them.
        for mark in ("experimental_non_blocking", "experimental_thread_pool"):
            if hasattr(unary_stream, mark):
                setattr(us, mark, getattr(unary_stream, mark))
        return grpc.unary_stream_rpc_method_handler(us, deserializer, serializer)
    if handler.stream_unary is not None:
        stream_unary = handler.stream_unary
        return grpc.stream_unary_rpc_method_handler(
            lambda requests, context: stream_unary(_checked(requests, context), context), deserializer, serializer)
    stream_stream = handler.stream_stream
    return grpc.stream_stream_rpc_method_handler(
        lambda requests, context: stream_stream(_checked(requests, context), context), deserializer, serializer)


class MalformedRequests(grpc.ServerInterceptor):
    """Answers a request whose bytes are not its method's message with INVALID_ARGUMENT (module docstring)."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler  # unknown method (UNIMPLEMENTED), or one that takes raw bytes
        return _wrap(handler, handler_call_details.method)
