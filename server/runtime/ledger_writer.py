"""The daemon's side of the ledger: one serialised connection, signed heads, proofs and paged reads.

The daemon is the ledger's only writer while it runs; admission threads and the worker append through
`LedgerWriter.append`, and a head plus its proofs are always taken under the same lock, so a receipt's
proof is made against exactly the head it carries.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgetd.ledger import Entry, Head, Ledger
from forgetd.ledger.signing import load_or_create_signing_key, sign_head

from forgetd.server.errors import InvalidRequest

__all__ = ["READ_PAGE", "HeadWithSignature", "InclusionPath", "ConsistencyPath", "HeadWithProofs", "LedgerWriter"]

# Entries fetched per lock hold while streaming, so a slow ReadLedger client never stalls the writers.
READ_PAGE = 256


@dataclass(frozen=True)
class HeadWithSignature:
    """The ledger's head as the daemon serves it: its three fields, signed."""

    size: int
    chain_hash: bytes
    merkle_root: bytes
    signature: bytes  # Ed25519 over forgetd.ledger.signing.head_message(head)
    public_key: bytes  # raw 32 bytes


@dataclass(frozen=True)
class InclusionPath:
    """The RFC 9162 inclusion proof of entry `seq` in the tree of `tree_size` entries: its sibling hashes."""

    seq: int
    tree_size: int
    hashes: tuple[bytes, ...]


@dataclass(frozen=True)
class ConsistencyPath:
    """The RFC 9162 consistency proof from the tree of `old_size` entries to the one of `new_size`."""

    old_size: int
    new_size: int
    hashes: tuple[bytes, ...]


@dataclass(frozen=True)
class HeadWithProofs:
    """A signed head and the proofs asked for, all made against that head."""

    head: HeadWithSignature
    inclusions: tuple[InclusionPath, ...]
    consistency: ConsistencyPath | None


class LedgerWriter:
    """The open ledger of a running daemon and the key that signs its heads."""

    def __init__(self, ledger_path: Path, key_path: Path) -> None:
        self._ledger = Ledger(ledger_path)
        self._key = load_or_create_signing_key(key_path)
        self.public_key: bytes = self._key.public_key
        self._lock = threading.Lock()
        self._signed: tuple[Head, bytes] | None = None  # (head, signature) of the last head signed

    def append(self, event_type: str, payload: Mapping[str, Any], *, event_id: str) -> Entry:
        """Appends durably (the ledger fsyncs before returning); an event_id already there returns its entry."""
        with self._lock:
            return self._ledger.append(event_type, dict(payload), event_id=event_id)

    def entries(self) -> Iterator[Entry]:
        """Every entry, in seq order (for folding at start, before any other thread uses the writer)."""
        return self._read(1, None)

    def read(self, start: int, limit: int | None) -> Iterator[Entry]:
        """Entries from `start` up to the head as it is now (at most `limit` of them), fetched a page at a time."""
        return self._read(start, limit)

    def _read(self, start: int, limit: int | None) -> Iterator[Entry]:
        with self._lock:
            last = self._ledger.head().size
        if limit is not None:
            last = min(last, start + limit - 1)
        seq = start
        while seq <= last:
            stop = min(last, seq + READ_PAGE - 1)
            with self._lock:
                page = list(self._ledger.entries(seq, stop + 1))  # stop is exclusive there
            yield from page
            seq = stop + 1

    def size(self) -> int:
        with self._lock:
            return int(self._ledger.head().size)

    def head_with_proofs(self, consistency_from: int | None, inclusion_seqs: Sequence[int]) -> HeadWithProofs:
        """The signed current head with inclusion proofs of `inclusion_seqs` and, if asked, a consistency proof."""
        with self._lock:
            head = self._ledger.head()
            for seq in inclusion_seqs:
                if not 1 <= seq <= head.size:
                    raise InvalidRequest(f"inclusion seq {seq} is not in the ledger; give a seq from 1 to {head.size}")
            if consistency_from is not None and consistency_from > head.size:
                raise InvalidRequest(f"consistency_from_size {consistency_from} is beyond the head's size "
                                     f"{head.size}; give a size you saw earlier")
            inclusions = tuple(self._inclusion(seq, head.size) for seq in inclusion_seqs)
            consistency = None
            if consistency_from is not None:
                proof = self._ledger.prove_consistency(consistency_from, head.size)
                consistency = ConsistencyPath(consistency_from, head.size, tuple(proof.hashes))
            signature = self._sign(head)
        return HeadWithProofs(
            HeadWithSignature(head.size, head.chain_hash, head.merkle_root, signature, self.public_key),
            inclusions,
            consistency,
        )

    def _inclusion(self, seq: int, size: int) -> InclusionPath:
        proof = self._ledger.prove_inclusion(seq, size)
        return InclusionPath(seq, size, tuple(proof.hashes))

    def _sign(self, head: Head) -> bytes:
        # Heads repeat between appends (every read answers with one); sign each only once.
        if self._signed is None or self._signed[0] != head:
            self._signed = (head, sign_head(self._key, head).signature)
        return self._signed[1]

    def close(self) -> None:
        with self._lock:
            self._ledger.close()
