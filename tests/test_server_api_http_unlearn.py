"""POST /unlearn and GET /unlearn/{id} over a real daemon's --http-listen port, with httpx: the 202 path,
polling to applied, AIP-155 idempotency, and every refusal (400, 401, 404, 409, 413, 503) leaving the ledger
exactly as it was (counted entry by entry)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers import RunningDaemon, running_daemon

from forgetd.client import Client
from forgetd.client.receipts import receipt_from_json, verify_receipt_with_store
from forgetd.server.api.http.app import create_app
from forgetd.server.api.http.context import HttpContext
from forgetd.server.api.http.server import HttpFront
from forgetd.server.api.oip_model import OipModel
from forgetd.server.config import MIB
from forgetd.server.runtime.slot import RuntimeSlot
from forgetd.server.vocabulary import STRATEGIES

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_IDS = 20


@pytest.fixture(scope="module")
def served(trained_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    """One daemon for the module (each test takes its own sample ids): a token, 4 MiB bodies, 20 ids at most."""
    store = tmp_path_factory.mktemp("http-unlearn") / "store"
    shutil.copytree(trained_store, store)
    with running_daemon(store, http_listen="127.0.0.1:0", token=TOKEN, max_message_bytes=4 * MIB,
                        max_forget_ids=MAX_IDS) as running:
        yield running


@pytest.fixture(scope="module")
def http(served: RunningDaemon) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{served.daemon.http_port}", timeout=60.0) as client:
        yield client


_taken: set[str] = set()


def fresh_ids(served: RunningDaemon, n: int) -> list[str]:
    """Sample ids no other test of the module has used."""
    ids = [i for i in served.runtime.engine.sample_ids() if i not in _taken][:n]
    _taken.update(ids)
    return ids


def ledger_size(served: RunningDaemon) -> int:
    return int(served.runtime.ledger.size())


def post(http: httpx.Client, body: object, key: str | None = None, headers: dict[str, str] | None = None,
         **kwargs: object) -> httpx.Response:
    h = {**AUTH, **({"Idempotency-Key": key} if key else {}), **(headers or {})}
    return http.post("/unlearn", json=body, headers=h, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- the 202 path


def test_post_is_accepted_with_location_and_receipt_then_polling_reaches_applied(served: RunningDaemon,
                                                                                 http: httpx.Client) -> None:
    ids = fresh_ids(served, 2)
    key = str(uuid.uuid4())
    before = ledger_size(served)
    answer = post(http, {"sample_ids": ids, "method": "sisa"}, key)
    assert answer.status_code == 202, answer.text
    assert answer.headers["location"] == f"/unlearn/{key}"
    assert int(answer.headers["retry-after"]) >= 1
    body = answer.json()
    assert body["request_id"] == key and body["status"] == "pending"
    assert body["requested_seq"] == before + 1  # durable before the answer
    assert body["head"]["size"] >= body["requested_seq"] and body["requested_proof"]["seq"] == body["requested_seq"]
    assert [s["sample_id"] for s in body["samples"]] == ids

    done = http.get(answer.headers["location"], params={"wait": "true", "timeout": 60})
    assert done.status_code == 200, done.text
    applied = done.json()
    assert applied["status"] == "applied" and "retry-after" not in done.headers
    assert applied["result"]["strategy"] == "sisa" and applied["result"]["guarantee"] == "exact"
    assert applied["result"]["model_version"] >= 1
    assert {s["guarantee"] for s in applied["samples"]} == {"exact"}
    assert all(s["applied_seq"] == applied["applied_seq"] for s in applied["samples"])


def test_the_answer_is_the_grpc_receipt_and_verifies_against_the_store(served: RunningDaemon,
                                                                       http: httpx.Client) -> None:
    ids = fresh_ids(served, 1)
    key = str(uuid.uuid4())
    assert post(http, {"sample_id": ids[0], "method": "dpus"}, key).status_code == 202
    body = http.get(f"/unlearn/{key}", params={"wait": "true"}).json()
    receipt = receipt_from_json(body)  # the `forgetd forget --json` form, read by the client library
    report = verify_receipt_with_store(receipt, served.store)
    assert report.ok, report.problems
    with Client(served.address, token=TOKEN) as grpc_client:
        same = grpc_client.forget_status(key)
    assert (same.requested_seq, same.requested_leaf_hash, same.applied_seq, same.applied_leaf_hash) == (
        receipt.requested_seq, receipt.requested_leaf_hash, receipt.applied_seq, receipt.applied_leaf_hash)
    assert same.result == receipt.result and same.samples == receipt.samples


def test_polling_without_wait_says_where_the_request_stands(served: RunningDaemon, http: httpx.Client) -> None:
    ids = fresh_ids(served, 1)
    accepted = post(http, {"sample_ids": ids, "method": "hs"})  # no key: the server assigns a UUID4
    assert accepted.status_code == 202
    rid = accepted.json()["request_id"]
    assert uuid.UUID(rid).version == 4
    now = http.get(accepted.headers["location"])
    assert now.status_code == 200 and now.json()["request_id"] == rid
    assert now.json()["status"] in ("pending", "applied")
    assert http.get(f"/unlearn/{rid}", params={"wait": "true"}).json()["status"] == "applied"


def test_the_same_key_and_ids_is_the_same_request_answered_again_and_written_once(served: RunningDaemon,
                                                                                  http: httpx.Client) -> None:
    ids = fresh_ids(served, 2)
    key = str(uuid.uuid4())
    first = post(http, {"sample_ids": ids, "method": "dpus"}, key)
    http.get(f"/unlearn/{key}", params={"wait": "true"})
    size = ledger_size(served)
    again = post(http, {"sample_ids": ids, "method": "dpus"}, key)
    assert again.status_code == 200  # already applied: the result, not a new acceptance
    assert again.json()["requested_seq"] == first.json()["requested_seq"]
    assert again.json()["status"] == "applied"
    assert ledger_size(served) == size


# ------------------------------------------------------------------------------------------- refusals


def test_a_key_reused_for_other_ids_is_409_and_writes_nothing(served: RunningDaemon, http: httpx.Client) -> None:
    ids = fresh_ids(served, 2)
    key = str(uuid.uuid4())
    assert post(http, {"sample_ids": ids[:1], "method": "dpus"}, key).status_code == 202
    http.get(f"/unlearn/{key}", params={"wait": "true"})
    size = ledger_size(served)
    for other in ({"sample_ids": ids[1:], "method": "dpus"}, {"sample_ids": ids[:1], "method": "sisa"}):
        answer = post(http, other, key)
        assert answer.status_code == 409, answer.text
        assert "already used" in answer.json()["error"]
    assert ledger_size(served) == size


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}])
def test_without_the_right_token_it_is_401_and_writes_nothing(served: RunningDaemon, http: httpx.Client,
                                                              headers: dict[str, str]) -> None:
    ids = fresh_ids(served, 1)
    size = ledger_size(served)
    answer = http.post("/unlearn", json={"sample_ids": ids}, headers=headers)
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    assert "bearer token" in answer.json()["error"]
    # Checked before the body is read: a bad body without the token is still 401, not 400.
    assert http.post("/unlearn", content=b"{nope", headers=headers).status_code == 401
    assert ledger_size(served) == size


BAD_BODIES = [
    pytest.param(b"{not json", "Invalid JSON", id="not-json"),
    pytest.param(b"[1, 2]", "should be an object", id="not-an-object"),
    pytest.param(b"{}", "exactly one of sample_id", id="no-ids"),
    pytest.param(b'{"sample_id": "a", "sample_ids": ["b"]}', "exactly one of sample_id", id="both-forms"),
    pytest.param(b'{"sample_ids": []}', "sample_ids is empty", id="empty-list"),
    pytest.param(b'{"sample_ids": ["a", "a"]}', "appears more than once", id="duplicate"),
    pytest.param(b'{"sample_ids": [7]}', "valid string", id="not-a-string"),
    pytest.param(b'{"sample_id": ""}', "is empty or longer", id="empty-id"),
    pytest.param(b'{"sample_id": "a", "method": "fastest"}', "use one of auto, retrain", id="unknown-method"),
    pytest.param(b'{"sample_id": "a", "strategy": "hs"}', "strategy: Extra inputs", id="unknown-field"),
    pytest.param(('{"sample_ids": [%s]}' % ",".join(f'"x{i}"' for i in range(MAX_IDS + 1))).encode(),
                 "above this server's limit of 20", id="too-many-ids"),
]


@pytest.mark.parametrize("body, message", BAD_BODIES)
def test_a_malformed_request_is_400_with_what_to_fix_and_writes_nothing(served: RunningDaemon, http: httpx.Client,
                                                                        body: bytes, message: str) -> None:
    size = ledger_size(served)
    answer = http.post("/unlearn", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]
    assert ledger_size(served) == size


def test_a_method_this_model_family_cannot_apply_is_409_and_writes_nothing(served: RunningDaemon,
                                                                          http: httpx.Client) -> None:
    ids = fresh_ids(served, 1)
    size = ledger_size(served)
    answer = post(http, {"sample_ids": ids, "method": "certified"}, str(uuid.uuid4()))  # the store is an MLP
    assert answer.status_code == 409, answer.text
    assert "certified" in answer.json()["error"]
    assert ledger_size(served) == size


def test_an_idempotency_key_that_is_too_long_is_400(served: RunningDaemon, http: httpx.Client) -> None:
    ids = fresh_ids(served, 1)
    size = ledger_size(served)
    answer = post(http, {"sample_ids": ids}, "k" * 129)
    assert answer.status_code == 400 and "Idempotency-Key must be at most 128" in answer.json()["error"]
    assert ledger_size(served) == size


def test_unknown_sample_ids_are_404_and_nothing_is_written(served: RunningDaemon, http: httpx.Client) -> None:
    ids = fresh_ids(served, 1)
    size = ledger_size(served)
    answer = post(http, {"sample_ids": [ids[0], "no-such-sample"]}, str(uuid.uuid4()))
    assert answer.status_code == 404
    assert "no-such-sample" in answer.json()["error"]
    assert ledger_size(served) == size


def test_an_unknown_request_id_is_404_with_or_without_wait(http: httpx.Client) -> None:
    for params in ({}, {"wait": "true", "timeout": 1}):
        answer = http.get("/unlearn/never-sent", params=params)
        assert answer.status_code == 404 and "never-sent" in answer.json()["error"]


@pytest.mark.parametrize("timeout", ["0", "-1", "601", "soon"])
def test_a_wait_timeout_out_of_range_is_400(http: httpx.Client, timeout: str) -> None:
    answer = http.get("/unlearn/x", params={"wait": "true", "timeout": timeout})
    assert answer.status_code == 400 and answer.json()["error"].startswith("query.timeout")


def test_a_body_over_the_limit_is_413_and_writes_nothing(served: RunningDaemon, http: httpx.Client) -> None:
    size = ledger_size(served)
    big = b'{"sample_id": "' + b"x" * (4 * MIB) + b'"}'
    answer = http.post("/unlearn", content=big, headers={**AUTH, "Content-Type": "application/json"})
    assert answer.status_code == 413 and "limit" in answer.json()["error"]
    assert ledger_size(served) == size


def test_request_ids_with_slashes_and_spaces_round_trip_through_location(served: RunningDaemon,
                                                                         http: httpx.Client) -> None:
    ids = fresh_ids(served, 1)
    key = f"tenant/7 {uuid.uuid4()}"
    accepted = post(http, {"sample_ids": ids, "method": "dpus"}, key)
    assert accepted.status_code == 202
    assert http.get(accepted.headers["location"], params={"wait": "true"}).json()["request_id"] == key


def test_a_daemon_still_loading_answers_503() -> None:
    slot = RuntimeSlot()  # no runtime in it: as while the store loads, or once shutdown began
    front = HttpFront(create_app(HttpContext(slot, OipModel(slot))), "127.0.0.1:0")
    front.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{front.port}", timeout=30.0) as client:
            answer = client.post("/unlearn", json={"sample_id": "a"})
            assert answer.status_code == 503 and "retry" in answer.json()["error"]
            assert client.get("/unlearn/a").status_code == 503
    finally:
        front.stop()


# ------------------------------------------------------------------------------------------- OpenAPI


def test_the_openapi_description_lists_unlearn_with_202_and_its_errors(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    post_op = spec["paths"]["/unlearn"]["post"]
    assert {"202", "400", "401", "404", "409", "413", "503"} <= set(post_op["responses"])
    assert {"Location", "Retry-After"} <= set(post_op["responses"]["202"]["headers"])
    assert any(p["name"] == "idempotency-key" and p["in"] == "header" for p in post_op["parameters"])
    body = post_op["requestBody"]["content"]["application/json"]["schema"]
    assert {"sample_id", "sample_ids", "method"} <= set(body["properties"])
    assert body["properties"]["method"]["enum"] == list(STRATEGIES)
    get_op = spec["paths"]["/unlearn/{request_id}"]["get"]
    assert {"200", "404", "503"} <= set(get_op["responses"])
    assert {p["name"] for p in get_op["parameters"]} >= {"request_id", "wait", "timeout"}
