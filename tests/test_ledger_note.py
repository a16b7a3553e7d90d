"""c2sp.org/signed-note (ledger/note.py, ledger/note_keys.py), checked against Go's golang.org/x/mod/sumdb/note.

The known answers in tests/data/c2sp_note_vectors.json were made by tests/interop/go/kat (see its header):
Ed25519 is deterministic, so forgetd must reproduce Go's signed notes byte for byte and give Go's verdict
(ok, malformed, unverified, invalid signature) on each crafted message.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from forgetd.ledger import (
    CosignatureSigner,
    CosignatureVerifier,
    Ed25519Signer,
    Ed25519Verifier,
    InvalidKeyName,
    InvalidVerifierKey,
    MalformedNote,
    Note,
    NoteError,
    NoteSignature,
    NoteSignatureInvalid,
    SigningKey,
    UnverifiedNote,
    append_signatures,
    open_note,
    parse_note,
    parse_verifier_key,
    sign_note,
)
from forgetd.ledger.note import MAX_NOTE_SIZE, MAX_SIGNATURES
from forgetd.ledger.note_keys import check_key_name, cosignature_timestamp, cosigned_message, key_id

ROOT = Path(__file__).resolve().parents[1]
VECTORS_PATH = ROOT / "tests" / "data" / "c2sp_note_vectors.json"
VECTORS = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
KEYS = {k["name"]: k for k in VECTORS["keys"]}
LOG, OTHER, WITNESS = "forgetd/kat-log", "example.com/other", "witness.example/kat"
GOPATH = Path("/usr/share/gocode")  # Debian's golang-golang-x-mod-dev installs x/mod here
ERRORS: dict[str, type[Exception] | None] = {
    "": None, "malformed": MalformedNote, "unverified": UnverifiedNote, "invalid_signature": NoteSignatureInvalid,
}


def kat_key(name: str) -> SigningKey:
    return SigningKey(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(KEYS[name]["seed_hex"])))


def kat_signer(name: str) -> Ed25519Signer:
    return Ed25519Signer(name, kat_key(name))


# --- known answers from Go -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(KEYS))
def test_key_ids_and_verifier_keys_match_go(name: str) -> None:
    want = KEYS[name]
    key = kat_key(name)
    assert key.public_key.hex() == want["public_key_hex"]
    verifier = parse_verifier_key(want["vkey"])
    assert verifier.key_id.hex() == want["key_id_hex"] and verifier.vkey == want["vkey"]
    made = Ed25519Signer(name, key).verifier() if want["type"] == 1 else CosignatureSigner(name, key).verifier()
    assert made == verifier
    assert type(verifier) is (Ed25519Verifier if want["type"] == 1 else CosignatureVerifier)


@pytest.mark.parametrize("vector", VECTORS["notes"], ids=lambda v: v["desc"])
def test_signed_notes_match_go_byte_for_byte(vector: dict) -> None:
    signed = sign_note(vector["text"], *(kat_signer(n) for n in vector["signers"]))
    assert signed.decode() == vector["signed"]
    note = open_note(signed, [kat_signer(n).verifier() for n in vector["signers"]])
    assert note.text == vector["text"] and [s.name for s in note.signatures] == vector["signers"]


@pytest.mark.parametrize("vector", VECTORS["open"], ids=lambda v: v["desc"])
def test_open_gives_go_verdict(vector: dict) -> None:
    msg = base64.b64decode(vector["msg_b64"])
    verifiers = [parse_verifier_key(v) for v in vector["verifiers"]]
    error = ERRORS[vector["want_error"]]
    if error is not None:
        with pytest.raises(error):
            open_note(msg, verifiers)
        return
    note = open_note(msg, verifiers)
    assert note.text == vector["want_text"]
    assert [s.name for s in note.signatures] == vector["want_signers"]
    assert [s.name for s in note.unverified] == vector["want_unverified"]


@pytest.mark.parametrize("vector", VECTORS["cosignatures"], ids=lambda v: v["desc"])
def test_cosignatures_match_go(vector: dict) -> None:
    signer = CosignatureSigner(WITNESS, kat_key(WITNESS), clock=lambda: vector["timestamp"])
    text = parse_note(vector["checkpoint"]).text
    assert cosigned_message(vector["timestamp"], text.encode()).decode() == vector["message"]
    assert NoteSignature(signer.name, signer.key_id, signer.sign(text.encode())).line() == vector["line"]
    note = open_note(vector["checkpoint"] + vector["line"], [signer.verifier()])
    assert cosignature_timestamp(note.signatures[0].signature) == vector["timestamp"]
    assert [s.name for s in note.unverified] == [LOG]


@pytest.mark.skipif(shutil.which("go") is None,
                    reason="go is not on PATH (apt-get install golang-go golang-golang-x-mod-dev to re-run it)")
@pytest.mark.skipif(not (GOPATH / "src/golang.org/x/mod/sumdb/note").is_dir(),
                    reason=f"golang.org/x/mod is not under {GOPATH} (apt-get install golang-golang-x-mod-dev)")
def test_the_go_program_still_prints_these_vectors(tmp_path: Path) -> None:
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH), "GOFLAGS": "",
           "GOCACHE": os.environ.get("GOCACHE", str(tmp_path / "go-cache"))}
    result = subprocess.run([shutil.which("go") or "go", "run", "./tests/interop/go/kat"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == VECTORS_PATH.read_text(encoding="utf-8")


# --- key names and verifier keys ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "a b", "a+b", "tab\there", "nbsp\u00a0", "em\u2003space", "nl\n", "ctl\x01"])
def test_bad_key_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidKeyName, match="key name"):
        check_key_name(name)


@pytest.mark.parametrize("name", ["example.com/log", "forgetd/0123abcd", "ünïcode/é", "a=b", "del\x7f"])
def test_good_key_names_pass(name: str) -> None:
    assert check_key_name(name) == name


def _vkey_parts() -> tuple[str, str, str]:
    name, hex_id, b64 = KEYS[LOG]["vkey"].split("+", 2)
    return name, hex_id, b64


@pytest.mark.parametrize(("vkey", "match"), [
    ("forgetd/kat-log", "<name>\\+<hex key id>\\+<base64 key>"),
    ("forgetd/kat-log+7e6d09bb", "<name>\\+<hex key id>\\+<base64 key>"),
    (f"forgetd/kat-log+7e6d09b+{_vkey_parts()[2]}", "8 hex digits"),
    (f"forgetd/kat-log+7e6d09bg+{_vkey_parts()[2]}", "8 hex digits"),
    (f"forgetd/kat-log+00000000+{_vkey_parts()[2]}", "does not match the name and key \\(expected 7e6d09bb\\)"),
    (f"example.com/x+7e6d09bb+{_vkey_parts()[2]}", "does not match"),
    ("forgetd/kat-log+7e6d09bb+!!!!", "not base64"),
    ("forgetd/kat-log+7e6d09bb+AQID", "32 bytes"),
    (f"forgetd/kat-log+7e6d09bb+{base64.b64encode(bytes([2]) + bytes(32)).decode()}", "type 0x02 is not supported"),
    ("forgetd/kat-log+7e6d09bb+", "type nothing is not supported"),
])
def test_bad_verifier_keys_are_refused(vkey: str, match: str) -> None:
    with pytest.raises(InvalidVerifierKey, match=match):
        parse_verifier_key(vkey)


def test_a_verifier_key_with_a_bad_name_is_refused() -> None:
    with pytest.raises(InvalidKeyName):
        parse_verifier_key("a b+7e6d09bb+" + _vkey_parts()[2])


def test_key_id_is_the_spec_formula() -> None:
    import hashlib

    pub = kat_key(LOG).public_key
    assert key_id(LOG, 1, pub) == hashlib.sha256(LOG.encode() + b"\n\x01" + pub).digest()[:4]
    assert kat_signer(LOG).key_id.hex() == KEYS[LOG]["key_id_hex"]


# --- signing and opening ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "match"), [
    ("no newline", "end in a newline"),
    ("", "end in a newline"),
    ("tab\there\n", "U\\+0009 at byte 3"),
    ("cr\r\n", "U\\+000D"),
    ("lone \ud800 surrogate\n", "UTF-8 cannot encode"),
    ("x" * MAX_NOTE_SIZE + "\n", "over the"),
])
def test_sign_refuses_text_that_no_verifier_would_open(text: str, match: str) -> None:
    with pytest.raises(MalformedNote, match=match):
        sign_note(text, kat_signer(LOG))


def test_sign_needs_a_signer() -> None:
    with pytest.raises(NoteError, match="at least one signature"):
        sign_note("text\n")


def test_resigning_replaces_the_old_signature_of_the_same_key() -> None:
    first = parse_note(sign_note("t\n", kat_signer(LOG), kat_signer(OTHER)))
    again = parse_note(sign_note("t\n", kat_signer(LOG), keep=first.unverified))
    assert [s.name for s in again.unverified] == [OTHER, LOG]


def test_the_spec_minimum_of_16_signatures_opens_and_the_limit_is_100() -> None:
    signers = [Ed25519Signer(f"k{i}.example", SigningKey.generate()) for i in range(16)]
    note = open_note(sign_note("sixteen\n", *signers), [s.verifier() for s in signers])
    assert len(note.signatures) == 16
    junk = tuple(NoteSignature(f"j{i}", b"\0\0\0\1", b"x") for i in range(MAX_SIGNATURES))
    with pytest.raises(NoteError, match="at most 100"):
        sign_note("t\n", kat_signer(LOG), keep=junk)


def test_a_note_over_the_size_limit_is_refused_before_parsing() -> None:
    with pytest.raises(MalformedNote, match="over the 1048576-byte limit"):
        parse_note(b"x" * (MAX_NOTE_SIZE + 1))


def test_a_signature_sharing_only_the_key_id_with_a_known_key_is_ignored() -> None:
    known = kat_signer(LOG)
    impostor = Ed25519Signer("example.com/impostor", kat_key(LOG))
    line = NoteSignature(impostor.name, known.key_id, impostor.sign(b"t\n")).line()  # known id, other name
    msg = sign_note("t\n", known) + line.encode()
    note = open_note(msg, [known.verifier()])
    assert [s.name for s in note.signatures] == [LOG] and [s.name for s in note.unverified] == [impostor.name]


def test_unverified_note_names_the_signers_and_the_known_keys() -> None:
    with pytest.raises(UnverifiedNote) as caught:
        open_note(sign_note("t\n", kat_signer(OTHER)), [kat_signer(LOG).verifier()])
    assert caught.value.unknown == (f"{OTHER}+{KEYS[OTHER]['key_id_hex']}",)
    assert f"known: {LOG}+{KEYS[LOG]['key_id_hex']}" in str(caught.value)


def test_a_bad_signature_by_a_known_key_names_it() -> None:
    msg = sign_note("hello\n", kat_signer(LOG)).replace(b"hello", b"jello")
    with pytest.raises(NoteSignatureInvalid) as caught:
        open_note(msg, [kat_signer(LOG).verifier()])
    assert (caught.value.name, caught.value.key_id.hex()) == (LOG, KEYS[LOG]["key_id_hex"])


class _Claims:
    """A verifier claiming another key's name and id: how a name and key id collision would look."""

    def __init__(self, name: str, key_id: bytes) -> None:
        self.name, self.key_id, self.vkey = name, key_id, "(forged)"

    def verify(self, text: bytes, signature: bytes) -> bool:
        return False


