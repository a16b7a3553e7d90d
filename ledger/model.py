"""The ledger's value types: an Entry (one stored event) and a Head (what a client keeps to check later)."""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from typing import Any

from .errors import InvalidHead
from .merkle import EMPTY_ROOT, HASH_SIZE, ZERO_CHAIN

HEAD_BYTES = 8 + 2 * HASH_SIZE


@dataclass(frozen=True)
class Head:
    """The state of a ledger after `size` entries: the chain hash of entry `size` and the RFC 9162 root.

    Encodings: `to_bytes()` is size as 8 bytes big-endian || chain hash (32) || Merkle root (32), 72 bytes;
    `to_hex()` is those bytes in lowercase hex (144 characters), the form `--expect-head` takes;
    `to_dict()` is {"size": int, "chain_hash": hex, "merkle_root": hex}. The empty ledger's head is
    (0, 32 zero bytes, SHA-256 of the empty string).
    """

    size: int
    chain_hash: bytes
    merkle_root: bytes

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 0 <= self.size < 2**63:
            raise InvalidHead(f"head size must be an integer in 0..2^63-1, got {self.size!r}")
        for name in ("chain_hash", "merkle_root"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != HASH_SIZE:
                got = f"{len(value)} bytes" if isinstance(value, (bytes, bytearray)) else type(value).__name__
                raise InvalidHead(f"head {name} must be {HASH_SIZE} bytes, got {got}")
        if self.size == 0 and (self.chain_hash != ZERO_CHAIN or self.merkle_root != EMPTY_ROOT):
            raise InvalidHead("a head of size 0 must have the zero chain hash and the empty tree's root")

    @classmethod
    def empty(cls) -> Head:
        return cls(0, ZERO_CHAIN, EMPTY_ROOT)

    def to_bytes(self) -> bytes:
        return self.size.to_bytes(8, "big") + self.chain_hash + self.merkle_root

    @classmethod
    def from_bytes(cls, data: bytes) -> Head:
        if len(data) != HEAD_BYTES:
            raise InvalidHead(f"an encoded head is {HEAD_BYTES} bytes, got {len(data)}")
        return cls(int.from_bytes(data[:8], "big"), bytes(data[8:40]), bytes(data[40:72]))

    def to_hex(self) -> str:
        return self.to_bytes().hex()

    @classmethod
    def from_hex(cls, text: str) -> Head:
        text = text.strip()
        if len(text) != 2 * HEAD_BYTES:
            raise InvalidHead(
                f"a head is {2 * HEAD_BYTES} hex characters (size 8 bytes, chain 32, root 32), got {len(text)}"
            )
        try:
            data = binascii.unhexlify(text)
        except (binascii.Error, ValueError):
            raise InvalidHead("a head must be hexadecimal") from None
        return cls.from_bytes(data)

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "chain_hash": self.chain_hash.hex(), "merkle_root": self.merkle_root.hex()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Head:
        try:
            return cls(int(data["size"]), bytes.fromhex(data["chain_hash"]), bytes.fromhex(data["merkle_root"]))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidHead):
                raise
            raise InvalidHead(f"a head needs size, chain_hash and merkle_root (hex): {exc}") from None

    def __str__(self) -> str:
        return f"Head(size={self.size}, chain={self.chain_hash.hex()[:16]}..., root={self.merkle_root.hex()[:16]}...)"


@dataclass(frozen=True)
class Entry:
    """One stored event. `envelope` is the canonical bytes the hashes commit to; the other fields are read
    from it (payload is a fresh dict on every read)."""

    seq: int
    event_id: str
    type: str
    v: int
    recorded_at: str
    payload: dict[str, Any]
    envelope: bytes
    leaf_hash: bytes
    chain_hash: bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "event_id": self.event_id,
            "type": self.type,
            "v": self.v,
            "recorded_at": self.recorded_at,
            "payload": self.payload,
            "leaf_hash": self.leaf_hash.hex(),
            "chain_hash": self.chain_hash.hex(),
        }
