"""GET /ledger/head and /ledger/entries over a real daemon's HTTP port: what an auditor with curl gets, checked
with the ledger package's own verifiers (hashes recomputed from the streamed envelopes, proofs, signature)."""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers import RunningDaemon, running_daemon

from forgetd.client import Client
from forgetd.ledger import ConsistencyProof, Head, InclusionProof, SignedHead, verify_inclusion, verify_signed_head
from forgetd.ledger.merkle import hash_chain, root_of
from forgetd.server.api.http.ledger import _lines
from forgetd.server.runtime.ledger_writer import READ_PAGE

TOKEN = "tok"


@pytest.fixture(scope="module")
def served(trained_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    """A daemon with a token (reads must not need it) and a few forgets in its ledger."""
    store = tmp_path_factory.mktemp("http-ledger") / "store"
    shutil.copytree(trained_store, store)
    with running_daemon(store, http_listen="127.0.0.1:0", token=TOKEN) as running:
        ids = running.runtime.engine.sample_ids()
        with Client(running.address, token=TOKEN) as client:
            for i, strategy in enumerate(("dpus", "sisa", "hs")):
                client.forget(ids[2 * i:2 * i + 2], strategy=strategy, wait=True, request_id=str(uuid.uuid4()))
        yield running


@pytest.fixture(scope="module")
def http(served: RunningDaemon) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{served.daemon.http_port}", timeout=60.0) as client:
        yield client


def entries(http: httpx.Client, **params: object) -> list[dict[str, object]]:
    answer = http.get("/ledger/entries", params=params)  # type: ignore[arg-type]
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in answer.text.splitlines()]


def test_the_head_is_the_signed_head_grpc_serves(served: RunningDaemon, http: httpx.Client) -> None:
    body = http.get("/ledger/head").json()
    with Client(served.address) as client:
        grpc_head = client.head().head
    assert body["size"] == grpc_head.size == 7  # genesis + 3 x (requested, applied)
    assert bytes.fromhex(body["chain_hash"]) == grpc_head.chain_hash
    assert bytes.fromhex(body["merkle_root"]) == grpc_head.merkle_root
    head = Head.from_hex(body["hex"])
    assert head == Head(body["size"], bytes.fromhex(body["chain_hash"]), bytes.fromhex(body["merkle_root"]))
    verify_signed_head(SignedHead(head, bytes.fromhex(body["signature"]), bytes.fromhex(body["public_key"])),
                       bytes.fromhex(served.runtime.info.head_public_key))
    assert body["inclusions"] == [] and body["consistency"] is None


def test_the_streamed_entries_recompute_to_the_head(http: httpx.Client) -> None:
    lines = entries(http)
    head = Head.from_hex(http.get("/ledger/head").json()["hex"])
    assert [e["seq"] for e in lines] == list(range(1, head.size + 1))
    chain = bytes(32)
    leaves = []
    for e in lines:
        leaf = hashlib.sha256(b"\x00" + str(e["envelope"]).encode()).digest()
        assert leaf.hex() == e["leaf_hash"]
        chain = hash_chain(int(str(e["seq"])), chain, leaf)
        assert chain.hex() == e["chain_hash"]
        leaves.append(leaf)
        envelope = json.loads(str(e["envelope"]))
        assert (envelope["seq"], envelope["type"], envelope["event_id"]) == (e["seq"], e["type"], e["event_id"])
    assert chain == head.chain_hash and root_of(leaves) == head.merkle_root
    assert [e["type"] for e in lines[:3]] == ["genesis", "forget.requested", "forget.applied"]


def test_from_and_limit_page_through_the_ledger(http: httpx.Client) -> None:
    assert [e["seq"] for e in entries(http, **{"from": 2, "limit": 3})] == [2, 3, 4]
    assert [e["seq"] for e in entries(http, **{"from": 6})] == [6, 7]
    assert entries(http, **{"from": 1000}) == []  # past the head: nothing yet, not an error


@pytest.mark.parametrize("params, field", [({"from": 0}, "from"), ({"limit": 0}, "limit"), ({"from": "x"}, "from"),
                                           ({"limit": "-3"}, "limit")])
def test_bad_paging_parameters_are_400(http: httpx.Client, params: dict[str, object], field: str) -> None:
    answer = http.get("/ledger/entries", params=params)  # type: ignore[arg-type]
    assert answer.status_code == 400 and answer.json()["error"].startswith(f"query.{field}")


def test_the_head_carries_inclusion_and_consistency_proofs_on_request(http: httpx.Client) -> None:
    old = Head.from_hex(entries_head(http, 3))
    body = http.get("/ledger/head", params={"inclusion": [2, 5], "consistency_from": 3}).json()
    head = Head.from_hex(body["hex"])
    lines = {e["seq"]: e for e in entries(http)}
    for proof in body["inclusions"]:
        leaf = bytes.fromhex(str(lines[proof["seq"]]["leaf_hash"]))
        verify_inclusion(leaf, proof["seq"], InclusionProof(proof["seq"], proof["tree_size"], leaf,
                                                            tuple(bytes.fromhex(h) for h in proof["hashes"])), head)
    c = body["consistency"]
    ConsistencyProof(c["old_size"], c["new_size"], tuple(bytes.fromhex(h) for h in c["hashes"])).verify(old, head)


def entries_head(http: httpx.Client, size: int) -> str:
    """The hex head the ledger had at `size` entries, recomputed from the stream (as an auditor would keep it)."""
    lines = entries(http, limit=size)
    leaves = [bytes.fromhex(str(e["leaf_hash"])) for e in lines]
    return Head(size, bytes.fromhex(str(lines[-1]["chain_hash"])), root_of(leaves)).to_hex()


@pytest.mark.parametrize("params", [{"inclusion": 99}, {"consistency_from": 99}])
def test_proofs_beyond_the_head_are_400(http: httpx.Client, params: dict[str, int]) -> None:
    answer = http.get("/ledger/head", params=params)
    assert answer.status_code == 400 and "99" in answer.json()["error"]


def test_entries_go_out_a_page_at_a_time(served: RunningDaemon) -> None:
    # Starlette hops to a worker thread for every item an iterator yields: the stream yields whole pages.
    many = list(served.runtime.ledger.read(1, None)) * (READ_PAGE // 7 * 2 + 1)
    chunks = list(_lines(many))
    assert len(chunks) == -(-len(many) // READ_PAGE)
    assert sum(c.count(b"\n") for c in chunks) == len(many)


def test_token_gated_reads_refuse_anonymous_http_callers_and_hide_raw_ids(store: Path) -> None:
    # The gRPC front's rule, on HTTP: with --ledger-reads token, the ledger and forget requests need the token,
    # and a request's raw sample ids go only to the token holder.
    token = "s3cret-token"
    with running_daemon(store, token=token, ledger_reads="token", http_listen="127.0.0.1:0") as running:
        base = f"http://127.0.0.1:{running.daemon.http_port}"
        auth = {"Authorization": f"Bearer {token}"}
        for path in ("/ledger/head", "/ledger/entries?from=1"):
            assert httpx.get(base + path).status_code == 401
            assert httpx.get(base + path, headers=auth).status_code == 200
        posted = httpx.post(base + "/unlearn", json={"sample_id": "synthetic:5"}, headers=auth)
        assert posted.status_code == 202
        location = posted.headers["location"]
        assert httpx.get(base + location).status_code == 401
        assert httpx.get(base + location, headers=auth).status_code == 200
