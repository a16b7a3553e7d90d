"""Receipts as c2sp.org/tlog-proof files: one entry of a receipt, provable offline with standard tools.

    proof = receipt_tlog_proof(receipt)                  # the forget.applied entry (forget.requested if pending)
    Path("r.tlog-proof").write_bytes(proof.to_bytes())
    report = verify_tlog_proof_offline(data, parse_verifier_key(vkey))   # no server, no ledger

A tlog-proof holds the entry's 0-based leaf index (its seq minus one), the receipt's inclusion proof and the
receipt head's signed checkpoint, witness cosignatures included. forgetd puts the entry's leaf hash
(SHA-256(0x00 || envelope), 32 bytes) in the proof's `extra` line so the file says which entry it proves;
nothing trusts it blindly: the inclusion proof is checked against the signed root for exactly that leaf,
and any other leaf fails. With a store or a server the entry itself is compared too, and the checkpoint's
tree must be a prefix of the ledger now.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from forgetd.client.errors import ForgetdClientError, InvalidReceipt
from forgetd.client.receipts import genesis_key_and_origin
from forgetd.client.types import HeadProofs, LedgerEntry, ModelInfo, Receipt
from forgetd.ledger import (
    Head,
    Ledger,
    LedgerError,
    NoteVerifier,
    Problem,
    TlogProof,
    checkpoint_verifier,
    parse_tlog_proof,
    parse_verifier_key,
    seq_to_index,
    verify_consistency,
    verify_tlog_proof,
)
from forgetd.ledger import ConsistencyProof as LedgerConsistencyProof
from forgetd.ledger.tlogproof import HEADER

__all__ = ["ENTRIES", "TlogProofReport", "is_tlog_proof", "receipt_tlog_proof", "verify_tlog_proof_offline",
           "verify_tlog_proof_with_client", "verify_tlog_proof_with_store"]

ENTRIES = ("requested", "applied")  # which of a receipt's entries a tlog-proof proves
LEAF_HASH_SIZE = 32


class TlogServer(Protocol):
    """What checking a tlog-proof against a daemon asks of it (forgetd.client.Client is one)."""

    def model(self) -> ModelInfo: ...

    def head(self, *, consistency_from: int = 0, inclusion_seqs: Any = ()) -> HeadProofs: ...

    def ledger(self, start: int = 1, *, limit: int = 0) -> Any: ...


def is_tlog_proof(data: bytes) -> bool:
    """Whether `data` is (meant to be) a c2sp.org/tlog-proof rather than a JSON receipt."""
    return data.startswith(HEADER.encode() + b"\n")


def receipt_tlog_proof(receipt: Receipt, entry: str | None = None) -> TlogProof:
    """The tlog-proof of the receipt's forget.applied entry (`entry="applied"`, the default once applied) or
    forget.requested entry (`"requested"`, the default while pending); InvalidReceipt if the receipt lacks it."""
    entry = entry or ("applied" if receipt.applied_seq else "requested")
    if entry not in ENTRIES:
        raise InvalidReceipt(f"entry {entry!r} is not one of {', '.join(ENTRIES)}")
    head = receipt.head
    if head is None or not head.checkpoint:
        raise InvalidReceipt(f"receipt {receipt.request_id}: its head has no checkpoint (the server predates "
                             "checkpoints); get a fresh receipt with `forgetd status REQUEST_ID --json`")
    if entry == "applied":
        seq, leaf, proof = receipt.applied_seq, receipt.applied_leaf_hash, receipt.applied_proof
    else:
        seq, leaf, proof = receipt.requested_seq, receipt.requested_leaf_hash, receipt.requested_proof
    if not seq or proof is None:
        raise InvalidReceipt(f"receipt {receipt.request_id} has no forget.{entry} entry with an inclusion proof"
                             + (" (the forget is pending: export --entry requested)" if entry == "applied" else ""))
    if proof.seq != seq or proof.tree_size != head.size or len(leaf) != LEAF_HASH_SIZE:
        raise InvalidReceipt(f"receipt {receipt.request_id}: its forget.{entry} proof is for seq {proof.seq} in "
                             f"{proof.tree_size} entries, not seq {seq} in its head's {head.size}")
    try:
        return TlogProof(seq_to_index(seq), proof.hashes, head.checkpoint.encode(), extra=bytes(leaf))
    except LedgerError as exc:
        raise InvalidReceipt(f"receipt {receipt.request_id}: {exc}") from None


@dataclass(frozen=True)
class TlogProofReport:
    """What checking one tlog-proof found; `ok` only when there are no problems."""

    seq: int | None  # the proven entry (the proof's index + 1)
    leaf_hash: bytes | None
    origin: str | None
    tree_size: int | None
    cosignatures: int  # signatures besides the log's (witness cosignatures), not checked here
    problems: tuple[Problem, ...]
    checks: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if not self.ok:
            return f"the tlog-proof does not hold: {self.problems[0]}"
        leaf = self.leaf_hash.hex() if self.leaf_hash else "?"
        return (f"ok: entry seq {self.seq} (leaf hash {leaf}) is in the log {self.origin} at size {self.tree_size}, "
                f"signed by its key; {self.cosignatures} other signature(s); checked: {', '.join(self.checks)}")

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "seq": self.seq, "leaf_hash": self.leaf_hash.hex() if self.leaf_hash else None,
                "origin": self.origin, "tree_size": self.tree_size, "cosignatures": self.cosignatures,
                "problems": [p.to_dict() for p in self.problems], "checks": list(self.checks)}


@dataclass(frozen=True)
class _Checked:
    report: TlogProofReport
    head: Head | None = None  # the forgetd head the verified checkpoint states (None without a forgetd-chain line)


def _failed(message: str, seq: int | None = None) -> TlogProofReport:
    return TlogProofReport(seq, None, None, None, 0, (Problem(seq, message),))


def _offline(data: bytes, verifier: NoteVerifier) -> _Checked:
    """Parse, take the leaf from `extra`, verify the checkpoint's signature and the leaf's inclusion."""
    try:
        proof = parse_tlog_proof(data)
    except LedgerError as exc:
        return _Checked(_failed(f"not a tlog-proof: {exc}"))
    seq, leaf = proof.index + 1, proof.extra
    if leaf is None or len(leaf) != LEAF_HASH_SIZE:
        return _Checked(_failed("the tlog-proof names no leaf hash (forgetd writes the entry's 32-byte leaf hash as "
                                "its extra line), so there is nothing to prove it for", seq))
    try:
        signed = verify_tlog_proof(proof, leaf, verifier, origin=verifier.name)
    except LedgerError as exc:
        return _Checked(TlogProofReport(seq, leaf, None, None, 0, (Problem(seq, str(exc)),)))
    cp = signed.checkpoint
    report = TlogProofReport(seq, leaf, cp.origin, cp.size, len(signed.note.unverified), (),
                             ("checkpoint signature", "inclusion of the leaf"))
    return _Checked(report, cp.to_head() if cp.chain_hash is not None else None)


def verify_tlog_proof_offline(data: bytes, verifier: NoteVerifier) -> TlogProofReport:
    """Check a tlog-proof with the log's verifier alone: its checkpoint's signature and the leaf's inclusion."""
    return _offline(data, verifier).report


