"""c2sp.org/tlog-proof@v1 (ledger/tlogproof.py): Go's proofs and trees, export from a ledger, a tamper matrix."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from forgetd.ledger import (
    Checkpoint,
    Ledger,
    MalformedTlogProof,
    NoteSignatureInvalid,
    OriginMismatch,
    ProofError,
    RootMismatch,
    SigningKey,
    TlogProof,
    UnverifiedNote,
    checkpoint_signer,
    checkpoint_verifier,
    export_tlog_proof,
    hash_leaf,
    ledger_checkpoint,
    parse_tlog_proof,
    parse_verifier_key,
    sign_checkpoint,
    verify_note,
    verify_tlog_proof,
)
from forgetd.ledger.merkle import MerkleTree
from forgetd.ledger.note_keys import cosignature_timestamp

ROOT = Path(__file__).resolve().parents[1]
VECTORS = json.loads((ROOT / "tests" / "data" / "c2sp_note_vectors.json").read_text(encoding="utf-8"))
KEYS = {k["name"]: k for k in VECTORS["keys"]}
LOG, WITNESS = "forgetd/kat-log", "witness.example/kat"
LOG_KEY = SigningKey(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(KEYS[LOG]["seed_hex"])))
LOG_VERIFIER = checkpoint_verifier(LOG_KEY.public_key, LOG)
GO_TREE = MerkleTree(hash_leaf(leaf.encode()) for leaf in VECTORS["leaves"])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- known answers from Go: trees, proofs, tlog-proofs ------------------------------------------------------


def test_roots_match_go_tlog() -> None:
    assert [b64(GO_TREE.root(r["size"])) for r in VECTORS["roots"]] == [r["root"] for r in VECTORS["roots"]]


@pytest.mark.parametrize("vector", VECTORS["inclusion"], ids=lambda v: f"{v['index']}-of-{v['size']}")
def test_inclusion_proofs_match_go_tlog(vector: dict) -> None:
    assert [b64(h) for h in GO_TREE.inclusion_proof(vector["index"], vector["size"])] == vector["proof"]


@pytest.mark.parametrize("vector", VECTORS["consistency"], ids=lambda v: f"{v['old']}-to-{v['new']}")
def test_consistency_proofs_match_go_tlog(vector: dict) -> None:
    assert [b64(h) for h in GO_TREE.consistency_proof(vector["old"], vector["new"])] == vector["proof"]


@pytest.mark.parametrize("vector", VECTORS["tlog_proofs"], ids=lambda v: v["desc"])
def test_go_tlog_proofs_parse_round_trip_and_verify(vector: dict) -> None:
    proof = parse_tlog_proof(vector["proof"])
    assert proof.to_bytes().decode() == vector["proof"]
    assert proof.index == vector["index"] and proof.seq == vector["index"] + 1
    assert (b64(proof.extra) if proof.extra else "") == vector["extra_b64"]
    signed = verify_tlog_proof(proof, hash_leaf(vector["leaf"].encode()), LOG_VERIFIER, origin=LOG)
    assert signed.note.signed_by(LOG_VERIFIER)


def test_a_cosigned_proof_keeps_the_cosignature_for_the_witness_policy() -> None:
    vector = VECTORS["tlog_proofs"][3]
    signed = verify_tlog_proof(vector["proof"], hash_leaf(vector["leaf"].encode()), LOG_VERIFIER)
    witness = parse_verifier_key(KEYS[WITNESS]["vkey"])
    cosigned = verify_note(signed.note, [witness])
    assert cosigned.signed_by(witness) and cosignature_timestamp(cosigned.signatures[0].signature) == 1700000000


# --- export from a ledger --------------------------------------------------------------------------------------


@pytest.fixture
def book(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        for i in range(13):
            ledger.append("forget.requested", {"request": f"r{i}"}, event_id=f"id-{i}")
        yield ledger


def test_every_entry_exports_a_proof_that_verifies(book: Ledger) -> None:
    signed = ledger_checkpoint(book, LOG_KEY, LOG)
    for seq in range(1, 14):
        proof = export_tlog_proof(book, seq, signed, extra=b"receipt" if seq == 3 else None)
        again = parse_tlog_proof(proof.to_bytes())
        assert again == proof and again.seq == seq
        assert verify_tlog_proof(again, book.entry(seq).leaf_hash, LOG_VERIFIER, origin=LOG).checkpoint.size == 13


def test_an_old_checkpoint_still_proves_the_entries_it_covers(book: Ledger) -> None:
    old = ledger_checkpoint(book, LOG_KEY, LOG)
    book.append("forget.requested", {"request": "late"}, event_id="late")
    proof = export_tlog_proof(book, 5, old)
    assert verify_tlog_proof(proof, book.entry(5).leaf_hash, LOG_VERIFIER).checkpoint.size == 13
    with pytest.raises(ProofError, match="seq 14 is not in the checkpoint's tree of size 13"):
        export_tlog_proof(book, 14, old)
    with pytest.raises(ProofError, match="seqs start at 1"):
        export_tlog_proof(book, 0, old)


def test_export_refuses_another_ledgers_checkpoint(book: Ledger, tmp_path: Path) -> None:
    with Ledger(tmp_path / "other.sqlite") as other:
        for i in range(13):
            other.append("other", {"i": i})
        foreign = ledger_checkpoint(other, LOG_KEY, LOG)
    with pytest.raises(RootMismatch, match="the ledger's tree at size 13"):
        export_tlog_proof(book, 1, foreign)


# --- tamper matrix ---------------------------------------------------------------------------------------------

GOOD = VECTORS["tlog_proofs"][0]  # leaf 5 of 13
GOOD_PROOF = parse_tlog_proof(GOOD["proof"])
LEAF = hash_leaf(GOOD["leaf"].encode())
GO_ROOT_13 = GO_TREE.root(13)


def _checkpoint(size: int, root: bytes, origin: str = LOG, key: SigningKey = LOG_KEY) -> bytes:
    return sign_checkpoint(Checkpoint(origin, size, root), checkpoint_signer(key, origin))


def _edit(proof: TlogProof, **changes: object) -> TlogProof:
    fields = {"index": proof.index, "hashes": proof.hashes, "checkpoint": proof.checkpoint, "extra": proof.extra}
    return TlogProof(**{**fields, **changes})  # type: ignore[arg-type]


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def _edited_checkpoint_line(line: int, value: str) -> bytes:
    lines = GOOD_PROOF.checkpoint.decode().split("\n")
    lines[line] = value
    return "\n".join(lines).encode()


def _flipped_signature() -> bytes:
    text, sig = GOOD_PROOF.checkpoint.decode()[:-1].rsplit(" ", 1)
    return f"{text} {b64(_flip(base64.b64decode(sig), 30))}\n".encode()


TAMPERS = [
    ("checkpoint signature", {"checkpoint": _flipped_signature()}, NoteSignatureInvalid, {"name": LOG}),
    ("checkpoint size edited", {"checkpoint": _edited_checkpoint_line(1, "12")}, NoteSignatureInvalid, {}),
    ("checkpoint root edited", {"checkpoint": _edited_checkpoint_line(2, b64(bytes(32)))}, NoteSignatureInvalid, {}),
    ("checkpoint origin edited", {"checkpoint": _edited_checkpoint_line(0, "example.com/evil")}, OriginMismatch,
     {"expected": LOG, "actual": "example.com/evil"}),
    ("checkpoint signed by another key", {"checkpoint": _checkpoint(13, GO_ROOT_13, key=SigningKey.generate())},
     UnverifiedNote, {}),
    ("size re-signed by the log", {"checkpoint": _checkpoint(12, GO_TREE.root(12))}, RootMismatch,
     {"expected": GO_TREE.root(12)}),
    ("root re-signed by the log", {"checkpoint": _checkpoint(13, bytes(32))}, RootMismatch, {"expected": bytes(32)}),
    ("proof hash flipped", {"hashes": (_flip(GOOD_PROOF.hashes[0], 0), *GOOD_PROOF.hashes[1:])}, RootMismatch,
     {"expected": GO_ROOT_13}),
    ("proof hash dropped", {"hashes": GOOD_PROOF.hashes[:-1]}, ProofError, {}),
    ("index moved", {"index": 4}, RootMismatch, {"expected": GO_ROOT_13}),
    ("index past the tree", {"index": 13}, ProofError, {}),
]


@pytest.mark.parametrize(("desc", "changes", "error", "fields"), TAMPERS, ids=[t[0] for t in TAMPERS])
def test_tampered_proofs_are_refused_naming_what(desc: str, changes: dict, error: type[Exception],
                                                 fields: dict) -> None:
    tampered = _edit(GOOD_PROOF, **changes)
    with pytest.raises(error) as caught:
        verify_tlog_proof(tampered.to_bytes(), LEAF, LOG_VERIFIER, origin=LOG)
    for name, value in fields.items():
        assert getattr(caught.value, name) == value
    verify_tlog_proof(GOOD_PROOF, LEAF, LOG_VERIFIER, origin=LOG)  # the untouched proof still holds


def test_the_error_messages_say_which_check_failed() -> None:
    with pytest.raises(RootMismatch, match=r"checkpoint root \(leaf index 4 in tree size 13\) mismatch: expected "):
        verify_tlog_proof(_edit(GOOD_PROOF, index=4), LEAF, LOG_VERIFIER)
    with pytest.raises(ProofError, match="index 13 out of range for the checkpoint's tree size 13"):
        verify_tlog_proof(_edit(GOOD_PROOF, index=13), LEAF, LOG_VERIFIER)
    with pytest.raises(ProofError, match="wrong proof size 3, want 4"):
        verify_tlog_proof(_edit(GOOD_PROOF, hashes=GOOD_PROOF.hashes[:-1]), LEAF, LOG_VERIFIER)


def test_another_leaf_is_refused() -> None:
    with pytest.raises(RootMismatch) as caught:
        verify_tlog_proof(GOOD_PROOF, hash_leaf(b"leaf 6"), LOG_VERIFIER)
    assert caught.value.expected == GO_ROOT_13 and caught.value.computed != GO_ROOT_13


def test_the_extra_line_is_not_authenticated() -> None:
    # The spec says so: applications must not trust it. Changing it leaves the proof valid.
    assert verify_tlog_proof(_edit(GOOD_PROOF, extra=b"anything"), LEAF, LOG_VERIFIER).checkpoint.size == 13


# --- strict parsing --------------------------------------------------------------------------------------------

_CP = GOOD_PROOF.checkpoint.decode()
_H = b64(bytes(32))


@pytest.mark.parametrize(("text", "match"), [
    (f"c2sp.org/tlog-proof@v2\nindex 0\n\n{_CP}", "first line must be"),
    (f"c2sp.org/tlog-proof@v1\n\n{_CP}", "must be 'index <N>'"),
    (f"c2sp.org/tlog-proof@v1\nindex 05\n\n{_CP}", "without leading zeroes, got .05."),
    (f"c2sp.org/tlog-proof@v1\nindex -1\n\n{_CP}", "without leading zeroes, got .-1."),
    (f"c2sp.org/tlog-proof@v1\nindex 1\n{_H[:-2]}\n\n{_CP}", "proof hash 0 is not"),
    (f"c2sp.org/tlog-proof@v1\nindex 1\n{b64(bytes(31))}\n\n{_CP}", "proof hash 0 is 31 bytes"),
    ("c2sp.org/tlog-proof@v1\nindex 1\n" + f"{_H}\n" * 64 + f"\n{_CP}", "at most 63 hashes"),
    (f"c2sp.org/tlog-proof@v1\nindex 1\n{_H}\n", "needs an empty line"),
    (f"c2sp.org/tlog-proof@v1\nextra \nindex 1\n\n{_CP}", "extra line is empty"),
    (f"c2sp.org/tlog-proof@v1\nextra !!\nindex 1\n\n{_CP}", "extra line is not base64"),
    (f"c2sp.org/tlog-proof@v1\nindex 1\n\nnot a checkpoint\n", "not a signed checkpoint"),
    ("c2sp.org/tlog-proof@v1\nindex \u0661\n\n" + _CP, "must be ASCII"),
])
def test_malformed_proofs_are_refused(text: str, match: str) -> None:
    with pytest.raises(MalformedTlogProof, match=match):
        parse_tlog_proof(text)


@settings(max_examples=80, deadline=None)
@given(index=st.integers(0, 2**63 - 1), hashes=st.lists(st.binary(min_size=32, max_size=32), max_size=63),
       extra=st.none() | st.binary(min_size=1, max_size=64))
def test_tlog_proofs_round_trip(index: int, hashes: list[bytes], extra: bytes | None) -> None:
    proof = TlogProof(index, tuple(hashes), GOOD_PROOF.checkpoint, extra)
    assert parse_tlog_proof(proof.to_bytes()) == proof
