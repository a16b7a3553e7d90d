"""ServerConfig validation, the status table, and request parsing: the daemon's edges without a server."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest

from forgetd.server import errors
from forgetd.server.config import MIB, ServerConfig
from forgetd.server.api.convert import check_features, parse_forget
from forgetd.server.api.status import INTERNAL_MESSAGE, status_for
from forgetd.server.daemon.auth import server_credentials
from forgetd.v1 import common_pb2, inference_service_pb2, unlearning_service_pb2


@pytest.mark.parametrize(
    ("overrides", "want"),
    [
        ({"listen": "localhost"}, "listen address 'localhost' is not HOST:PORT"),
        ({"listen": "127.0.0.1:99999"}, "is not HOST:PORT"),
        ({"device": "tpu"}, "device is 'tpu'; choose auto, cpu, cuda"),
        ({"token": ""}, "the token is empty"),
        ({"token": "a b"}, "has whitespace"),
        ({"tls_cert": "c.pem"}, "TLS needs both --tls-cert and --tls-key"),
        ({"tls_key": "k.pem"}, "TLS needs both --tls-cert and --tls-key"),
        ({"tls_client_ca": "ca.pem"}, r"--tls-client-ca \(mTLS\) needs TLS"),
        ({"max_forget_ids": 0}, "max_forget_ids is 0; give a whole number of at least 1"),
        ({"max_predict_rows": -3}, "max_predict_rows is -3"),
        ({"max_message_bytes": MIB}, "max_message_bytes is 1048576; give at least 4194304"),
        ({"grace_seconds": -1.0}, "grace_seconds is -1.0"),
    ],
)
def test_a_bad_config_says_how_to_fix_it(overrides: dict, want: str) -> None:
    with pytest.raises(errors.InvalidConfig, match=want):
        ServerConfig(store=Path("s"), **overrides)


def test_defaults_are_local_plaintext_with_a_raised_message_limit() -> None:
    config = ServerConfig(store="s")
    assert config.store == Path("s") and config.listen == "127.0.0.1:50051"
    assert not config.tls and config.token is None and config.max_message_bytes > 4 * MIB


def test_an_unreadable_tls_file_is_named() -> None:
    config = ServerConfig(store="s", tls_cert="/nonexistent/cert.pem", tls_key="/nonexistent/key.pem")
    with pytest.raises(errors.InvalidConfig, match="--tls-cert /nonexistent/cert.pem: cannot read it"):
        server_credentials(config)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.InvalidRequest("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.EmptyRequest("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.InvalidStrategy("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.UnknownSample(["a"]), grpc.StatusCode.NOT_FOUND),
        (errors.RequestNotFound("x"), grpc.StatusCode.NOT_FOUND),
        (errors.AlreadyForgotten(["a"]), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.RequestIdConflict("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.NotServing("x"), grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_each_domain_error_has_its_status_code_and_keeps_its_message(exc: Exception, code: grpc.StatusCode) -> None:
    assert status_for(exc) == (code, str(exc))


@pytest.mark.parametrize("exc", [RuntimeError("CUDA out of memory at /torch/csrc/x.cpp"), KeyError("k"),
                                 errors.StoreError("/secret/path broken")])
def test_anything_else_is_internal_with_a_generic_message(exc: Exception) -> None:
    assert status_for(exc) == (grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)


def _predict(x: np.ndarray, rows: int | None = None, cols: int | None = None) -> inference_service_pb2.PredictRequest:
    return inference_service_pb2.PredictRequest(features=x.astype("<f4").tobytes(), rows=x.shape[0] if rows is None
                                                else rows, columns=x.shape[1] if cols is None else cols)


@pytest.mark.parametrize(
    ("x", "rows", "cols", "want"),
    [
        (np.zeros((0, 4)), None, None, "rows is 0: send at least one row"),
        (np.zeros((11, 4)), None, None, "rows is 11, above this server's limit of 10"),
        (np.zeros((2, 3)), None, None, "columns is 3 but the model takes 4 features per row"),
        (np.zeros((2, 4)), 3, None, "features has 32 bytes; 3 rows x 4 columns of float32 need exactly 48"),
    ],
)
def test_a_badly_shaped_batch_is_named(x: np.ndarray, rows: int | None, cols: int | None, want: str) -> None:
    # Values (NaN, infinity, overflow) are the forward's to check: tests/test_server_runtime_predictor.py.
    with pytest.raises(errors.InvalidRequest, match=want):
        check_features(_predict(x, rows, cols), 4, 10)


def test_a_well_shaped_batch_passes() -> None:
    check_features(_predict(np.zeros((10, 4))), 4, 10)


def test_a_forget_request_without_a_request_id_gets_a_uuid4() -> None:
    ids, strategy, rid = parse_forget(unlearning_service_pb2.ForgetRequest(sample_ids=["a", "b"]), 5)
    assert ids == ["a", "b"] and strategy == "auto" and len(rid) == 36 and rid[14] == "4"
    _, strategy, rid = parse_forget(unlearning_service_pb2.ForgetRequest(
        sample_ids=["a"], strategy=common_pb2.STRATEGY_OHS, request_id="mine"), 5)
    assert strategy == "ohs" and rid == "mine"


@pytest.mark.parametrize(
    ("request_", "want"),
    [
        (unlearning_service_pb2.ForgetRequest(), "sample_ids is empty: name at least one sample"),
        (unlearning_service_pb2.ForgetRequest(sample_ids=["a"] * 2), "sample id 'a' appears more than once"),
        (unlearning_service_pb2.ForgetRequest(sample_ids=list("abcdef")), "has 6 ids, above this server's limit of 5"),
        (unlearning_service_pb2.ForgetRequest(sample_ids=[""]), "is empty or longer than"),
        (unlearning_service_pb2.ForgetRequest(sample_ids=["a"], strategy=42), "strategy 42 is not a known Strategy"),
        (unlearning_service_pb2.ForgetRequest(sample_ids=["a"], request_id="x" * 129), "request_id must be at most 128"),
    ],
)
def test_a_bad_forget_request_is_named(request_: unlearning_service_pb2.ForgetRequest, want: str) -> None:
    with pytest.raises(errors.InvalidRequest, match=want):
        parse_forget(request_, 5)
