"""The Open Inference Protocol v2 over HTTP/REST, driven by the real tritonclient.http against a real daemon
with --http-listen on port 0.

Every answer must be bitwise what forgetd.v1 Predict and the gRPC ModelInfer give for the same rows, whether
tensors travel as JSON or in Triton's binary extension, and carry the state it came from (model version,
digest, ledger seq) as response parameters. The module's daemon has a bearer token: no route here needs it.
"""

from __future__ import annotations

import gzip
import http.client
import json
import shutil
import signal
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from forgetd.server.config import MIB, ServerConfig
from forgetd.server.errors import InvalidConfig
from forgetd.v1 import inference_service_pb2 as ipb, unlearning_service_pb2 as upb

from helpers import Pki, RunningDaemon, running_daemon

MODEL = "forgetd"
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def served(trained_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    store = tmp_path_factory.mktemp("http-oip") / "store"
    shutil.copytree(trained_store, store)
    # The smallest message limit the config takes, so an oversized body stays cheap to send.
    with running_daemon(store, http_listen="127.0.0.1:0", token=TOKEN, max_message_bytes=4 * MIB) as running:
        yield running


@pytest.fixture(scope="module")
def client(served: RunningDaemon) -> Iterator[th.InferenceServerClient]:
    c = th.InferenceServerClient(f"127.0.0.1:{served.daemon.http_port}")
    yield c
    c.close()


@pytest.fixture(scope="module")
def grpc_client(served: RunningDaemon) -> Iterator[tg.InferenceServerClient]:
    c = tg.InferenceServerClient(served.address)
    yield c
    c.close()


def _features(served: RunningDaemon) -> int:
    inference, _ = served.stubs()
    return inference.GetModel(ipb.GetModelRequest()).num_features


def _rows(n: int, f: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, f)).astype(np.float32)


def _v1(served: RunningDaemon, x: np.ndarray) -> ipb.PredictResponse:
    inference, _ = served.stubs()
    request = ipb.PredictRequest(features=x.astype("<f4").tobytes(), rows=x.shape[0], columns=x.shape[1])
    return inference.Predict(request)


def _input(x: np.ndarray, *, binary: bool = True, name: str = "features", datatype: str = "FP32") -> th.InferInput:
    inp = th.InferInput(name, list(x.shape), datatype)
    inp.set_data_from_numpy(x, binary_data=binary)
    return inp


