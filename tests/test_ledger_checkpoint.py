"""c2sp.org/tlog-checkpoint (ledger/checkpoint.py): Go's checkpoints, strict parsing, forgetd's head mapping,
a tamper matrix, and `forgetd ledger checkpoint`."""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from forgetd.ledger import (
    EMPTY_ROOT,
    Checkpoint,
    Ed25519Signer,
    Head,
    InvalidOrigin,
    Ledger,
    MalformedCheckpoint,
    NoteSignatureInvalid,
    OriginMismatch,
    ProofError,
    SigningKey,
    UnverifiedNote,
    checkpoint_for_head,
    checkpoint_signer,
    checkpoint_verifier,
    default_origin,
    index_to_seq,
    ledger_checkpoint,
    load_or_create_signing_key,
    open_checkpoint,
    parse_checkpoint,
    read_checkpoint,
    seq_to_index,
    sign_checkpoint,
    validate_origin,
)
from forgetd.ledger.cli import ledger as ledger_cli
from forgetd.ledger.signing import key_id

ROOT = Path(__file__).resolve().parents[1]
VECTORS = json.loads((ROOT / "tests" / "data" / "c2sp_note_vectors.json").read_text(encoding="utf-8"))
KEYS = {k["name"]: k for k in VECTORS["keys"]}
LOG = "forgetd/kat-log"


def kat_key(name: str) -> SigningKey:
    return SigningKey(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(KEYS[name]["seed_hex"])))


LOG_KEY = kat_key(LOG)
LOG_VERIFIER = checkpoint_verifier(LOG_KEY.public_key, LOG)


@pytest.fixture
def book(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        for i in range(7):
            ledger.append("forget.requested", {"request": f"r{i}"}, event_id=f"id-{i}")
        yield ledger


# --- known answers from Go -----------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["checkpoints"], ids=lambda v: v["desc"])
def test_checkpoints_match_go(vector: dict) -> None:
    checkpoint = parse_checkpoint(vector["text"])
    assert (checkpoint.origin, checkpoint.size) == (vector["origin"], vector["size"])
    assert base64.b64encode(checkpoint.root_hash).decode() == vector["root"]
    assert list(checkpoint.extensions) == vector["extensions"]
    assert checkpoint.to_text() == vector["text"]
    if vector["signed"]:
        assert sign_checkpoint(checkpoint, checkpoint_signer(LOG_KEY, LOG)).decode() == vector["signed"]
        assert open_checkpoint(vector["signed"], LOG_VERIFIER, origin=LOG).checkpoint == checkpoint


def test_the_empty_checkpoint_has_the_empty_root() -> None:
    empty = parse_checkpoint(VECTORS["checkpoints"][0]["text"])
    assert empty.size == 0 and empty.root_hash == EMPTY_ROOT


def test_go_sum_tree_notes_are_checkpoints_but_not_forgetd_origins() -> None:
    go = parse_checkpoint(VECTORS["checkpoints"][-1]["text"])
    assert go.origin == "go.sum database tree"
    with pytest.raises(InvalidOrigin, match="not a schema-less URL"):
        validate_origin(go.origin)


# --- strict parsing --------------------------------------------------------------------------------------------

ROOT_B64 = base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize(("text", "match"), [
    (f"o\n5\n{ROOT_B64}", "end in a newline"),
    ("o\n5\n", "at least 3 lines"),
    (f"o\n05\n{ROOT_B64}\n", "without leading zeroes, got .05."),
    (f"o\n+5\n{ROOT_B64}\n", "decimal"),
    (f"o\n 5\n{ROOT_B64}\n", "decimal"),
    (f"o\n-1\n{ROOT_B64}\n", "decimal"),
    (f"o\n\u0665\n{ROOT_B64}\n", "decimal"),  # an Arabic-Indic five: int() would take it
    (f"o\n1_000\n{ROOT_B64}\n", "decimal"),
    (f"o\n{2**63}\n{ROOT_B64}\n", "over 2\\^63-1"),
    ("o\n5\nnot base64!\n", "root hash line is not base64"),
    (f"o\n5\n{base64.b64encode(bytes(31)).decode()}\n", "32 bytes"),
    (f"o\n5\n{ROOT_B64[:-2]}B=\n", "not canonical base64"),
    (f"o\n5\n{ROOT_B64}\n\next\n", "extension line 1 is empty"),
    (f"\n5\n{ROOT_B64}\n", "origin must be a non-empty"),
    (f"o\tx\n5\n{ROOT_B64}\n", "control character U\\+0009"),
    (f"o\n5\n{ROOT_B64}\nbad\x01ext\n", "extension line 1 .* control character"),
    (b"o\xff\n5\n" + ROOT_B64.encode() + b"\n", "not valid UTF-8"),
])
def test_malformed_checkpoints_are_refused(text: str | bytes, match: str) -> None:
    with pytest.raises(MalformedCheckpoint, match=match):
        parse_checkpoint(text)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"size": -1}, "0..2\\^63-1"), ({"size": True}, "0..2\\^63-1"), ({"size": 2**63}, "0..2\\^63-1"),
    ({"root_hash": bytes(31)}, "32 bytes"), ({"origin": "two\nlines"}, "control character"),
    ({"extensions": ("",)}, "extension line 1 must be a non-empty"),
])
def test_checkpoint_values_are_validated(kwargs: dict, match: str) -> None:
    fields = {"origin": "o", "size": 1, "root_hash": bytes(32), "extensions": (), **kwargs}
    with pytest.raises(MalformedCheckpoint, match=match):
        Checkpoint(**fields)


