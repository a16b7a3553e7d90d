"""c2sp.org/tlog-proof@v1: an offline-verifiable proof that an entry is in a log, in one text file.

    c2sp.org/tlog-proof@v1
    extra <base64>             optional, opaque and NOT authenticated
    index <N>                  the 0-based leaf index (a forgetd seq minus one: checkpoint.seq_to_index)
    <base64 hash>              the RFC 6962 inclusion proof, from the leaf's sibling up, one hash a line
    ...
                               an empty line
    <signed checkpoint>        verbatim (c2sp.org/tlog-checkpoint), with any witness cosignatures

Verifying needs the leaf hash (for forgetd, `hash_leaf(entry.envelope)`, i.e. `entry.leaf_hash`) and the
log's verifier: the checkpoint's signature first, then the inclusion proof against its root, recomputed by
ledger.merkle. Cosignatures are kept in the returned note for the caller's witness policy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .checkpoint import SignedCheckpoint, index_to_seq, open_checkpoint, read_checkpoint, seq_to_index
from .errors import MalformedCheckpoint, MalformedTlogProof, ProofError, RootMismatch
from .merkle import HASH_SIZE, verify_inclusion_proof
from .note_keys import NoteVerifier, b64decode, b64encode
from .store import Ledger

HEADER = "c2sp.org/tlog-proof@v1"
MAX_PROOF_HASHES = 63  # a tree of at most 2^63 - 1 leaves
_MAX_PROOF_TEXT = 1 << 21


@dataclass(frozen=True)
class TlogProof:
    """Leaf `index` (0-based) of the tree in `checkpoint` (a signed note), with its audit path `hashes`."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: bytes
    extra: bytes | None = None

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int) or not 0 <= self.index < 2**63:
            raise MalformedTlogProof(f"the index must be an integer in 0..2^63-1, got {self.index!r}")
        object.__setattr__(self, "hashes", tuple(self.hashes))
        if len(self.hashes) > MAX_PROOF_HASHES:
            raise MalformedTlogProof(f"an inclusion proof has at most {MAX_PROOF_HASHES} hashes, got {len(self.hashes)}")
        for i, h in enumerate(self.hashes):
            if not isinstance(h, bytes) or len(h) != HASH_SIZE:
                raise MalformedTlogProof(f"proof hash {i} must be {HASH_SIZE} bytes, got {h!r}")
        if self.extra is not None and (not isinstance(self.extra, bytes) or not self.extra):
            raise MalformedTlogProof("extra must be None or non-empty bytes (no extra line means no extra data)")
        try:
            read_checkpoint(self.checkpoint)
        except (MalformedCheckpoint, TypeError) as exc:
            raise MalformedTlogProof(f"the checkpoint is not a signed checkpoint: {exc}") from None

    @property
    def seq(self) -> int:
        """The forgetd seq (1-based) of the proven entry."""
        return index_to_seq(self.index)

    def to_bytes(self) -> bytes:
        lines = [HEADER]
        if self.extra is not None:
            lines.append(f"extra {b64encode(self.extra)}")
        lines.append(f"index {self.index}")
        lines.extend(b64encode(h) for h in self.hashes)
        return ("\n".join(lines) + "\n\n").encode() + self.checkpoint

    def verify(self, leaf_hash: bytes, verifiers: NoteVerifier | Iterable[NoteVerifier], *,
               origin: str | None = None) -> SignedCheckpoint:
        return verify_tlog_proof(self, leaf_hash, verifiers, origin=origin)


def parse_tlog_proof(data: bytes | str) -> TlogProof:
    """Parse a tlog-proof strictly: the checkpoint after the first empty line is kept verbatim."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if len(raw) > _MAX_PROOF_TEXT:
        raise MalformedTlogProof(f"the proof is {len(raw)} bytes, over the {_MAX_PROOF_TEXT}-byte limit")
    head, sep, checkpoint = raw.partition(b"\n\n")
    if not sep:
        raise MalformedTlogProof("a tlog-proof needs an empty line between the inclusion proof and the checkpoint")
    try:
        lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise MalformedTlogProof("the lines before the checkpoint must be ASCII") from None
    if lines[0] != HEADER:
        raise MalformedTlogProof(f"the first line must be {HEADER!r}, got {lines[0][:60]!r}")
    rest = lines[1:]
    extra = None
    if rest and rest[0].startswith("extra "):
        extra = b64decode(rest.pop(0)[len("extra ") :], "the extra line", MalformedTlogProof)
        if not extra:
            raise MalformedTlogProof("the extra line is empty: without extra data, leave the line out")
    if not rest or not rest[0].startswith("index "):
        raise MalformedTlogProof("the line after the header (and extra) must be 'index <N>'")
    index = _decimal(rest.pop(0)[len("index ") :], "index")
    hashes = tuple(_hash(line, i) for i, line in enumerate(rest))
    return TlogProof(index, hashes, checkpoint, extra)


def _decimal(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise MalformedTlogProof(f"the {what} must be a decimal without leading zeroes, got {text[:40]!r}")
    return int(text)


def _hash(line: str, i: int) -> bytes:
    value = b64decode(line, f"proof hash {i}", MalformedTlogProof)
    if len(value) != HASH_SIZE:
        raise MalformedTlogProof(f"proof hash {i} is {len(value)} bytes, want {HASH_SIZE}")
    return value


def verify_tlog_proof(proof: TlogProof | bytes | str, leaf_hash: bytes,
                      verifiers: NoteVerifier | Iterable[NoteVerifier], *, origin: str | None = None) -> SignedCheckpoint:
    """Raise unless the checkpoint is signed by one of `verifiers` (from `origin`, when given) and includes the
    leaf `leaf_hash` at the proof's index; return the verified checkpoint (cosignatures among its note's
    unverified signatures, to check with the witnesses' verifiers)."""
    if not isinstance(proof, TlogProof):
        proof = parse_tlog_proof(proof)
    signed = open_checkpoint(proof.checkpoint, verifiers, origin=origin)
    size, root = signed.checkpoint.size, signed.checkpoint.root_hash
    if not proof.index < size:
        raise ProofError(f"index {proof.index} out of range for the checkpoint's tree size {size}")
    try:
        verify_inclusion_proof(proof.index, size, leaf_hash, proof.hashes, root)
    except RootMismatch as exc:
        raise RootMismatch(exc.expected, exc.computed,
                           what=f"checkpoint root (leaf index {proof.index} in tree size {size})") from None
    return signed


def export_tlog_proof(ledger: Ledger, seq: int, signed_checkpoint: bytes, *, extra: bytes | None = None) -> TlogProof:
    """The tlog-proof for entry `seq` under `signed_checkpoint`, which must be of this ledger (same root at
    its size). Make one with checkpoint.ledger_checkpoint; add cosignatures before or after, as you like."""
    checkpoint = read_checkpoint(signed_checkpoint)
    index = seq_to_index(seq)
    if not index < checkpoint.size:
        raise ProofError(f"seq {seq} is not in the checkpoint's tree of size {checkpoint.size} (seqs start at 1)")
    head = ledger.head(checkpoint.size)
    if head.merkle_root != checkpoint.root_hash:
        raise RootMismatch(head.merkle_root, checkpoint.root_hash,
                           what=f"checkpoint root (the ledger's tree at size {checkpoint.size})")
    proof = ledger.prove_inclusion(seq, checkpoint.size)
    return TlogProof(index, proof.hashes, bytes(signed_checkpoint), extra)

