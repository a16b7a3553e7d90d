"""Bad inputs: each malformed request must get the status that names its fault (never INTERNAL or UNKNOWN)
with a message, and none may write to the ledger.

The daemon runs with --max-forget-ids 4 and --max-predict-rows 64, so the limits are reachable cheaply.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc

from forgetd.ledger import Ledger
from forgetd.v1 import common_pb2, inference_service_pb2 as ipb, inference_service_pb2_grpc
from forgetd.v1 import unlearning_service_pb2 as upb, unlearning_service_pb2_grpc

__all__ = ["DAEMON_FLAGS", "InputResult", "run_bad_inputs"]

DAEMON_FLAGS = ("--max-forget-ids", "4", "--max-predict-rows", "64")
_INVALID, _NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND


@dataclass(frozen=True)
class InputResult:
    case: str
    expected: str
    got: str
    message: str
    clear: bool  # the expected status, with a message


def _rows(values: list[float], features: int, rows: int = 1) -> ipb.PredictRequest:
    data = (values + [0.0] * features)[:features] * rows
    return ipb.PredictRequest(features=struct.pack(f"<{len(data)}f", *data), rows=rows, columns=features)


def _predict_cases(f: int) -> list[tuple[str, Any, grpc.StatusCode]]:
    return [
        ("Predict: one feature too many", _rows([0.1] * (f + 1), f + 1), _INVALID),
        ("Predict: one feature too few", _rows([0.1] * (f - 1), f - 1), _INVALID),
        ("Predict: NaN", _rows([math.nan], f), _INVALID),
        ("Predict: +infinity", _rows([math.inf], f), _INVALID),
        ("Predict: -infinity", _rows([-math.inf], f), _INVALID),
        ("Predict: features shorter than rows x columns", ipb.PredictRequest(features=b"\0" * 8, rows=1, columns=f),
         _INVALID),
        ("Predict: zero rows", ipb.PredictRequest(features=b"", rows=0, columns=f), _INVALID),
        ("Predict: zero columns", ipb.PredictRequest(features=b"", rows=1, columns=0), _INVALID),
        ("Predict: more rows than --max-predict-rows", _rows([0.1], f, rows=65), _INVALID),
        ("Predict: a body over the message limit", ipb.PredictRequest(features=b"\0" * (65 << 20), rows=1, columns=f),
         grpc.StatusCode.RESOURCE_EXHAUSTED),
    ]


def _forget_cases(ids: list[str]) -> list[tuple[str, Any, grpc.StatusCode]]:
    forget = upb.ForgetRequest
    return [
        ("Forget: no ids", forget(), _INVALID),
        ("Forget: an id twice", forget(sample_ids=[ids[0], ids[0]]), _INVALID),
        ("Forget: an empty id", forget(sample_ids=[""]), _INVALID),
        ("Forget: an unknown id", forget(sample_ids=[ids[0], "no-such-sample"]), _NOT_FOUND),
        ("Forget: an id of the wrong form", forget(sample_ids=["7"]), _NOT_FOUND),
        ("Forget: more ids than --max-forget-ids", forget(sample_ids=ids[:5]), _INVALID),
        ("Forget: an unknown strategy value", forget(sample_ids=[ids[0]], strategy=cast(Any, 99)), _INVALID),
        ("Forget: an id of 100,000 characters", forget(sample_ids=["x" * 100_000]), _INVALID),
        ("Forget: ids equal after NFC", forget(sample_ids=["caf\u00e9", "cafe\u0301"]), _INVALID),
        ("Forget: a request id reused for other samples",
         forget(sample_ids=[ids[2]], request_id="reliability-reused", strategy=common_pb2.STRATEGY_DPUS),
         grpc.StatusCode.FAILED_PRECONDITION),
    ]


def _call(rpc: Callable[..., Any], request: Any) -> tuple[grpc.StatusCode, str]:
    try:
        rpc(request, timeout=60)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def run_bad_inputs(address: str, store: Path, num_features: int, ids: list[str]) -> tuple[list[InputResult], int]:
    """(one result per case, ledger entries the bad inputs wrote) against the daemon at `address`."""
    with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 80 << 20)]) as channel:
        inference = inference_service_pb2_grpc.InferenceServiceStub(channel)
        unlearning = unlearning_service_pb2_grpc.UnlearningServiceStub(channel)
        # The one good request the reuse case needs: request id "reliability-reused" names ids[1].
        unlearning.Forget(upb.ForgetRequest(sample_ids=[ids[1]], request_id="reliability-reused",
                                            strategy=common_pb2.STRATEGY_DPUS, wait=True), timeout=120)
        size = _ledger_size(store)
        cases = [(name, inference.Predict, request, want) for name, request, want in _predict_cases(num_features)]
        cases += [(name, unlearning.Forget, request, want) for name, request, want in _forget_cases(ids)]
        cases += [
            ("GetForgetRequest: an unknown request id", unlearning.GetForgetRequest,
             upb.GetForgetRequestRequest(request_id="never-sent"), _NOT_FOUND),
            ("GetForgetRequest: no request id", unlearning.GetForgetRequest, upb.GetForgetRequestRequest(), _INVALID),
            ("GetLedgerHead: an inclusion seq past the head", unlearning.GetLedgerHead,
             upb.GetLedgerHeadRequest(inclusion_seqs=[10**6]), _INVALID),
            ("GetLedgerHead: a consistency size past the head", unlearning.GetLedgerHead,
             upb.GetLedgerHeadRequest(consistency_from_size=10**6), _INVALID),
        ]
        results = []
        for name, rpc, request, want in cases:
            code, message = _call(rpc, request)
            results.append(InputResult(name, want.name, code.name, message[:160], code == want and bool(message)))
    return results, _ledger_size(store) - size


def _ledger_size(store: Path) -> int:
    with Ledger(store / "ledger.sqlite", readonly=True) as ledger:
        return int(ledger.head().size)