_LINE = st.text(st.characters(exclude_categories=["Cs"], exclude_characters=[chr(c) for c in range(32)]),
                min_size=1, max_size=30)


@settings(max_examples=100, deadline=None)
@given(origin=_LINE, size=st.integers(0, 2**63 - 1), root=st.binary(min_size=32, max_size=32),
       extensions=st.lists(_LINE, max_size=4))
def test_checkpoints_round_trip(origin: str, size: int, root: bytes, extensions: list[str]) -> None:
    checkpoint = Checkpoint(origin, size, root, tuple(extensions))
    assert parse_checkpoint(checkpoint.to_text()) == checkpoint
    assert parse_checkpoint(checkpoint.to_text().encode()).to_text() == checkpoint.to_text()


# --- forgetd's head in a checkpoint --------------------------------------------------------------------------


def test_a_head_travels_whole_with_the_chain_extension(book: Ledger) -> None:
    head = book.head()
    checkpoint = checkpoint_for_head(head, "example.com/forgetd")
    assert checkpoint.size == head.size == 7 and checkpoint.root_hash == head.merkle_root
    assert checkpoint.extensions == (f"forgetd-chain {base64.b64encode(head.chain_hash).decode()}",)
    assert checkpoint.chain_hash == head.chain_hash
    assert parse_checkpoint(checkpoint.to_text()).to_head() == head


@pytest.mark.parametrize(("extensions", "match"), [
    ((), "no forgetd-chain line"),
    (("forgetd-chain AAAA",), "holds 3 bytes, want 32"),
    (("forgetd-chain",), "not base64|holds 0 bytes"),
    ((f"forgetd-chain {ROOT_B64}", f"forgetd-chain {ROOT_B64}"), "2 forgetd-chain lines"),
])
def test_to_head_needs_exactly_one_good_chain_line(extensions: tuple[str, ...], match: str) -> None:
    with pytest.raises(MalformedCheckpoint, match=match):
        Checkpoint("o", 1, bytes(32), extensions).to_head()


def test_seq_and_index_convert_in_one_place() -> None:
    assert [seq_to_index(s) for s in (1, 2, 10)] == [0, 1, 9]
    assert [index_to_seq(i) for i in (0, 1, 9)] == [1, 2, 10]
    for bad in (0, -1, True, 1.0):
        with pytest.raises(ProofError, match="seqs start at 1"):
            seq_to_index(bad)  # type: ignore[arg-type]
    with pytest.raises(ProofError, match="indices start at 0"):
        index_to_seq(-1)


def test_default_origin_is_stable_and_names_the_key() -> None:
    origin = default_origin(LOG_KEY.public_key)
    assert origin == f"forgetd/{key_id(LOG_KEY.public_key)}" == default_origin(kat_key(LOG).public_key)
    assert re.fullmatch(r"forgetd/[0-9a-f]{16}", origin) and validate_origin(origin) == origin
    assert default_origin(SigningKey.generate().public_key) != origin


@pytest.mark.parametrize(("origin", "match"), [
    ("", "non-empty"), ("https://example.com/log", "has a scheme"), ("example.com/a b", "schema-less URL"),
    ("example.com/a+b", "schema-less URL"), ("/leading-slash", "schema-less URL"), ("x" * 256, "over 255"),
    ("ex\u00e4mple.com", "schema-less URL"),
])
def test_bad_origins_say_how_to_pick_one(origin: str, match: str) -> None:
    with pytest.raises(InvalidOrigin, match=match):
        validate_origin(origin)


def test_ledger_checkpoint_signs_the_current_head(book: Ledger) -> None:
    key = SigningKey.generate()
    signed = open_checkpoint(ledger_checkpoint(book, key), checkpoint_verifier(key.public_key,
                                                                               default_origin(key.public_key)))
    assert signed.checkpoint.to_head() == book.head()
    assert read_checkpoint(ledger_checkpoint(book, key, "example.com/x")).origin == "example.com/x"
    with pytest.raises(InvalidOrigin):
        ledger_checkpoint(book, key, "not an origin")


# --- tamper matrix ---------------------------------------------------------------------------------------------

