"""The daemon's side of the ledger: one serialised connection, signed heads, proofs and paged reads.

The daemon is the ledger's only writer while it runs; admission threads and the worker append through
`Journal.append`, and a head plus its proofs are always taken under the same lock, so a receipt's proof
is made against exactly the head it carries.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgetd.ledger import Ledger

from forgetd.server.errors import InvalidRequest

# Entries fetched per lock hold while streaming, so a slow ReadLedger client never stalls the writers.
READ_PAGE = 256


@dataclass(frozen=True)
class SignedHead:
    size: int
    chain_hash: bytes
    merkle_root: bytes
    signature: bytes  # Ed25519 over forgetd.ledger.signing.head_message(head)
    public_key: bytes  # raw 32 bytes


@dataclass(frozen=True)
class Inclusion:
    seq: int
    tree_size: int
    hashes: tuple[bytes, ...]


@dataclass(frozen=True)
class Consistency:
    old_size: int
    new_size: int
    hashes: tuple[bytes, ...]


@dataclass(frozen=True)
class HeadProofs:
    head: SignedHead
    inclusions: tuple[Inclusion, ...]
    consistency: Consistency | None


class Journal:
    def __init__(self, ledger_path: Path, key_path: Path) -> None:
        from forgetd.ledger import signing

        self._signing = signing
        self._ledger = Ledger(ledger_path)
        self._key = signing.load_or_create_signing_key(key_path)
        self.public_key: bytes = self._key.public_key
        self._lock = threading.Lock()
        self._signed: tuple[Any, bytes] | None = None  # (head, signature) of the last head signed

    def append(self, event_type: str, payload: Mapping[str, Any], *, event_id: str) -> Any:
        """Appends durably (the ledger fsyncs before returning); an event_id already there returns its entry."""
        with self._lock:
            return self._ledger.append(event_type, dict(payload), event_id=event_id)

    def entries(self) -> Iterator[Any]:
        """Every entry, in seq order (for folding at start, before any other thread uses the journal)."""
        return self._read(1, None)

    def read(self, start: int, limit: int | None) -> Iterator[Any]:
        """Entries from `start` up to the head as it is now (at most `limit` of them), fetched a page at a time."""
        return self._read(start, limit)

    def _read(self, start: int, limit: int | None) -> Iterator[Any]:
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

    def head_with_proofs(self, consistency_from: int | None, inclusion_seqs: Sequence[int]) -> HeadProofs:
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
                consistency = Consistency(consistency_from, head.size, tuple(proof.hashes))
            signature = self._sign(head)
        return HeadProofs(
            SignedHead(head.size, head.chain_hash, head.merkle_root, signature, self.public_key),
            inclusions,
            consistency,
        )

    def _inclusion(self, seq: int, size: int) -> Inclusion:
        proof = self._ledger.prove_inclusion(seq, size)
        return Inclusion(seq, size, tuple(proof.hashes))

    def _sign(self, head: Any) -> bytes:
        # Heads repeat between appends (every read answers with one); sign each only once.
        if self._signed is None or self._signed[0] != head:
            self._signed = (head, self._signing.sign_head(self._key, head).signature)
        return self._signed[1]

    def close(self) -> None:
        with self._lock:
            close = getattr(self._ledger, "close", None)
            if close is not None:
                close()
