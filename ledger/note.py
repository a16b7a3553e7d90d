"""c2sp.org/signed-note: text signed by one or more keys, the envelope of checkpoints and cosignatures.

A signed note is its text (UTF-8, ending in a newline, no control character other than newline), a blank
line, then one signature line per signature:

    — <key name> base64(4-byte key id || signature)

(an em dash, U+2014, and a space first). Keys, key ids, verifier keys and the signature types are in
note_keys.py.

Opening a note checks every signature whose (name, key id) is known and ignores the others, as the spec
says: a known key's bad signature refuses the whole note (NoteSignatureInvalid), and a note with no good
signature from a known key is refused too (UnverifiedNote). Limits, as in Go's golang.org/x/mod/sumdb/note:
at most 100 signature lines (the spec asks for at least 16) and, ours, 1 MiB in all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import InvalidKeyName, MalformedNote, NoteError, NoteSignatureInvalid, UnverifiedNote
from .note_keys import KEY_ID_SIZE, NoteSigner, NoteVerifier, b64decode, b64encode, check_key_name

MAX_NOTE_SIZE = 1 << 20
MAX_SIGNATURES = 100
SIGNATURE_PREFIX = "\u2014 "  # em dash, space

_CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f]")  # every ASCII control character but newline


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: the key name, its 4-byte key id and the signature bytes that follow the id."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{SIGNATURE_PREFIX}{self.name} {b64encode(self.key_id + self.signature)}\n"


@dataclass(frozen=True)
class Note:
    """A note's text, the signatures verified by known keys, and the others (unverified, kept verbatim)."""

    text: str
    signatures: tuple[NoteSignature, ...] = ()
    unverified: tuple[NoteSignature, ...] = ()

    def to_bytes(self) -> bytes:
        lines = "".join(s.line() for s in (*self.signatures, *self.unverified))
        return (self.text + "\n" + lines).encode()

    def signed_by(self, verifier: NoteVerifier) -> bool:
        return any((s.name, s.key_id) == (verifier.name, verifier.key_id) for s in self.signatures)


