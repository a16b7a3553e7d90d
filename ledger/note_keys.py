"""Note keys (c2sp.org/signed-note, c2sp.org/tlog-cosignature): names, key ids, verifier keys, and the two
signature types forgetd speaks.

A key is named by a non-empty string without Unicode spaces, plus signs or control characters; its key id
is the first 4 bytes of SHA-256(name || 0x0A || type || public key). Type 0x01 is Ed25519 (RFC 8032) over
the note text; type 0x04 is the timestamped Ed25519 cosignature of c2sp.org/tlog-cosignature: an 8-byte
big-endian POSIX time, then Ed25519 over

    cosignature/v1
    time <timestamp>
    <the checkpoint's note text>

A verifier key ("vkey") is `<name>+<hex key id>+<base64(type || public key)>`. Base64 here and in notes must
be the canonical standard encoding (padding included, no stray bits), so that parsing and encoding round-trip.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .errors import InvalidKeyName, InvalidVerifierKey, LedgerError, MalformedNote, NoteError
from .signing import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, SigningKey

SIG_ED25519 = 0x01
SIG_COSIGNATURE_V1 = 0x04
KEY_ID_SIZE = 4
COSIGNATURE_HEADER = b"cosignature/v1\n"
MAX_TIMESTAMP = 2**63 - 1


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, what: str, error: type[LedgerError] = MalformedNote) -> bytes:
    """Strict standard base64: the canonical encoding only, so that decode and encode round-trip."""
    try:
        data = binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise error(f"{what} is not base64: {text[:80]!r}") from None
    if b64encode(data) != text:
        raise error(f"{what} is not canonical base64: {text[:80]!r} (want {b64encode(data)[:80]!r})")
    return data


def check_key_name(name: object) -> str:
    """Return `name` if it can name a note key: non-empty, no Unicode space, no plus, no control character."""
    if not isinstance(name, str) or not name:
        raise InvalidKeyName(f"a key name must be a non-empty string, got {name!r}")
    for ch in name:
        if ch.isspace() or ch == "+" or ch < " ":
            raise InvalidKeyName(f"key name {name!r} holds {ch!r}: no spaces, plus signs or control characters")
    return name


def key_id(name: str, signature_type: int, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || signature type || public key)[:4], the spec's key id."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([signature_type]) + public_key).digest()[:KEY_ID_SIZE]


def _vkey(name: str, signature_type: int, public_key: bytes) -> str:
    return f"{name}+{key_id(name, signature_type, public_key).hex()}+{b64encode(bytes([signature_type]) + public_key)}"


class NoteSigner(Protocol):
    """Anything that signs note text under a key name and key id."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def sign(self, text: bytes) -> bytes: ...


