"""On CUDA the live parameters stay in GPU memory and Predict runs there (skipped on machines without a GPU)."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from forgetd.server.engine.engine import Engine
from forgetd.v1 import common_pb2, inference_service_pb2 as ipb, unlearning_service_pb2 as upb

from helpers import running_daemon

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_a_cuda_daemon_holds_the_model_on_the_gpu_and_predicts_there(store: Path) -> None:
    with Engine.open(store, device="cpu") as engine:
        x = np.random.default_rng(0).normal(size=(33, engine.num_features)).astype("<f4")
        on_cpu = engine.predict_proba(x)
    with running_daemon(store, device="cuda") as running:
        inference, unlearning = running.stubs()
        model = inference.GetModel(ipb.GetModelRequest())
        live = running.runtime.live
        assert model.device.startswith("cuda")
        assert all(p.device.type == "cuda" for p in live.snapshot.params)
        predictor = live.predict.__self__
        assert all(w.device.type == "cuda" for layers in predictor.shards for w, _ in layers)  # no CPU copy
        answer = inference.Predict(ipb.PredictRequest(features=x.tobytes(), rows=33, columns=model.num_features))
        on_gpu = np.array(answer.probabilities, np.float32).reshape(33, model.num_classes)
        np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-4, atol=1e-6)
        x[5, 1] = np.inf
        with pytest.raises(grpc.RpcError) as refused:
            inference.Predict(ipb.PredictRequest(features=x.tobytes(), rows=33, columns=model.num_features))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "features row 5 column 1 is inf" in refused.value.details()
        done = unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:2"], strategy=common_pb2.STRATEGY_DPUS,
                                                   wait=True))
        assert done.result.model_version == 1
        assert all(p.device.type == "cuda" for p in running.runtime.live.snapshot.params)
    with Engine.open(store, device="cpu") as engine:  # the digest is of the stored bytes, wherever they ran
        assert (engine.version, engine.digest()) == (1, done.result.model_digest)
