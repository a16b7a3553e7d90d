"""The Open Inference Protocol v2 over gRPC, driven by the real tritonclient against a real daemon on port 0.

Every answer must be bitwise what forgetd.v1 Predict gives for the same rows, and carry the state it came
from (model version, digest, ledger seq) as response parameters.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tg
from tritonclient.utils import InferenceServerException

from forgetd.oip import grpc_service_pb2 as pb, grpc_service_pb2_grpc as pb_grpc
from forgetd.v1 import inference_service_pb2 as ipb, unlearning_service_pb2 as upb

from helpers import RunningDaemon, running_daemon

MODEL = "forgetd"


@pytest.fixture(scope="module")
def served(trained_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    import shutil

    store = tmp_path_factory.mktemp("oip") / "store"
    shutil.copytree(trained_store, store)
    with running_daemon(store) as running:
        yield running


@pytest.fixture(scope="module")
def client(served: RunningDaemon) -> Iterator[tg.InferenceServerClient]:
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
    return inference.Predict(ipb.PredictRequest(features=x.astype("<f4").tobytes(), rows=x.shape[0], columns=x.shape[1]))


def _infer(client: tg.InferenceServerClient, x: np.ndarray, **kwargs: object) -> tg.InferResult:
    inp = tg.InferInput("features", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return client.infer(MODEL, [inp], **kwargs)  # type: ignore[arg-type]


def test_health_and_metadata(served: RunningDaemon, client: tg.InferenceServerClient) -> None:
    f = _features(served)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    assert not client.is_model_ready("other")
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "forgetd" and "statistics" in meta["extensions"]
    model = client.get_model_metadata(MODEL, as_json=True)
    assert model["inputs"][0] == {"name": "features", "datatype": "FP32", "shape": ["-1", str(f)]}  # then the columns
    assert [o["name"] for o in model["outputs"]] == ["probabilities", "labels"]
    config = client.get_model_config(MODEL, as_json=True)["config"]
    assert config["name"] == MODEL and config["input"][0]["dims"] == ["-1", str(f)]
    index = client.get_model_repository_index(as_json=True)["models"]
    assert index == [{"name": MODEL, "version": model["versions"][0], "state": "READY"}]


@pytest.mark.parametrize("n", [1, 64])
def test_infer_equals_forgetd_v1_predict_bitwise(served: RunningDaemon, client: tg.InferenceServerClient,
                                                 n: int) -> None:
    x = _rows(n, _features(served), seed=n)
    result = _infer(client, x)
    want = _v1(served, x)
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32 and probabilities.shape == (n, want.classes)
    assert probabilities.tobytes() == np.asarray(want.probabilities, dtype=np.float32).tobytes()
    assert result.as_numpy("labels").tolist() == list(want.labels)
    params = result.get_response().parameters
    assert params["model_version"].string_param == str(want.model_version)
    assert params["model_digest"].string_param == want.model_digest
    assert params["ledger_seq"].int64_param >= 1


def test_typed_contents_are_answered_in_typed_contents(served: RunningDaemon) -> None:
    # tritonclient always sends raw; a client using `contents` (grpcurl, generated stubs) gets typed outputs back.
    x = _rows(3, _features(served), seed=5)
    stub = pb_grpc.GRPCInferenceServiceStub(served.channel)
    request = pb.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name="features", datatype="FP32", shape=list(x.shape))
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    response = stub.ModelInfer(request)
    assert not response.raw_output_contents
    got = np.asarray(response.outputs[0].contents.fp32_contents, dtype=np.float32)
    assert got.tobytes() == np.asarray(_v1(served, x).probabilities, dtype=np.float32).tobytes()


def test_requested_outputs_are_the_only_outputs(served: RunningDaemon, client: tg.InferenceServerClient) -> None:
    x = _rows(2, _features(served))
    result = _infer(client, x, outputs=[tg.InferRequestedOutput("labels")])
    assert [o.name for o in result.get_response().outputs] == ["labels"]


@pytest.mark.parametrize("case, match", [
    ("shape", "send \\[rows, "),
    ("datatype", "send FP32"),
    ("model", "unknown model 'nope'"),
    ("nan", "not finite|NaN|nan"),
    ("name", "send exactly one input 'features'"),
])
def test_errors_say_what_to_fix(served: RunningDaemon, client: tg.InferenceServerClient, case: str,
                                match: str) -> None:
    f = _features(served)
    x = _rows(2, f)
    name, model, datatype = "features", MODEL, "FP32"
    if case == "shape":
        x = _rows(2, f + 1)
    elif case == "datatype":
        x, datatype = x.astype(np.float64), "FP64"
    elif case == "model":
        model = "nope"
    elif case == "nan":
        x[1, 0] = np.nan
    elif case == "name":
        name = "x"
    inp = tg.InferInput(name, list(x.shape), datatype)
    inp.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException, match=match) as info:
        client.infer(model, [inp])
    assert info.value.status() == ("StatusCode.NOT_FOUND" if case == "model" else "StatusCode.INVALID_ARGUMENT")


def test_statistics_count_the_answers(served: RunningDaemon, client: tg.InferenceServerClient) -> None:
    before = client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
    _infer(client, _rows(5, _features(served)))
    after = client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
    assert int(after["inference_count"]) == int(before.get("inference_count", 0)) + 5
    assert int(after["execution_count"]) == int(before.get("execution_count", 0)) + 1


def test_a_forget_moves_the_version_and_the_old_one_is_not_ready(served: RunningDaemon,
                                                                  client: tg.InferenceServerClient) -> None:
    old = client.get_model_metadata(MODEL, as_json=True)["versions"][0]
    _, unlearning = served.stubs()
    unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:3"], wait=True))
    new = client.get_model_metadata(MODEL, as_json=True)["versions"][0]
    assert int(new) == int(old) + 1
    assert client.is_model_ready(MODEL, new) and not client.is_model_ready(MODEL, old)
    result = _infer(client, _rows(1, _features(served)))
    assert result.get_response().model_version == new
