"""Predictions while the model changes under them: no call fails, no thread ever sees an older version."""

from __future__ import annotations

import json
import threading

import numpy as np

from forgetd.ledger import Ledger, verify_ledger
from forgetd.v1 import common_pb2, inference_service_pb2 as ipb, unlearning_service_pb2 as upb

from helpers import RunningDaemon

STRATEGIES = [common_pb2.STRATEGY_DPUS, common_pb2.STRATEGY_SISA, common_pb2.STRATEGY_HS, common_pb2.STRATEGY_OHS]


def test_four_predict_threads_while_twenty_forgets_run(daemon: RunningDaemon) -> None:
    inference, unlearning = daemon.stubs()
    features = inference.GetModel(ipb.GetModelRequest()).num_features
    x = np.random.default_rng(1).normal(size=(16, features)).astype("<f4")
    request = ipb.PredictRequest(features=x.tobytes(), rows=16, columns=features)
    forgetting = threading.Event()
    done = threading.Event()
    seen: list[list[tuple[int, str]]] = [[] for _ in range(4)]
    failures: list[BaseException] = []

    def predict(i: int) -> None:
        try:
            # Keep predicting until the forgets are over, and at least once after they started.
            while not done.is_set() or not seen[i] or seen[i][-1][0] == 0:
                answer = inference.Predict(request)
                seen[i].append((answer.model_version, answer.model_digest))
                forgetting.wait()  # predictions start once forgetting has begun
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    def forget(worker: int) -> None:
        try:
            for j in range(10):
                n = worker * 10 + j
                forgetting.set()
                unlearning.Forget(upb.ForgetRequest(sample_ids=[f"synthetic:{50 + n}"], strategy=STRATEGIES[n % 4],
                                                    wait=True))
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)

    predictors = [threading.Thread(target=predict, args=(i,)) for i in range(4)]
    forgetters = [threading.Thread(target=forget, args=(w,)) for w in range(2)]
    for t in predictors + forgetters:
        t.start()
    for t in forgetters:
        t.join()
    done.set()
    for t in predictors:
        t.join()
    assert failures == []

    with Ledger(daemon.store / "ledger.sqlite") as ledger:
        published = {0: json.loads(ledger.entry(1).envelope)["payload"]["model"]["digest"]}
        for entry in ledger.entries():
            if entry.type == "forget.applied":
                published[entry.payload["model"]["version"]] = entry.payload["model"]["digest"]
    final = inference.GetModel(ipb.GetModelRequest())
    assert final.forgotten_count == 20 and final.version == max(published) >= 1
    for answers in seen:
        versions = [v for v, _ in answers]
        assert versions == sorted(versions), "a Predict saw an older version after a newer one"
        assert versions[-1] >= 1
        # Every answer came from one published version: its digest is the one the ledger recorded for it.
        assert all(published[v] == digest for v, digest in answers)
    assert verify_ledger(daemon.store / "ledger.sqlite").ok
