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


# --- C2SP signed notes, checkpoints, proofs and witnesses (note.py, checkpoint.py, tlogproof.py, witness.py) ---


class NoteError(LedgerError, ValueError):
    """A c2sp.org/signed-note cannot be made or opened; the message names the rule it breaks."""


class MalformedNote(NoteError):
    """The bytes are not a signed note: not UTF-8, a control character, no blank line before the signatures..."""


class InvalidKeyName(NoteError):
    """A key name is empty or holds a Unicode space, a plus (U+002B) or a control character."""


class InvalidVerifierKey(NoteError):
    """A verifier key string is not `<name>+<hex key id>+<base64(type || public key)>`, or its key id is wrong."""


class UnverifiedNote(NoteError):
    """No signature on the note is from a known key (signatures from unknown keys are ignored, as the spec says)."""

    def __init__(self, message: str, unknown: tuple[str, ...] = ()) -> None:
        self.unknown = unknown
        super().__init__(message)


class NoteSignatureInvalid(NoteError, BadSignature):
    """A signature whose key name and key id match a known key does not verify: the note was altered."""

    def __init__(self, name: str, key_id: bytes) -> None:
        self.name = name
        self.key_id = key_id
        super().__init__(f"the signature by {name}+{key_id.hex()} does not verify: the note was altered after signing")


class MalformedCheckpoint(NoteError):
    """The note text is not a c2sp.org/tlog-checkpoint (origin, decimal size, base64 root hash, extension lines)."""


class InvalidOrigin(LedgerError, ValueError):
    """An origin string chosen for a forgetd log is not usable: the message says how to pick one."""


class OriginMismatch(NoteError):
    """The checkpoint is from another log: its origin line is not the one expected."""

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"checkpoint origin mismatch: expected {expected!r}, got {actual!r}")


class MalformedTlogProof(ProofError):
    """The text is not a c2sp.org/tlog-proof@v1: header, optional extra, index, hashes, blank line, checkpoint."""


class WitnessError(LedgerError):
    """Base of what the witness (a c2sp.org/tlog-witness) and its client raise on purpose."""


class MalformedWitnessRequest(WitnessError, ValueError):
    """An add-checkpoint body is malformed, or its old size exceeds the checkpoint's size (HTTP 400)."""


class UnknownLog(WitnessError, LookupError):
    """The witness is not configured for the checkpoint's origin (HTTP 404)."""


class WitnessConflict(WitnessError):
    """The old size sent is not the size the witness last cosigned for the log (HTTP 409); retry from witness_size."""

    def __init__(self, origin: str, old_size: int, witness_size: int) -> None:
        self.origin = origin
        self.old_size = old_size
        self.witness_size = witness_size
        super().__init__(f"{origin}: old size {old_size} is not the witness's size {witness_size}; "
                         f"send a consistency proof from {witness_size}")


class InconsistentCheckpoint(WitnessError):
    """The checkpoint is not consistent with what the witness cosigned before (HTTP 422)."""


class CosignatureRefused(WitnessError):
    """The witness answered add-checkpoint with an error status (other than 409)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"the witness refused to cosign (HTTP {status}): {message}")


class WitnessUnavailable(WitnessError):
    """The witness could not be reached, or its answer was not a valid add-checkpoint response."""


class WitnessStateError(WitnessError):
    """The witness's state file is not a forgetd witness state (or is from a newer version)."""


class LedgerClosing(LedgerError):
    """An append reached a group committer (group_commit.GroupCommitter) after its close: nothing was written."""
