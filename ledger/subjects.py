"""Subject references: how a sample id appears in the ledger without appearing in clear."""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from collections.abc import Iterable


def subject_ref(key: bytes, sample_id: str) -> str:
    """Hex HMAC-SHA256 of the NFC-normalised, UTF-8 encoded `sample_id` under the deployment `key`.

    Forget events carry these, never raw ids. The key lives beside the model store, not in the ledger; an
    auditor given the key recomputes the reference of an id to prove that it was forgotten.

    This is the one way forgetd names a sample by HMAC: the ledger's events, the store's refs.npy and every
    lookup (the daemon's admission, the engine, the auditor) call it. NFC is the rule because an id typed
    on another system may arrive in another Unicode normal form and must still name the same sample
    everywhere; it is also the form the ledger's canonical JSON gives every string. For ids already in NFC
    (every ASCII id, so every id the Adult and synthetic loaders make) it hashes the id's own UTF-8 bytes.
    """
    if not isinstance(key, (bytes, bytearray)) or not key:
        raise ValueError("subject_ref needs a non-empty bytes key")
    if not isinstance(sample_id, str):
        raise TypeError(f"sample_id must be a string, got {type(sample_id).__name__}")
    message = unicodedata.normalize("NFC", sample_id).encode("utf-8")
    return hmac.new(bytes(key), message, hashlib.sha256).hexdigest()


def subject_refs_raw(key: bytes, sample_ids: Iterable[str]) -> bytes:
    """`subject_ref` of every id, as raw 32-byte digests end to end (bytes.fromhex of each, in order).

    The same HMAC, for the hundreds of thousands of ids a daemon names when it starts: a one-shot HMAC sets its
    key up again on every call, which costs more than hashing a short id, so the keyed state is made once and
    copied for each id (hmac's own copy()).
    """
    if not isinstance(key, (bytes, bytearray)) or not key:
        raise ValueError("subject_refs_raw needs a non-empty bytes key")
    keyed = hmac.new(bytes(key), digestmod=hashlib.sha256)
    out = bytearray()
    for sample_id in sample_ids:
        if not isinstance(sample_id, str):
            raise TypeError(f"sample_id must be a string, got {type(sample_id).__name__}")
        text = sample_id if sample_id.isascii() else unicodedata.normalize("NFC", sample_id)  # ASCII is NFC
        h = keyed.copy()
        h.update(text.encode("utf-8"))
        out += h.digest()
    return bytes(out)
