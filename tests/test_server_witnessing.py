"""The witness quorum: a daemon asks real c2sp.org/tlog-witness witnesses (the ASGI app on uvicorn, port 0, on
loopback) to cosign its heads, and a forget is published once a head that holds it is cosigned by the quorum.

Waits are on the daemon's own condition variables (Witnessing.wait_published / wait_settled), never sleeps.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import running_daemon
from forgetd.client import Client, Receipt
from forgetd.client.cli.main import main
from forgetd.client.tlog import receipt_tlog_proof, verify_tlog_proof_offline
from forgetd.ledger import (
    CosignatureSigner,
    CosignatureVerifier,
    SigningKey,
    UnverifiedNote,
    Witness,
    WitnessConflict,
    checkpoint_verifier,
    load_or_create_signing_key,
    open_note,
    parse_verifier_key,
    request_cosignature,
)
from forgetd.ledger.witness_server import WitnessServer
from forgetd.server.config import ServerConfig
from forgetd.server.errors import InvalidConfig
from forgetd.server.store.layout import StorePaths

ORIGIN = "example.com/forgetd-witnessed"
WAIT = 60.0  # seconds: a bound for a slow shared machine, never a pause


@dataclass
class RunningWitness:
    """A witness served on loopback; `restart` serves the same state and key again on the same port."""

    state: Path
    key: SigningKey
    log_vkey: str
    server: WitnessServer | None = None
    port: int = 0

    def start(self) -> RunningWitness:
        witness = Witness(self.state, self.key, {ORIGIN: self.log_vkey})
        self.server = WitnessServer(witness, "127.0.0.1", self.port).start()
        self.port = self.server.port
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def vkey(self) -> str:
        return Witness(self.state, self.key, {ORIGIN: self.log_vkey}).vkey

    @property
    def verifier(self) -> CosignatureVerifier:
        found = parse_verifier_key(self.vkey)
        assert isinstance(found, CosignatureVerifier)
        return found

    def size(self) -> int:
        return Witness(self.state, self.key, {ORIGIN: self.log_vkey}).state(ORIGIN)[0]


@pytest.fixture
def log_vkey(store: Path) -> str:
    """The daemon's checkpoint verifier key: its head key (made here first, so the witnesses can trust it)."""
    key = load_or_create_signing_key(StorePaths(store).head_key)
    return checkpoint_verifier(key.public_key, ORIGIN).vkey


@pytest.fixture
def witnesses(tmp_path: Path, log_vkey: str) -> Iterator[Callable[[], RunningWitness]]:
    started: list[RunningWitness] = []

    def start() -> RunningWitness:
        w = RunningWitness(tmp_path / f"witness-{len(started)}.sqlite", SigningKey.generate(), log_vkey).start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def _config(*ws: RunningWitness, quorum: int | None = None) -> dict[str, object]:
    return dict(checkpoint_origin=ORIGIN, witnesses=tuple((w.url, w.vkey) for w in ws), witness_quorum=quorum)


def _published(client: Client, receipt: Receipt) -> Receipt:
    return client.forget_status(receipt.request_id)


def _cosigned_by(receipt: Receipt, w: RunningWitness) -> bool:
    """Whether the receipt's checkpoint carries a valid cosignature by `w` (a bad one raises)."""
    assert receipt.head is not None and receipt.head.checkpoint
    try:
        return open_note(receipt.head.checkpoint.encode(), [w.verifier]).signed_by(w.verifier)
    except UnverifiedNote:
        return False


def test_a_forget_is_published_once_both_witnesses_cosign(store: Path, witnesses: Callable[[], RunningWitness],
                                                          tmp_path: Path) -> None:
    a, b = witnesses(), witnesses()
    with running_daemon(store, **_config(a, b, quorum=2)) as daemon, Client(daemon.address) as client:
        receipt = client.forget(["synthetic:5"], wait=True)
        assert daemon.runtime.witnessing.wait_published(receipt.applied_seq, WAIT)
        published = _published(client, receipt)
        assert published.published and published.unpublished_reason == ""
        assert published.head is not None and published.head.size >= receipt.applied_seq
        assert _cosigned_by(published, a) and _cosigned_by(published, b)
        assert client.verify_receipt(published).ok  # the older, cosigned head is a prefix of the ledger now
        status = CliRunner().invoke(main, ["status", receipt.request_id, "--server", daemon.address])
        assert status.stdout.splitlines()[-1] == f"  published: cosigned by the witness quorum (head size " \
                                                 f"{published.head.size})", status.stdout
        assert daemon.runtime.metrics.value("forgetd_ledger_published_entries") >= receipt.applied_seq
        # The receipt as a tlog-proof carries the cosignatures, and verifies offline with the log's key alone.
        proof = receipt_tlog_proof(published)
        report = verify_tlog_proof_offline(proof.to_bytes(), parse_verifier_key(client.model().verifier_key))
        assert report.ok and report.cosignatures == 2, report.summary()
        size = published.head.size
    assert a.size() >= size and b.size() >= size
    # A restarted daemon does not know what the witnesses cosigned: they answer 409 with their size, and it
    # proves consistency from there.
    with running_daemon(store, **_config(a, b, quorum=2)) as daemon, Client(daemon.address) as client:
        again = client.forget(["synthetic:6"], wait=True)
        assert daemon.runtime.witnessing.wait_published(again.applied_seq, WAIT)
        assert _published(client, again).published