def _raw(served: RunningDaemon, method: str, path: str, body: bytes = b"",
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", served.daemon.http_port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------------ health, metadata


def test_health_metadata_config_and_index(served: RunningDaemon, client: th.InferenceServerClient) -> None:
    f = _features(served)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    live = client.get_model_metadata(MODEL)["versions"][0]
    assert client.is_model_ready(MODEL, live) and not client.is_model_ready(MODEL, str(int(live) + 7))
    assert not client.is_model_ready("other")
    meta = client.get_server_metadata()
    assert meta["name"] == "forgetd" and {"statistics", "binary_tensor_data"} <= set(meta["extensions"])
    model = client.get_model_metadata(MODEL, live)
    assert model["inputs"][0] == {"name": "features", "datatype": "FP32", "shape": [-1, f]}  # then the columns
    assert [(o["name"], o["datatype"]) for o in model["outputs"]] == [("probabilities", "FP32"), ("labels", "INT64")]
    config = client.get_model_config(MODEL)
    assert config["name"] == MODEL
    assert config["input"][0] == {"name": "features", "data_type": "TYPE_FP32", "dims": [-1, f]}
    assert client.get_model_repository_index() == [{"name": MODEL, "version": live, "state": "READY"}]


def test_not_ready_answers_say_why(served: RunningDaemon) -> None:
    assert _raw(served, "GET", "/v2/models/other/ready") == (
        404, {"error": "unknown model 'other'; this server serves one model, 'forgetd'"})
    status, body = _raw(served, "GET", "/v2/models/forgetd/versions/99/ready")
    assert status == 404 and "version '99' is not served; the live version is" in body["error"]
    assert _raw(served, "GET", "/v2/health/ready") == (200, {"ready": True})
    status, body = _raw(served, "GET", "/v2/nothing/here")
    assert status == 404 and body == {"error": "GET /v2/nothing/here: Not Found"}
    status, body = _raw(served, "GET", "/v2/models/forgetd/infer")
    assert status == 405 and body["error"].startswith("GET /v2/models/forgetd/infer: Method Not Allowed")


def test_a_daemon_still_loading_is_not_ready() -> None:
    # The front of a daemon whose runtime slot is still empty, which is what it serves while it loads.
    from forgetd.server.api.http.app import create_app
    from forgetd.server.api.http.context import HttpContext
    from forgetd.server.api.http.server import HttpFront
    from forgetd.server.api.oip_model import OipModel
    from forgetd.server.runtime.slot import RuntimeSlot

    slot = RuntimeSlot()
    front = HttpFront(create_app(HttpContext(slot, OipModel(slot))), "127.0.0.1:0")
    front.start()
    try:
        c = th.InferenceServerClient(f"127.0.0.1:{front.port}")
        assert c.is_server_live() and not c.is_server_ready() and not c.is_model_ready(MODEL)
        assert c.get_model_repository_index()[0]["state"] == "UNAVAILABLE"
        with pytest.raises(InferenceServerException, match="loading its model or shutting down") as info:
            c.get_model_metadata(MODEL)
        assert info.value.status() == "503"
        c.close()
    finally:
        front.stop()


def test_the_openapi_description_lists_the_protocol(served: RunningDaemon) -> None:
    status, doc = _raw(served, "GET", "/openapi.json")
    assert status == 200
    for path in ("/v2", "/v2/health/ready", "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer",
                 "/v2/models/{name}/config", "/v2/models/{name}/stats", "/v2/models/stats", "/v2/repository/index"):
        assert path in doc["paths"], path


# ------------------------------------------------------------------------------------------------ inference


@pytest.mark.parametrize("n", [1, 64])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_equals_predict_and_grpc_model_infer_bitwise(served: RunningDaemon, client: th.InferenceServerClient,
                                                          grpc_client: tg.InferenceServerClient, n: int,
                                                          binary: bool) -> None:
    x = _rows(n, _features(served), seed=n)
    outputs = [th.InferRequestedOutput(name, binary_data=binary) for name in ("probabilities", "labels")]
    result = client.infer(MODEL, [_input(x, binary=binary)], outputs=outputs)
    want = _v1(served, x)
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32 and probabilities.shape == (n, want.classes)
    assert probabilities.tobytes() == np.asarray(want.probabilities, dtype=np.float32).tobytes()
    assert result.as_numpy("labels").tolist() == list(want.labels)
    g = tg.InferInput("features", list(x.shape), "FP32")
    g.set_data_from_numpy(x)
    over_grpc = grpc_client.infer(MODEL, [g])
    assert over_grpc.as_numpy("probabilities").tobytes() == probabilities.tobytes()
    response = result.get_response()
    assert response["model_name"] == MODEL and response["model_version"] == str(want.model_version)
    assert response["parameters"] == {"model_version": str(want.model_version), "model_digest": want.model_digest,
                                      "ledger_seq": over_grpc.get_response().parameters["ledger_seq"].int64_param}
    assert response["parameters"]["ledger_seq"] >= 1
    encoded = [o.get("parameters", {}).get("binary_data_size") is not None for o in response["outputs"]]
    assert encoded == [binary, binary]


def test_the_default_answer_is_binary_and_requested_outputs_are_the_only_ones(
        served: RunningDaemon, client: th.InferenceServerClient) -> None:
    x = _rows(2, _features(served))
    everything = client.infer(MODEL, [_input(x)], request_id="r-1").get_response()  # tritonclient asks for binary
    assert everything["id"] == "r-1"
    assert [o["parameters"]["binary_data_size"] for o in everything["outputs"]] == [2 * 2 * 4, 2 * 8]
    only = client.infer(MODEL, [_input(x)], outputs=[th.InferRequestedOutput("labels", binary_data=False)])
    assert [o["name"] for o in only.get_response()["outputs"]] == ["labels"]


def test_curl_style_json_and_a_gzip_body(served: RunningDaemon, client: th.InferenceServerClient) -> None:
    f = _features(served)
    x = _rows(3, f, seed=9)
    doc = {"inputs": [{"name": "features", "shape": [3, f], "datatype": "FP32", "data": x.tolist()}]}
    status, body = _raw(served, "POST", "/v2/models/forgetd/infer", json.dumps(doc).encode(),
                        {"Content-Type": "application/json"})
    assert status == 200 and [o["name"] for o in body["outputs"]] == ["probabilities", "labels"]
    got = np.asarray(body["outputs"][0]["data"], dtype=np.float32)
    assert got.tobytes() == np.asarray(_v1(served, x).probabilities, dtype=np.float32).tobytes()
    zipped = client.infer(MODEL, [_input(x)], request_compression_algorithm="gzip")
    assert zipped.as_numpy("probabilities").tobytes() == got.tobytes()
    status, body = _raw(served, "POST", "/v2/models/forgetd/infer", gzip.compress(json.dumps(doc).encode()),
                        {"Content-Encoding": "br"})
    assert status == 400 and body["error"].startswith("Content-Encoding 'br' is not supported")


@pytest.mark.parametrize("case, status, match", [
    ("shape", "400", "send \\[rows, "),
    ("datatype", "400", "send FP32"),
    ("model", "404", "unknown model 'nope'"),
    ("version", "404", "version '12345' is not served"),
    ("nan", "400", "not finite|NaN|nan"),
    ("name", "400", "send exactly one input 'features'"),
])
def test_errors_say_what_to_fix(served: RunningDaemon, client: th.InferenceServerClient, case: str, status: str,
                                match: str) -> None:
    f = _features(served)
    x = _rows(2, f)
    name, model, datatype, version = "features", MODEL, "FP32", ""
    if case == "shape":
        x = _rows(2, f + 1)
    elif case == "datatype":
        x, datatype = x.astype(np.float64), "FP64"
    elif case == "model":
        model = "nope"
    elif case == "version":
        version = "12345"
    elif case == "nan":
        x[1, 0] = np.nan
    elif case == "name":
        name = "x"
    with pytest.raises(InferenceServerException, match=match) as info:
        client.infer(model, [_input(x, name=name, datatype=datatype)], model_version=version)
    assert info.value.status() == status


def test_malformed_and_oversized_bodies_are_refused(served: RunningDaemon, client: th.InferenceServerClient) -> None:
    status, body = _raw(served, "POST", "/v2/models/forgetd/infer", b'{"inputs": [',
                        {"Content-Type": "application/json"})
    assert status == 400 and body["error"].startswith("the request body is not valid JSON")
    status, body = _raw(served, "POST", "/v2/models/forgetd/infer", b'{"inputs": [{"name": "features"}]}',
                        {"Inference-Header-Content-Length": "999"})
    assert status == 400 and "Inference-Header-Content-Length is '999'" in body["error"]
    rows = 4 * MIB // (4 * _features(served)) + 1  # one row over the 4 MiB limit, counting the binary part alone
    with pytest.raises(InferenceServerException, match="request body is over 4194304 bytes") as info:
        client.infer(MODEL, [_input(_rows(rows, _features(served)))])
    assert info.value.status() == "413"
    assert client.is_server_ready()  # nothing else changed


def test_statistics_count_the_answers(served: RunningDaemon, client: th.InferenceServerClient) -> None:
    before = client.get_inference_statistics(MODEL)["model_stats"][0]
    client.infer(MODEL, [_input(_rows(5, _features(served)))])
    with pytest.raises(InferenceServerException):
        client.infer(MODEL, [_input(_rows(5, _features(served) + 1))])
    after = client.get_inference_statistics(MODEL)["model_stats"][0]
    assert after["inference_count"] == before["inference_count"] + 5
    assert after["execution_count"] == before["execution_count"] + 1
    assert after["inference_stats"]["fail"]["count"] == before["inference_stats"]["fail"]["count"] + 1
    assert client.get_inference_statistics()["model_stats"][0]["name"] == MODEL  # every model: the one


def test_reads_need_no_token_and_ignore_a_wrong_one(served: RunningDaemon, client: th.InferenceServerClient) -> None:
    x = _rows(1, _features(served))
    wrong = {"Authorization": "Bearer wrong"}
    assert client.infer(MODEL, [_input(x)], headers=wrong).as_numpy("labels").shape == (1,)
    assert client.is_model_ready(MODEL, headers=wrong) and client.get_inference_statistics(MODEL, headers=wrong)
    assert client.get_model_repository_index(headers=wrong)[0]["state"] == "READY"


def test_a_forget_moves_the_version_and_the_old_one_is_gone(served: RunningDaemon,
                                                           client: th.InferenceServerClient) -> None:
    old = client.get_model_metadata(MODEL)["versions"][0]
    _, unlearning = served.stubs()
    unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:3"], wait=True),
                      metadata=(("authorization", f"Bearer {TOKEN}"),))
    new = client.get_model_metadata(MODEL)["versions"][0]
    assert int(new) == int(old) + 1 and client.is_model_ready(MODEL, new) and not client.is_model_ready(MODEL, old)
    x = _rows(1, _features(served))
    assert client.infer(MODEL, [_input(x)], model_version=new).get_response()["model_version"] == new
    with pytest.raises(InferenceServerException, match=f"version '{old}' is not served") as info:
        client.infer(MODEL, [_input(x)], model_version=old)
    assert info.value.status() == "404"


