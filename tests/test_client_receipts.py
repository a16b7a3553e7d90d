"""Receipts: the JSON round trip (and `forget --json` output as a receipt file), checked against a store and a
daemon; a truncated or rewritten ledger, a bad signature, another key and a broken proof are each named."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import running_daemon
from forgetd.client import Client, Receipt
from forgetd.client.cli.main import main
from forgetd.client.receipts import (
    InvalidReceipt,
    load_receipt,
    receipt_to_json,
    save_receipt,
    verify_receipt_with_client,
    verify_receipt_with_store,
)
from forgetd.ledger import Ledger
from forgetd.ledger.signing import SigningKey
from forgetd.ledger.store import TRIGGERS_SQL


@pytest.fixture
def receipts(store: Path) -> list[Receipt]:
    """Three receipts from a daemon on `store` (now stopped): applied, applied, and one sent without waiting."""
    with running_daemon(store) as running, Client(running.address) as client:
        a, b, c = running.runtime.engine.sample_ids()[:3]
        out = [client.forget([a], strategy="sisa"), client.forget([b], strategy="dpus")]
        out.append(client.forget([c], strategy="hs", wait=False))
    return out


def _truncate(ledger: Path, from_seq: int) -> None:
    conn = sqlite3.connect(ledger, isolation_level=None)
    conn.execute("DROP TRIGGER entries_no_delete")
    conn.execute("DELETE FROM entries WHERE seq >= ?", (from_seq,))
    conn.execute(TRIGGERS_SQL["entries_no_delete"])
    conn.close()


def test_json_round_trip(receipts: list[Receipt], tmp_path: Path) -> None:
    for receipt in receipts:
        save_receipt(receipt, tmp_path / "r.json")
        assert load_receipt(tmp_path / "r.json") == receipt
        receipt.save(tmp_path / "m.json")
        assert Receipt.load(tmp_path / "m.json") == receipt
    pending = receipt_to_json(receipts[2])
    assert pending["applied_proof"] is None or pending["status"] == "applied"


def test_forget_json_output_is_a_receipt_file(store: Path, tmp_path: Path) -> None:
    with running_daemon(store) as running:
        sid = running.runtime.engine.sample_ids()[0]
        out = CliRunner().invoke(main, ["forget", "--server", running.address, "--json", sid])
        assert out.exit_code == 0, out.output
        (tmp_path / "r.json").write_text(out.output)
        with Client(running.address) as client:
            assert verify_receipt_with_client(load_receipt(tmp_path / "r.json"), client).ok


@pytest.mark.parametrize("text, message", [
    ("not json", "not JSON"),
    ("{}", "receipt field 'head' is missing"),
])
def test_malformed_receipt_files_are_named(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "r.json").write_text(text)
    with pytest.raises(InvalidReceipt, match=message):
        load_receipt(tmp_path / "r.json")


def test_receipts_hold_against_the_store_and_the_daemon(store: Path, receipts: list[Receipt]) -> None:
    for receipt in receipts:
        report = verify_receipt_with_store(receipt, store)
        assert report.ok, report.problems
        assert "consistency with the ledger now" in report.checks
    with running_daemon(store) as running, Client(running.address) as client:
        for receipt in receipts:
            assert client.verify_receipt(receipt).ok


def test_truncated_ledger_is_named(store: Path, receipts: list[Receipt]) -> None:
    receipt = receipts[1]
    assert receipt.head is not None
    _truncate(store / "ledger.sqlite", receipt.head.size)
    report = verify_receipt_with_store(receipt, store)
    assert not report.ok
    assert f"the tail from seq {receipt.head.size} was truncated" in report.problems[0]


def test_rewritten_ledger_is_named(store: Path, receipts: list[Receipt]) -> None:
    ledger = store / "ledger.sqlite"
    with Ledger(ledger, readonly=True) as old:
        entries = list(old.entries())
    ledger.unlink()
    with Ledger(ledger) as new:
        new.append_many([(e.type, e.payload, e.event_id) for e in entries])
    report = verify_receipt_with_store(receipts[0], store)
    assert not report.ok
    assert "is not a prefix of the ledger now" in report.problems[0]


def test_bad_signature_and_foreign_key_are_named(store: Path, receipts: list[Receipt]) -> None:
    receipt = receipts[0]
    assert receipt.head is not None
    sig = bytearray(receipt.head.signature)
    sig[0] ^= 0x80
    flipped = dataclasses.replace(receipt, head=dataclasses.replace(receipt.head, signature=bytes(sig)))
    assert "the receipt's head: bad signature" in verify_receipt_with_store(flipped, store).problems[0]
    # Re-signed by someone else's key: the signature verifies, but not under the key genesis recorded.
    from forgetd.ledger.signing import sign_head
    from forgetd.client.receipts import head_of

    other = SigningKey.generate()
    forged = sign_head(other, head_of(receipt.head))
    foreign = dataclasses.replace(receipt, head=dataclasses.replace(
        receipt.head, signature=forged.signature, public_key=other.public_key))
    problem = verify_receipt_with_store(foreign, store).problems[0]
    assert "not by the expected key" in problem


def test_broken_inclusion_proof_is_named(store: Path, receipts: list[Receipt]) -> None:
    receipt = receipts[1]
    assert receipt.requested_proof is not None and receipt.requested_proof.hashes
    hashes = list(receipt.requested_proof.hashes)
    hashes[0] = bytes(32)
    broken = dataclasses.replace(receipt, requested_proof=dataclasses.replace(receipt.requested_proof,
                                                                              hashes=tuple(hashes)))
    problem = verify_receipt_with_store(broken, store).problems[0]
    assert problem.seq == receipt.requested_seq and "fails against its own head" in problem


def test_daemon_check_names_a_shrunken_ledger(store: Path, tmp_path: Path) -> None:
    with running_daemon(store) as running, Client(running.address) as client:
        a, b = running.runtime.engine.sample_ids()[:2]
        client.forget([a])
    shutil.copytree(store, tmp_path / "earlier")  # the same deployment, one forget behind
    with running_daemon(store) as running, Client(running.address) as client:
        later = client.forget([b])
    with running_daemon(tmp_path / "earlier") as running, Client(running.address) as client:
        report = client.verify_receipt(later)
    assert not report.ok
    assert "cannot prove its ledger grew from the receipt's head" in report.problems[0]


def test_cli_receipt_verify(store: Path, receipts: list[Receipt], tmp_path: Path) -> None:
    save_receipt(receipts[0], tmp_path / "r.json")
    ok = CliRunner().invoke(main, ["receipt", "verify", str(tmp_path / "r.json"), "--store", str(store)])
    assert ok.exit_code == 0 and ok.output.startswith("ok: receipt "), ok.output
    as_json = CliRunner().invoke(main, ["receipt", "verify", str(tmp_path / "r.json"), "--store", str(store), "--json"])
    assert as_json.exit_code == 0 and json.loads(as_json.output)["ok"] is True
    neither = CliRunner().invoke(main, ["receipt", "verify", str(tmp_path / "r.json")])
    assert neither.exit_code == 2 and "exactly one of --server ADDR, --store DIR or --verifier-key VKEY" in neither.output
    _truncate(store / "ledger.sqlite", 2)
    bad = CliRunner().invoke(main, ["receipt", "verify", str(tmp_path / "r.json"), "--store", str(store)])
    assert bad.exit_code == 1 and "Error: receipt " in bad.output and "truncated" in bad.output


_FIELDS = ("requested_seq", "requested_leaf_hash", "applied_seq", "applied_leaf_hash", "head.size", "head.chain_hash",
           "head.merkle_root", "head.signature", "head.public_key", "requested_proof.hashes", "applied_proof.hashes")


def _mutate(receipt: Receipt, field: str, byte: int, mask: int) -> Receipt:
    def flip(value: bytes) -> bytes:
        out = bytearray(value)
        out[byte % len(out)] ^= mask
        return bytes(out)

    if "." not in field:
        value = getattr(receipt, field)
        return dataclasses.replace(receipt, **{field: value + 1 + byte % 3 if isinstance(value, int) else flip(value)})
    outer, inner = field.split(".")
    part = getattr(receipt, outer)
    value = getattr(part, inner)
    if isinstance(value, int):
        new = value + 1 + byte % 3
    elif isinstance(value, tuple):
        new = (flip(value[0]), *value[1:])
    else:
        new = flip(value)
    return dataclasses.replace(receipt, **{outer: dataclasses.replace(part, **{inner: new})})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(_FIELDS), byte=st.integers(0, 63), mask=st.integers(1, 255))
def test_any_altered_receipt_field_fails(applied_receipt: tuple[Path, Receipt], field: str, byte: int,
                                          mask: int) -> None:
    store, receipt = applied_receipt
    assert verify_receipt_with_store(receipt, store).ok
    report = verify_receipt_with_store(_mutate(receipt, field, byte, mask), store)
    assert not report.ok and report.problems


@pytest.fixture(scope="module")
def applied_receipt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Receipt]:
    from helpers import train_small_store

    store = train_small_store(tmp_path_factory.mktemp("receipts") / "store")
    with running_daemon(store) as running, Client(running.address) as client:
        ids = running.runtime.engine.sample_ids()
        client.forget([ids[0]], strategy="sisa")
        receipt = client.forget([ids[1]], strategy="dpus")
        client.forget([ids[2]], strategy="hs")  # the ledger grew since the receipt
    return store, receipt
