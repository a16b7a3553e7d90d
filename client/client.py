"""The Python client of a forgetd daemon: `Client("127.0.0.1:50051").predict(rows)`.

Every call either returns one of the dataclasses of forgetd.client.types or raises a ForgetdClientError
subclass; no grpc.RpcError leaves this module. UNAVAILABLE is retried with exponential backoff, which is
safe for every call here: Predict, GetModel, GetForgetRequest, ReadLedger and GetLedgerHead only read,
and Forget always carries a request_id (the client makes a UUID4 when the caller gives none), so a repeated
Forget returns the first answer and writes nothing twice (AIP-155).
"""

from __future__ import annotations

import array
import dataclasses
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from forgetd.client.errors import InvalidRows, from_grpc_error
from forgetd.client.records import Record, records_proto
from forgetd.client.types import HeadProofs, LedgerEntry, ModelInfo, Prediction, Receipt, strategy_to_proto
from forgetd.v1 import (
    inference_service_pb2,
    inference_service_pb2_grpc,
    unlearning_service_pb2,
    unlearning_service_pb2_grpc,
)

if TYPE_CHECKING:
    from forgetd.client.receipts import ReceiptReport

# Predict batches can exceed gRPC's 4 MiB default; the server enforces its own configured limit and
# answers RESOURCE_EXHAUSTED past it, so the client only needs to be no stricter than any sane server.
_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
_BACKOFF_INITIAL_S = 0.1  # before the first retry; doubles per retry
_BACKOFF_MAX_S = 2.0

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class TlsConfig:
    """TLS settings for the channel: server verification, and a client certificate for mTLS."""

    ca_cert: bytes | None = None  # PEM roots that sign the server's certificate; None: the system roots
    client_cert: bytes | None = None  # PEM certificate chain presented for mTLS; needs client_key
    client_key: bytes | None = None  # PEM private key of client_cert
    server_name: str | None = None  # check the server certificate for this name instead of the address's host

    def __post_init__(self) -> None:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together: pass both for mTLS, or neither")

    @classmethod
    def from_files(
        cls,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        server_name: str | None = None,
    ) -> TlsConfig:
        """Reads the PEM files named (any may be None)."""

        def read(p: str | Path | None) -> bytes | None:
            return Path(p).read_bytes() if p is not None else None

        return cls(read(ca), read(cert), read(key), server_name)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.ca_cert, self.client_key, self.client_cert)


def _pack_rows(rows: Any) -> tuple[bytes, int, int]:
    """(little-endian float32 bytes, rows, columns) from a 2-D numpy array or a sequence of sequences."""
    shape = getattr(rows, "shape", None)
    if shape is not None and hasattr(rows, "astype"):  # numpy (or alike), recognised without importing it
        if len(shape) != 2:
            raise InvalidRows(f"rows must be 2-D (rows, features); got an array of shape {tuple(shape)}")
        try:
            packed = rows.astype("<f4", copy=False).tobytes(order="C")
        except (TypeError, ValueError) as exc:
            raise InvalidRows(f"rows must hold numbers: {exc}") from exc
        return packed, int(shape[0]), int(shape[1])
    try:
        table = [list(row) for row in rows]
    except TypeError as exc:
        raise InvalidRows(f"rows must be a list of rows (lists of numbers) or a 2-D array: {exc}") from exc
    columns = len(table[0]) if table else 0
    for i, row in enumerate(table):
        if len(row) != columns:
            raise InvalidRows(f"row {i} has {len(row)} values but row 0 has {columns}: rows must be equally long")
    values = array.array("f")
    try:
        for row in table:
            values.extend(row)
    except TypeError as exc:
        raise InvalidRows(f"rows must hold numbers: {exc}") from exc
    if sys.byteorder == "big":  # the wire format is little-endian
        values.byteswap()
    return values.tobytes(), len(table), columns


