"""Proofs against heads: what a client keeps, what it checks, with nothing but hashes.

An InclusionProof shows that the entry at `seq` (leaf hash `leaf_hash`) is in the ledger whose head has
`size` entries; a ConsistencyProof shows that the ledger at `old_size` is a prefix of the ledger at
`new_size`. A client that kept an old head therefore detects a truncated tail (the new head is shorter, or
no consistency proof verifies) and a history rewritten from the start (the old root is not a prefix).

Merkle proofs cover roots only; a head's chain hash is checked by `verify_ledger`, which has the entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ProofError
from .merkle import verify_consistency_proof, verify_inclusion_proof
from .model import Head


def _hexes(hashes: Sequence[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


def _unhex(items: Any, what: str) -> tuple[bytes, ...]:
    try:
        return tuple(bytes.fromhex(h) for h in items)
    except (TypeError, ValueError):
        raise ProofError(f"{what} must be a list of hex strings") from None


@dataclass(frozen=True)
class InclusionProof:
    """The audit path (RFC 9162 2.1.3) for entry `seq` (1-based) in the ledger of `size` entries."""

    seq: int
    size: int
    leaf_hash: bytes
    hashes: tuple[bytes, ...]

    @property
    def index(self) -> int:
        """The 0-based leaf index RFC 9162 uses."""
        return self.seq - 1

    def verify(self, head: Head) -> None:
        """Raise ProofError (RootMismatch for a wrong root) unless this proof holds for `head`."""
        verify_inclusion(self.leaf_hash, self.seq, self, head)

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "size": self.size, "leaf_hash": self.leaf_hash.hex(), "hashes": _hexes(self.hashes)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InclusionProof:
        try:
            return cls(int(data["seq"]), int(data["size"]), bytes.fromhex(data["leaf_hash"]),
                       _unhex(data["hashes"], "hashes"))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ProofError):
                raise
            raise ProofError(f"an inclusion proof needs seq, size, leaf_hash and hashes: {exc}") from None


@dataclass(frozen=True)
class ConsistencyProof:
    """The proof (RFC 9162 2.1.4) that the ledger at `old_size` is a prefix of the ledger at `new_size`."""

    old_size: int
    new_size: int
    hashes: tuple[bytes, ...]

    def verify(self, old_head: Head, new_head: Head) -> None:
        """Raise ProofError (RootMismatch for a wrong root) unless `old_head` is a prefix of `new_head`."""
        verify_consistency(old_head, new_head, self)

    def to_dict(self) -> dict[str, Any]:
        return {"old_size": self.old_size, "new_size": self.new_size, "hashes": _hexes(self.hashes)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConsistencyProof:
        try:
            return cls(int(data["old_size"]), int(data["new_size"]), _unhex(data["hashes"], "hashes"))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ProofError):
                raise
            raise ProofError(f"a consistency proof needs old_size, new_size and hashes: {exc}") from None


def verify_inclusion(
    leaf_hash: bytes, seq: int, proof: InclusionProof | Sequence[bytes], head: Head
) -> None:
    """Raise unless the entry `seq` with `leaf_hash` is in the ledger that `head` describes.

    `proof` is an InclusionProof or its bare list of hashes. Preconditions come first (seq within
    1..head.size, the proof made for this seq and this size), then the root is recomputed and compared.
    """
    if isinstance(proof, InclusionProof):
        if proof.seq != seq:
            raise ProofError(f"the proof is for seq {proof.seq}, not seq {seq}")
        if proof.size != head.size:
            raise ProofError(f"the proof is for size {proof.size}, but the head has size {head.size}")
        if proof.leaf_hash != leaf_hash:
            raise ProofError(
                f"the proof is for leaf {proof.leaf_hash.hex()}, not leaf {bytes(leaf_hash).hex()}"
            )
        hashes: Sequence[bytes] = proof.hashes
    else:
        hashes = proof
    if not 1 <= seq <= head.size:
        raise ProofError(f"seq {seq} out of range for a head of size {head.size} (seqs start at 1)")
    verify_inclusion_proof(seq - 1, head.size, leaf_hash, hashes, head.merkle_root)


def verify_consistency(
    old_head: Head, new_head: Head, proof: ConsistencyProof | Sequence[bytes]
) -> None:
    """Raise unless `old_head` describes a prefix of the ledger that `new_head` describes.

    With equal sizes the heads must be identical (chain hash included); otherwise only the Merkle roots can
    be checked from hashes alone.
    """
    if isinstance(proof, ConsistencyProof):
        if (proof.old_size, proof.new_size) != (old_head.size, new_head.size):
            raise ProofError(
                f"the proof is for sizes {proof.old_size} -> {proof.new_size}, "
                f"but the heads have sizes {old_head.size} -> {new_head.size}"
            )
        hashes: Sequence[bytes] = proof.hashes
    else:
        hashes = proof
    verify_consistency_proof(old_head.size, new_head.size, old_head.merkle_root, new_head.merkle_root, hashes)
    if old_head.size == new_head.size and old_head.chain_hash != new_head.chain_hash:
        raise ProofError(
            f"heads of equal size {old_head.size} differ in chain hash: "
            f"{old_head.chain_hash.hex()} vs {new_head.chain_hash.hex()}"
        )