def test_two_different_verifiers_with_one_name_and_id_are_refused() -> None:
    real = kat_signer(LOG).verifier()
    with pytest.raises(NoteError, match="share the name and key id"):
        open_note(sign_note("t\n", kat_signer(LOG)), [real, _Claims(real.name, real.key_id)])


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def test_non_canonical_base64_in_a_signature_is_refused() -> None:
    head, b64 = sign_note("t\n", kat_signer(LOG)).decode()[:-1].rsplit(" ", 1)
    stem = b64.rstrip("=")
    assert stem != b64  # 68 bytes: padding, so the last character has spare bits
    loose = stem[:-1] + _ALPHABET[_ALPHABET.index(stem[-1]) ^ 1] + b64[len(stem):]
    assert base64.b64decode(loose) == base64.b64decode(b64)  # the same bytes, spelt another way
    with pytest.raises(MalformedNote, match="not canonical base64"):
        open_note(f"{head} {loose}\n", [kat_signer(LOG).verifier()])


# --- cosignatures ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("when", [0, -1, 2**63, True])
def test_a_cosigner_refuses_a_timestamp_outside_the_spec(when: int) -> None:
    with pytest.raises(NoteError, match="1..2\\^63-1"):
        CosignatureSigner(WITNESS, kat_key(WITNESS), clock=lambda: when).sign(b"t\n")