# ------------------------------------------------------------------------------------------------ TLS


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _https_status(port: int, ca: Path, cert: str | None = None, key: str | None = None) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(cert, key)
    conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=30)
    try:
        conn.request("GET", "/v2/health/live")
        return conn.getresponse().status
    finally:
        conn.close()


def test_https_serves_clients_that_trust_the_ca_and_refuses_plain_http(store: Path, pki: Pki) -> None:
    with running_daemon(store, tls_cert=pki.server_cert, tls_key=pki.server_key, http_listen="127.0.0.1:0",
                        channel_credentials=grpc.ssl_channel_credentials(pki.ca)) as running:
        port = running.daemon.http_port
        c = th.InferenceServerClient(f"localhost:{port}", ssl=True, ssl_options={"ca_certs": str(pki.client_ca)})
        x = _rows(1, _features(running))
        assert c.is_server_ready() and c.infer(MODEL, [_input(x)]).as_numpy("probabilities").tobytes() == \
            np.asarray(_v1(running, x).probabilities, dtype=np.float32).tobytes()
        c.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            conn.request("GET", "/v2/health/live")
            conn.getresponse()
        conn.close()


def test_mtls_needs_a_client_certificate_from_the_ca(store: Path, pki: Pki, tmp_path: Path) -> None:
    good = grpc.ssl_channel_credentials(pki.ca, pki.client_key, pki.client_cert)
    with running_daemon(store, tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.client_ca,
                        http_listen="127.0.0.1:0", channel_credentials=good) as running:
        port = running.daemon.http_port
        cert, key = _write(tmp_path / "c.pem", pki.client_cert), _write(tmp_path / "c.key", pki.client_key)
        c = th.InferenceServerClient(f"localhost:{port}", ssl=True,
                                     ssl_options={"ca_certs": str(pki.client_ca), "certfile": cert, "keyfile": key})
        assert c.is_server_ready()
        c.close()
        assert _https_status(port, pki.client_ca, cert, key) == 200
        rogue = _write(tmp_path / "r.pem", pki.rogue_cert), _write(tmp_path / "r.key", pki.rogue_key)
        for refused in ((None, None), rogue):  # no certificate; one from a CA the server does not trust
            with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
                _https_status(port, pki.client_ca, *refused)