def test_one_witness_down_quorum_1_publishes_quorum_2_does_not(
    store: Path, witnesses: Callable[[], RunningWitness], caplog: pytest.LogCaptureFixture
) -> None:
    up, down = witnesses(), witnesses()
    down.stop()  # its port refuses connections from now on
    with running_daemon(store, **_config(up, down, quorum=1)) as daemon, Client(daemon.address) as client:
        receipt = client.forget(["synthetic:8"], wait=True)
        assert daemon.runtime.witnessing.wait_published(receipt.applied_seq, WAIT)
        published = _published(client, receipt)
        assert published.published and _cosigned_by(published, up) and not _cosigned_by(published, down)
    caplog.set_level(logging.WARNING, logger="forgetd.server")
    with running_daemon(store, **_config(up, down, quorum=2)) as daemon, Client(daemon.address) as client:
        receipt = client.forget(["synthetic:9"], wait=True)
        assert daemon.runtime.witnessing.wait_settled(receipt.applied_seq, WAIT)
        status = _published(client, receipt)
        assert not status.published
        reason = status.unpublished_reason
        assert f"seq {receipt.applied_seq}" in reason and "witness quorum (2 of 2)" in reason, reason
        assert f"{up.url} cosigned size" in reason, reason
        assert f"{down.url} failed: cannot reach the witness" in reason, reason
        assert not _cosigned_by(status, up)  # the current head, signed by the log alone
        said = CliRunner().invoke(main, ["status", receipt.request_id, "--server", daemon.address])
        assert said.stdout.splitlines()[-1] == f"  not published: {reason}", said.stdout
    warned = [r.getMessage() for r in caplog.records if down.url in r.getMessage()]
    assert warned and "did not cosign" in warned[0], warned


def test_a_witness_restart_keeps_its_state(store: Path, witnesses: Callable[[], RunningWitness]) -> None:
    w = witnesses()
    with running_daemon(store, **_config(w)) as daemon, Client(daemon.address) as client:
        first = client.forget(["synthetic:11"], wait=True)
        assert daemon.runtime.witnessing.wait_published(first.applied_seq, WAIT)
        cosigned = daemon.runtime.ledger.published_size
        w.stop()
        second = client.forget(["synthetic:12"], wait=True)
        assert daemon.runtime.witnessing.wait_settled(second.applied_seq, WAIT)
        assert not _published(client, second).published
        assert w.size() == cosigned  # what it cosigned is on disk while it is down
        w.start()  # the same state file, key and port
        with pytest.raises(WitnessConflict) as conflict:  # it remembers: a request from size 0 is refused with 409
            request_cosignature(w.url, 0, (), daemon.runtime.ledger.checkpoint_now()[1])
        assert conflict.value.witness_size == cosigned
        assert daemon.runtime.witnessing.wait_published(second.applied_seq, WAIT)  # the daemon's retry
        assert _published(client, second).published
    assert w.size() >= second.applied_seq


def test_without_witnesses_nothing_is_sent_and_nothing_published(daemon) -> None:  # type: ignore[no-untyped-def]
    assert not daemon.runtime.witnessing.enabled
    assert not [t.name for t in threading.enumerate() if t.name.startswith("forgetd-witness")]
    with Client(daemon.address) as client:
        receipt = client.forget(["synthetic:2"], wait=True)
    assert (receipt.published, receipt.unpublished_reason) == (False, "")
    assert receipt.head is not None and receipt.head.checkpoint.count("\n\u2014 ") == 1  # the log's signature only


VKEY = CosignatureSigner("forgetd-witness/x", SigningKey.generate()).verifier().vkey


@pytest.mark.parametrize("config, message", [
    (dict(witnesses=(("ftp://w.example", VKEY),)), "is not http:// or https://"),
    (dict(witnesses=(("http://w.example", "nonsense"),)), "give the verifier key `forgetd witness` prints"),
    (dict(witnesses=(("http://w.example", VKEY), ("http://w.example/", VKEY))), "two witnesses share a URL"),
    (dict(witnesses=(("http://w.example", VKEY),), witness_quorum=2), "give 1 to the number of witnesses (1)"),
    (dict(witness_quorum=1), "a witness quorum needs witnesses"),
    (dict(checkpoint_origin="https://example.com/log"), "checkpoint origin: origin 'https://example.com/log' has a scheme"),
    (dict(checkpoint_origin="two words"), "is not a schema-less URL"),
])
def test_bad_transparency_settings_are_refused_with_a_fix(tmp_path: Path, config: dict[str, object],
                                                          message: str) -> None:
    with pytest.raises(InvalidConfig) as refused:
        ServerConfig(store=tmp_path, **config)  # type: ignore[arg-type]
    assert message in str(refused.value)


def test_serve_refuses_bad_witness_and_origin_flags(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--store", str(tmp_path), "--witness", "http://127.0.0.1:1"])
    assert result.exit_code == 2
    assert "is not URL=VERIFIERKEY" in result.stderr
    quorum = CliRunner().invoke(main, ["serve", "--store", str(tmp_path), "--witness", f"http://127.0.0.1:1={VKEY}",
                                       "--witness-quorum", "2"])
    assert (quorum.exit_code, quorum.stderr.splitlines()[-1]) == (
        1, "Error: witness_quorum is 2; give 1 to the number of witnesses (1)")
    origin = CliRunner().invoke(main, ["serve", "--store", str(tmp_path), "--checkpoint-origin", "https://x.example"])
    assert origin.exit_code == 1 and "has a scheme: drop it" in origin.stderr
