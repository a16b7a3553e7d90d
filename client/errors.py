"""The client's one exception tree, and the one table that maps gRPC status codes onto it.

Every class of a failed call carries the status code it stands for (`.code`) and the server's message
(`.message`), as in googleapis/python-api-core. The client wraps every call in
`raise from_grpc_error(exc) from exc`, so a caller catches `ForgetdClientError` (or one condition, e.g.
`NotFound`) and never sees a raw `grpc.RpcError`. The errors of the client's own work (a receipt file, a
store the auditor reads, a refused seal) sit in the same tree without a code, so a command catches one root.
"""

from __future__ import annotations

import grpc


class ForgetdClientError(Exception):
    """Base of every error the client raises: a failed call, a request it refused to send, a receipt or store
    it cannot read, a seal it refused."""

    #: The gRPC status code this class stands for; None on the base class and on the errors no call answers.
    code: grpc.StatusCode | None = None

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        # The code's name first, so a one-line CLI error says which kind of failure it was.
        return f"{self.code.name}: {self.message}" if self.code is not None else self.message


class Cancelled(ForgetdClientError):
    """The call was cancelled, usually by the caller."""

    code = grpc.StatusCode.CANCELLED


class Unknown(ForgetdClientError):
    """The server or the transport failed in a way it did not classify."""

    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(ForgetdClientError):
    """The request is malformed: wrong feature count, NaN, empty batch, no ids, unknown strategy..."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(ForgetdClientError):
    """The call did not finish within its timeout."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(ForgetdClientError):
    """A sample id or request id the server does not know."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ForgetdClientError):
    """The thing the request would create exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(ForgetdClientError):
    """The caller is known but not allowed to make this call."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(ForgetdClientError):
    """A server limit was hit, e.g. a message larger than the configured maximum."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(ForgetdClientError):
    """The server is not in a state to do this (e.g. the model is not ready)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(ForgetdClientError):
    """The call was aborted, typically by a concurrency conflict; retrying the whole operation may work."""

    code = grpc.StatusCode.ABORTED


class OutOfRange(ForgetdClientError):
    """A value past the valid range, e.g. a ledger seq past the head."""

    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(ForgetdClientError):
    """The server does not offer this method (an older or different server)."""

    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(ForgetdClientError):
    """The server failed unexpectedly; its log has the details."""

    code = grpc.StatusCode.INTERNAL


class Unavailable(ForgetdClientError):
    """The server cannot be reached or is shutting down; safe calls were already retried."""

    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(ForgetdClientError):
    """Unrecoverable data loss or corruption."""

    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(ForgetdClientError):
    """The call needs a bearer token (or a valid one): pass `token=` or `--token-file`."""

    code = grpc.StatusCode.UNAUTHENTICATED


class InvalidStrategy(InvalidArgument, ValueError):
    """A strategy name the client does not know; refused before anything is sent."""


class InvalidRows(InvalidArgument, ValueError):
    """Predict rows that cannot be packed (ragged, not 2-D, not numbers); refused before anything is sent."""


class InvalidReceipt(ForgetdClientError, ValueError):
    """A receipt file is not valid JSON or lacks a field; the message names the field."""


class StoreUnreadable(ForgetdClientError):
    """A store file the auditor reads is missing or malformed; the message names it."""


class NoSpace(ForgetdClientError):
    """The auditor's scratch copy of a vault, or a replayed forget, did not fit: the store's file system is full."""


class StoreSealError(ForgetdClientError):
    """The seal was refused: the store changed between the audit and its snapshot, cannot be copied, or its
    ledger would not take the audit.verified entry."""


# The one mapping table: status code -> exception class. Client-side subclasses (InvalidStrategy,
# InvalidRows) are deliberately absent: the server's INVALID_ARGUMENT maps to the general class; so are
# the errors without a code, which no call answers.
_BY_CODE: dict[grpc.StatusCode, type[ForgetdClientError]] = {
    cls.code: cls
    for cls in (
        Cancelled,
        Unknown,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    )
    if cls.code is not None
}


def exception_class_for_code(code: grpc.StatusCode) -> type[ForgetdClientError]:
    """The exception class that stands for `code` (Unknown for a code with no class of its own)."""
    return _BY_CODE.get(code, Unknown)


def from_grpc_error(exc: grpc.RpcError) -> ForgetdClientError:
    """The typed exception for a failed gRPC call; use as `raise from_grpc_error(exc) from exc`."""
    # A failed call's RpcError is also a grpc.Call with code() and details(); a bare RpcError (raised by
    # channel set-up code paths) has neither, and is reported as UNKNOWN with its text.
    code_of = getattr(exc, "code", None)
    details_of = getattr(exc, "details", None)
    code = code_of() if callable(code_of) else grpc.StatusCode.UNKNOWN
    message = details_of() if callable(details_of) else None
    return exception_class_for_code(code)(message or str(exc) or code.name)
