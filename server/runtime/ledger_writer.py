"""The daemon's side of the ledger: one serialised connection, signed heads, proofs and paged reads.

The daemon is the ledger's only writer while it runs; the worker appends through `LedgerWriter.append`, and
admission threads through the group committer `LedgerWriter.grouped` makes (group_commit.py): Forgets that
arrive while a commit is in flight share the next one, each caller answered once its own entry is durable.
A head is taken under the appends' lock together with a snapshot of the Merkle tree, and its proofs are built
from that snapshot after the lock is released: a proof is made against exactly the head it carries, and a
caller asking for many proofs never holds up an acknowledgement. A receipt's head is the one each commit
leaves behind (taken at the commit, read without the lock), so an answer never waits for the next fsync.

Every head the daemon signs is signed twice by the head key: the forgetd head message (signing.py) and the
same head as a C2SP checkpoint (c2sp.org/tlog-checkpoint, ledger/checkpoint.py) under the origin genesis
committed, so Go's golang.org/x/mod/sumdb/note and any other signed-note verifier check it. The witnessing
thread (witnessing.py) records here the newest head the witness quorum cosigned (`publish`); a receipt is
made against that head when it holds the receipt's entries, so its checkpoint carries the cosignatures.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from forgetd.ledger import Entry, Head, Ledger, checkpoint_for_head, checkpoint_signer, default_origin, sign_checkpoint
from forgetd.ledger.group_commit import MAX_GROUP, Event
from forgetd.ledger.merkle import TreeSnapshot
from forgetd.ledger.signing import load_or_create_signing_key, sign_head

from forgetd.server.errors import InvalidRequest
from forgetd.server.runtime.group_commit import GroupCommitter  # LedgerClosing answered as NotServing

__all__ = ["READ_PAGE", "MAX_INCLUSION_PROOFS", "HeadWithSignature", "InclusionPath", "ConsistencyPath", "HeadWithProofs", "LedgerWriter"]

# Entries fetched per lock hold while streaming, so a slow ReadLedger client never stalls the writers.
READ_PAGE = 256
# Inclusion proofs one GetLedgerHead may ask for: each is ~log2(size) hashes, so a caller asking for every seq
# of a large ledger would otherwise build a reply of tens of MB.
MAX_INCLUSION_PROOFS = 1000

T = TypeVar("T")


@dataclass(frozen=True)
class HeadWithSignature:
    """The ledger's head as the daemon serves it: its three fields, signed, and the same head as a checkpoint."""

    size: int
    chain_hash: bytes
    merkle_root: bytes
    signature: bytes  # Ed25519 over forgetd.ledger.signing.head_message(head)
    public_key: bytes  # raw 32 bytes
    # The signed C2SP checkpoint note of this head (UTF-8): the head key's signature under the origin, then
    # the witnesses' cosignatures when this is the head the quorum cosigned.
    checkpoint: bytes = b""


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
    published: bool = False  # `head` is the head the witness quorum cosigned (receipt_proofs only)


@dataclass(frozen=True)
class _Signed:
    head: Head
    signature: bytes
    checkpoint: bytes


