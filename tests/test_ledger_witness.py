"""c2sp.org/tlog-witness (ledger/witness.py, witness_server.py, witness_cli.py): every status, a stale-size
race, a crash between the store and the reply, and real uvicorn on a loopback port 0."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from forgetd.ledger import (
    Checkpoint,
    CosignatureRefused,
    Ed25519Signer,
    InvalidVerifierKey,
    Ledger,
    SigningKey,
    UnverifiedNote,
    Witness,
    WitnessConflict,
    WitnessError,
    WitnessStateError,
    WitnessUnavailable,
    append_signatures,
    checkpoint_verifier,
    hash_leaf,
    load_or_create_signing_key,
    open_note,
    request_cosignature,
    sign_checkpoint,
    sign_note,
)
from forgetd.ledger.merkle import EMPTY_ROOT, MerkleTree
from forgetd.ledger.note_keys import CosignatureSigner, cosignature_timestamp
from forgetd.ledger.witness import MAX_REQUEST_SIZE, default_witness_name
from forgetd.ledger.witness_cli import witness as witness_cli
from forgetd.ledger.witness_server import WitnessServer

ROOT = Path(__file__).resolve().parents[1]
VECTORS = json.loads((ROOT / "tests" / "data" / "c2sp_note_vectors.json").read_text(encoding="utf-8"))
KEYS = {k["name"]: k for k in VECTORS["keys"]}
LOG, OTHER, WITNESS = "forgetd/kat-log", "example.com/other", "witness.example/kat"
TREE = MerkleTree(hash_leaf(leaf.encode()) for leaf in VECTORS["leaves"])
NOW = 1_700_000_000


def kat_key(name: str) -> SigningKey:
    return SigningKey(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(KEYS[name]["seed_hex"])))


LOG_KEY = kat_key(LOG)
LOG_VERIFIER = checkpoint_verifier(LOG_KEY.public_key, LOG)


def make_witness(path: Path, clock: object = lambda: NOW) -> Witness:
    return Witness(path, kat_key(WITNESS), {LOG: LOG_VERIFIER}, name=WITNESS, clock=clock)  # type: ignore[arg-type]


def cp(size: int, root: bytes | None = None, *, origin: str = LOG, key: SigningKey = LOG_KEY,
       name: str | None = None) -> bytes:
    """A checkpoint of the Go vectors' tree, signed (by the log's key under the origin, unless told)."""
    checkpoint = Checkpoint(origin, size, TREE.root(size) if root is None else root)
    return sign_checkpoint(checkpoint, Ed25519Signer(name or origin, key))


def body(old: int | str, proof: list[bytes], checkpoint: bytes) -> bytes:
    """An add-checkpoint body, spelt out here rather than by the code under test."""
    lines = "".join(base64.b64encode(h).decode() + "\n" for h in proof)
    return f"old {old}\n{lines}\n".encode() + checkpoint


@pytest.fixture
def at5(tmp_path: Path) -> Witness:
    """A witness that has cosigned the log at size 5."""
    witness = make_witness(tmp_path / "witness.sqlite")
    assert witness.add_checkpoint(body(0, [], cp(5))).status == 200
    return witness


# --- the Go request sequence -----------------------------------------------------------------------------------


def test_the_go_request_sequence_gets_the_spec_answers_and_gos_cosignatures(tmp_path: Path) -> None:
    clock = {"now": 0}
    witness = Witness(tmp_path / "w.sqlite", kat_key(WITNESS), {LOG: KEYS[LOG]["vkey"]}, name=WITNESS,
                      clock=lambda: clock["now"])
    assert witness.vkey == KEYS[WITNESS]["vkey"]
    for vector in VECTORS["witness"]:
        clock["now"] = vector["timestamp"]
        status, headers, answer = witness.add_checkpoint(vector["body"].encode())
        assert status == vector["want_status"], (vector["desc"], answer)
        if vector["want_body"]:
            assert answer.decode() == vector["want_body"], vector["desc"]
        if vector["content_type"]:
            assert headers["Content-Type"] == vector["content_type"]
    assert witness.state(LOG) == (13, TREE.root(13))


# --- every status ----------------------------------------------------------------------------------------------

BAD_REQUESTS = [
    ("empty body", b"", "empty line"),
    ("no empty line", b"old 5\n", "empty line"),
    ("leading zero", body("05", [], cp(8)), "old <size>"),
    ("negative", body("-1", [], cp(8)), "old <size>"),
    ("trailing space", body("5 ", [], cp(8)), "old <size>"),
    ("not old", b"new 5\n\n" + cp(8), "old <size>"),
    ("proof not base64", b"old 5\n!!!!\n\n" + cp(8), "consistency proof line 1 is not base64"),
    ("proof hash of 31 bytes", body(5, [bytes(31)], cp(8)), "line 1 is 31 bytes"),
    ("64 proof lines", body(5, [bytes(32)] * 64, cp(8)), "over the limit of 63"),
    ("non-ASCII proof", "old 5\n\u00e9\n\n".encode() + cp(8), "ASCII"),
    ("not a signed note", body(5, [], b"just text\n"), "blank line"),
    ("not a checkpoint", body(5, [], sign_note("hello\n", Ed25519Signer(LOG, LOG_KEY))), "at least 3 lines"),
    ("old above the checkpoint", body(9, [], cp(8)), "old size 9 > checkpoint size 8"),
    ("too large", b"old 5\n\n" + b"x" * MAX_REQUEST_SIZE, "over"),
]


@pytest.mark.parametrize(("desc", "request_body", "message"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_400_for_malformed_requests(at5: Witness, desc: str, request_body: bytes, message: str) -> None:
    status, headers, answer = at5.add_checkpoint(request_body)
    assert status == 400 and message in answer.decode(), answer
    assert headers["Content-Type"].startswith("text/plain") and at5.state(LOG)[0] == 5


def test_404_for_an_unknown_origin(at5: Witness) -> None:
    status, _, answer = at5.add_checkpoint(body(0, [], cp(1, origin="example.com/unknown")))
    assert status == 404 and answer == b"this witness does not know the log 'example.com/unknown'\n"


def _edited(signed: bytes, old: bytes, new: bytes) -> bytes:
    return signed.replace(old, new, 1)


@pytest.mark.parametrize(("desc", "checkpoint"), [
    ("signed by another log's key", cp(8, key=kat_key(OTHER), name=OTHER)),
    ("the log's name, another key", cp(8, key=SigningKey.generate())),
    ("edited after signing", _edited(cp(8), b"\n8\n", b"\n9\n")),
])
def test_403_without_a_valid_signature_by_the_logs_key(at5: Witness, desc: str, checkpoint: bytes) -> None:
    status, _, answer = at5.add_checkpoint(body(5, TREE.consistency_proof(5, 8), checkpoint))
    assert status == 403, answer
    assert at5.state(LOG) == (5, TREE.root(5))


@pytest.mark.parametrize("old", [0, 3, 8])
def test_409_when_the_old_size_is_not_the_witnesss(at5: Witness, old: int) -> None:
    status, headers, answer = at5.add_checkpoint(body(old, TREE.consistency_proof(old, 8) if old else [], cp(8)))
    assert (status, headers, answer) == (409, {"Content-Type": "text/x.tlog.size"}, b"5\n")


def _flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 1]) + h[1:]


@pytest.mark.parametrize(("desc", "old", "proof", "checkpoint", "message"), [
    ("a flipped proof hash", 5, [_flip(TREE.consistency_proof(5, 8)[0]), *TREE.consistency_proof(5, 8)[1:]], cp(8),
     "sizes 5 -> 8"),
    ("a proof for other sizes", 5, TREE.consistency_proof(4, 8), cp(8), "sizes 5 -> 8"),
    ("no proof", 5, [], cp(8), "empty proof"),
    ("same size, another root", 5, [], cp(5, bytes(32)), "mismatch"),
    ("a root the proof does not reach", 5, TREE.consistency_proof(5, 8), cp(8, TREE.root(9)), "new root mismatch"),
])
def test_422_for_an_inconsistent_checkpoint(at5: Witness, desc: str, old: int, proof: list[bytes],
                                            checkpoint: bytes, message: str) -> None:
    status, _, answer = at5.add_checkpoint(body(old, proof, checkpoint))
    assert status == 422 and message in answer.decode(), answer
    assert at5.state(LOG) == (5, TREE.root(5))


def test_422_for_a_proof_from_size_zero_and_an_empty_tree_with_a_root(tmp_path: Path) -> None:
    fresh = make_witness(tmp_path / "w.sqlite")
    status, _, answer = fresh.add_checkpoint(body(0, [TREE.root(1)], cp(3)))
    assert status == 422 and b"old size 0 takes no consistency proof" in answer
    status, _, answer = fresh.add_checkpoint(body(0, [], cp(0, bytes(32))))
    assert status == 422 and b"size 0 must have the empty tree's root" in answer
    assert fresh.add_checkpoint(body(0, [], cp(0, EMPTY_ROOT))).status == 200


def test_200_carries_a_cosignature_over_the_checkpoint(at5: Witness) -> None:
    checkpoint = cp(8)
    status, headers, answer = at5.add_checkpoint(body(5, TREE.consistency_proof(5, 8), checkpoint))
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    note = open_note(checkpoint + answer, [LOG_VERIFIER, at5.cosigner.verifier()])
    assert [s.name for s in note.signatures] == [LOG, WITNESS]
    assert cosignature_timestamp(note.signatures[1].signature) == NOW
    assert at5.state(LOG) == (8, TREE.root(8))
    assert at5.add_checkpoint(body(8, [], checkpoint)).status == 200  # the same checkpoint again: cosigned again


# --- atomicity -------------------------------------------------------------------------------------------------


def _race(path: Path, requests: list[bytes]) -> tuple[Witness, list[tuple[int, bytes]]]:
    """Send `requests` at once from one thread each, all released together from behind SQLite's write lock."""
    witness = make_witness(path)
    results: list[tuple[int, bytes]] = []
    barrier = threading.Barrier(len(requests) + 1)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")

    def send(request: bytes) -> None:
        barrier.wait()
        answer = witness.add_checkpoint(request)
        results.append((answer.status, answer.body))

    threads = [threading.Thread(target=send, args=(r,)) for r in requests]
    for thread in threads:
        thread.start()
    barrier.wait()
    blocker.execute("ROLLBACK")
    blocker.close()
    for thread in threads:
        thread.join()
    return witness, results


