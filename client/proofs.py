"""The ledger's signed head and its RFC 9162 proofs, as GetLedgerHead and a receipt carry them.

Raw bytes as the wire has them. A module of its own because a Receipt (forgetd.client.types, which
re-exports these names) holds them and forgetd.client.receipts verifies them as forgetd.ledger values.
"""

from __future__ import annotations

import dataclasses

from forgetd.v1 import common_pb2, unlearning_service_pb2

__all__ = ["ConsistencyProof", "HeadProofs", "InclusionProof", "LedgerHead"]


@dataclasses.dataclass(frozen=True)
class LedgerHead:
    """A (signed) head of the deletion ledger."""

    size: int
    chain_hash: bytes
    merkle_root: bytes
    signature: bytes  # empty if unsigned
    public_key: bytes  # empty if unsigned
    # The same head as a signed C2SP checkpoint note (c2sp.org/tlog-checkpoint, UTF-8 text): the deployment's
    # signature, then any witness cosignatures. "" from a server (or in a receipt) from before checkpoints.
    checkpoint: str = ""

    @classmethod
    def from_proto(cls, msg: common_pb2.LedgerHead) -> LedgerHead:
        return cls(msg.size, msg.chain_hash, msg.merkle_root, msg.signature, msg.public_key, msg.checkpoint)


@dataclasses.dataclass(frozen=True)
class InclusionProof:
    """RFC 9162 inclusion proof of entry `seq` in a tree of `tree_size` entries."""

    seq: int
    tree_size: int
    hashes: tuple[bytes, ...]

    @classmethod
    def from_proto(cls, msg: common_pb2.InclusionProof) -> InclusionProof:
        return cls(msg.seq, msg.tree_size, tuple(msg.hashes))


@dataclasses.dataclass(frozen=True)
class ConsistencyProof:
    """RFC 9162 proof that a tree of `old_size` entries is a prefix of one of `new_size`."""

    old_size: int
    new_size: int
    hashes: tuple[bytes, ...]

    @classmethod
    def from_proto(cls, msg: common_pb2.ConsistencyProof) -> ConsistencyProof:
        return cls(msg.old_size, msg.new_size, tuple(msg.hashes))


@dataclasses.dataclass(frozen=True)
class HeadProofs:
    """GetLedgerHead's answer: the current head and the proofs asked for."""

    head: LedgerHead
    consistency: ConsistencyProof | None  # None when no consistency_from was asked for
    inclusions: tuple[InclusionProof, ...]  # in the order of the seqs asked for

    @classmethod
    def from_proto(cls, msg: unlearning_service_pb2.GetLedgerHeadResponse) -> HeadProofs:
        consistency = ConsistencyProof.from_proto(msg.consistency) if msg.HasField("consistency") else None
        return cls(LedgerHead.from_proto(msg.head), consistency, tuple(map(InclusionProof.from_proto, msg.inclusions)))
