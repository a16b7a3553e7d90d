"""The JSON bodies more than one router answers with: the error body, the signed ledger head and inclusion
proofs (a receipt carries both; /ledger/head serves them), built from the runtime's ledger values. Byte
strings are lower-case hex, as in `forgetd forget --json` receipts.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from forgetd.ledger import Head

from forgetd.server.runtime.ledger_writer import HeadWithSignature, InclusionPath

__all__ = ["ErrorBody", "HeadBody", "ProofBody", "error_responses", "head_body", "proof_body"]

_MEANING = {
    400: "The request is malformed; the message says what to fix",
    401: "No bearer token, or the wrong one (send Authorization: Bearer <token>)",
    404: "An unknown sample id or request id",
    409: "The Idempotency-Key was already used for other samples or another method, or the method is one this "
         "model family cannot apply (certified needs --model linear)",
    413: "The body is over the server's limit (--max-message-mib)",
    503: "The daemon is loading, shutting down, or halted until a restart; retry later",
}


class ErrorBody(BaseModel):
    """Every error answer: one message that says what went wrong and how to fix it."""

    error: str


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` entries of these error statuses, each with the ErrorBody schema."""
    return {status: {"model": ErrorBody, "description": _MEANING[status]} for status in statuses}


class ProofBody(BaseModel):
    """An RFC 9162 inclusion proof of entry `seq` against the tree of `tree_size` entries."""

    seq: int = Field(description="The entry's seq (1-based); its leaf index is seq - 1")
    tree_size: int = Field(description="Size of the tree (a head's size) the proof is against")
    hashes: list[str] = Field(description="The audit path, bottom to top, 32-byte hashes in hex")


class HeadBody(BaseModel):
    """The ledger's signed head: what a receipt carries, what `forgetd verify --expect-head` checks."""

    size: int = Field(description="Entries in the ledger (the seq of the last one)")
    chain_hash: str = Field(description="Hash chain value after the last entry, 32 bytes")
    merkle_root: str = Field(description="RFC 9162 Merkle root over the leaf hashes, 32 bytes")
    signature: str = Field(description="Ed25519 signature by the deployment's head key over the head's bytes")
    public_key: str = Field(description="The raw 32-byte Ed25519 key that made the signature")
    hex: str = Field(description="The head's 144-hex form (8-byte size, chain hash, Merkle root), as "
                                 "`forgetd verify --expect-head` takes it")
    checkpoint: str = Field("", description="The same head as a signed C2SP checkpoint note (c2sp.org/tlog-checkpoint)")


def head_body(head: HeadWithSignature) -> HeadBody:
    return HeadBody(size=head.size, chain_hash=head.chain_hash.hex(), merkle_root=head.merkle_root.hex(),
                    signature=head.signature.hex(), public_key=head.public_key.hex(),
                    hex=Head(head.size, head.chain_hash, head.merkle_root).to_hex(),
                    checkpoint=head.checkpoint.decode())


def proof_body(proof: InclusionPath) -> ProofBody:
    return ProofBody(seq=proof.seq, tree_size=proof.tree_size, hashes=[h.hex() for h in proof.hashes])