def check_note_text(text: str) -> bytes:
    """The UTF-8 bytes of `text` if it can be a note's text; MalformedNote naming the broken rule otherwise."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedNote(f"note text holds {text[exc.start]!r}, which UTF-8 cannot encode") from None
    if not data.endswith(b"\n"):
        raise MalformedNote("note text must end in a newline (and cannot be empty)")
    _check_bytes(data, "note text")
    return data


def _check_bytes(data: bytes, what: str) -> None:
    if len(data) > MAX_NOTE_SIZE:
        raise MalformedNote(f"{what} is {len(data)} bytes, over the {MAX_NOTE_SIZE}-byte limit")
    bad = _CONTROL.search(data)
    if bad:
        raise MalformedNote(f"{what} holds control character U+{bad.group()[0]:04X} at byte {bad.start()}; "
                            "only newline is allowed")


def sign_note(text: str, *signers: NoteSigner, keep: Sequence[NoteSignature] = ()) -> bytes:
    """The signed note: `text`, a blank line, the signatures in `keep` not replaced by a signer, then one
    line per signer in order."""
    data = check_note_text(text)
    if not signers and not keep:
        raise NoteError("a signed note needs at least one signature: pass a signer")
    fresh = [NoteSignature(check_key_name(s.name), s.key_id, s.sign(data)) for s in signers]
    replaced = {(s.name, s.key_id) for s in fresh}
    kept = [s for s in keep if (s.name, s.key_id) not in replaced]
    if len(kept) + len(fresh) > MAX_SIGNATURES:
        raise NoteError(f"a note carries at most {MAX_SIGNATURES} signatures, got {len(kept) + len(fresh)}")
    signed = Note(text, (), (*kept, *fresh)).to_bytes()
    if len(signed) > MAX_NOTE_SIZE:
        raise NoteError(f"the signed note would be {len(signed)} bytes, over the {MAX_NOTE_SIZE}-byte limit")
    return signed


def parse_note(msg: bytes | str) -> Note:
    """Split a signed note into its text and its signatures, all unverified: syntax only, no key needed.

    The text must not be trusted until `verify_note` (or `open_note`) has checked a signature over it."""
    data = msg.encode("utf-8", "surrogatepass") if isinstance(msg, str) else bytes(msg)
    _check_bytes(data, "signed note")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedNote(f"signed note byte {exc.start} is not valid UTF-8") from None
    split = data.rfind(b"\n\n")
    if split < 0:
        raise MalformedNote("a signed note needs a blank line between its text and its signature lines")
    text, block = data[: split + 1].decode(), data[split + 2 :].decode()
    return Note(text, (), parse_signature_lines(block))


def parse_signature_lines(block: str) -> tuple[NoteSignature, ...]:
    """Signature lines (each `— <name> <base64>` and a newline), in order; at least one, at most 100."""
    if not block or not block.endswith("\n"):
        raise MalformedNote("the signature block must be one or more lines, each ending in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"the note has {len(lines)} signature lines, over the limit of {MAX_SIGNATURES}")
    return tuple(_parse_signature_line(line, i) for i, line in enumerate(lines, start=1))


def _parse_signature_line(line: str, number: int) -> NoteSignature:
    if not line.startswith(SIGNATURE_PREFIX):
        raise MalformedNote(f"signature line {number} does not start with an em dash and a space: {line[:40]!r}")
    name, _, b64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
    try:
        check_key_name(name)
    except InvalidKeyName as exc:
        raise MalformedNote(f"signature line {number}: {exc}") from None
    raw = b64decode(b64, f"signature line {number} ({name})")
    if len(raw) <= KEY_ID_SIZE:
        raise MalformedNote(f"signature line {number} ({name}) is {len(raw)} bytes: a 4-byte key id and a signature")
    return NoteSignature(name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:])


def verify_note(note: Note, verifiers: Iterable[NoteVerifier]) -> Note:
    """Check `note`'s signatures against the known `verifiers`: the note with its signatures sorted into
    verified and unknown (duplicates dropped), or NoteSignatureInvalid / UnverifiedNote."""
    known = _index(verifiers)
    good: dict[tuple[str, bytes], NoteSignature] = {}
    unknown: dict[NoteSignature, None] = {}
    data = note.text.encode()
    for sig in (*note.signatures, *note.unverified):
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            unknown[sig] = None
        elif (sig.name, sig.key_id) not in good:
            if not verifier.verify(data, sig.signature):
                raise NoteSignatureInvalid(sig.name, sig.key_id)
            good[(sig.name, sig.key_id)] = sig
    if not good:
        names = tuple(f"{s.name}+{s.key_id.hex()}" for s in unknown)
        wanted = ", ".join(f"{v.name}+{v.key_id.hex()}" for v in known.values()) or "none given"
        raise UnverifiedNote(f"no signature from a known key (signed by {', '.join(names)}; known: {wanted})", names)
    return Note(note.text, tuple(good.values()), tuple(unknown))


def open_note(msg: bytes | str, verifiers: Iterable[NoteVerifier]) -> Note:
    """Parse a signed note and verify it against the known `verifiers` (see verify_note)."""
    return verify_note(parse_note(msg), verifiers)


def _index(verifiers: Iterable[NoteVerifier]) -> dict[tuple[str, bytes], NoteVerifier]:
    known: dict[tuple[str, bytes], NoteVerifier] = {}
    for verifier in verifiers:
        slot = (verifier.name, verifier.key_id)
        if slot in known and known[slot] != verifier:
            raise NoteError(f"two different verifiers share the name and key id {verifier.name}+{slot[1].hex()}")
        known[slot] = verifier
    return known


def append_signatures(msg: bytes, signatures: Iterable[NoteSignature]) -> bytes:
    """`msg` with the given signature lines added after its own (lines it already has are not repeated)."""
    note = parse_note(msg)
    have = set(note.unverified)
    extra = tuple(dict.fromkeys(s for s in signatures if s not in have))
    return Note(note.text, (), (*note.unverified, *extra)).to_bytes()