@pytest.mark.parametrize("round_", range(8))  # several rounds: a check-then-write outside one transaction loses some
def test_two_requests_racing_from_the_same_old_size_only_one_wins(tmp_path: Path, round_: int) -> None:
    witness, results = _race(tmp_path / "w.sqlite", [body(0, [], cp(5)), body(0, [], cp(8))])
    assert sorted(status for status, _ in results) == [200, 409]
    size = witness.state(LOG)[0]
    assert size in (5, 8) and dict(results)[409] == f"{size}\n".encode()


class Crash(Exception):
    """Stands for the process dying after the commit, before the cosignature is made and sent."""


def _crash() -> int:
    raise Crash


def test_state_committed_before_a_crash_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite"
    with pytest.raises(Crash):
        make_witness(path, clock=_crash).add_checkpoint(body(0, [], cp(5)))
    restarted = make_witness(path)
    assert restarted.state(LOG) == (5, TREE.root(5))
    assert restarted.add_checkpoint(body(0, [], cp(5))) == (409, {"Content-Type": "text/x.tlog.size"}, b"5\n")
    assert restarted.add_checkpoint(body(5, [], cp(5))).status == 200  # the log retries from the size it learnt


# --- configuration and the state file --------------------------------------------------------------------------


def test_a_ledger_is_not_a_witness_state(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite"):
        pass
    with pytest.raises(WitnessStateError, match="not a forgetd witness state \\(application_id 0x46474c44\\)"):
        make_witness(tmp_path / "ledger.sqlite")


def test_other_files_are_not_witness_states(tmp_path: Path) -> None:
    (tmp_path / "text").write_text("not sqlite at all, just some words to fill a page " * 40)
    with pytest.raises(WitnessStateError, match="cannot be opened as SQLite"):
        make_witness(tmp_path / "text")
    conn = sqlite3.connect(tmp_path / "other.sqlite")
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(WitnessStateError, match="other tables \\(t\\)"):
        make_witness(tmp_path / "other.sqlite")
    make_witness(tmp_path / "newer.sqlite")
    conn = sqlite3.connect(tmp_path / "newer.sqlite")
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    with pytest.raises(WitnessStateError, match="format 2"):
        make_witness(tmp_path / "newer.sqlite")


def test_logs_are_validated(tmp_path: Path) -> None:
    key = kat_key(WITNESS)
    with pytest.raises(WitnessError, match="at least one log"):
        Witness(tmp_path / "a.sqlite", key, {})
    with pytest.raises(WitnessError, match="one non-empty line"):
        Witness(tmp_path / "b.sqlite", key, {"two\nlines": LOG_VERIFIER})
    with pytest.raises(WitnessError, match="share a key name and key id"):
        Witness(tmp_path / "c.sqlite", key, {LOG: [LOG_VERIFIER, KEYS[LOG]["vkey"]]})
    with pytest.raises(InvalidVerifierKey):
        Witness(tmp_path / "d.sqlite", key, {LOG: "not+a+vkey"})
    named = Witness(tmp_path / "e.sqlite", key, {LOG: [LOG_VERIFIER]})
    assert named.cosigner.name == default_witness_name(key.public_key) == f"forgetd-witness/{key.key_id}"


# --- over HTTP, with real uvicorn on a loopback port 0 ---------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[WitnessServer]:
    with WitnessServer(make_witness(tmp_path / "w.sqlite"), "127.0.0.1", 0) as server:
        yield server


def test_end_to_end_with_the_client(served: WitnessServer) -> None:
    mine = served.witness.cosigner.verifier()
    first = request_cosignature(served.url, 0, [], cp(5), witness=mine)
    assert [s.name for s in first] == [WITNESS]
    cosigned = append_signatures(cp(5), first)
    assert len(open_note(cosigned, [LOG_VERIFIER, mine]).signatures) == 2
    with pytest.raises(WitnessConflict) as conflict:
        request_cosignature(served.url, 0, [], cp(8))
    assert (conflict.value.old_size, conflict.value.witness_size, conflict.value.origin) == (0, 5, LOG)
    again = request_cosignature(served.url, conflict.value.witness_size, TREE.consistency_proof(5, 8), cp(8))
    assert [s.name for s in again] == [WITNESS] and served.witness.state(LOG)[0] == 8
    with pytest.raises(CosignatureRefused) as refused:
        request_cosignature(served.url, 0, [], cp(1, origin="example.com/unknown"))
    assert refused.value.status == 404 and "does not know the log 'example.com/unknown'" in str(refused.value)
    with pytest.raises(CosignatureRefused) as inconsistent:
        request_cosignature(served.url, 8, [], cp(8, bytes(32)))
    assert inconsistent.value.status == 422


def test_the_client_checks_the_cosignature_when_given_the_witness_key(served: WitnessServer) -> None:
    stranger = CosignatureSigner(WITNESS, SigningKey.generate()).verifier()
    with pytest.raises(UnverifiedNote):
        request_cosignature(served.url, 0, [], cp(5), witness=stranger)


def test_raw_http_statuses_and_headers(served: WitnessServer) -> None:
    def call(method: str, path: str, payload: bytes = b"") -> tuple[int, str | None, bytes]:
        conn = http.client.HTTPConnection(served.host, served.port, timeout=30)
        try:
            conn.request(method, path, body=payload)
            response = conn.getresponse()
            return response.status, response.getheader("Content-Type"), response.read()
        finally:
            conn.close()

    assert call("POST", "/add-checkpoint", body(3, [], cp(5))) == (409, "text/x.tlog.size", b"0\n")
    assert call("POST", "/add-checkpoint", b"old x\n\n")[0] == 400
    assert call("GET", "/add-checkpoint")[0] == 405
    assert call("POST", "/elsewhere", b"x")[0] == 404


def test_an_unreachable_witness_is_reported(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(WitnessUnavailable, match="cannot reach the witness"):
        request_cosignature(f"http://127.0.0.1:{port}", 0, [], cp(5), timeout=10)
    with pytest.raises(WitnessUnavailable, match="http:// or https://"):
        request_cosignature("file:///etc/passwd", 0, [], cp(5))


# --- forgetd witness -------------------------------------------------------------------------------------------


def _cli(tmp_path: Path, *args: str) -> list[str]:
    return ["--state", str(tmp_path / "w.sqlite"), "--key", str(tmp_path / "w.key"), *args]


@pytest.mark.parametrize(("args", "message"), [
    (["--listen", "nope", "--log", f"{LOG}={KEYS[LOG]['vkey']}"], "Error: --listen takes HOST:PORT"),
    (["--listen", "127.0.0.1:70000", "--log", f"{LOG}={KEYS[LOG]['vkey']}"], "Error: --listen takes HOST:PORT"),
    (["--log", "no-equals-sign"], "Error: --log takes ORIGIN=VERIFIERKEY, got 'no-equals-sign'"),
    (["--log", f"{LOG}=not+a+vkey"], "Error: verifier key not: the key id must be 8 hex digits"),
])
def test_cli_refuses_bad_input_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(witness_cli, _cli(tmp_path, *args))
    assert result.exit_code == 1 and result.output.startswith(message) and result.output.count("\n") == 1


def test_cli_refuses_a_busy_port_and_a_loose_key(tmp_path: Path) -> None:
    log = f"{LOG}={KEYS[LOG]['vkey']}"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = CliRunner().invoke(witness_cli, _cli(tmp_path, "--listen", f"127.0.0.1:{busy.getsockname()[1]}",
                                                      "--log", log))
    assert result.exit_code == 1 and result.output.startswith("Error: ") and "in use" in result.output
    os.chmod(tmp_path / "w.key", 0o644)
    loose = CliRunner().invoke(witness_cli, _cli(tmp_path, "--log", log))
    assert loose.exit_code == 1 and "chmod 600" in loose.output


def test_cli_has_help() -> None:
    result = CliRunner().invoke(witness_cli, ["-h"])
    assert result.exit_code == 0 and result.output.startswith("Usage: ") and "--log ORIGIN=VERIFIERKEY" in result.output


def test_forgetd_witness_serves_until_terminated(tmp_path: Path) -> None:
    forgetd = Path(sys.executable).with_name("forgetd")
    command = [str(forgetd), "witness", *_cli(tmp_path, "--log", f"{LOG}={KEYS[LOG]['vkey']}")]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            key = load_or_create_signing_key(tmp_path / "w.key")
            vkey = CosignatureSigner(default_witness_name(key.public_key), key).verifier()
            assert line.startswith(f"witness {vkey.vkey} listening on http://127.0.0.1:"), line
            url = line.split()[-1]
            assert [s.name for s in request_cosignature(url, 0, [], cp(5), witness=vkey)] == [vkey.name]
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    assert make_witness(tmp_path / "w.sqlite").state(LOG) == (5, TREE.root(5))
