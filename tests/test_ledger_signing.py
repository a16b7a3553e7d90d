"""Ed25519-signed heads and the key file they come from."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forgetd.ledger import (
    BadSignature,
    Head,
    Ledger,
    SignedHead,
    SigningError,
    SigningKey,
    load_or_create_signing_key,
    sign_head,
    verify_signed_head,
)
from forgetd.ledger.signing import HEAD_CONTEXT, head_message


@pytest.fixture
def head(tmp_path: Path) -> Head:
    with Ledger(tmp_path / "ledger.db") as book:
        for i in range(3):
            book.append("e", {"i": i})
        return book.head()


def test_the_signed_message_is_domain_separated(head: Head) -> None:
    assert HEAD_CONTEXT == b"forgetd.ledger.head.v1\n"
    message = head_message(head)
    assert len(message) == 23 + 72
    assert message == b"forgetd.ledger.head.v1\n" + (3).to_bytes(8, "big") + head.chain_hash + head.merkle_root


def test_sign_and_verify(head: Head, tmp_path: Path) -> None:
    key = load_or_create_signing_key(tmp_path / "keys" / "head.key")
    signed = sign_head(key, head)
    assert verify_signed_head(signed, key.public_key) == head
    assert verify_signed_head(signed) == head
    Ed25519PublicKey.from_public_bytes(key.public_key).verify(signed.signature, head_message(head))  # plain Ed25519
    assert SignedHead.from_dict(signed.to_dict()) == signed
    assert signed.key_id == hashlib.sha256(key.public_key).hexdigest()[:16] == key.key_id
    assert key.key_id in repr(key) and "PRIVATE" not in repr(key)


def test_bad_signatures_raise(head: Head) -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    signed = key.sign(head)
    forged = dataclasses.replace(signed, head=Head(head.size + 1, head.chain_hash, head.merkle_root))
    with pytest.raises(BadSignature, match=f"^bad signature on head {forged.head.to_hex()} for key {key.key_id}$"):
        verify_signed_head(forged, key.public_key)
    with pytest.raises(BadSignature, match=f"signed by key {key.key_id}, not by the expected key {other.key_id}"):
        verify_signed_head(signed, other.public_key)
    flipped = dataclasses.replace(signed, signature=bytes([signed.signature[0] ^ 1]) + signed.signature[1:])
    with pytest.raises(BadSignature):
        verify_signed_head(flipped)
    with pytest.raises(BadSignature, match="an Ed25519 signature is 64 bytes, got 3"):
        verify_signed_head(dataclasses.replace(signed, signature=b"abc"))
    # A head signed by someone else, embedding their own key, verifies only against that key.
    impostor = other.sign(head)
    assert verify_signed_head(impostor) == head
    with pytest.raises(BadSignature):
        verify_signed_head(impostor, key.public_key)


def test_key_file_is_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "head.key"
    key = load_or_create_signing_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert load_or_create_signing_key(path).public_key == key.public_key
    assert [p.name for p in tmp_path.iterdir()] == ["head.key"]  # no temporary file left behind


def test_racing_creators_share_one_key(tmp_path: Path) -> None:
    path = tmp_path / "head.key"
    keys: list[SigningKey] = []
    threads = [threading.Thread(target=lambda: keys.append(load_or_create_signing_key(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({k.public_key for k in keys}) == 1


def test_unsafe_or_malformed_key_files(tmp_path: Path) -> None:
    path = tmp_path / "head.key"
    load_or_create_signing_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(SigningError, match="accessible to group or others \\(mode 644\\); chmod 600 it"):
        load_or_create_signing_key(path)
    junk = tmp_path / "junk.key"
    junk.write_bytes(b"not a key")
    os.chmod(junk, 0o600)
    with pytest.raises(SigningError, match="not an unencrypted PKCS#8 PEM private key"):
        load_or_create_signing_key(junk)