class LedgerWriter:
    """The open ledger of a running daemon and the key that signs its heads."""

    def __init__(self, ledger_path: Path, key_path: Path) -> None:
        self._ledger = Ledger(ledger_path)
        self._key = load_or_create_signing_key(key_path)
        self.public_key: bytes = self._key.public_key
        self._lock = threading.Lock()
        self._sign_lock = threading.Lock()  # guards the signed-head cache and the signer (receipts sign outside _lock)
        self._signed: _Signed | None = None  # the last head signed
        self._published: _Signed | None = None  # the newest head the witness quorum cosigned
        self.origin = ""  # the checkpoints' origin line and the verifier key under it (use_origin sets both)
        self.verifier_key = ""
        self.use_origin(default_origin(self.public_key))
        self._grown = threading.Condition()  # notified after every append (the witnessing thread waits on it)
        self._appended = self._ledger.head().size
        self._committers: list[GroupCommitter[Any]] = []  # drained by close, before the ledger closes
        # The head right after this writer's last commit and the tree up to it: what receipts are made against
        # (one assignment, read without the appends' lock). Heads are signed under their own lock for that.
        self._committed: tuple[Head, TreeSnapshot] | None = None

    def use_origin(self, origin: str) -> None:
        """Sign checkpoints under `origin` from now on: recovery sets the one genesis committed, before serving."""
        with self._lock, self._sign_lock:
            self._signer = checkpoint_signer(self._key, origin)
            self.origin = origin
            self.verifier_key = self._signer.verifier().vkey
            self._signed = None

    def append(self, event_type: str, payload: Mapping[str, Any], *, event_id: str) -> Entry:
        """Appends durably (the ledger fsyncs before returning); an event_id already there returns its entry."""
        return self.append_many([(event_type, payload, event_id)])[0]

    def append_many(self, events: Sequence[Event]) -> list[Entry]:
        """Appends `events` in one transaction (one fsync), chained in order; all or nothing."""
        with self._lock:
            entries = self._ledger.append_many([(t, dict(p), e) for t, p, e in events])
            self._committed = self._ledger.last_commit or (self._ledger.head(), self._ledger.snapshot())
        with self._grown:
            self._appended = max([self._appended, *(entry.seq for entry in entries)])
            self._grown.notify_all()
        return entries

    def grouped(self, on_durable: Callable[[Sequence[tuple[Entry, T]]], None], *,
                max_batch: int = MAX_GROUP) -> GroupCommitter[T]:
        """A group committer appending here: `on_durable` gets each commit's entries (and the callers' tags) in
        seq order before any of its callers is answered. `close` drains it first."""
        committer: GroupCommitter[T] = GroupCommitter(self.append_many, on_durable, max_batch=max_batch)
        self._committers.append(committer)
        return committer

    @property
    def committers(self) -> tuple[GroupCommitter[Any], ...]:
        """The group committers `grouped` made (their stats show how many entries shared each commit)."""
        return tuple(self._committers)

    def wait_appended(self, after: int, timeout: float | None, stop: Callable[[], bool] = lambda: False) -> int:
        """Blocks until an append takes the ledger beyond `after` entries, `stop()` is true when `wake` is called,
        or `timeout` seconds pass (None: no limit); the size known then."""
        with self._grown:
            self._grown.wait_for(lambda: self._appended > after or stop(), timeout)
            return self._appended

    def wake(self) -> None:
        """Wakes every wait_appended (the witnessing thread, at shutdown)."""
        with self._grown:
            self._grown.notify_all()

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
        """The signed current head with inclusion proofs of `inclusion_seqs` (at most MAX_INCLUSION_PROOFS) and,
        if asked, a consistency proof."""
        if len(inclusion_seqs) > MAX_INCLUSION_PROOFS:
            raise InvalidRequest(f"{len(inclusion_seqs)} inclusion proofs asked for; at most {MAX_INCLUSION_PROOFS} "
                                 "per call: ask in several calls (a consistency proof links their heads)")
        with self._lock:
            head = self._ledger.head()
            signed = self._sign(head)
            if self._published is not None and self._published.head == head:
                signed = self._published  # the same head, its checkpoint with the witnesses' cosignatures
            tree = self._ledger.snapshot()
        return self._proofs(signed, tree, consistency_from, inclusion_seqs, published=False)

    def receipt_proofs(self, seqs: Sequence[int]) -> HeadWithProofs:
        """Proofs of a receipt's entries against the newest head the witness quorum cosigned when it holds them
        all (`published`), else against the signed head of the last commit (the current head once another
        process has appended). Taken without the appends' lock when the last commit holds the entries: an
        answer never waits for the next commit's fsync."""
        published = self._published
        cosigned = published is not None and all(seq <= published.head.size for seq in seqs)
        known = self._committed
        needed = max([published.head.size if published is not None and cosigned else 0, *seqs])
        if known is None or known[1].size < needed:
            with self._lock:
                known = (self._ledger.head(), self._ledger.snapshot())
        head, tree = known
        signed = published if published is not None and cosigned else self._sign(head)
        return self._proofs(signed, tree, None, seqs, published=cosigned)

    def _proofs(self, signed: _Signed, tree: TreeSnapshot, consistency_from: int | None,
                inclusion_seqs: Sequence[int], *, published: bool) -> HeadWithProofs:
        """The proofs against `signed`'s head, built from `tree` without the lock: appends go on meanwhile."""
        head = signed.head
        for seq in inclusion_seqs:
            if not 1 <= seq <= head.size:
                raise InvalidRequest(f"inclusion seq {seq} is not in the ledger; give a seq from 1 to {head.size}")
        if consistency_from is not None and consistency_from > head.size:
            raise InvalidRequest(f"consistency_from_size {consistency_from} is beyond the head's size "
                                 f"{head.size}; give a size you saw earlier")
        inclusions = tuple(InclusionPath(seq, head.size, tuple(tree.inclusion_proof(seq - 1, head.size)))
                           for seq in inclusion_seqs)
        consistency = None
        if consistency_from is not None:
            hashes = tree.consistency_proof(consistency_from, head.size)
            consistency = ConsistencyPath(consistency_from, head.size, tuple(hashes))
        served = HeadWithSignature(head.size, head.chain_hash, head.merkle_root, signed.signature, self.public_key,
                                   signed.checkpoint)
        return HeadWithProofs(served, inclusions, consistency, published)

    def _sign(self, head: Head) -> _Signed:
        # Heads repeat between appends (every read answers with one); sign each only once.
        with self._sign_lock:
            if self._signed is None or self._signed.head != head:
                checkpoint = sign_checkpoint(checkpoint_for_head(head, self.origin), self._signer)
                self._signed = _Signed(head, sign_head(self._key, head).signature, checkpoint)
            return self._signed

    # -- what the witnessing thread asks --------------------------------------------------------------------

    def checkpoint_now(self) -> tuple[Head, bytes]:
        """The current head and its checkpoint, signed by the head key alone (what a witness is asked to cosign)."""
        with self._lock:
            signed = self._sign(self._ledger.head())
            return signed.head, signed.checkpoint

    def consistency(self, old_size: int, new_size: int) -> tuple[bytes, ...]:
        """The RFC 9162 consistency proof from the tree of `old_size` entries to the one of `new_size`."""
        with self._lock:
            return tuple(self._ledger.prove_consistency(old_size, new_size).hashes)

    def publish(self, head: Head, cosigned_checkpoint: bytes) -> None:
        """Record `head` (one checkpoint_now gave) as cosigned by the witness quorum; its checkpoint note carries
        the log's signature and the cosignatures. A head older than the one recorded is ignored."""
        with self._lock:
            if self._published is not None and self._published.head.size > head.size:
                return
            current = self._ledger.head() == head
            signature = self._sign(head).signature if current else sign_head(self._key, head).signature
            self._published = _Signed(head, signature, bytes(cosigned_checkpoint))

    @property
    def published_size(self) -> int:
        """Entries in the newest head the witness quorum cosigned; 0 before the first (or without witnesses)."""
        published = self._published
        return published.head.size if published is not None else 0

    def close(self) -> None:
        for committer in self._committers:
            committer.close()  # what was queued is committed (and answered) before the connection goes
        with self._lock:
            self._ledger.close()
