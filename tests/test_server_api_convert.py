"""The forgetd.v1 front's seams without a server: the enum maps against the vocabulary and the proto, and the
decorators that answer every handler's errors through the one status table."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
import pytest

from forgetd.server import errors
from forgetd.server.api.convert import GUARANTEE_TO_PROTO, STRATEGY_FROM_PROTO, STRATEGY_TO_PROTO
from forgetd.server.api.status import INTERNAL_MESSAGE, answer_errors, answer_stream_errors
from forgetd.server.vocabulary import AUTO, GUARANTEES, STRATEGIES
from forgetd.v1 import common_pb2


def test_every_strategy_of_the_vocabulary_and_of_the_proto_is_mapped_both_ways() -> None:
    assert set(STRATEGY_FROM_PROTO) == set(common_pb2.Strategy.values())
    assert set(STRATEGY_TO_PROTO) == set(STRATEGIES)
    assert STRATEGY_FROM_PROTO[common_pb2.STRATEGY_UNSPECIFIED] == AUTO  # unset asks for auto
    assert STRATEGY_TO_PROTO[AUTO] == common_pb2.STRATEGY_AUTO  # and auto is answered as STRATEGY_AUTO
    for name in STRATEGIES:
        assert STRATEGY_FROM_PROTO[STRATEGY_TO_PROTO[name]] == name
        assert common_pb2.Strategy.Name(STRATEGY_TO_PROTO[name]) == f"STRATEGY_{name.upper()}"


def test_every_guarantee_is_mapped_onto_its_proto_value() -> None:
    assert set(GUARANTEE_TO_PROTO) == set(GUARANTEES)
    assert set(GUARANTEE_TO_PROTO.values()) == set(common_pb2.Guarantee.values()) - {common_pb2.GUARANTEE_UNSPECIFIED}
    for name, value in GUARANTEE_TO_PROTO.items():
        assert common_pb2.Guarantee.Name(value) == f"GUARANTEE_{name.upper()}"


class _Aborted(Exception):
    pass


class _Context:
    """What the decorators use of grpc.ServicerContext: abort, which raises as grpc's does."""

    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def abort(self, code: grpc.StatusCode, message: str) -> None:
        self.aborted = (code, message)
        raise _Aborted


class _Servicer:
    def __init__(self, exc: Exception | None) -> None:
        self.exc = exc

    @answer_errors
    def Unary(self, request: str, context: grpc.ServicerContext) -> str:
        if self.exc is not None:
            raise self.exc
        return request.upper()

    @answer_stream_errors
    def Stream(self, request: str, context: grpc.ServicerContext) -> Iterator[str]:
        yield request
        if self.exc is not None:
            raise self.exc
        yield request.upper()


def _answer(method: str, exc: Exception | None, context: _Context) -> object:
    answer = getattr(_Servicer(exc), method)("a", context)
    return list(answer) if method == "Stream" else answer


def test_a_handler_that_succeeds_answers_unchanged() -> None:
    context = _Context()
    assert _Servicer(None).Unary("a", context) == "A"  # type: ignore[arg-type]
    assert list(_Servicer(None).Stream("b", context)) == ["b", "B"]  # type: ignore[arg-type]
    assert context.aborted is None


@pytest.mark.parametrize("method", ["Unary", "Stream"])
def test_a_domain_error_is_answered_with_its_code_and_message(method: str) -> None:
    context = _Context()
    with pytest.raises(_Aborted):
        _answer(method, errors.UnknownSample(["x"]), context)
    assert context.aborted == (grpc.StatusCode.NOT_FOUND, str(errors.UnknownSample(["x"])))


@pytest.mark.parametrize("method", ["Unary", "Stream"])
def test_an_unexpected_error_is_logged_with_its_stack_and_answered_internal(
        method: str, caplog: pytest.LogCaptureFixture) -> None:
    context = _Context()
    with caplog.at_level(logging.ERROR, logger="forgetd.server"), pytest.raises(_Aborted):
        _answer(method, RuntimeError("CUDA error at /secret/x.cu"), context)
    assert context.aborted == (grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
    assert f"{method} failed unexpectedly" in caplog.text and "RuntimeError: CUDA error" in caplog.text