@runtime_checkable
class NoteVerifier(Protocol):
    """Anything that checks a signature (the bytes after the key id) over note text."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    @property
    def vkey(self) -> str: ...

    def verify(self, text: bytes, signature: bytes) -> bool: ...


@dataclass(frozen=True)
class _Ed25519Key:
    """A named Ed25519 public key; subclasses fix the signature type and what is signed."""

    name: str
    public_key: bytes
    signature_type: ClassVar[int]

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if not isinstance(self.public_key, bytes) or len(self.public_key) != PUBLIC_KEY_SIZE:
            raise InvalidVerifierKey(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, got {self.public_key!r}")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.signature_type, self.public_key)

    @property
    def vkey(self) -> str:
        return _vkey(self.name, self.signature_type, self.public_key)


@dataclass(frozen=True)
class Ed25519Verifier(_Ed25519Key):
    """Checks plain Ed25519 note signatures (type 0x01) by the key `public_key` named `name`."""

    signature_type: ClassVar[int] = SIG_ED25519

    def verify(self, text: bytes, signature: bytes) -> bool:
        return len(signature) == SIGNATURE_SIZE and _ed25519_ok(self.public_key, signature, text)


@dataclass(frozen=True)
class CosignatureVerifier(_Ed25519Key):
    """Checks c2sp.org/tlog-cosignature Ed25519 cosignatures (type 0x04): 8-byte timestamp || signature."""

    signature_type: ClassVar[int] = SIG_COSIGNATURE_V1

    def verify(self, text: bytes, signature: bytes) -> bool:
        if len(signature) != 8 + SIGNATURE_SIZE:
            return False
        timestamp = int.from_bytes(signature[:8], "big")
        return timestamp <= MAX_TIMESTAMP and _ed25519_ok(self.public_key, signature[8:],
                                                          cosigned_message(timestamp, text))


def _ed25519_ok(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class Ed25519Signer:
    """Signs note text with `key` under the key name `name` (type 0x01)."""

    name: str
    key: SigningKey

    def __post_init__(self) -> None:
        check_key_name(self.name)

    @functools.cached_property
    def key_id(self) -> bytes:  # once: every checkpoint the daemon signs names it
        return self.verifier().key_id

    def verifier(self) -> Ed25519Verifier:
        return Ed25519Verifier(self.name, self.key.public_key)

    def sign(self, text: bytes) -> bytes:
        return self.key.private_key.sign(text)


def unix_now() -> int:
    return int(time.time())


@dataclass(frozen=True)
class CosignatureSigner:
    """Makes c2sp.org/tlog-cosignature cosignatures (type 0x04) at the time `clock` gives (POSIX seconds)."""

    name: str
    key: SigningKey
    clock: Callable[[], int] = field(default=unix_now, compare=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)

    @property
    def key_id(self) -> bytes:
        return self.verifier().key_id

    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier(self.name, self.key.public_key)

    def sign(self, text: bytes) -> bytes:
        timestamp = self.clock()
        if isinstance(timestamp, bool) or not isinstance(timestamp, int) or not 0 < timestamp <= MAX_TIMESTAMP:
            raise NoteError(f"a cosignature timestamp must be an integer in 1..2^63-1, the clock gave {timestamp!r}")
        return timestamp.to_bytes(8, "big") + self.key.private_key.sign(cosigned_message(timestamp, text))


def cosigned_message(timestamp: int, text: bytes) -> bytes:
    """What a cosignature/v1 signs: the header line, `time <timestamp>`, then the checkpoint's note text."""
    return COSIGNATURE_HEADER + f"time {timestamp}\n".encode("ascii") + text


def cosignature_timestamp(signature: bytes) -> int:
    """The POSIX time a cosignature/v1 carries (the first 8 of the bytes after the key id); verify it first."""
    if len(signature) != 8 + SIGNATURE_SIZE:
        raise MalformedNote(f"a cosignature is {8 + SIGNATURE_SIZE} bytes after the key id, got {len(signature)}")
    return int.from_bytes(signature[:8], "big")


def parse_verifier_key(vkey: str) -> Ed25519Verifier | CosignatureVerifier:
    """The verifier for a vkey string; types 0x01 (Ed25519) and 0x04 (Ed25519 cosignature) are supported."""
    parts = vkey.split("+", 2) if isinstance(vkey, str) else []  # base64 may hold "+": split twice
    if len(parts) != 3:
        raise InvalidVerifierKey(f"a verifier key is <name>+<hex key id>+<base64 key>, got {vkey!r}")
    name, hex_id, b64 = parts
    check_key_name(name)
    if not re.fullmatch(r"[0-9a-fA-F]{8}", hex_id):
        raise InvalidVerifierKey(f"verifier key {name}: the key id must be 8 hex digits, got {hex_id!r}")
    raw = b64decode(b64, f"verifier key {name}: the key", InvalidVerifierKey)
    types: dict[int, type[Ed25519Verifier | CosignatureVerifier]] = {
        SIG_ED25519: Ed25519Verifier, SIG_COSIGNATURE_V1: CosignatureVerifier,
    }
    if not raw or raw[0] not in types:
        got = f"0x{raw[0]:02x}" if raw else "nothing"
        raise InvalidVerifierKey(f"verifier key {name}: signature type {got} is not supported "
                                 "(0x01 Ed25519 and 0x04 Ed25519 cosignatures are)")
    verifier = types[raw[0]](name, raw[1:])
    if verifier.key_id != bytes.fromhex(hex_id):
        raise InvalidVerifierKey(f"verifier key {name}: key id {hex_id.lower()} does not match the name and key "
                                 f"(expected {verifier.key_id.hex()})")
    return verifier
