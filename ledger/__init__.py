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
from .merkle import (
    EMPTY_ROOT,
    hash_leaf,
    root_from_inclusion_proof,
    verify_consistency_proof,
    verify_inclusion_proof,
)
from .model import Entry, Head
from .proofs import ConsistencyProof, InclusionProof, verify_consistency, verify_inclusion
from .signing import SignedHead, SigningKey, load_or_create_signing_key, sign_head, verify_signed_head
from .store import Ledger
from .subjects import subject_ref
from .verify import Problem, VerifyReport, verify_ledger

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
    "Problem",
    "ProofError",
    "ReadOnlyLedger",
    "RootMismatch",
    "SignedHead",
    "SigningError",
    "SigningKey",
    "VerifyReport",
    "hash_leaf",
    "load_or_create_signing_key",
    "root_from_inclusion_proof",
    "sign_head",
    "subject_ref",
    "verify_consistency",
    "verify_consistency_proof",
    "verify_inclusion",
    "verify_inclusion_proof",
    "verify_ledger",
    "verify_signed_head",
]
