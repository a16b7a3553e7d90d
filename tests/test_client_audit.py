"""forgetd verify: an untampered store verifies after many forgets of mixed strategies; every tampering in the
matrix is detected by the check that owns it and named (seq, expected, actual), never by a crash; --seal.

The forgets go through a real daemon (in-process, port 0), so the ledger, the vault and the store are
exactly what `forgetd serve` writes.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forgetd.server.engine.increments_codec import CompressedIncrements, CompressedWriter, is_compressed
import row_store_tamper
from helpers import ADULT_DIR, REPO, running_daemon, train_small_store
from forgetd.client import Client, HeadProofs, Receipt
from forgetd.client.audit import AuditReport, StoreSealError, audit
from forgetd.client.cli.main import main
from forgetd.client.receipts import save_receipt
from forgetd.ledger import Ledger, LedgerError, subject_ref
from forgetd.ledger.store import TRIGGERS_SQL

ADULT = ADULT_DIR
MIXED = ("hs", "sisa", "dpus", "ohs", "retrain", "auto")


@dataclasses.dataclass
class Forgotten:
    store: Path
    ids: list[str]  # forgotten, in order
    receipts: list[Receipt]


def forget_through_daemon(store: Path, n: int, *, batch: int = 1) -> Forgotten:
    """`n` ids forgotten through a real daemon, `batch` ids per request, strategies cycling through MIXED."""
    with running_daemon(store) as running, Client(running.address) as client:
        ids = running.runtime.engine.sample_ids()[: n * batch]
        receipts = [client.forget(ids[i * batch:(i + 1) * batch], strategy=MIXED[i % len(MIXED)], timeout=120)
                    for i in range(n)]
    return Forgotten(store, ids, receipts)


@pytest.fixture(scope="module")
def forgotten(tmp_path_factory: pytest.TempPathFactory) -> Forgotten:
    """A small store after 12 forgets of mixed strategies: copy it (the `case` fixture), never modify it."""
    store = train_small_store(tmp_path_factory.mktemp("audit") / "store")
    return forget_through_daemon(store, 12)


@pytest.fixture
def case(forgotten: Forgotten, tmp_path: Path) -> Forgotten:
    dest = tmp_path / "store"
    shutil.copytree(forgotten.store, dest)
    return Forgotten(dest, forgotten.ids, forgotten.receipts)


def failed(report: AuditReport, name: str) -> str:
    """The first problem of the check `name`, which must have failed, with every other check not failed."""
    assert not report.ok
    check = report.check(name)
    assert check.status == "failed", report.text()
    assert [c.name for c in report.checks if c.status == "failed"] == [name], report.text()
    return str(check.problems[0])


# ------------------------------------------------------------------------------------------------ clean


def test_untampered_store_verifies_after_many_mixed_forgets(tmp_path: Path) -> None:
    store = train_small_store(tmp_path / "store", rows=400)
    done = forget_through_daemon(store, 50)
    report = audit(store)
    assert report.ok, report.text()
    replay = report.check("replay")
    assert replay.figures["replayed"] == 50 and replay.figures["bitwise"] is True
    data = report.check("data")
    assert data.figures["forgotten"] == 50
    assert any("audit/genesis still holds 50 row(s)" in n for n in data.notices)  # pending the next seal
    assert report.head is not None and report.head.size == 1 + 2 * len(done.receipts)


def test_batches_of_several_ids_replay(tmp_path: Path) -> None:
    store = train_small_store(tmp_path / "store")
    forget_through_daemon(store, 6, batch=3)
    report = audit(store)
    assert report.ok, report.text()
    assert report.check("data").figures["forgotten"] == 18


@pytest.mark.skipif(not (ADULT / "adult.data").is_file(), reason=f"UCI Adult not found at {ADULT}")
def test_adult_subset_verifies_after_mixed_forgets(tmp_path: Path) -> None:
    from forgetd.server.config import EngineConfig
    from forgetd.server.data import load_dataset
    from forgetd.server.engine.engine import Engine

    ds = load_dataset("adult", ADULT).subset(600, 100)
    Engine.train(ds, EngineConfig(slices=4, epochs=1, epoch_schedule="per-step", hidden_sizes=(16,), batch_size=64, device="cpu"),
                 tmp_path / "adult").close()
    forget_through_daemon(tmp_path / "adult", 50)
    report = audit(tmp_path / "adult")
    assert report.ok, report.text()
    assert report.check("replay").figures["replayed"] == 50


def _ledger_as_if_on(store: Path, device: str, n: int) -> None:
    """The daemon's ledger for `n` forgets run here on the CPU, but recorded as run on `device`: the path a
    store served on a GPU and audited on a CPU takes (the engine and event builders are the daemon's own)."""
    from forgetd.ledger.signing import load_or_create_signing_key
    from forgetd.server.runtime import events
    from forgetd.server.engine.engine import Engine
    from forgetd.server.runtime.events import ModelState, SubjectOutcome
    from forgetd.server.store.vault import create_vault

    with Engine.open(store, device="cpu") as engine, Ledger(store / "ledger.sqlite") as ledger:
        key = load_or_create_signing_key(store / "keys/head_ed25519.key")
        vault = create_vault(store, "genesis")
        state = ModelState(0, engine.digest(), tuple(engine.shard_digests()))
        ledger.append("genesis", events.genesis_payload(engine.genesis_record(), key.public_key.hex(), state,
                                                         vault=vault.to_json()), event_id="genesis")
        for i, sid in enumerate(engine.sample_ids()[:n]):
            ref, rid, strategy = subject_ref(engine.subject_key, sid), f"r{i}", MIXED[i % len(MIXED)]
            ledger.append("forget.requested", events.requested_payload(rid, [ref], strategy, "2026-01-01T00:00:00Z"),
                          event_id=events.requested_event_id(rid))
            r = engine.forget([sid], strategy)
            outcomes = [SubjectOutcome(ref, s.shard, s.slice, s.region, s.strategy, s.guarantee.lower())
                        for s in r.samples]
            ledger.append("forget.applied", events.applied_payload(
                request_ids=[rid], strategy=strategy, resolved_strategy=r.strategy, subjects=outcomes,
                model=ModelState(r.version, r.digest, tuple(r.shard_digests)), residue_steps=r.residue_steps,
                samples_read=r.samples_read, apply_micros=int(r.seconds * 1e6), queued_micros=0, device=device,
            ), event_id=events.applied_event_id([rid]))


def test_batches_from_another_device_type_are_compared_within_tolerance(store: Path) -> None:
    _ledger_as_if_on(store, "cuda:0", 4)
    report = audit(store, device="cpu")
    assert report.ok, report.text()
    replay = report.check("replay")
    assert replay.figures["bitwise"] is False and replay.figures["max_abs_diff"] == 0.0
    assert "within tolerance 0.0001" in replay.summary
    manifest = json.loads((store / "CURRENT.json").read_text())
    _replace_npy(store / "artifacts" / manifest["files"]["shard0.params"], 0.01)
    tampered = audit(store, device="cpu")
    assert tampered.check("replay").status == "failed"  # the data check fails too (live != head)
    assert "differ from the live store's beyond the tolerance 0.0001" in tampered.check("replay").problems[0]


# ------------------------------------------------------------------------------------------------ the chain


def _tamper(ledger: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    """Run SQL on the ledger behind its back: the append-only triggers are dropped and put back unchanged."""
    conn = sqlite3.connect(ledger, isolation_level=None)
    try:
        for name in TRIGGERS_SQL:
            conn.execute(f"DROP TRIGGER {name}")
        for sql, args in statements:
            conn.execute(sql, args)
        for sql in TRIGGERS_SQL.values():
            conn.execute(sql)
    finally:
        conn.close()


def _row(ledger: Path, seq: int) -> tuple[object, ...]:
    conn = sqlite3.connect(ledger)
    try:
        return conn.execute("SELECT event_id, type, v, recorded_at, envelope, leaf_hash, chain_hash FROM entries "
                            "WHERE seq = ?", (seq,)).fetchone()
    finally:
        conn.close()


def test_flipped_payload_byte_is_named_at_its_seq(case: Forgotten) -> None:
    ledger = case.store / "ledger.sqlite"
    envelope = bytearray(_row(ledger, 6)[4])  # type: ignore[arg-type]
    at = envelope.index(b'"strategy":"') + len(b'"strategy":"')
    envelope[at] ^= 0x01
    _tamper(ledger, ("UPDATE entries SET envelope = ? WHERE seq = 6", (bytes(envelope),)))
    assert failed(audit(case.store), "chain").startswith("seq 6: ")


def test_flipped_stored_hash_is_named_at_its_seq(case: Forgotten) -> None:
    ledger = case.store / "ledger.sqlite"
    leaf = bytearray(_row(ledger, 9)[5])  # type: ignore[arg-type]
    leaf[0] ^= 0xFF
    _tamper(ledger, ("UPDATE entries SET leaf_hash = ? WHERE seq = 9", (bytes(leaf),)))
    first = failed(audit(case.store), "chain")
    assert first.startswith("seq 9: leaf hash differs") and bytes(leaf).hex() in first


def test_deleted_middle_entry_is_named(case: Forgotten) -> None:
    _tamper(case.store / "ledger.sqlite", ("DELETE FROM entries WHERE seq = 10", ()))
    assert failed(audit(case.store), "chain").startswith("seq 10: missing")


def test_swapped_entries_are_named(case: Forgotten) -> None:
    ledger = case.store / "ledger.sqlite"
    a, b = _row(ledger, 4), _row(ledger, 5)
    cols = "event_id = ?, type = ?, v = ?, recorded_at = ?, envelope = ?, leaf_hash = ?, chain_hash = ?"
    _tamper(ledger, ("UPDATE entries SET event_id = 'x' || event_id WHERE seq IN (4, 5)", ()),  # UNIQUE
            (f"UPDATE entries SET {cols} WHERE seq = 4", b), (f"UPDATE entries SET {cols} WHERE seq = 5", a))
    assert failed(audit(case.store), "chain").startswith("seq 4: ")


def test_truncated_tail_is_caught_by_a_receipt(case: Forgotten) -> None:
    receipt = case.receipts[-1]
    assert audit(case.store, receipt=receipt).ok
    ledger = case.store / "ledger.sqlite"
    size = Ledger(ledger, readonly=True).size
    _tamper(ledger, ("DELETE FROM entries WHERE seq >= ?", (size - 1,)))
    assert audit(case.store, chain_only=True).ok  # the chain alone cannot see it
    assert failed(audit(case.store), "data")  # nor the ledger: the live store is ahead of its head
    first = failed(audit(case.store, receipt=receipt, chain_only=True), "chain")
    assert f"the tail from seq {size - 1} was truncated" in first


def test_history_rewritten_with_recomputed_hashes_is_caught_by_a_receipt(case: Forgotten) -> None:
    ledger = case.store / "ledger.sqlite"
    with Ledger(ledger, readonly=True) as old:
        entries = list(old.entries())
    ledger.unlink()
    for suffix in ("-wal", "-shm"):
        Path(f"{ledger}{suffix}").unlink(missing_ok=True)
    with Ledger(ledger) as new:  # every hash recomputed: only a head kept outside can tell
        new.append_many([(e.type, e.payload, e.event_id) for e in entries])
    assert audit(case.store).check("chain").status == "passed"
    first = failed(audit(case.store, receipt=case.receipts[3]), "chain")
    assert "history up to seq" in first and "was rewritten" in first


def test_head_with_a_bad_signature_is_named(case: Forgotten) -> None:
    receipt = case.receipts[2]
    assert receipt.head is not None
    sig = bytearray(receipt.head.signature)
    sig[10] ^= 0x01
    bad = dataclasses.replace(receipt, head=dataclasses.replace(receipt.head, signature=bytes(sig)))
    first = failed(audit(case.store, receipt=bad), "chain")
    assert "the receipt's head: bad signature" in first


def test_expect_head_from_another_ledger_is_caught(case: Forgotten) -> None:
    from forgetd.ledger import Head

    good = Ledger(case.store / "ledger.sqlite", readonly=True).head(5)
    assert audit(case.store, expect_head=good.to_hex(), chain_only=True).ok
    forged = Head(5, bytes(32), good.merkle_root)
    assert "seq 5:" in failed(audit(case.store, expect_head=forged, chain_only=True), "chain")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_flipped_envelope_byte_is_named_at_its_seq(forgotten: Forgotten, tmp_path: Path, data: st.DataObject) -> None:
    # Chain-only needs the ledger file alone: each example tampers with a fresh copy of it.
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    ledger = work / "ledger.sqlite"
    shutil.copy(forgotten.store / "ledger.sqlite", ledger)
    size = Ledger(ledger, readonly=True).size
    seq = data.draw(st.integers(1, size), label="seq")
    envelope = bytearray(_row(ledger, seq)[4])  # type: ignore[arg-type]
    at = data.draw(st.integers(0, len(envelope) - 1), label="byte")
    envelope[at] ^= data.draw(st.integers(1, 255), label="mask")
    _tamper(ledger, ("UPDATE entries SET envelope = ? WHERE seq = ?", (bytes(envelope), seq)))
    report = audit(work, chain_only=True)
    assert report.check("chain").status == "failed"
    assert report.check("chain").problems[0].seq == seq


# ------------------------------------------------------------------------------------------------ genesis, data


def _replace_npy(path: Path, change: float) -> None:
    if is_compressed(path):  # increments in the default zstd codec: the same rows, one changed, re-encoded
        old = CompressedIncrements(path)
        rows = np.stack([old[r] for r in range(len(old))])
        rows[0] += np.asarray(change, rows.dtype)
        path.unlink()
        out = CompressedWriter(path, len(rows), old.num_params, old.precision)
        out.write(0, rows)
        out.finish()
        return
    array = np.load(path)
    path.unlink()  # a new file, so the links the vault or the live store share keep the old bytes
    np.save(path, (array + np.float32(change)).astype(array.dtype))


def test_increments_encoded_by_another_zstd_still_verify(case: Forgotten) -> None:
    # Another zstd version may encode the same rows in other bytes: the replay and the data check compare the
    # decoded rows, so a re-encoding (here at another level) is not a finding, and a changed row still is.
    manifest = json.loads((case.store / "CURRENT.json").read_text())
    changed = 0
    for logical, name in sorted(manifest["files"].items()):
        path = case.store / "artifacts" / name
        if logical.endswith(".inc") and is_compressed(path):
            old = CompressedIncrements(path)
            rows = np.stack([old[r] for r in range(len(old))]) if len(old) else None
            before = path.read_bytes()
            path.unlink()
            out = CompressedWriter(path, len(old), old.num_params, old.precision, level=9)
            if rows is not None:
                out.write(0, rows)
            out.finish()
            changed += path.read_bytes() != before
    assert changed, "no increments file was re-encoded differently"
    report = audit(case.store)
    assert report.ok, report.text()


def test_replaced_live_parameter_file_fails_the_data_check(case: Forgotten) -> None:
    manifest = json.loads((case.store / "CURRENT.json").read_text())
    _replace_npy(case.store / "artifacts" / manifest["files"]["shard0.params"], 0.5)
    first = failed(audit(case.store), "data")
    assert "live parameters are not the model the ledger's head describes" in first
    assert f"version {manifest['version']}" in first


@pytest.mark.parametrize("artifact", ["shard0.optim.v0.npy", "shard0.step1.inc.v0.npy"])
def test_replaced_checkpoint_or_increments_fail_the_genesis_check(case: Forgotten, artifact: str) -> None:
    _replace_npy(case.store / "audit/genesis/artifacts" / artifact, 1e-3)
    report = audit(case.store)
    first = failed(report, "genesis")
    assert f"vault file audit/genesis/artifacts/{artifact} differs" in first
    assert report.check("replay").status == "skipped"


@pytest.mark.parametrize("target", ["optim", "increments", "refs.npy", "layout.npz"])
def test_replaced_live_store_file_fails_the_data_check(case: Forgotten, target: str) -> None:
    # Parameters stay right; what a later forget would read is wrong. A seal must not vouch for it.
    manifest = json.loads((case.store / "CURRENT.json").read_text())
    if target in ("optim", "increments"):
        logical = "shard0.optim" if target == "optim" else "shard0.step1.inc"
        rel = f"artifacts/{manifest['files'][logical]}"
        _replace_npy(case.store / rel, 1e-3)
        want = f"the live store's {rel} differs from the replayed one"
    else:
        rel = target
        data = (case.store / rel).read_bytes()
        (case.store / rel).unlink()
        (case.store / rel).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        want = f"the live store's {rel} differs from the vault audit/genesis's"
    report = audit(case.store, seal=True)
    assert failed(report, "data").startswith(want)
    assert report.sealed is None


def test_forgotten_row_put_back_fails_the_data_check(case: Forgotten) -> None:
    victim = case.ids[4]
    row_store_tamper.put_back(case.store / "audit/genesis", case.store / "rows.sqlite", victim)
    first = failed(audit(case.store), "data")
    applied = case.receipts[4].applied_seq
    assert first.startswith(f"seq {applied}: the row of a subject forgotten at seq {applied} is in the live data store")


def test_edited_training_row_fails_the_data_check(case: Forgotten) -> None:
    ord_, _y = row_store_tamper.flip_last_label(case.store / "rows.sqlite")  # later retrains would learn it
    # The vault's snapshot is the live rows plus the erased ones it keeps, so the edit shows as a snapshot row
    # that is not the one genesis committed, named by the vault's per-row digests.
    first = failed(audit(case.store), "genesis")
    assert first.startswith(f"seq 1: training row ord {ord_} differs from its row in the snapshot of the vault "
                            "audit/genesis that genesis committed")


def test_vault_missing_a_forgotten_row_cannot_replay(case: Forgotten) -> None:
    # The vault is what replay needs: a row erased from it behind the ledger's back is named, not a crash.
    row_store_tamper.drop_kept(case.store / "audit/genesis", case.ids[0])
    assert " is missing from the snapshot of the vault audit/genesis" in failed(audit(case.store), "genesis")


# ------------------------------------------------------------------------------------------------ live


def test_daemon_serving_other_parameters_fails_the_live_check(store: Path) -> None:
    with running_daemon(store) as running, Client(running.address) as client:
        a, b = running.runtime.engine.sample_ids()[:2]
        client.forget([a], strategy="sisa")
        earlier = running.runtime.live
        client.forget([b], strategy="hs")
        assert audit(store, server=running.address).ok
        running.runtime.live = earlier  # the daemon now serves version 1 while its ledger says 2
        first = failed(audit(store, server=running.address), "live")
    assert "the server serves a model other than the ledger head's" in first
    assert "expected version 2" in first and "actual version 1" in first


def test_daemon_reporting_the_head_but_serving_other_parameters_fails_the_live_check(store: Path) -> None:
    with running_daemon(store) as running, Client(running.address) as client:
        a, b = running.runtime.engine.sample_ids()[:2]
        client.forget([a], strategy="sisa")
        earlier = running.runtime.live
        client.forget([b], strategy="retrain")
        # Reports version 2 and its digests, answers Predict with version 1's parameters.
        running.runtime.live = dataclasses.replace(running.runtime.live, snapshot=earlier.snapshot,
                                                   predict=earlier.predict)
        report = audit(store, server=running.address)
    first = failed(report, "live")
    assert "Predict answers differ from the live parameters'" in first


def test_a_malformed_server_head_is_a_finding(store: Path) -> None:
    class MalformedHead(Client):
        def head(self, *, consistency_from: int = 0, inclusion_seqs: Sequence[int] = ()) -> HeadProofs:
            real = super().head(consistency_from=consistency_from, inclusion_seqs=inclusion_seqs)
            return dataclasses.replace(real, head=dataclasses.replace(real.head, chain_hash=b"short"))

    with running_daemon(store) as running, MalformedHead(running.address) as client:
        first = failed(audit(store, server=client), "live")
    assert "the server's head is malformed" in first


# ------------------------------------------------------------------------------------------------ events


def test_event_that_breaks_the_schema_is_named_with_its_field(case: Forgotten) -> None:
    with Ledger(case.store / "ledger.sqlite") as ledger:
        bad = ledger.append("forget.applied", {"request_ids": ["nobody"], "strategy": "hs", "subjects": [],
                                               "resolved_strategy": "hs", "timings": {"apply_micros": 1},
                                               "model": {"version": -1, "digest": "x", "shard_digests": ["y"]}})
    first = failed(audit(case.store, chain_only=True), "chain")
    assert first == f"seq {bad.seq}: forget.applied field 'model.version' must be a non-negative integer " \
                    "(expected a non-negative integer, actual -1)"


def test_applied_batch_naming_an_unknown_request_is_named(case: Forgotten) -> None:
    with Ledger(case.store / "ledger.sqlite") as ledger:
        live = ledger.entry(ledger.size).payload["model"]
        bad = ledger.append("forget.applied", {"request_ids": ["nobody"], "strategy": "hs", "subjects": [],
                                               "resolved_strategy": "hs", "timings": {"apply_micros": 1},
                                               "model": live})
    first = failed(audit(case.store, chain_only=True), "chain")
    assert first == f"seq {bad.seq}: forget.applied names request 'nobody' that was never requested"


# ------------------------------------------------------------------------------------------------ seal


def _store_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_seal_drops_the_old_vault_and_later_audits_replay_from_the_new_one(case: Forgotten) -> None:
    held = row_store_tamper.kept_features(case.store / "audit/genesis", list(case.ids))
    assert len(held) == len(case.ids)
    before = _store_bytes(case.store)
    assert all(x in before for x in held)  # the genesis vault holds the forgotten rows, pending a seal
    report = audit(case.store, seal=True)
    assert report.ok and report.sealed is not None, report.text()
    assert report.sealed["removed"] == ["genesis"]
    after = _store_bytes(case.store)
    assert not any(x in after for x in held)
    forget_through_daemon(case.store, 3)  # the daemon folds the audit.verified the verifier appended
    again = audit(case.store)
    assert again.ok, again.text()
    assert again.check("genesis").figures["vault"] == report.sealed["vault"]
    assert again.check("replay").figures["replayed"] == 3


def test_seal_while_the_daemon_runs(store: Path) -> None:
    with running_daemon(store) as running, Client(running.address) as client:
        a, b = running.runtime.engine.sample_ids()[:2]
        client.forget([a], strategy="hs")
        sealed = audit(store, server=running.address, seal=True)
        assert sealed.ok and sealed.sealed is not None, sealed.text()
        client.forget([b], strategy="sisa")  # appended after the verifier's audit.verified, folded in order
        again = audit(store, server=running.address)
    assert again.ok, again.text()
    assert again.check("replay").figures["replayed"] == 1


def test_killed_audit_leaves_no_scratch_rows(case: Forgotten) -> None:
    # A scratch copy left by an audit that was killed (its pid is gone) is swept by the next one.
    stale = case.store / "audit" / ".replay-999999999-dead"
    stale.mkdir()
    shutil.copy(case.store / "rows.sqlite", stale / "rows.sqlite")
    assert audit(case.store).ok
    assert not stale.exists()


def test_seal_is_refused_when_a_check_failed(case: Forgotten) -> None:
    _tamper(case.store / "ledger.sqlite", ("DELETE FROM entries WHERE seq = 3", ()))
    report = audit(case.store, seal=True)
    assert not report.ok and report.sealed is None
    assert (case.store / "audit/genesis").is_dir()


def test_a_refused_snapshot_is_one_error_line(case: Forgotten, monkeypatch: pytest.MonkeyPatch) -> None:
    from forgetd.server import replay as server_replay

    def refuse(store: Path, name: str) -> dict[str, object]:
        raise server_replay.ForgetdError("no space left on device")

    monkeypatch.setattr(server_replay, "snapshot_vault", refuse)
    result = CliRunner().invoke(main, ["verify", "--store", str(case.store), "--seal", "--json"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == "Error: cannot snapshot the verified state: no space left on device"


def test_a_seal_the_ledger_refuses_is_a_store_seal_error(case: Forgotten, monkeypatch: pytest.MonkeyPatch) -> None:
    import forgetd.client.audit.seal as seal_module

    class ReadOnly:
        def __init__(self, path: Path) -> None:
            raise LedgerError(f"{path}: attempt to write a readonly database")

    monkeypatch.setattr(seal_module, "Ledger", ReadOnly)
    with pytest.raises(StoreSealError, match="attempt to write a readonly database"):
        audit(case.store, seal=True)


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_verify_passes_and_prints_every_check(case: Forgotten) -> None:
    result = CliRunner().invoke(main, ["verify", "--store", str(case.store)])
    assert result.exit_code == 0, result.output
    for name in ("chain", "genesis", "replay", "data", "live"):
        assert f"\n  {name} " in result.output
    assert "verified: every check passed" in result.output


def test_cli_verify_json_and_exit_1_on_a_failure(case: Forgotten) -> None:
    _tamper(case.store / "ledger.sqlite", ("DELETE FROM entries WHERE seq = 7", ()))
    result = CliRunner().invoke(main, ["verify", "--store", str(case.store), "--json", "--chain-only"])
    assert result.exit_code == 1
    body = result.output[: result.output.rindex("}") + 1]
    data = json.loads(body)
    assert data["ok"] is False and data["checks"][0]["problems"][0]["seq"] == 7
    assert "Error: verification failed: chain:" in result.output


def test_cli_verify_with_a_receipt_file(case: Forgotten, tmp_path: Path) -> None:
    save_receipt(case.receipts[-1], tmp_path / "r.json")
    result = CliRunner().invoke(main, ["verify", "--store", str(case.store), "--receipt", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "consistent with the receipt head" in result.output


def test_cli_verify_usage_errors(case: Forgotten, tmp_path: Path) -> None:
    save_receipt(case.receipts[0], tmp_path / "r.json")
    head = Ledger(case.store / "ledger.sqlite", readonly=True).head().to_hex()
    both = CliRunner().invoke(main, ["verify", "--store", str(case.store), "--expect-head", head,
                                     "--receipt", str(tmp_path / "r.json")])
    assert both.exit_code == 2 and "at most one of --expect-head and --receipt" in both.output
    bad = CliRunner().invoke(main, ["verify", "--store", str(case.store), "--expect-head", "abc"])
    assert bad.exit_code == 2 and "a head is 144 hex characters" in bad.output
    device = CliRunner().invoke(main, ["verify", "--store", str(case.store), "--device", "tpu"])
    assert device.exit_code == 2 and "'tpu' is not cpu, cuda or cuda:N" in device.output


def test_chain_only_needs_no_torch(case: Forgotten) -> None:
    # torch made unimportable, as on a client-only install: --chain-only still verifies, the replay says why not.
    code = ("import sys; sys.modules['torch'] = None; sys.modules['numpy'] = None\n"
            "from forgetd.client.cli.main import main\n"
            "main(sys.argv[1:])")
    chain = subprocess.run([sys.executable, "-c", code, "verify", "--store", str(case.store), "--chain-only"],
                           capture_output=True, text=True, cwd=REPO)
    assert chain.returncode == 0, chain.stderr
    assert "chain    passed" in chain.stdout
    full = subprocess.run([sys.executable, "-c", code, "verify", "--store", str(case.store)],
                          capture_output=True, text=True, cwd=REPO)
    assert full.returncode == 1
    assert "replay needs the server extra" in full.stdout


def test_a_subject_key_that_does_not_fit_is_named(case: Forgotten, tmp_path: Path) -> None:
    (tmp_path / "other.key").write_bytes(b"\x01" * 32)
    report = audit(case.store, key_file=tmp_path / "other.key")
    assert not report.ok
    assert "the subject key does not fit this store" in str(report.check("data").problems[0])


def test_every_audit_command_has_help() -> None:
    for args in (["verify", "-h"], ["receipt", "-h"], ["receipt", "verify", "-h"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0 and "Usage:" in result.output



@pytest.mark.slow
def test_the_audit_bench_trains_and_serves_through_the_commands(tmp_path: Path) -> None:
    # `forgetd train` and `forgetd serve` (port 0, waited on through health) in subprocesses, then the audit.
    result = CliRunner().invoke(main, ["bench", "audit", "--entries", "20", "--forgets", "3", "--rows", "200",
                                       "--json", "--workdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["chain"]["entries"] == 20
    replay = figures["replay"]
    assert replay["forgets"] == 3 and replay["ok"] is True and replay["bitwise"] is True
    assert replay["daemon_apply_s"] > 0 and replay["replay_s"] > 0
    assert list(tmp_path.iterdir()) == []  # the scratch space is removed, daemon stopped
