"""Every signed head is also a C2SP checkpoint: the origin genesis commits, GetLedgerHead's, receipts' and
/ledger/head's checkpoints, GetModel's verifier key, and ledgers whose genesis predates the origin field."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from helpers import RunningDaemon, running_daemon
from forgetd.client import Client
from forgetd.client.audit import audit
from forgetd.client.audit.events import fold
from forgetd.client.cli.main import main
from forgetd.ledger import (
    Ledger,
    checkpoint_verifier,
    default_origin,
    load_or_create_signing_key,
    open_checkpoint,
    parse_verifier_key,
)
from forgetd.server.errors import MalformedEvent, StoreError
from forgetd.server.runtime import events
from forgetd.server.store.layout import StorePaths
from forgetd.v1 import unlearning_service_pb2

ORIGIN = "example.com/forgetd-checkpoints"


def _genesis(store: Path) -> dict[str, object]:
    with Ledger(StorePaths(store).ledger, readonly=True) as ledger:
        return dict(ledger.entry(1).payload)


def _head_key(store: Path) -> bytes:
    return load_or_create_signing_key(StorePaths(store).head_key).public_key


def _checks_out(checkpoint: str, vkey: str, size: int, chain: bytes, root: bytes) -> bool:
    signed = open_checkpoint(checkpoint.encode(), parse_verifier_key(vkey))
    return signed.checkpoint.to_head().to_bytes() == size.to_bytes(8, "big") + chain + root


def test_a_new_store_commits_the_default_origin_and_signs_every_head_as_a_checkpoint(daemon: RunningDaemon) -> None:
    key = _head_key(daemon.store)
    origin = default_origin(key)
    assert _genesis(daemon.store)["checkpoint_origin"] == origin
    with Client(daemon.address) as client:
        model = client.model()
        assert (model.checkpoint_origin, model.verifier_key) == (origin, checkpoint_verifier(key, origin).vkey)
        receipt = client.forget(["synthetic:1"], wait=True)
        head = client.head().head
    assert receipt.head is not None
    for h in (receipt.head, head):
        assert _checks_out(h.checkpoint, model.verifier_key, h.size, h.chain_hash, h.merkle_root)
    assert head.checkpoint.splitlines()[:2] == [origin, "3"]


def test_an_origin_given_for_a_new_store_is_committed_and_kept(store: Path) -> None:
    with running_daemon(store, checkpoint_origin=ORIGIN) as daemon, Client(daemon.address) as client:
        assert client.model().checkpoint_origin == ORIGIN
        assert client.head().head.checkpoint.startswith(ORIGIN + "\n1\n")
    assert _genesis(store)["checkpoint_origin"] == ORIGIN
    offline = CliRunner().invoke(main, ["ledger", "checkpoint", str(StorePaths(store).ledger)])
    assert offline.exit_code == 0 and offline.stdout.startswith(ORIGIN + "\n1\n"), offline.stderr
    with running_daemon(store) as daemon, Client(daemon.address) as client:  # no flag: genesis's origin
        assert client.model().checkpoint_origin == ORIGIN
    with pytest.raises(StoreError) as refused, running_daemon(store, checkpoint_origin="example.com/other"):
        pass
    assert "genesis commits checkpoint origin 'example.com/forgetd-checkpoints', not 'example.com/other'" in str(
        refused.value)


def _write_old_genesis(store: Path) -> None:
    """The genesis a daemon from before checkpoints wrote: the same payload, without checkpoint_origin."""
    from forgetd.server.engine.engine import Engine
    from forgetd.server.runtime.recovery import live_state
    from forgetd.server.store.vault import GENESIS_VAULT, create_vault

    engine = Engine.open(store, device="cpu")
    try:
        vault = create_vault(store, GENESIS_VAULT)
        payload = events.genesis_payload(engine.genesis_record(), _head_key(store).hex(), live_state(engine),
                                         vault=vault.to_json())
        with Ledger(engine.ledger_path) as ledger:
            ledger.append(events.GENESIS, payload, event_id=events.GENESIS)
    finally:
        engine.close()


def test_a_genesis_without_the_field_uses_the_default_origin(store: Path) -> None:
    _write_old_genesis(store)
    assert "checkpoint_origin" not in _genesis(store)
    origin = default_origin(_head_key(store))
    with running_daemon(store) as daemon, Client(daemon.address) as client:
        model = client.model()
        assert model.checkpoint_origin == origin
        receipt = client.forget(["synthetic:4"], wait=True)
        assert client.verify_receipt(receipt).ok
    assert receipt.head is not None and receipt.head.checkpoint.startswith(origin + "\n")
    report = audit(store, receipt=receipt)
    assert report.ok, report.text()
    genesis_check = next(c for c in report.checks if c.name == "genesis")
    assert (genesis_check.figures["checkpoint_origin"], genesis_check.figures["checkpoint_origin_committed"]) == (
        origin, False)
    with pytest.raises(StoreError) as refused, running_daemon(store, checkpoint_origin=ORIGIN):
        pass
    assert "commits no origin, so its checkpoints use the default checkpoint origin" in str(refused.value)


def test_the_auditor_checks_the_origin_when_present() -> None:
    def genesis(**extra: object) -> dict[str, object]:
        return {"engine": {}, "head_public_key": "ab" * 32,
                "model": {"version": 0, "digest": "d", "shard_digests": ["s"]}, **extra}

    assert fold([(1, "genesis", genesis(checkpoint_origin=ORIGIN))]).checkpoint_origin == ORIGIN
    older = fold([(1, "genesis", genesis())])
    assert (older.problems, older.checkpoint_origin) == ([], default_origin(bytes.fromhex("ab" * 32)))
    for bad in ("https://example.com/x", "", 7):
        found = fold([(1, "genesis", genesis(checkpoint_origin=bad))])
        assert [p.what for p in found.problems] == [
            "genesis field 'checkpoint_origin' must be " + ("a string" if bad == 7 else
                                                           "a checkpoint origin (a schema-less URL)")]


def test_the_daemons_own_parser_refuses_a_bad_origin() -> None:
    model = events.ModelState(0, "d", ("s",))
    payload = events.genesis_payload({}, "ab" * 32, model, checkpoint_origin=ORIGIN)
    assert events.parse_genesis(1, payload).checkpoint_origin == ORIGIN
    assert events.parse_genesis(1, {k: v for k, v in payload.items() if k != "checkpoint_origin"}).checkpoint_origin \
        is None
    with pytest.raises(MalformedEvent, match="field 'checkpoint_origin' must be a checkpoint origin"):
        events.parse_genesis(1, {**payload, "checkpoint_origin": "no spaces allowed"})


def test_the_http_head_carries_the_checkpoint(store: Path) -> None:
    with running_daemon(store, http_listen="127.0.0.1:0") as daemon:
        body = httpx.get(f"http://{daemon.daemon.http_address}/ledger/head", timeout=30).json()
        with Client(daemon.address) as client:
            vkey = client.model().verifier_key
    assert _checks_out(body["checkpoint"], vkey, body["size"], bytes.fromhex(body["chain_hash"]),
                       bytes.fromhex(body["merkle_root"]))


def test_get_ledger_head_with_proofs_carries_the_checkpoint_of_that_head(daemon: RunningDaemon) -> None:
    _, unlearning = daemon.stubs()
    answer = unlearning.GetLedgerHead(unlearning_service_pb2.GetLedgerHeadRequest(inclusion_seqs=[1]), timeout=10)
    with Client(daemon.address) as client:
        vkey = client.model().verifier_key
    h = answer.head
    assert _checks_out(h.checkpoint, vkey, h.size, h.chain_hash, h.merkle_root)


def test_forget_json_receipts_keep_the_checkpoint_and_verify_offline(daemon: RunningDaemon, tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["forget", "synthetic:3", "--json", "--server", daemon.address])
    assert out.exit_code == 0, out.stderr
    path = tmp_path / "r.json"
    path.write_text(out.stdout)
    assert json.loads(out.stdout)["head"]["checkpoint"].count("\n") == 6  # 4 lines, a blank one, 1 signature
    model = runner.invoke(main, ["model", "--json", "--server", daemon.address])
    vkey = json.loads(model.stdout)["verifier_key"]
    ok = runner.invoke(main, ["receipt", "verify", str(path), "--verifier-key", vkey])
    assert ok.exit_code == 0 and ok.stdout.startswith("ok: "), ok.stderr
    data = json.loads(out.stdout)
    data["head"]["checkpoint"] = data["head"]["checkpoint"].replace("\n3\n", "\n2\n", 1)  # the size edited
    path.write_text(json.dumps(data))
    bad = runner.invoke(main, ["receipt", "verify", str(path), "--verifier-key", vkey])
    assert bad.exit_code == 1 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "checkpoint does not verify" in bad.stderr, bad.stderr
