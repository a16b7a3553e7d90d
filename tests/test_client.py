"""The Python client against a real daemon (port 0, a fresh copy of the small trained store per test):
answers become the client's dataclasses, and every error the server can be made to give arrives as the
typed exception carrying the server's code and message."""

from __future__ import annotations

import dataclasses
import math
import socket
import sqlite3
import threading
from pathlib import Path

import grpc
import pytest

from forgetd.client import (
    Client,
    DeadlineExceeded,
    FailedPrecondition,
    ForgetStatus,
    InvalidArgument,
    NotFound,
    Prediction,
    Receipt,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from forgetd.ledger.merkle import hash_leaf, verify_inclusion_proof

from helpers import RunningDaemon, running_daemon

TOKEN = "client-test-token"


@pytest.fixture
def client(daemon: RunningDaemon) -> Client:
    with Client(daemon.address) as client:
        yield client


def _rows(n: int, columns: int) -> list[list[float]]:
    return [[((i * columns + j) % 7 - 3) / 3 for j in range(columns)] for i in range(n)]


def _check_prediction(p: Prediction, n: int, classes: int) -> None:
    assert len(p.probabilities) == len(p.labels) == n
    for row, label in zip(p.probabilities, p.labels):
        assert len(row) == classes
        assert math.isclose(sum(row), 1.0, abs_tol=1e-5)
        assert label == row.index(max(row))


def test_predict_takes_lists_and_numpy_arrays_alike(client: Client) -> None:
    model = client.model()
    rows = _rows(4, model.num_features)
    from_lists = client.predict(rows)
    _check_prediction(from_lists, 4, model.num_classes)
    assert (from_lists.model_version, from_lists.model_digest) == (model.version, model.digest) == (0, model.digest)
    np = pytest.importorskip("numpy")
    assert client.predict(np.array(rows)) == from_lists


def test_model_describes_the_live_version(client: Client) -> None:
    info = client.model()
    assert info.version == 0 and info.forgotten_count == 0 and info.ledger_seq == 1  # genesis
    assert len(info.shard_digests) == info.config.shards >= 1
    assert info.config.default_strategy in ("hs", "ohs")
    assert 0 < info.training_accuracy <= 1
    assert info.device == "cpu" or info.device.startswith("cuda")  # the daemon's device is "auto"


@pytest.mark.parametrize(
    ("rows", "want"),
    [
        (lambda f: _rows(2, f + 1), "columns is {g} but the model takes {f} features per row"),
        (lambda f: [], "rows is 0: send at least one row"),
        (lambda f: [[float("nan")] * f], "features row 0 column 0 is nan"),
    ],
)
def test_a_bad_predict_is_invalid_argument_with_the_servers_message(client: Client, rows, want: str) -> None:
    f = client.model().num_features
    with pytest.raises(InvalidArgument) as info:
        client.predict(rows(f))
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert want.format(f=f, g=f + 1) in info.value.message
    assert isinstance(info.value.__cause__, grpc.RpcError) and not isinstance(info.value, grpc.RpcError)


def test_a_batch_above_the_servers_message_limit_is_resource_exhausted(store: Path) -> None:
    np = pytest.importorskip("numpy")
    with running_daemon(store, max_message_bytes=4 * 1024 * 1024) as running, Client(running.address) as client:
        f = client.model().num_features
        with pytest.raises(ResourceExhausted) as info:
            client.predict(np.zeros((5 * 1024 * 1024 // (4 * f), f), dtype=np.float32))  # 5 MiB of features
        assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in info.value.message


def test_a_waited_forget_returns_an_applied_receipt_and_the_version_bumps(client: Client) -> None:
    before = client.model()
    receipt = client.forget(["synthetic:3", "synthetic:7"], strategy="dpus")
    assert receipt.status is ForgetStatus.APPLIED and receipt.applied
    assert receipt.result is not None and receipt.result.model_version == before.version + 1
    assert receipt.result.strategy == "dpus"
    assert [s.sample_id for s in receipt.samples] == ["synthetic:3", "synthetic:7"]
    assert all(s.applied_seq == receipt.applied_seq for s in receipt.samples)
    assert receipt.requested_seq < receipt.applied_seq
    assert client.model().version == client.predict(_rows(1, before.num_features)).model_version == before.version + 1


def test_a_receipts_entries_are_in_the_ledger_and_proven_against_its_head(client: Client) -> None:
    receipt = client.forget(["synthetic:11"], strategy="sisa")
    entries = {e.seq: e for e in client.ledger()}
    assert list(entries) == list(range(1, len(entries) + 1))
    assert entries[1].type == "genesis"
    assert entries[receipt.requested_seq].type == "forget.requested"
    assert entries[receipt.applied_seq].type == "forget.applied"
    assert hash_leaf(entries[receipt.applied_seq].envelope) == receipt.applied_leaf_hash
    # The proofs in the receipt check with hashes alone (forgetd.ledger's verifier), against its own head.
    assert receipt.head is not None and receipt.applied_proof is not None
    for seq, leaf, proof in ((receipt.requested_seq, receipt.requested_leaf_hash, receipt.requested_proof),
                             (receipt.applied_seq, receipt.applied_leaf_hash, receipt.applied_proof)):  # fmt: skip
        assert proof is not None and proof.seq == seq and proof.tree_size == receipt.head.size
        verify_inclusion_proof(seq - 1, proof.tree_size, leaf, proof.hashes, receipt.head.merkle_root)
    # The head now, with a consistency proof from the receipt's and an inclusion proof of the request.
    now = client.head(consistency_from=receipt.head.size, inclusion_seqs=[receipt.requested_seq])
    assert now.head.size == len(entries) and now.head.chain_hash == entries[len(entries)].chain_hash
    assert now.consistency is not None and now.consistency.old_size == receipt.head.size
    [inclusion] = now.inclusions
    verify_inclusion_proof(inclusion.seq - 1, now.head.size, receipt.requested_leaf_hash, inclusion.hashes,
                           now.head.merkle_root)  # fmt: skip
    assert client.head().consistency is None


def test_ledger_reads_from_a_seq_with_a_limit(client: Client) -> None:
    client.forget(["synthetic:20"], strategy="dpus")
    client.forget(["synthetic:21"], strategy="dpus")
    assert [e.seq for e in client.ledger()] == [1, 2, 3, 4, 5]
    assert [(e.seq, e.type) for e in client.ledger(2, limit=2)] == [(2, "forget.requested"), (3, "forget.applied")]
    stream = client.ledger()
    assert next(stream).seq == 1
    stream.close()  # stopping early cancels the stream; the client stays usable
    assert client.model().version == 2


def unnamed(receipt: Receipt) -> Receipt:
    """`receipt` as GetForgetRequest answers once it is applied: samples named by subject ref, not by id."""
    return dataclasses.replace(receipt, samples=tuple(dataclasses.replace(s, sample_id="") for s in receipt.samples))


def test_without_wait_the_receipt_is_pending_until_the_status_says_applied(client: Client) -> None:
    ack = client.forget(["synthetic:12"], strategy="sisa", wait=False, request_id="req-pending")
    assert ack.request_id == "req-pending" and ack.requested_seq >= 2
    assert ack.status in (ForgetStatus.PENDING, ForgetStatus.APPLIED)  # the worker may already have applied it
    done = client.forget(["synthetic:12"], strategy="sisa", request_id="req-pending")  # waits on the same request
    assert done.applied and done.requested_seq == ack.requested_seq
    assert client.forget_status("req-pending") == unnamed(done)


def test_the_same_request_id_twice_is_the_same_receipt_and_one_forget(client: Client) -> None:
    first = client.forget(["synthetic:5"], strategy="dpus", request_id="once")
    again = client.forget(["synthetic:5"], strategy="dpus", request_id="once")
    assert again == first
    assert [e.type for e in client.ledger()] == ["genesis", "forget.requested", "forget.applied"]
    assert client.model().version == 1


def test_a_request_id_reused_for_other_samples_is_failed_precondition(client: Client) -> None:
    client.forget(["synthetic:5"], strategy="dpus", request_id="taken")
    with pytest.raises(FailedPrecondition) as info:
        client.forget(["synthetic:6"], strategy="dpus", request_id="taken")
    assert info.value.code is grpc.StatusCode.FAILED_PRECONDITION and "taken" in info.value.message


def test_the_client_makes_a_fresh_request_id_per_forget(client: Client) -> None:
    a = client.forget(["synthetic:30"], strategy="dpus")
    b = client.forget(["synthetic:31"], strategy="dpus")
    assert a.request_id != b.request_id and len(a.request_id) == 36  # UUID4 text form


def test_an_unknown_sample_is_not_found_and_nothing_is_written(client: Client) -> None:
    with pytest.raises(NotFound) as info:
        client.forget(["synthetic:1", "no-such-id"])
    assert str(info.value) == ("NOT_FOUND: unknown sample id(s), not in the training data: 'no-such-id' "
                               "(ids look like 'synthetic:0')")
    assert [e.type for e in client.ledger()] == ["genesis"]


def test_an_empty_forget_is_invalid_argument(client: Client) -> None:
    with pytest.raises(InvalidArgument, match="sample_ids is empty"):
        client.forget([])


def test_an_unknown_request_id_is_not_found(client: Client) -> None:
    with pytest.raises(NotFound, match="no Forget with request_id 'never'"):
        client.forget_status("never")


def test_forget_needs_the_token_and_reads_do_not(store: Path) -> None:
    with running_daemon(store, token=TOKEN) as running:
        with Client(running.address) as anonymous:
            assert anonymous.model().version == 0  # reads stay open to auditors
            with pytest.raises(Unauthenticated) as info:
                anonymous.forget(["synthetic:1"])
            assert str(info.value) == (
                "UNAUTHENTICATED: this call needs a bearer token: send metadata 'authorization: Bearer <token>'"
            )
        with Client(running.address, token="wrong") as wrong, pytest.raises(Unauthenticated, match="not valid"):
            wrong.forget(["synthetic:1"])
        with Client(running.address, token=TOKEN) as right:
            assert right.forget(["synthetic:1"], strategy="dpus").applied


def test_a_call_past_its_deadline_is_deadline_exceeded_and_not_retried(client: Client, daemon: RunningDaemon) -> None:
    # The ledger's write lock, held here, keeps the request from becoming durable, so the deadline passes on any
    # machine (a 1 ms deadline on a fast retrain was a race the forget sometimes won).
    lock = sqlite3.connect(daemon.runtime.engine.ledger_path, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DeadlineExceeded) as info:
            client.forget(["synthetic:1"], strategy="retrain", request_id="late", timeout=0.5)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert info.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
    # The request may have reached the server; the same request_id, waited for, gives its one answer.
    assert client.forget(["synthetic:1"], strategy="retrain", request_id="late", timeout=60).applied


def test_a_stopped_daemon_is_the_typed_unavailable(store: Path) -> None:
    with running_daemon(store) as running:
        address = running.address
        with Client(address, retries=0) as client:
            assert client.model().version == 0
    with Client(address, retries=1) as client, pytest.raises(Unavailable):
        client.predict([[0.0]])


def test_a_forget_retried_through_unavailable_is_applied_once(store: Path) -> None:
    from forgetd.server import ServerConfig, create_server

    with socket.socket() as s:  # a port nobody listens on yet
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    with Client(address, retries=0) as probe, pytest.raises(Unavailable):
        probe.model()
    outcome: dict[str, object] = {}

    def forget() -> None:
        # Backoff 0.1, 0.2, 0.4, 0.8, 1.6, then 2 s: about 20 s of retries while the daemon binds and loads
        # (during loading it answers UNAVAILABLE itself).
        with Client(address, retries=14) as client:
            try:
                outcome["receipt"] = client.forget(["synthetic:2"], strategy="dpus", timeout=30)
            except Exception as exc:  # reported below, in the test's thread
                outcome["error"] = exc

    caller = threading.Thread(target=forget)
    caller.start()
    daemon, _ = create_server(ServerConfig(store=store, listen=address))
    with daemon:
        caller.join(60)
        assert "error" not in outcome, outcome.get("error")
        receipt = outcome["receipt"]
        assert isinstance(receipt, Receipt) and receipt.applied
        with Client(address) as client:
            assert [e.type for e in client.ledger()] == ["genesis", "forget.requested", "forget.applied"]
            assert client.forget_status(receipt.request_id) == unnamed(receipt)
