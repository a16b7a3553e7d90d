"""Ed25519-signed heads: a checkpoint that anyone holding the public key can check without trusting the server.

The signed message is domain-separated so that a head signature can never be replayed as a signature over
anything else:

    message = b"forgetd.ledger.head.v1\\n" || size (8 bytes, big-endian) || chain_hash (32) || merkle_root (32)

that is, the 23-byte ASCII context string, a newline included, followed by `Head.to_bytes()` (95 bytes in
all). The signature is plain Ed25519 (RFC 8032) over those bytes; the key id is the first 16 hex characters
of SHA-256 over the raw 32-byte public key.

The private key file is PKCS#8 PEM, unencrypted, mode 0600, written atomically (a temporary file in the same
directory, fsync, then a no-clobber link into place, so two processes racing to create it end up sharing one).
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import BadSignature, InvalidHead, SigningError
from .model import Head

HEAD_CONTEXT = b"forgetd.ledger.head.v1\n"
SIGNATURE_SIZE = 64
PUBLIC_KEY_SIZE = 32


def head_message(head: Head) -> bytes:
    """The exact bytes a head signature covers (see the module docstring)."""
    return HEAD_CONTEXT + head.to_bytes()


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key that signs heads."""

    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @functools.cached_property
    def public_key(self) -> bytes:
        """The raw 32-byte public key (derived once: every head signed and every receipt carries it)."""
        return self.private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def to_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @classmethod
    def from_pem(cls, data: bytes) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise SigningError(f"not an unencrypted PKCS#8 PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningError(f"the key is {type(key).__name__}, not Ed25519")
        return cls(key)

    def sign(self, head: Head) -> SignedHead:
        return sign_head(self, head)

    def __repr__(self) -> str:  # never print key material
        return f"SigningKey(key_id={self.key_id!r})"


@dataclass(frozen=True)
class SignedHead:
    """A head with an Ed25519 signature over head_message(head) and the raw public key that made it."""

    head: Head
    signature: bytes
    public_key: bytes

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "head": self.head.to_dict(),
            "head_hex": self.head.to_hex(),
            "signature": self.signature.hex(),
            "public_key": self.public_key.hex(),
            "key_id": self.key_id,
            "algorithm": "ed25519",
            "context": HEAD_CONTEXT.decode("ascii").strip(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SignedHead:
        try:
            head = Head.from_dict(data["head"]) if "head" in data else Head.from_hex(data["head_hex"])
            return cls(head, bytes.fromhex(data["signature"]), bytes.fromhex(data["public_key"]))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidHead):
                raise
            raise BadSignature(f"a signed head needs head, signature and public_key (hex): {exc}") from None


def sign_head(key: SigningKey, head: Head) -> SignedHead:
    """Sign `head` with `key`."""
    return SignedHead(head, key.private_key.sign(head_message(head)), key.public_key)


def verify_signed_head(signed: SignedHead, public_key: bytes | Ed25519PublicKey | None = None) -> Head:
    """Return the head if its signature verifies; raise BadSignature otherwise.

    Pass the `public_key` you trust (raw 32 bytes or a key object). Without it the key embedded in `signed`
    is used, which proves only that the head was not altered after signing, not who signed it.
    """
    if public_key is None:
        raw = signed.public_key
    elif isinstance(public_key, Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        raw = bytes(public_key)
    if len(raw) != PUBLIC_KEY_SIZE:
        raise BadSignature(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, got {len(raw)}")
    if public_key is not None and raw != signed.public_key:
        raise BadSignature(
            f"the head was signed by key {key_id(signed.public_key)}, not by the expected key {key_id(raw)}"
        )
    if len(signed.signature) != SIGNATURE_SIZE:
        raise BadSignature(f"an Ed25519 signature is {SIGNATURE_SIZE} bytes, got {len(signed.signature)}")
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(signed.signature, head_message(signed.head))
    except InvalidSignature:
        raise BadSignature(f"bad signature on head {signed.head.to_hex()} for key {key_id(raw)}") from None
    return signed.head


def load_or_create_signing_key(path: str | Path) -> SigningKey:
    """Load the Ed25519 key at `path`, creating it (mode 0600, atomically) if the file does not exist.

    Refuses a key file that group or others may read or write.
    """
    path = Path(path)
    try:
        return _load(path)
    except FileNotFoundError:
        pass
    key = SigningKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, key.to_pem())
        os.fsync(fd)
        os.close(fd)
        fd = -1
        try:
            os.link(tmp, path)  # no clobber: a key another process created first wins
        except FileExistsError:
            return _load(path)
        _fsync_dir(path.parent)
        return key
    finally:
        if fd != -1:
            os.close(fd)
        os.unlink(tmp)


def _load(path: Path) -> SigningKey:
    with open(path, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SigningError(f"{path} is accessible to group or others (mode {mode & 0o777:o}); chmod 600 it")
        return SigningKey.from_pem(handle.read())


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
