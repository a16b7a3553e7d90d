"""The client's side of the error boundary, where no daemon is needed: the status-code table, client-side
refusals (unknown strategy, rows that cannot be packed), and a call to a closed port."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from forgetd.client import (
    STRATEGIES,
    Client,
    ForgetdClientError,
    InvalidArgument,
    InvalidRows,
    InvalidStrategy,
    TlsConfig,
    Unavailable,
    Unknown,
)
from forgetd.client.client import _pack_rows
from forgetd.client.errors import _BY_CODE, exception_class_for_code
from forgetd.client.types import strategy_name, strategy_to_proto
from forgetd.v1 import common_pb2


@pytest.fixture
def closed_address() -> str:
    # A port that was just free: nothing listens there, so a connection is refused at once.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("code", [c for c in grpc.StatusCode if c is not grpc.StatusCode.OK], ids=lambda c: c.name)
def test_every_error_code_has_its_own_class_carrying_it(code: grpc.StatusCode) -> None:
    cls = exception_class_for_code(code)
    assert cls.code is code
    assert issubclass(cls, ForgetdClientError)
    assert str(cls("the server's words")) == f"{code.name}: the server's words"


def test_the_table_has_one_class_per_code() -> None:
    assert len(set(_BY_CODE.values())) == len(_BY_CODE) == len(grpc.StatusCode) - 1
    assert exception_class_for_code(grpc.StatusCode.OK) is Unknown  # OK is never an error; never mapped


def test_a_closed_port_raises_the_typed_unavailable_not_a_grpc_error(closed_address: str) -> None:
    with Client(closed_address, retries=0) as client, pytest.raises(Unavailable) as info:
        client.model()
    assert not isinstance(info.value, grpc.RpcError)
    assert isinstance(info.value.__cause__, grpc.RpcError)  # raised `from` the transport error, for debugging
    assert info.value.code is grpc.StatusCode.UNAVAILABLE
    assert "failed to connect" in info.value.message.lower()


def test_unavailable_is_retried_before_it_is_raised(closed_address: str) -> None:
    # Retries back off 0.1 s, then 0.2 s: two retries cannot take less than 0.3 s.
    start = time.monotonic()
    with Client(closed_address, retries=2) as client, pytest.raises(Unavailable):
        client.forget(["a"], wait=False)
    assert time.monotonic() - start >= 0.3


def test_a_broken_ledger_stream_raises_typed_too(closed_address: str) -> None:
    with Client(closed_address, retries=0) as client, pytest.raises(Unavailable):
        next(client.ledger())


@pytest.mark.parametrize("name", STRATEGIES)
def test_strategy_names_round_trip(name: str) -> None:
    assert strategy_name(strategy_to_proto(name)) == name
    assert strategy_to_proto(name.upper()) == strategy_to_proto(name)


def test_strategy_names_cover_the_proto_enum() -> None:
    named = {v for k, v in common_pb2.Strategy.items() if k != "STRATEGY_UNSPECIFIED"}
    assert {strategy_to_proto(n) for n in STRATEGIES} == named


def test_an_unknown_strategy_is_refused_before_sending(closed_address: str) -> None:
    with Client(closed_address, retries=0) as client, pytest.raises(InvalidStrategy) as info:
        client.forget(["a"], strategy="fastest")  # a closed port: had it been sent, this would be Unavailable
    assert isinstance(info.value, ValueError) and isinstance(info.value, InvalidArgument)
    assert str(info.value) == (
        "INVALID_ARGUMENT: unknown strategy 'fastest'; valid strategies: auto, retrain, sisa, dpus, hs, ohs, influence, certified"
    )


def test_a_single_string_of_ids_is_a_type_error(closed_address: str) -> None:
    with Client(closed_address, retries=0) as client, pytest.raises(TypeError, match="not a single string"):
        client.forget("sample-1")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[1.0, 2.0], [3.0]], "row 1 has 1 values but row 0 has 2: rows must be equally long"),
        ([[1.0, "x"]], "rows must hold numbers"),
        ([1.0, 2.0], "rows must be a list of rows"),
    ],
)
def test_rows_that_cannot_be_packed_are_refused(rows: object, message: str) -> None:
    with pytest.raises(InvalidRows, match=message):
        _pack_rows(rows)


def test_a_numpy_array_must_be_2d() -> None:
    np = pytest.importorskip("numpy")
    with pytest.raises(InvalidRows, match=r"rows must be 2-D \(rows, features\); got an array of shape \(3,\)"):
        _pack_rows(np.zeros(3))


finite_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@given(st.integers(1, 5).flatmap(lambda c: st.lists(st.lists(finite_f32, min_size=c, max_size=c), max_size=6)))
def test_lists_pack_to_little_endian_float32_row_major(rows: list[list[float]]) -> None:
    packed, n, columns = _pack_rows(rows)
    assert (n, columns) == (len(rows), len(rows[0]) if rows else 0)
    flat = [v for row in rows for v in row]
    assert packed == struct.pack(f"<{len(flat)}f", *flat)


@given(st.lists(st.lists(finite_f32, min_size=3, max_size=3), min_size=1, max_size=6))
def test_numpy_and_lists_pack_identically(rows: list[list[float]]) -> None:
    np = pytest.importorskip("numpy")
    assert _pack_rows(np.array(rows, dtype=np.float64)) == _pack_rows(rows)
    assert _pack_rows(np.asfortranarray(np.array(rows, dtype=np.float32))) == _pack_rows(rows)


def test_tls_client_cert_needs_its_key() -> None:
    with pytest.raises(ValueError, match="client_cert and client_key go together"):
        TlsConfig(client_cert=b"pem")


def test_the_client_package_does_not_import_torch_or_numpy() -> None:
    code = "import sys, forgetd.client; print(sorted({'torch', 'numpy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_clients_own_errors_share_the_one_root() -> None:
    # A receipt it cannot read, a store file the auditor cannot read, a refused seal: no status code, the
    # same root as a failed call, so a command catches ForgetdClientError alone.
    from forgetd.client.audit import StoreSealError, StoreUnreadable
    from forgetd.client.audit.store_reader import StoreUnreadable as ReaderUnreadable
    from forgetd.client.receipts import InvalidReceipt

    for cls in (StoreSealError, StoreUnreadable, InvalidReceipt):
        assert issubclass(cls, ForgetdClientError) and cls.code is None
        assert str(cls("the reason")) == "the reason"
    assert ReaderUnreadable is StoreUnreadable
    assert issubclass(InvalidReceipt, ValueError)  # as it was before it joined the tree