def _with(report: TlogProofReport, problems: list[Problem], checks: list[str]) -> TlogProofReport:
    return TlogProofReport(report.seq, report.leaf_hash, report.origin, report.tree_size, report.cosignatures,
                           (*report.problems, *problems), (*report.checks, *checks))


def verify_tlog_proof_with_store(data: bytes, store_dir: str | Path,
                                 verifier: NoteVerifier | None = None) -> TlogProofReport:
    """Check a tlog-proof against a store's ledger file: its key and origin (from genesis, unless `verifier` is
    given), the entry at that seq, and that the checkpoint's head is the ledger's at its size."""
    try:
        with Ledger(Path(store_dir) / "ledger.sqlite", readonly=True) as ledger:
            if verifier is None:
                key, origin = genesis_key_and_origin(ledger)
                if key is None or origin is None:
                    return _failed("the ledger has no genesis entry with a head key", 1)
                verifier = checkpoint_verifier(key, origin)
            checked = _offline(data, verifier)
            if not checked.report.ok:
                return checked.report
            problems = _against_ledger(checked, ledger)
    except LedgerError as exc:
        return _failed(f"the ledger cannot be read: {exc}")
    return _with(checked.report, problems, ["the entry in the ledger", "the checkpoint's head is the ledger's"])


def _against_ledger(checked: _Checked, ledger: Ledger) -> list[Problem]:
    seq, size, leaf = checked.report.seq, checked.report.tree_size, checked.report.leaf_hash
    assert seq is not None and size is not None
    now = ledger.head()
    if now.size < size:
        return [Problem(now.size + 1, f"the ledger has {now.size} entries, fewer than the checkpoint's {size}: "
                                      "its tail was truncated")]
    problems = []
    stored = ledger.entry(seq).leaf_hash
    if stored != leaf:
        problems.append(Problem(seq, "the ledger's entry at that seq has another leaf hash", leaf, stored))
    then = ledger.head(size)
    if checked.head is not None and then != checked.head:
        problems.append(Problem(size, "the checkpoint's head is not the ledger's at its size", checked.head.to_hex(),
                                then.to_hex()))
    return problems


def verify_tlog_proof_with_client(data: bytes, client: TlogServer,
                                  verifier: NoteVerifier | None = None) -> TlogProofReport:
    """Check a tlog-proof against a running daemon: its verifier key (unless `verifier` is given), the entry it
    serves at that seq, and a consistency proof from the checkpoint's head to the daemon's ledger now."""
    if verifier is None:
        try:
            vkey = client.model().verifier_key
            if not vkey:
                return _failed("the server sends no verifier key (it predates checkpoints): give --verifier-key")
            verifier = parse_verifier_key(vkey)
        except (ForgetdClientError, LedgerError) as exc:
            return _failed(f"cannot get the server's verifier key: {exc}")
    checked = _offline(data, verifier)
    if not checked.report.ok:
        return checked.report
    try:
        problems = _against_server(checked, client)
    except ForgetdClientError as exc:
        problems = [Problem(None, f"the server cannot prove its ledger holds the checkpoint's: {exc}")]
    return _with(checked.report, problems, ["the entry the server serves", "consistency with the server's ledger now"])


def _against_server(checked: _Checked, client: TlogServer) -> list[Problem]:
    seq, size, leaf = checked.report.seq, checked.report.tree_size, checked.report.leaf_hash
    assert seq is not None and size is not None
    problems = []
    entries: list[LedgerEntry] = list(client.ledger(seq, limit=1))
    served = entries[0].leaf_hash if entries else None
    if served != leaf:
        problems.append(Problem(seq, "the server's entry at that seq has another leaf hash", leaf, served))
    if checked.head is not None:
        now = client.head(consistency_from=size)
        current = Head(now.head.size, bytes(now.head.chain_hash), bytes(now.head.merkle_root))
        hashes = now.consistency.hashes if now.consistency is not None else ()
        try:
            verify_consistency(checked.head, current, LedgerConsistencyProof(size, current.size, tuple(hashes)))
        except LedgerError as exc:
            problems.append(Problem(size, f"the server's ledger now does not extend the checkpoint's: {exc}"))
    return problems
