"""forgetd.ledger: the append-only, hash-chained, tamper-evident deletion ledger.

    from forgetd.ledger import Ledger, verify_ledger, subject_ref

See store.Ledger for appends and reads, proofs for checking receipts with hashes alone, verify for the
full recomputation an auditor runs, and signing for Ed25519-signed heads.
"""

from __future__ import annotations

from .errors import (
    BadSignature,
    ChainBroken,
    EntryNotFound,
    IdempotencyConflict,
    InvalidEntry,
    InvalidEventId,
    InvalidEventType,
    InvalidHead,
    InvalidPayload,
    LedgerError,
    LedgerNotFound,
    NotALedger,
    ProofError,
    ReadOnlyLedger,
    RootMismatch,
    SigningError,
)
from .merkle import EMPTY_ROOT, hash_leaf
from .model import Entry, Head
from .proofs import ConsistencyProof, InclusionProof, verify_consistency, verify_inclusion
from .store import Ledger
from .subjects import subject_ref

__all__ = [
    "BadSignature",
    "ChainBroken",
    "ConsistencyProof",
    "EMPTY_ROOT",
    "Entry",
    "EntryNotFound",
    "Head",
    "IdempotencyConflict",
    "InclusionProof",
    "InvalidEntry",
    "InvalidEventId",
    "InvalidEventType",
    "InvalidHead",
    "InvalidPayload",
    "Ledger",
    "LedgerError",
    "LedgerNotFound",
    "NotALedger",
    "ProofError",
    "ReadOnlyLedger",
    "RootMismatch",
    "SigningError",
    "hash_leaf",
    "subject_ref",
    "verify_consistency",
    "verify_inclusion",
]
