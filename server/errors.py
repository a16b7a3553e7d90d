"""The server package's one exception tree: data, store, engine and daemon errors all derive from ForgetdError.

The gRPC boundary (the daemon's mapping table) turns these into status codes; the CLI turns them into
`Error: ...` lines. Messages say what to fix.
"""

from __future__ import annotations

from collections.abc import Iterable


class ForgetdError(Exception):
    """Base of every error the server package raises on purpose."""


class DataError(ForgetdError):
    """A data file is malformed: the message names the file, row and column."""


class InvalidConfig(ForgetdError):
    """A configuration value is out of range or inconsistent: the message says which and how to fix it."""


class StoreError(ForgetdError):
    """A model store is missing, incomplete or corrupt."""


class EngineError(ForgetdError):
    """A forget or plan request the engine cannot carry out."""


class EmptyRequest(EngineError):
    """A forget or plan request named no sample ids."""


class InvalidStrategy(EngineError):
    """The strategy name is not one of auto, retrain, sisa, dpus, hs, ohs."""


class _IdsError(EngineError):
    def __init__(self, message: str, ids: Iterable[str]) -> None:
        self.ids = tuple(ids)
        shown = ", ".join(repr(i) for i in self.ids[:5]) + (" ..." if len(self.ids) > 5 else "")
        super().__init__(f"{message}: {shown}")


class UnknownSample(_IdsError):
    """One or more sample ids are not in the training data."""

    def __init__(self, ids: Iterable[str]) -> None:
        super().__init__("unknown sample id(s), not in the training data", ids)


class AlreadyForgotten(_IdsError):
    """One or more sample ids were forgotten by an earlier request."""

    def __init__(self, ids: Iterable[str]) -> None:
        super().__init__("sample id(s) already forgotten", ids)


# Daemon errors: raised at the gRPC boundary and turned into status codes by server/api/v1.py's table.


class InvalidRequest(ForgetdError):
    """A request field is malformed (shape, size, value or limit): the message names the field and the fix."""


class RequestNotFound(ForgetdError):
    """No Forget with this request_id is in the ledger."""


class RequestIdConflict(ForgetdError):
    """A request_id already names a Forget of other samples or with another strategy."""


class NotServing(ForgetdError):
    """The daemon is loading its model, shutting down, or halted until a restart; the caller may retry."""


# Ledger events (server/runtime/events.py). ValueError too, since they replaced bare ValueErrors: a caller that
# catches ValueError (the replay's list of failures) still catches them.


class MalformedEvent(ForgetdError, ValueError):
    """A ledger entry read back does not follow the event schema: the message names the seq and the field."""


class InvalidEvent(ForgetdError, ValueError):
    """An event about to be written would break the schema (a bug in its caller, never a client's doing)."""