GOOD = VECTORS["checkpoints"][3]["signed"]  # 13 leaves with the forgetd-chain line, signed by the KAT log key


def _replace_line(msg: str, index: int, value: str) -> str:
    lines = msg.split("\n")
    lines[index] = value
    return "\n".join(lines)


def _resign(text: str, key: SigningKey, name: str = LOG) -> str:
    return sign_checkpoint(parse_checkpoint(text), Ed25519Signer(name, key)).decode()


def _flip_signature(msg: str) -> str:
    text, sig = msg[:-1].rsplit(" ", 1)
    raw = bytearray(base64.b64decode(sig))
    raw[20] ^= 1
    return f"{text} {base64.b64encode(bytes(raw)).decode()}\n"


@pytest.mark.parametrize(("desc", "tampered", "error", "fields"), [
    ("signature bit flipped", _flip_signature(GOOD), NoteSignatureInvalid, {"name": LOG}),
    ("size edited", _replace_line(GOOD, 1, "14"), NoteSignatureInvalid, {"name": LOG}),
    ("root edited", _replace_line(GOOD, 2, ROOT_B64), NoteSignatureInvalid, {"name": LOG}),
    ("extension edited", _replace_line(GOOD, 3, f"forgetd-chain {ROOT_B64}"), NoteSignatureInvalid, {"name": LOG}),
    ("origin edited", _replace_line(GOOD, 0, "example.com/evil"), OriginMismatch,
     {"expected": LOG, "actual": "example.com/evil"}),
    ("re-signed by another key", _resign(GOOD.split("\n\n")[0] + "\n", SigningKey.generate()), UnverifiedNote, {}),
])
def test_tampered_checkpoints_are_refused_naming_what(desc: str, tampered: str, error: type[Exception],
                                                      fields: dict) -> None:
    with pytest.raises(error) as caught:
        open_checkpoint(tampered, LOG_VERIFIER, origin=LOG)
    for name, value in fields.items():
        assert getattr(caught.value, name) == value
    assert open_checkpoint(GOOD, LOG_VERIFIER, origin=LOG).checkpoint.size == 13


# --- forgetd ledger checkpoint ---------------------------------------------------------------------------------


@pytest.fixture
def store(book: Ledger) -> Path:
    """A ledger laid out as in a forgetd store: ledger.sqlite with keys/head_ed25519.key beside it."""
    load_or_create_signing_key(book.path.parent / "keys" / "head_ed25519.key")
    return book.path


def test_cli_prints_the_signed_checkpoint_with_the_store_key(store: Path) -> None:
    key = load_or_create_signing_key(store.parent / "keys" / "head_ed25519.key")
    result = CliRunner().invoke(ledger_cli, ["checkpoint", str(store)])
    assert result.exit_code == 0, result.output
    origin = default_origin(key.public_key)
    signed = open_checkpoint(result.output, checkpoint_verifier(key.public_key, origin), origin=origin)
    with Ledger(store, readonly=True) as book:
        assert signed.checkpoint.to_head() == book.head()


def test_cli_takes_an_origin_and_a_key(store: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    key = load_or_create_signing_key(other)
    result = CliRunner().invoke(ledger_cli, ["checkpoint", str(store), "--origin", "example.com/f", "--key", str(other)])
    assert result.exit_code == 0, result.output
    assert open_checkpoint(result.output, checkpoint_verifier(key.public_key, "example.com/f")).checkpoint.size == 7


def test_cli_errors_are_one_line(store: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(ledger_cli, ["checkpoint", str(store), "--key", str(tmp_path / "nope.key")])
    assert missing.exit_code == 1 and missing.output == f"Error: no head key at {tmp_path / 'nope.key'}: pass --key\n"
    bad = runner.invoke(ledger_cli, ["checkpoint", str(store), "--origin", "https://x"])
    assert bad.exit_code == 1 and bad.output.startswith("Error: origin 'https://x' has a scheme")
    os.chmod(store.parent / "keys" / "head_ed25519.key", 0o644)
    loose = runner.invoke(ledger_cli, ["checkpoint", str(store)])
    assert loose.exit_code == 1 and "chmod 600" in loose.output


def test_cli_checkpoint_has_help() -> None:
    result = CliRunner().invoke(ledger_cli, ["checkpoint", "-h"])
    assert result.exit_code == 0 and result.output.startswith("Usage: ") and "c2sp.org/tlog-checkpoint" in result.output


def test_an_empty_ledger_checkpoint(tmp_path: Path) -> None:
    key = SigningKey.generate()
    with Ledger(tmp_path / "empty.sqlite") as empty:
        checkpoint = read_checkpoint(ledger_checkpoint(empty, key))
    assert (checkpoint.size, checkpoint.root_hash) == (0, EMPTY_ROOT) and checkpoint.to_head() == Head.empty()