# ------------------------------------------------------------------------------------------------ lifecycle


def test_a_request_in_flight_at_shutdown_gets_its_answer(store: Path) -> None:
    with running_daemon(store, http_listen="127.0.0.1:0") as running:
        daemon, f = running.daemon, _features(running)
        doc = {"inputs": [{"name": "features", "shape": [1, f], "datatype": "FP32", "data": [0.5] * f}]}
        body = json.dumps(doc).encode()
        sock = socket.create_connection(("127.0.0.1", daemon.http_port), timeout=60)
        sock.sendall(b"POST /v2/models/forgetd/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
        assert _raw(running, "GET", "/v2/health/live")[0] == 200  # the half-sent request is in the server now
        stopping = threading.Thread(target=daemon.stop, args=(30.0,))
        stopping.start()
        while _accepts(daemon.http_port):  # until the front refuses new connections: shutdown has begun
            stopping.join(0.05)
        sock.sendall(body[10:])
        with sock, sock.makefile("rb") as reader:
            answer = reader.read()  # the whole answer, then the server closes the connection
        stopping.join()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503") and b"shutting down" in payload, answer


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return True
    except OSError:
        return False


def test_the_http_address_is_validated_and_a_taken_port_refused(store: Path) -> None:
    from forgetd.server import create_server

    with pytest.raises(InvalidConfig, match="http listen address 'nowhere' is not HOST:PORT; use e.g. 127.0.0.1:8080"):
        ServerConfig(store=store, http_listen="nowhere")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(InvalidConfig, match=f"cannot listen on {busy} for HTTP .*is another server using"):
            create_server(ServerConfig(store=store, listen="127.0.0.1:0", http_listen=busy))


@pytest.mark.slow
def test_forgetd_serve_prints_the_http_address_and_serves_it(store: Path, daemon_process) -> None:
    running = daemon_process(store, "--http-listen", "127.0.0.1:0")
    running.wait_serving()
    line = next(line for line in running.lines if "http listening on" in line)
    port = int(line.rsplit(":", 1)[1])
    c = th.InferenceServerClient(f"127.0.0.1:{port}")
    assert c.is_server_ready() and c.is_model_ready(MODEL)
    c.close()
    running.signal(signal.SIGTERM)
    assert running.wait() == 0, running.log
