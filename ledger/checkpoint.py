"""c2sp.org/tlog-checkpoint: a ledger head as a signed note that standard transparency-log tools verify.

The note text is three lines and then optional extension lines, each ending in a newline:

    <origin>                   the log's identity (forgetd's default: forgetd/<key id>, see default_origin)
    <tree size>                decimal, no leading zeroes: the number of ledger entries
    <root hash>                base64 of the RFC 6962 Merkle root (ledger.merkle: the same tree as Head's)
    forgetd-chain <base64>     forgetd's extension line: the head's chain hash (32 bytes)

forgetd's choice: the chain hash travels as that one extension line, so a checkpoint carries a whole Head
(`Checkpoint.to_head`) while tools that know only C2SP still check the origin, size and root. Extension
lines are opaque to witnesses and monitors: the chain hash is vouched for by the log's signature alone.

Numbering: the tree size is the number of entries and leaf indices are 0-based, as in RFC 6962; a forgetd
seq is 1-based, so entry `seq` is leaf `seq - 1`. `seq_to_index` and `index_to_seq` are the one place
that converts.

The log's signature is a plain Ed25519 note signature (type 0x01) by the head key, under the key name equal
to the origin, as the spec recommends. The head format of signing.py (`forgetd.ledger.head.v1`) is unchanged
and the same key signs both; the two messages cannot be confused, because a head message's 8-byte size
starts with a zero byte for any size below 2^56, and a note text holds no control character.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import InvalidOrigin, MalformedCheckpoint, MalformedNote, OriginMismatch, ProofError
from .merkle import HASH_SIZE
from .model import Head
from .note import Note, parse_note, sign_note, verify_note
from .note_keys import Ed25519Signer, Ed25519Verifier, NoteSigner, NoteVerifier, b64decode, b64encode, check_key_name
from .signing import SigningKey, key_id
from .store import Ledger

CHAIN_EXTENSION = "forgetd-chain"
MAX_TREE_SIZE = 2**63 - 1
MAX_ORIGIN_LENGTH = 255
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_ORIGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~:/@%-]*")  # a schema-less URL's characters


def seq_to_index(seq: int) -> int:
    """The 0-based RFC 6962 leaf index of forgetd's 1-based entry `seq`."""
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise ProofError(f"a ledger seq is an integer >= 1 (seqs start at 1), got {seq!r}")
    return seq - 1


def index_to_seq(index: int) -> int:
    """forgetd's 1-based seq of the 0-based leaf `index`."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ProofError(f"a leaf index is an integer >= 0 (indices start at 0), got {index!r}")
    return index + 1


def default_origin(public_key: bytes) -> str:
    """`forgetd/<first 16 hex of SHA-256(public key)>`: stable for a key, and the key id signing.py prints."""
    return f"forgetd/{key_id(public_key)}"


def validate_origin(origin: object) -> str:
    """Return `origin` if forgetd may use it for its log: a schema-less URL such as `example.com/forgetd`."""
    if not isinstance(origin, str) or not origin:
        raise InvalidOrigin(f"an origin must be a non-empty string, got {origin!r}")
    if len(origin) > MAX_ORIGIN_LENGTH:
        raise InvalidOrigin(f"origin is {len(origin)} characters, over {MAX_ORIGIN_LENGTH}: pick a shorter one")
    if "://" in origin:
        raise InvalidOrigin(f"origin {origin!r} has a scheme: drop it (example.com/log, not https://example.com/log)")
    if not _ORIGIN.fullmatch(origin):
        raise InvalidOrigin(f"origin {origin!r} is not a schema-less URL: use letters, digits and . _ ~ : / @ % - "
                            "only, starting with a letter or digit (e.g. example.com/forgetd, or default_origin())")
    return origin


def _check_line(line: object, what: str) -> str:
    if not isinstance(line, str) or not line:
        raise MalformedCheckpoint(f"the {what} must be a non-empty string, got {line!r}")
    bad = next((ch for ch in line if ch < " "), None)
    if bad is not None:
        raise MalformedCheckpoint(f"the {what} {line[:60]!r} holds control character U+{ord(bad):04X}")
    return line


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: origin, tree size, RFC 6962 root hash and the (opaque) extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 0 <= self.size <= MAX_TREE_SIZE:
            raise MalformedCheckpoint(f"the tree size must be an integer in 0..2^63-1, got {self.size!r}")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise MalformedCheckpoint(f"the root hash must be {HASH_SIZE} bytes, got {self.root_hash!r}")
        object.__setattr__(self, "extensions", tuple(self.extensions))
        for i, line in enumerate(self.extensions, start=1):
            _check_line(line, f"extension line {i}")

    def to_text(self) -> str:
        """The note text: origin, size and root hash lines, then the extension lines."""
        lines = (self.origin, str(self.size), b64encode(self.root_hash), *self.extensions)
        return "".join(f"{line}\n" for line in lines)

    @property
    def chain_hash(self) -> bytes | None:
        """The chain hash of forgetd's `forgetd-chain` extension line, None without one."""
        found = [e.partition(" ")[2] for e in self.extensions if e.partition(" ")[0] == CHAIN_EXTENSION]
        if not found:
            return None
        if len(found) > 1:
            raise MalformedCheckpoint(f"the checkpoint has {len(found)} {CHAIN_EXTENSION} lines, want one")
        value = b64decode(found[0], f"the {CHAIN_EXTENSION} line", MalformedCheckpoint)
        if len(value) != HASH_SIZE:
            raise MalformedCheckpoint(f"the {CHAIN_EXTENSION} line holds {len(value)} bytes, want {HASH_SIZE}")
        return value

    def to_head(self) -> Head:
        """The forgetd Head this checkpoint states (it needs the forgetd-chain line)."""
        chain = self.chain_hash
        if chain is None:
            raise MalformedCheckpoint(f"the checkpoint has no {CHAIN_EXTENSION} line: it is not a forgetd head")
        return Head(self.size, chain, self.root_hash)