def test_a_cosignature_covers_its_timestamp() -> None:
    signer = CosignatureSigner(WITNESS, kat_key(WITNESS), clock=lambda: 1_700_000_000)
    signature = signer.sign(b"t\n")
    moved = (1_700_000_001).to_bytes(8, "big") + signature[8:]
    assert signer.verifier().verify(b"t\n", signature)
    assert not signer.verifier().verify(b"t\n", moved)
    assert not Ed25519Verifier(WITNESS, signer.key.public_key).verify(b"t\n", signature)  # type 0x01 != 0x04


def test_append_signatures_adds_each_line_once() -> None:
    msg = sign_note("t\n", kat_signer(LOG))
    cosig = parse_note(sign_note("t\n", kat_signer(OTHER))).unverified
    both = append_signatures(append_signatures(msg, cosig), cosig)
    assert [s.name for s in parse_note(both).unverified] == [LOG, OTHER]


# --- properties ------------------------------------------------------------------------------------------------

_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters=[chr(c) for c in range(32)]),
                max_size=40)
_TEXTS = st.lists(_TEXT, min_size=1, max_size=6).map(lambda lines: "\n".join(lines) + "\n")
_SIGNERS = [kat_signer(LOG), kat_signer(OTHER)]


@settings(max_examples=60, deadline=None)
@given(text=_TEXTS, which=st.lists(st.sampled_from([0, 1]), min_size=1, max_size=2, unique=True))
def test_any_valid_text_round_trips_through_sign_and_open(text: str, which: list[int]) -> None:
    signers = [_SIGNERS[i] for i in which]
    signed = sign_note(text, *signers)
    note = open_note(signed, [s.verifier() for s in _SIGNERS])
    assert note.text == text and [s.name for s in note.signatures] == [s.name for s in signers]
    assert Note(note.text, note.signatures).to_bytes() == signed
    assert parse_note(signed).to_bytes() == signed


@settings(max_examples=60, deadline=None)
@given(text=_TEXTS, data=st.data())
def test_changing_any_byte_of_the_text_is_never_accepted(text: str, data: st.DataObject) -> None:
    signed = bytearray(sign_note(text, _SIGNERS[0]))
    i = data.draw(st.integers(0, len(text.encode()) - 1))
    signed[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises((MalformedNote, NoteSignatureInvalid)):
        open_note(bytes(signed), [_SIGNERS[0].verifier()])
