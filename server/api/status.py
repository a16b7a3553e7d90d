"""The one table at the gRPC boundary: which status code answers which domain error, and the decorators
that apply it to a servicer's handlers.

Every error a client can cause is a ForgetdError subclass whose message says what to fix; `STATUS_TABLE`
gives its code. Anything else is a bug or a broken disk: it is logged with its stack and answered INTERNAL
with a generic message, so no traceback (torch's included) ever reaches a client.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc

from forgetd.server.errors import (
    AlreadyForgotten,
    EmptyRequest,
    InvalidRequest,
    InvalidStrategy,
    NotServing,
    RequestIdConflict,
    RequestNotFound,
    UnknownSample,
    UnsupportedStrategy,
)

__all__ = ["STATUS_TABLE", "INTERNAL_MESSAGE", "MAX_MESSAGE_BYTES", "status_for", "answer_errors", "answer_stream_errors"]

log = logging.getLogger("forgetd.server")

# Most specific first. Not listed = INTERNAL.
STATUS_TABLE: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (EmptyRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidStrategy, grpc.StatusCode.INVALID_ARGUMENT),
    (UnknownSample, grpc.StatusCode.NOT_FOUND),
    (RequestNotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyForgotten, grpc.StatusCode.FAILED_PRECONDITION),
    (UnsupportedStrategy, grpc.StatusCode.FAILED_PRECONDITION),  # e.g. CERTIFIED on an MLP store
    (RequestIdConflict, grpc.StatusCode.FAILED_PRECONDITION),
    (NotServing, grpc.StatusCode.UNAVAILABLE),
)
INTERNAL_MESSAGE = "internal error; the server's log has the details"
# A status message travels in a header, percent-encoded (a non-ASCII byte takes three), inside gRPC's 8 KiB
# metadata limit: past it the client sees RESOURCE_EXHAUSTED "Stream removed" instead of the status. Messages
# cut what they echo (errors.shown_ids); this bounds whatever else grows long.
MAX_MESSAGE_BYTES = 1024


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and client-facing message for an exception raised while answering a call."""
    for cls, code in STATUS_TABLE:
        if isinstance(exc, cls):
            return code, _fitted(str(exc))
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


def _fitted(message: str) -> str:
    data = message.encode("utf-8")
    if len(data) <= MAX_MESSAGE_BYTES:
        return message
    return data[: MAX_MESSAGE_BYTES - 16].decode("utf-8", "ignore") + " ... (cut)"


_Servicer = TypeVar("_Servicer")
_Request = TypeVar("_Request")
_Response = TypeVar("_Response")


def answer_errors(
    method: Callable[[_Servicer, _Request, grpc.ServicerContext], _Response],
) -> Callable[[_Servicer, _Request, grpc.ServicerContext], _Response]:
    """Turns exceptions of a unary handler into statuses via the table; logs the unexpected ones with stack."""

    @functools.wraps(method)
    def wrapper(self: _Servicer, request: _Request, context: grpc.ServicerContext) -> _Response:
        try:
            return method(self, request, context)
        except Exception as exc:  # noqa: BLE001 - this is the boundary: nothing may escape unmapped
            code, message = _log_and_map(method.__name__, exc)
        context.abort(code, message)  # raises; outside the except so the abort itself is never caught
        raise AssertionError("grpc's context.abort returned")  # it never does; this tells the type checker

    return wrapper


def answer_stream_errors(
    method: Callable[[_Servicer, _Request, grpc.ServicerContext], Iterator[_Response]],
) -> Callable[[_Servicer, _Request, grpc.ServicerContext], Iterator[_Response]]:
    """The same for a server-streaming handler: an error mid-stream ends it with the mapped status."""

    @functools.wraps(method)
    def wrapper(self: _Servicer, request: _Request, context: grpc.ServicerContext) -> Iterator[_Response]:
        try:
            yield from method(self, request, context)
            return
        except Exception as exc:  # noqa: BLE001
            code, message = _log_and_map(method.__name__, exc)
        context.abort(code, message)

    return wrapper


def _log_and_map(rpc: str, exc: Exception) -> tuple[grpc.StatusCode, str]:
    code, message = status_for(exc)
    if code == grpc.StatusCode.INTERNAL:
        log.error("%s failed unexpectedly", rpc, exc_info=exc)
    return code, message
