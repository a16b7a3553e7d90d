"""The server package's one exception tree: data, store, engine and daemon errors all derive from ForgetdError.

The gRPC boundary (the daemon's mapping table) turns these into status codes; the CLI turns them into
`Error: ...` lines. Messages say what to fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


# How a message echoes what a caller sent: ids may be 1,024 characters (four UTF-8 bytes each, tripled again by
# gRPC's percent-encoding of the status message), and a message past gRPC's 8 KiB metadata limit reaches the
# client as RESOURCE_EXHAUSTED "Stream removed" instead of its own status.
ECHO_CHARS = 40
ECHO_IDS = 3


def shown_id(value: str, width: int = ECHO_CHARS) -> str:
    """`value` quoted for an error message, cut to `width` characters."""
    return repr(value) if len(value) <= width else repr(value[:width]) + f"... ({len(value)} characters)"


def shown_ids(ids: Sequence[str]) -> str:
    """The first few of `ids` for an error message, each cut, and how many more there are."""
    shown = ", ".join(shown_id(i) for i in ids[:ECHO_IDS])
    return shown + (f" and {len(ids) - ECHO_IDS} more" if len(ids) > ECHO_IDS else "")


class ForgetdError(Exception):
    """Base of every error the server package raises on purpose."""


class DataError(ForgetdError):
    """A data file is malformed: the message names the file, row and column."""


class InvalidConfig(ForgetdError):
    """A configuration value is out of range or inconsistent: the message says which and how to fix it."""


class StoreError(ForgetdError):
    """A model store is missing, incomplete or corrupt."""


class NoSpace(StoreError):
    """The store's file system is full: a file could not be written or its space reserved. Nothing was published."""


class StoreHeld(StoreError):
    """Another process holds the store's writer lock (a daemon serving it): one writer per store."""


class ExecutorError(ForgetdError):
    """A shard task's worker died or could not be reached, past its retries: nothing was published, the forget
    stays pending and retrying it is safe (server/executors)."""


class EngineError(ForgetdError):
    """A forget or plan request the engine cannot carry out."""


class EmptyRequest(EngineError):
    """A forget or plan request named no sample ids."""


class InvalidStrategy(EngineError):
    """The strategy name is not one of auto, retrain, sisa, dpus, hs, ohs."""


class UnsupportedStrategy(EngineError):
    """A known strategy this store's model family cannot apply (CERTIFIED on an MLP, DPUS on the linear family)."""


class _IdsError(EngineError):
    def __init__(self, message: str, ids: Iterable[str], hint: str = "") -> None:
        self.ids = tuple(ids)
        shown = shown_ids(self.ids)
        super().__init__(f"{message}: {shown}{hint}")


class UnknownSample(_IdsError):
    """One or more sample ids are not in the training data; `example`, when given, is one id that is."""

    def __init__(self, ids: Iterable[str], example: str | None = None) -> None:
        # An example answers the question a caller with a wrong id has: what does an id of this store look like.
        super().__init__("unknown sample id(s), not in the training data", ids,
                         f" (ids look like {shown_id(example)})" if example is not None else "")


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