def parse_checkpoint(text: str | bytes) -> Checkpoint:
    """Parse a checkpoint's note text strictly (one spelling per checkpoint, so it round-trips with to_text)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedCheckpoint(f"checkpoint byte {exc.start} is not valid UTF-8") from None
    if not text.endswith("\n"):
        raise MalformedCheckpoint("checkpoint text must end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedCheckpoint(f"a checkpoint has at least 3 lines (origin, size, root hash), got {len(lines)}")
    origin, size, root, *extensions = lines
    if not _DECIMAL.fullmatch(size):
        raise MalformedCheckpoint(f"the tree size line must be a decimal without leading zeroes, got {size[:40]!r}")
    if int(size) > MAX_TREE_SIZE:
        raise MalformedCheckpoint(f"the tree size {size} is over 2^63-1")
    root_hash = b64decode(root, "the root hash line", MalformedCheckpoint)
    for i, line in enumerate(extensions, start=1):
        if not line:
            raise MalformedCheckpoint(f"extension line {i} is empty: a checkpoint has no empty lines")
    return Checkpoint(origin, int(size), root_hash, tuple(extensions))


def checkpoint_for_head(head: Head, origin: str) -> Checkpoint:
    """The checkpoint of a forgetd head: its size, Merkle root and, as the extension line, its chain hash."""
    validate_origin(origin)
    return Checkpoint(origin, head.size, head.merkle_root, (f"{CHAIN_EXTENSION} {b64encode(head.chain_hash)}",))


def checkpoint_signer(key: SigningKey, origin: str) -> Ed25519Signer:
    """The log's note signer: `key` under the key name `origin`."""
    return Ed25519Signer(check_key_name(origin), key)


def checkpoint_verifier(public_key: bytes, origin: str) -> Ed25519Verifier:
    """The verifier for checkpoints of the log `origin` signed with `public_key` (its vkey is `.vkey`)."""
    return Ed25519Verifier(check_key_name(origin), public_key)


def sign_checkpoint(checkpoint: Checkpoint, *signers: NoteSigner) -> bytes:
    """The signed checkpoint note."""
    return sign_note(checkpoint.to_text(), *signers)


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint whose note was verified: `note.signatures` from known keys, `note.unverified` the rest."""

    checkpoint: Checkpoint
    note: Note


def open_checkpoint(
    msg: bytes | str, verifiers: NoteVerifier | Iterable[NoteVerifier], *, origin: str | None = None
) -> SignedCheckpoint:
    """Parse and verify a signed checkpoint: well-formed, from `origin` (when given), and signed by one of
    `verifiers` (other signatures, a witness's say, are kept unverified)."""
    note = parse_note(msg)
    checkpoint = parse_checkpoint(note.text)
    if origin is not None and checkpoint.origin != origin:
        raise OriginMismatch(origin, checkpoint.origin)
    known = (verifiers,) if isinstance(verifiers, NoteVerifier) else verifiers
    return SignedCheckpoint(checkpoint, verify_note(note, known))


def read_checkpoint(msg: bytes | str) -> Checkpoint:
    """The checkpoint in a signed note, NOT verified: for a log handling its own notes, never for trust."""
    try:
        return parse_checkpoint(parse_note(msg).text)
    except MalformedNote as exc:
        raise MalformedCheckpoint(f"not a signed checkpoint: {exc}") from None


def ledger_checkpoint(ledger: Ledger, key: SigningKey, origin: str | None = None) -> bytes:
    """The signed checkpoint of `ledger`'s current head, signed by `key` for `origin` (default_origin(key))."""
    origin = default_origin(key.public_key) if origin is None else origin
    return sign_checkpoint(checkpoint_for_head(ledger.head(), origin), checkpoint_signer(key, origin))