class Client:
    """A connection to one forgetd daemon. Use as a context manager, or call close()."""

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        tls: TlsConfig | None = None,
        timeout: float = 10.0,
        retries: int = 3,
    ) -> None:
        """address: "host:port". token: the bearer token Forget needs when the server has one.
        timeout: seconds per attempt of each call. retries: extra attempts after UNAVAILABLE."""
        if timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout}")
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries}")
        self.address = address
        self._timeout = timeout
        self._retries = retries
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        options: list[tuple[str, int | str]] = [
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
        ]
        if tls is not None and tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        self._channel = (
            grpc.secure_channel(address, tls.credentials(), options=options)
            if tls is not None
            else grpc.insecure_channel(address, options=options)
        )
        self._inference = inference_service_pb2_grpc.InferenceServiceStub(self._channel)
        self._unlearning = unlearning_service_pb2_grpc.UnlearningServiceStub(self._channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        self._channel.close()

    def __repr__(self) -> str:
        return f"Client({self.address!r})"

    # -- calls ------------------------------------------------------------------------------------------

    def predict(self, rows: Any) -> Prediction:
        """Probabilities and labels for rows: a list of equally long lists of numbers, or a 2-D array."""
        features, n, columns = _pack_rows(rows)
        request = inference_service_pb2.PredictRequest(features=features, rows=n, columns=columns)
        return Prediction.from_proto(self._unary(self._inference.Predict, request))

    def predict_records(self, records: Sequence[Record]) -> Prediction:
        """Probabilities and labels for raw rows, each a mapping of column name -> number or text naming every
        column of the model's input schema (`model().input_schema`). The server encodes them as training
        encoded its rows, so the answer is bitwise that of the encoded rows. An unknown category or a missing
        column is InvalidArgument naming it (unless the store was trained with --unknown-category zeros)."""
        request = inference_service_pb2.PredictRequest(records=records_proto(records))
        return Prediction.from_proto(self._unary(self._inference.Predict, request))

    def model(self) -> ModelInfo:
        """The live model: version, digests, configuration, threshold m."""
        return ModelInfo.from_proto(self._unary(self._inference.GetModel, inference_service_pb2.GetModelRequest()))

    def forget(
        self,
        ids: Iterable[str],
        *,
        strategy: str = "auto",
        wait: bool = True,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> Receipt:
        """Forgets training samples; returns the receipt (applied if wait, else pending but durable).

        request_id makes the call idempotent; without one a UUID4 is made here, before the first attempt,
        so retries reuse it. timeout overrides the client's for this call (a waited forget may retrain).
        """
        if isinstance(ids, str):
            raise TypeError("ids must be a list of sample ids, not a single string")
        request = unlearning_service_pb2.ForgetRequest(
            sample_ids=list(ids),
            strategy=strategy_to_proto(strategy),
            request_id=request_id or str(uuid.uuid4()),
            wait=wait,
        )
        receipt = Receipt.from_proto(self._unary(self._unlearning.Forget, request, timeout=timeout))
        return _named(receipt, request.sample_ids)

    def forget_status(self, request_id: str) -> Receipt:
        """The current state of an earlier forget, by its request_id (NotFound if the server has none)."""
        request = unlearning_service_pb2.GetForgetRequestRequest(request_id=request_id)
        return Receipt.from_proto(self._unary(self._unlearning.GetForgetRequest, request).forget)

    def ledger(self, start: int = 1, *, limit: int = 0) -> Iterator[LedgerEntry]:
        """Ledger entries in seq order from `start` up to the head at the time of the call (limit 0: all)."""
        next_seq, left = max(start, 1), limit
        attempt = 0
        while True:
            request = unlearning_service_pb2.ReadLedgerRequest(start_seq=next_seq, limit=left)
            call = self._unlearning.ReadLedger(request, timeout=self._timeout, metadata=self._metadata)
            try:
                for msg in call:
                    entry = LedgerEntry.from_proto(msg.entry)
                    next_seq, attempt = entry.seq + 1, 0
                    if limit:
                        left -= 1
                    yield entry
                return
            except grpc.RpcError as exc:
                # A broken stream resumes after the last entry received, so no entry is repeated or skipped.
                if limit and not left:  # everything asked for had arrived; 0 would mean "all" on a resume
                    return
                if not self._should_retry(exc, attempt):
                    raise from_grpc_error(exc) from exc
                self._sleep(attempt)
                attempt += 1
            finally:
                call.cancel()  # a caller that stops iterating early must not leave the stream open

    def head(self, *, consistency_from: int = 0, inclusion_seqs: Sequence[int] = ()) -> HeadProofs:
        """The signed ledger head, with a consistency proof from an older size and inclusion proofs if asked."""
        request = unlearning_service_pb2.GetLedgerHeadRequest(
            consistency_from_size=consistency_from, inclusion_seqs=list(inclusion_seqs)
        )
        return HeadProofs.from_proto(self._unary(self._unlearning.GetLedgerHead, request))

    def verify_receipt(self, receipt: Receipt) -> ReceiptReport:
        """Prove against this server that the receipt's entries are still in its ledger and that the ledger
        only grew since (forgetd.client.receipts); problems are reported, not raised."""
        from forgetd.client.receipts import verify_receipt_with_client  # the ledger's proof code, on first use

        return verify_receipt_with_client(receipt, self)

    # -- transport --------------------------------------------------------------------------------------

    def _unary(self, rpc: Callable[..., _T], request: Any, *, timeout: float | None = None) -> _T:
        attempt = 0
        while True:
            try:
                return rpc(request, timeout=timeout or self._timeout, metadata=self._metadata)
            except grpc.RpcError as exc:
                if not self._should_retry(exc, attempt):
                    raise from_grpc_error(exc) from exc
                self._sleep(attempt)
                attempt += 1

    def _should_retry(self, exc: grpc.RpcError, attempt: int) -> bool:
        # Only UNAVAILABLE: the server was not reached or is restarting. DEADLINE_EXCEEDED is not retried,
        # since the caller's time budget is spent; every other code is an answer, not a transport failure.
        code = getattr(exc, "code", None)
        return attempt < self._retries and callable(code) and code() == grpc.StatusCode.UNAVAILABLE

    @staticmethod
    def _sleep(attempt: int) -> None:
        time.sleep(min(_BACKOFF_INITIAL_S * 2**attempt, _BACKOFF_MAX_S))


def _named(receipt: Receipt, ids: Sequence[str]) -> Receipt:
    """The receipt with the caller's own ids on samples the server answered by subject ref alone.

    A server may withhold raw sample ids from its answers (it keeps none once a request is applied); the
    outcomes come in request order, so the caller, who sent the ids, can put them back itself.
    """
    if len(receipt.samples) != len(ids) or all(s.sample_id for s in receipt.samples):
        return receipt
    samples = tuple(s if s.sample_id else dataclasses.replace(s, sample_id=i) for s, i in zip(receipt.samples, ids))
    return dataclasses.replace(receipt, samples=samples)
