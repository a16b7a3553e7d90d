"""The ledger's one exception tree: everything it raises on purpose derives from LedgerError.

Each class is named for its condition; messages say what was found and, where it helps, what to do.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every error the ledger package raises on purpose."""


class LedgerNotFound(LedgerError, FileNotFoundError):
    """No ledger file exists at the given path (and the caller did not ask to create one)."""


class NotALedger(LedgerError):
    """The file is not a forgetd ledger, or was written by a newer schema version."""


class ReadOnlyLedger(LedgerError):
    """An append was attempted on a ledger opened with readonly=True."""


class InvalidEntry(LedgerError, ValueError):
    """An append was refused before anything was written: the message says which argument and why."""


class InvalidEventType(InvalidEntry):
    """The event type is not a non-empty string."""


class InvalidEventId(InvalidEntry):
    """The event id is not a non-empty string."""


class InvalidPayload(InvalidEntry):
    """The payload cannot be canonicalised: a float, NaN, an out-of-range integer, a non-string key..."""


class IdempotencyConflict(LedgerError):
    """An event id already in the ledger was appended again with a different type or payload."""

    def __init__(self, event_id: str, seq: int, detail: str) -> None:
        self.event_id = event_id
        self.seq = seq
        super().__init__(f"event id {event_id!r} is already recorded at seq {seq} with {detail}")


class EntryNotFound(LedgerError, LookupError):
    """No entry has the requested seq (or event id)."""


class ChainBroken(LedgerError):
    """The stored ledger is inconsistent (a gap, a shrunken file, a malformed row); run `forgetd ledger verify`."""

    def __init__(self, message: str, seq: int | None = None) -> None:
        self.seq = seq
        super().__init__(message)


class InvalidHead(LedgerError, ValueError):
    """A head (or its hex/JSON encoding) is malformed: wrong length, bad hex, negative size."""


class ProofError(LedgerError, ValueError):
    """A proof cannot be made or does not verify: a precondition (index, sizes, length) failed."""


class RootMismatch(ProofError):
    """A proof recomputed a root different from the one it was checked against."""

    def __init__(self, expected: bytes, computed: bytes, what: str = "root") -> None:
        self.expected = expected
        self.computed = computed
        super().__init__(f"{what} mismatch: expected {expected.hex()}, computed {computed.hex()}")


class SigningError(LedgerError):
    """A signing key file is unreadable, malformed or has unsafe permissions."""


class BadSignature(LedgerError):
    """A signed head's signature does not verify under the given public key."""
