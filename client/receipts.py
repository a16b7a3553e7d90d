"""Receipts a requester can check: save/load as JSON, and proofs that the ledger still holds them.

A receipt (forgetd.client.types.Receipt) carries the seq and leaf hash of its `forget.requested` entry (and
of its `forget.applied` once applied), the signed head the daemon answered with, and inclusion proofs of
those entries against that head. Checking it later, against the store's ledger file or a running daemon:

1. the head's Ed25519 signature verifies, under the deployment's key when it is known, and so does its C2SP
   checkpoint (when the receipt has one: receipts from before checkpoints have none), which must state the
   same head under the deployment's origin;
2. each inclusion proof verifies against the receipt's own head (the receipt is internally sound);
3. the ledger now is at least as long as the receipt's head, and a consistency proof shows that head is a
   prefix of the current one (a truncated tail or a history rewritten end to end fails here);
4. each entry is still in the current ledger at its seq with the same leaf hash (an inclusion proof against
   the current head; against a store, the entry itself is read and compared as well).

Each problem names what it concerns, with expected and actual values; nothing here raises for a bad receipt.
The JSON form is exactly what `forgetd forget --json` prints, so that output is a receipt file (read and
written by forgetd.client.types, re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from forgetd.client.errors import ForgetdClientError, InvalidReceipt
from forgetd.client.types import (
    HeadProofs,
    InclusionProof,
    LedgerHead,
    ModelInfo,
    Receipt,
    load_receipt,
    receipt_from_json,
    receipt_to_json,
    save_receipt,
)
from forgetd.ledger import (
    BadSignature,
    ConsistencyProof,
    Ed25519Verifier,
    Head,
    InvalidHead,
    Ledger,
    LedgerError,
    Problem,
    ProofError,
    SignedHead,
    checkpoint_verifier,
    default_origin,
    open_checkpoint,
    read_checkpoint,
    verify_consistency,
    verify_inclusion,
    verify_signed_head,
)
from forgetd.ledger import InclusionProof as LedgerInclusionProof

__all__ = [
    "InvalidReceipt",
    "ReceiptReport",
    "ReceiptServer",
    "check_checkpoint",
    "check_head_signature",
    "genesis_key_and_origin",
    "load_receipt",
    "receipt_from_json",
    "receipt_to_json",
    "save_receipt",
    "verify_receipt_offline",
    "verify_receipt_with_client",
    "verify_receipt_with_store",
]


class ReceiptServer(Protocol):
    """What checking a receipt asks of a daemon: forgetd.client.Client is one (a protocol, so that the client
    can offer `verify_receipt` without the two modules importing each other)."""

    def model(self) -> ModelInfo: ...

    def head(self, *, consistency_from: int = 0, inclusion_seqs: Sequence[int] = ()) -> HeadProofs: ...


# -------------------------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class ReceiptReport:
    """What checking one receipt found. `ok` only when there are no problems."""

    request_id: str
    receipt_head_size: int
    current_head: Head | None
    problems: tuple[Problem, ...]
    checks: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            now = self.current_head.size if self.current_head else "?"
            return (f"ok: receipt {self.request_id} holds; its head (size {self.receipt_head_size}) is a prefix of "
                    f"the ledger now (size {now}) and its entries are still in it")
        return f"receipt {self.request_id} does not hold: {self.problems[0]}"

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "request_id": self.request_id, "receipt_head_size": self.receipt_head_size,
                "current_head": self.current_head.to_dict() if self.current_head else None,
                "problems": [p.to_dict() for p in self.problems], "checks": list(self.checks)}


def head_of(head: LedgerHead) -> Head:
    return Head(head.size, bytes(head.chain_hash), bytes(head.merkle_root))


def check_head_signature(head: Head, signature: bytes, public_key: bytes, trusted_key: bytes | None,
                         what: str) -> Problem | None:
    """None when `signature` by `public_key` verifies over `head` (and `public_key` is `trusted_key`, if given)."""
    if not signature:
        return Problem(head.size, f"{what} is not signed", "an Ed25519 signature", "none")
    try:
        verify_signed_head(SignedHead(head, bytes(signature), bytes(public_key)), trusted_key)
    except BadSignature as exc:
        return Problem(head.size, f"{what}: {exc}", trusted_key.hex() if trusted_key else None,
                       bytes(public_key).hex() if trusted_key else None)
    return None


def check_checkpoint(head: Head, checkpoint: str, public_key: bytes, origin: str | None, what: str) -> Problem | None:
    """None when `checkpoint` is a checkpoint of `head` signed by `public_key` under `origin` (when given; else
    under its own origin line, which the signature covers: the key name is the origin)."""
    try:
        origin = origin or read_checkpoint(checkpoint.encode()).origin
        signed = open_checkpoint(checkpoint.encode(), checkpoint_verifier(bytes(public_key), origin), origin=origin)
        stated = signed.checkpoint.to_head()
    except LedgerError as exc:
        return Problem(head.size, f"{what}'s checkpoint does not verify: {exc}")
    if stated != head:
        return Problem(head.size, f"{what}'s checkpoint states another head", head.to_hex(), stated.to_hex())
    return None


def _entries(receipt: Receipt) -> list[tuple[str, int, bytes, InclusionProof | None]]:
    out = [("forget.requested", receipt.requested_seq, receipt.requested_leaf_hash, receipt.requested_proof)]
    if receipt.applied_seq:
        out.append(("forget.applied", receipt.applied_seq, receipt.applied_leaf_hash, receipt.applied_proof))
    return out


def check_receipt_self(receipt: Receipt, trusted_key: bytes | None,
                       origin: str | None = None) -> tuple[Head | None, list[Problem]]:
    """Steps 1 and 2: the receipt's head is signed (by `trusted_key`), so is its checkpoint (under `origin`, when
    known), and its proofs hold against it."""
    problems: list[Problem] = []
    if receipt.head is None:
        return None, [Problem(None, "the receipt has no head", "a signed head", "none")]
    try:
        head = head_of(receipt.head)
    except InvalidHead as exc:
        return None, [Problem(None, f"the receipt's head is malformed: {exc}")]
    bad = check_head_signature(head, receipt.head.signature, receipt.head.public_key, trusted_key, "the receipt's head")
    if bad is not None:
        problems.append(bad)
    if receipt.head.checkpoint:
        key = trusted_key if trusted_key is not None else bytes(receipt.head.public_key)
        bad = check_checkpoint(head, receipt.head.checkpoint, key, origin, "the receipt's head")
        if bad is not None:
            problems.append(bad)
    for name, seq, leaf, proof in _entries(receipt):
        if proof is None:
            problems.append(Problem(seq, f"the receipt has no inclusion proof of its {name} entry"))
            continue
        try:
            verify_inclusion(leaf, seq, LedgerInclusionProof(proof.seq, proof.tree_size, leaf, proof.hashes), head)
        except ProofError as exc:
            problems.append(Problem(seq, f"the receipt's inclusion proof of its {name} entry fails against its own "
                                         f"head: {exc}"))
    return head, problems


def verify_receipt_with_store(receipt: Receipt, store_dir: str | Path) -> ReceiptReport:
    """Check `receipt` against the ledger file of the store at `store_dir` (no daemon needed)."""
    path = Path(store_dir) / "ledger.sqlite"
    checks = _self_checks(receipt)
    try:
        ledger = Ledger(path, readonly=True)
    except LedgerError as exc:
        return ReceiptReport(receipt.request_id, _size(receipt), None, (Problem(None, str(exc)),), tuple(checks))
    with ledger:
        try:
            trusted, origin = genesis_key_and_origin(ledger)
            old, problems = check_receipt_self(receipt, trusted, origin)
            current = ledger.head()
            if old is not None:
                problems += _check_growth(old, current, lambda: ledger.prove_consistency(old.size, current.size).hashes)
                checks.append("consistency with the ledger now")
                if current.size >= old.size:
                    for name, seq, leaf, _proof in _entries(receipt):
                        try:
                            stored = ledger.entry(seq).leaf_hash
                            proof = ledger.prove_inclusion(seq, current.size)
                            verify_inclusion(leaf, seq, LedgerInclusionProof(seq, current.size, leaf, proof.hashes),
                                             current)
                        except LedgerError as exc:
                            problems.append(Problem(seq, f"the {name} entry is not in the ledger now: {exc}"))
                            continue
                        if stored != leaf:
                            problems.append(Problem(seq, f"the ledger's {name} entry differs from the receipt's",
                                                    leaf, stored))
                    checks.append("inclusion in the ledger now")
        except LedgerError as exc:  # a damaged file: a finding, never a crash
            return ReceiptReport(receipt.request_id, _size(receipt), None,
                                 (Problem(getattr(exc, "seq", None), f"the ledger cannot be read: {exc}"),), tuple(checks))
    return ReceiptReport(receipt.request_id, _size(receipt), current, tuple(problems), tuple(checks))


def verify_receipt_offline(receipt: Receipt, verifier: Ed25519Verifier) -> ReceiptReport:
    """Steps 1 and 2 alone, with the deployment's checkpoint verifier key (GetModel's verifier_key): the head and
    its checkpoint are signed by that key under its origin and the inclusion proofs hold. Nothing says the ledger
    still holds them: that takes a store or a server."""
    head, problems = check_receipt_self(receipt, verifier.public_key, verifier.name)
    if head is not None and receipt.head is not None and not receipt.head.checkpoint:
        problems.append(Problem(head.size, "the receipt's head has no checkpoint to check the verifier key's origin "
                                           "with (a receipt from before checkpoints)"))
    return ReceiptReport(receipt.request_id, _size(receipt), None, tuple(problems), tuple(_self_checks(receipt)))


def verify_receipt_with_client(receipt: Receipt, client: ReceiptServer) -> ReceiptReport:
    """Check `receipt` against a running daemon: a signed head now, a consistency proof and inclusion proofs."""
    checks = _self_checks(receipt)
    try:
        model = client.model()
        trusted = bytes.fromhex(model.head_public_key)
    except (ForgetdClientError, ValueError) as exc:
        return ReceiptReport(receipt.request_id, _size(receipt), None,
                             (Problem(None, f"cannot ask the server for its head key: {exc}"),), tuple(checks))
    old, problems = check_receipt_self(receipt, trusted, model.checkpoint_origin or None)
    if old is None:
        return ReceiptReport(receipt.request_id, _size(receipt), None, tuple(problems), tuple(checks))
    seqs = [seq for _n, seq, _l, _p in _entries(receipt)]
    try:
        now = client.head(consistency_from=old.size, inclusion_seqs=seqs)
    except ForgetdClientError as exc:
        # The server refuses a consistency proof from a size beyond its head: the ledger shrank.
        problems.append(Problem(old.size, f"the server cannot prove its ledger grew from the receipt's head: {exc}"))
        return ReceiptReport(receipt.request_id, _size(receipt), None, tuple(problems), tuple(checks))
    current = head_of(now.head)
    bad = check_head_signature(current, now.head.signature, now.head.public_key, trusted, "the server's head now")
    if bad is None and now.head.checkpoint:
        bad = check_checkpoint(current, now.head.checkpoint, trusted, model.checkpoint_origin or None,
                               "the server's head now")
    if bad is not None:
        problems.append(bad)
    proof = now.consistency.hashes if now.consistency is not None else ()
    problems += _check_growth(old, current, lambda: proof)
    checks.append("consistency with the ledger now")
    for (name, seq, leaf, _p), inc in zip(_entries(receipt), now.inclusions):
        try:
            verify_inclusion(leaf, seq, LedgerInclusionProof(inc.seq, inc.tree_size, leaf, inc.hashes), current)
        except ProofError as exc:
            problems.append(Problem(seq, f"the {name} entry is not in the server's ledger now: {exc}"))
    checks.append("inclusion in the ledger now")
    return ReceiptReport(receipt.request_id, _size(receipt), current, tuple(problems), tuple(checks))


def _check_growth(old: Head, current: Head, proof: Callable[[], Sequence[bytes]]) -> list[Problem]:
    if current.size < old.size:
        return [Problem(current.size + 1, f"the ledger has {current.size} entries but the receipt's head has "
                        f"{old.size}: the tail from seq {current.size + 1} was truncated",
                        f"size >= {old.size}", f"size {current.size}")]
    try:
        hashes = proof()
        verify_consistency(old, current, ConsistencyProof(old.size, current.size, tuple(hashes)))
    except LedgerError as exc:
        return [Problem(old.size, f"the receipt's head is not a prefix of the ledger now (history rewritten): {exc}",
                        old.merkle_root, current.merkle_root if current.size == old.size else None)]
    return []


def genesis_key_and_origin(ledger: Ledger) -> tuple[bytes | None, str | None]:
    """The head key the ledger's own genesis recorded (the trust anchor of a store-only check) and the checkpoint
    origin it committed (default_origin of the key for a genesis from before the field); (None, None) without."""
    try:
        entry = ledger.entry(1)
        if entry.type != "genesis":
            return None, None
        key = bytes.fromhex(entry.payload["head_public_key"])
        origin = entry.payload.get("checkpoint_origin", default_origin(key))
        return key, origin if isinstance(origin, str) else None
    except (LedgerError, KeyError, TypeError, ValueError, AttributeError):
        return None, None


def _self_checks(receipt: Receipt) -> list[str]:
    checkpoint = ["checkpoint"] if receipt.head is not None and receipt.head.checkpoint else []
    return ["signature", *checkpoint, "inclusion in the receipt's head"]


def _size(receipt: Receipt) -> int:
    return receipt.head.size if receipt.head is not None else 0
