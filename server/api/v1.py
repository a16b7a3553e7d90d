"""The two gRPC servicers, and the one table that turns domain errors into status codes.

Servicers only translate: protobuf in, a call on the runtime (forgetd.server.runtime.runtime.Runtime), protobuf out.
Every error a client can cause is a ForgetdError subclass whose message says what to fix; `_STATUS_TABLE`
gives its code. Anything else is a bug or a broken disk: it is logged with its stack and answered INTERNAL
with a generic message, so no traceback (torch's included) ever reaches a client.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from forgetd.v1 import common_pb2, inference_service_pb2, inference_service_pb2_grpc
from forgetd.v1 import unlearning_service_pb2, unlearning_service_pb2_grpc

from forgetd.server.errors import (
    AlreadyForgotten,
    EmptyRequest,
    InvalidRequest,
    InvalidStrategy,
    NotServing,
    RequestIdConflict,
    RequestNotFound,
    UnknownSample,
)

if TYPE_CHECKING:
    from forgetd.server.runtime.slot import RuntimeSlot
    from forgetd.server.runtime.runtime import RequestView, Runtime

log = logging.getLogger("forgetd.server")

# The one mapping table at the gRPC boundary, most specific first. Not listed = INTERNAL.
_STATUS_TABLE: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (EmptyRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidStrategy, grpc.StatusCode.INVALID_ARGUMENT),
    (UnknownSample, grpc.StatusCode.NOT_FOUND),
    (RequestNotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyForgotten, grpc.StatusCode.FAILED_PRECONDITION),
    (RequestIdConflict, grpc.StatusCode.FAILED_PRECONDITION),
    (NotServing, grpc.StatusCode.UNAVAILABLE),
)
INTERNAL_MESSAGE = "internal error; the server's log has the details"


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and client-facing message for an exception raised while answering a call."""
    for cls, code in _STATUS_TABLE:
        if isinstance(exc, cls):
            return code, str(exc)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


_F = TypeVar("_F", bound=Callable[..., Any])


def _answer_errors(method: _F) -> _F:
    """Turns exceptions of a unary handler into statuses via the table; logs the unexpected ones with stack."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as exc:  # noqa: BLE001 - this is the boundary: nothing may escape unmapped
            code, message = _log_and_map(method.__name__, exc)
        context.abort(code, message)  # raises; outside the except so the abort itself is never caught

    return wrapper  # type: ignore[return-value]


def _answer_stream_errors(method: _F) -> _F:
    """The same for a server-streaming handler: an error mid-stream ends it with the mapped status."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from method(self, request, context)
            return
        except Exception as exc:  # noqa: BLE001
            code, message = _log_and_map(method.__name__, exc)
        context.abort(code, message)

    return wrapper  # type: ignore[return-value]


def _log_and_map(rpc: str, exc: Exception) -> tuple[grpc.StatusCode, str]:
    code, message = status_for(exc)
    if code == grpc.StatusCode.INTERNAL:
        log.error("%s failed unexpectedly", rpc, exc_info=exc)
    return code, message


# ------------------------------------------------------------------------------------------- enums


STRATEGY_FROM_PROTO: dict[int, str] = {
    common_pb2.STRATEGY_UNSPECIFIED: "auto",
    common_pb2.STRATEGY_AUTO: "auto",
    common_pb2.STRATEGY_RETRAIN: "retrain",
    common_pb2.STRATEGY_SISA: "sisa",
    common_pb2.STRATEGY_DPUS: "dpus",
    common_pb2.STRATEGY_HS: "hs",
    common_pb2.STRATEGY_OHS: "ohs",
}
STRATEGY_TO_PROTO: dict[str, int] = {name: value for value, name in STRATEGY_FROM_PROTO.items() if value}
GUARANTEE_TO_PROTO: dict[str, int] = {"exact": common_pb2.GUARANTEE_EXACT, "approximate": common_pb2.GUARANTEE_APPROXIMATE}


# ------------------------------------------------------------------------------------------- validation


MAX_REQUEST_ID_CHARS = 128
MAX_SAMPLE_ID_CHARS = 1024


def check_features(request: inference_service_pb2.PredictRequest, num_features: int, max_rows: int) -> None:
    """InvalidRequest, naming what is wrong and how to fix it, unless the request's shape is servable. The values
    are checked by the forward itself (NaN, infinity, overflow: see server/predictor.py), which costs nothing
    extra there."""
    rows, cols = request.rows, request.columns
    if rows == 0:
        raise InvalidRequest("rows is 0: send at least one row")
    if rows > max_rows:
        raise InvalidRequest(f"rows is {rows}, above this server's limit of {max_rows}; split the batch")
    if cols != num_features:
        raise InvalidRequest(f"columns is {cols} but the model takes {num_features} features per row")
    want = rows * cols * 4
    if len(request.features) != want:
        raise InvalidRequest(f"features has {len(request.features)} bytes; {rows} rows x {cols} columns of "
                             f"float32 need exactly {want}")


def parse_forget(request: unlearning_service_pb2.ForgetRequest, max_ids: int) -> tuple[list[str], str, str]:
    """(sample ids, strategy name, request id) of a valid ForgetRequest; assigns a UUID4 when request_id is empty."""
    ids = list(request.sample_ids)
    if not ids:
        raise InvalidRequest("sample_ids is empty: name at least one sample to forget")
    if len(ids) > max_ids:
        raise InvalidRequest(f"sample_ids has {len(ids)} ids, above this server's limit of {max_ids}; split the request")
    bad = next((i for i in ids if not i or len(i) > MAX_SAMPLE_ID_CHARS), None)
    if bad is not None:
        raise InvalidRequest(f"sample id {bad[:40]!r} is empty or longer than {MAX_SAMPLE_ID_CHARS} characters")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise InvalidRequest(f"sample id {dup!r} appears more than once; name each sample once")
    strategy = STRATEGY_FROM_PROTO.get(request.strategy)
    if strategy is None:
        raise InvalidRequest(f"strategy {request.strategy} is not a known Strategy value; use one of "
                             + ", ".join(common_pb2.Strategy.Name(v) for v in STRATEGY_FROM_PROTO))
    request_id = request.request_id or str(uuid.uuid4())
    if len(request_id) > MAX_REQUEST_ID_CHARS or not request_id.isprintable():
        raise InvalidRequest(f"request_id must be at most {MAX_REQUEST_ID_CHARS} printable characters "
                             "(a UUID4 is recommended)")
    return ids, strategy, request_id


# ------------------------------------------------------------------------------------------- servicers


class InferenceServicer(inference_service_pb2_grpc.InferenceServiceServicer):
    def __init__(self, slot: RuntimeSlot) -> None:
        self._slot = slot

    @_answer_errors
    def Predict(self, request: inference_service_pb2.PredictRequest, context: grpc.ServicerContext) -> Any:
        runtime: Runtime = self._slot.get()
        live = runtime.live  # read once: the whole batch is answered by this version, whatever swaps meanwhile
        check_features(request, runtime.info.num_features, runtime.config.max_predict_rows)
        # Lists, not arrays: protobuf copies a list in one pass but walks a numpy array item by item.
        probabilities, labels = live.predict(request.features, request.rows)
        return inference_service_pb2.PredictResponse(
            rows=len(labels),
            classes=runtime.info.num_classes,
            probabilities=probabilities,
            labels=labels,
            model_version=live.version,
            model_digest=live.digest,
        )

    @_answer_errors
    def GetModel(self, request: inference_service_pb2.GetModelRequest, context: grpc.ServicerContext) -> Any:
        runtime: Runtime = self._slot.get()
        live, info = runtime.live, runtime.info
        cfg = info.config
        return inference_service_pb2.GetModelResponse(
            version=live.version,
            digest=live.digest,
            shard_digests=live.shard_digests,
            config=inference_service_pb2.ModelConfig(
                shards=cfg.shards,
                slices=cfg.slices,
                epochs=cfg.epochs,
                batch_size=cfg.batch_size,
                learning_rate=cfg.learning_rate,
                hidden_sizes=cfg.hidden_sizes,
                budget_samples=info.budget_samples,
                seed=cfg.seed,
                default_strategy=STRATEGY_TO_PROTO[cfg.default_strategy],
                aggregation=cfg.aggregation,
            ),
            threshold_m=info.threshold_m,
            training_accuracy=info.training_accuracy,
            forgotten_count=live.forgotten_count,
            num_features=info.num_features,
            num_classes=info.num_classes,
            device=info.device,
            head_public_key=info.head_public_key,
            ledger_seq=live.ledger_seq,
        )


class UnlearningServicer(unlearning_service_pb2_grpc.UnlearningServiceServicer):
    def __init__(self, slot: RuntimeSlot) -> None:
        self._slot = slot

    @_answer_errors
    def Forget(self, request: unlearning_service_pb2.ForgetRequest, context: grpc.ServicerContext) -> Any:
        runtime: Runtime = self._slot.get()
        ids, strategy, request_id = parse_forget(request, runtime.config.max_forget_ids)
        view = runtime.submit(ids, strategy, request_id)
        if request.wait and view.applied is None:
            view = runtime.wait_applied(request_id, context.time_remaining, context.is_active)
        return forget_response(runtime, view)

    @_answer_errors
    def GetForgetRequest(self, request: unlearning_service_pb2.GetForgetRequestRequest,
                         context: grpc.ServicerContext) -> Any:
        runtime: Runtime = self._slot.get()
        if not request.request_id:
            raise InvalidRequest("request_id is empty: give the request_id a Forget returned")
        view = runtime.request(request.request_id)
        return unlearning_service_pb2.GetForgetRequestResponse(forget=forget_response(runtime, view))

    @_answer_stream_errors
    def ReadLedger(self, request: unlearning_service_pb2.ReadLedgerRequest, context: grpc.ServicerContext) -> Any:
        runtime: Runtime = self._slot.get()
        start = request.start_seq or 1
        for entry in runtime.ledger.read(start, request.limit or None):
            if not context.is_active():
                return
            yield unlearning_service_pb2.ReadLedgerResponse(entry=common_entry(entry))

    @_answer_errors
    def GetLedgerHead(self, request: unlearning_service_pb2.GetLedgerHeadRequest,
                      context: grpc.ServicerContext) -> Any:
        runtime: Runtime = self._slot.get()
        proofs = runtime.ledger.head_with_proofs(request.consistency_from_size or None, list(request.inclusion_seqs))
        response = unlearning_service_pb2.GetLedgerHeadResponse(
            head=head_proto(proofs.head),
            inclusions=[inclusion_proto(p) for p in proofs.inclusions],
        )
        if proofs.consistency is not None:
            c = proofs.consistency
            response.consistency.CopyFrom(common_pb2.ConsistencyProof(old_size=c.old_size, new_size=c.new_size,
                                                                      hashes=c.hashes))
        return response


# ------------------------------------------------------------------------------------------- messages


def head_proto(head: Any) -> common_pb2.LedgerHead:
    return common_pb2.LedgerHead(size=head.size, chain_hash=head.chain_hash, merkle_root=head.merkle_root,
                                 signature=head.signature, public_key=head.public_key)


def inclusion_proto(proof: Any) -> common_pb2.InclusionProof:
    return common_pb2.InclusionProof(seq=proof.seq, tree_size=proof.tree_size, hashes=proof.hashes)


def common_entry(entry: Any) -> unlearning_service_pb2.LedgerEntry:
    return unlearning_service_pb2.LedgerEntry(
        seq=entry.seq, event_id=entry.event_id, type=entry.type, schema_version=entry.v,
        recorded_at=entry.recorded_at, envelope=entry.envelope, leaf_hash=entry.leaf_hash, chain_hash=entry.chain_hash,
    )  # fmt: skip


def forget_response(runtime: Runtime, view: RequestView) -> unlearning_service_pb2.ForgetResponse:
    """The ForgetResponse for a request as it stands now, with a receipt against the current signed head."""
    req, batch = view.requested, view.applied
    seqs = [req.seq] + ([batch.seq] if batch is not None else [])
    proofs = runtime.ledger.head_with_proofs(None, seqs)
    receipt = unlearning_service_pb2.Receipt(
        request_id=req.request_id,
        requested_seq=req.seq,
        requested_leaf_hash=req.leaf_hash,
        head=head_proto(proofs.head),
        requested_proof=inclusion_proto(proofs.inclusions[0]),
    )
    response = unlearning_service_pb2.ForgetResponse(
        request_id=req.request_id,
        status=unlearning_service_pb2.FORGET_STATUS_PENDING,
        receipt=receipt,
    )
    if batch is not None:
        receipt = response.receipt  # the constructor copied the message: fill in the copy
        receipt.applied_seq = batch.seq
        receipt.applied_leaf_hash = batch.leaf_hash
        receipt.applied_proof.CopyFrom(inclusion_proto(proofs.inclusions[1]))
        response.status = unlearning_service_pb2.FORGET_STATUS_APPLIED
        response.result.CopyFrom(unlearning_service_pb2.ForgetResult(
            model_version=batch.model.version,
            model_digest=batch.model.digest,
            shard_digests=batch.model.shard_digests,
            strategy=STRATEGY_TO_PROTO[batch.resolved_strategy],
            guarantee=GUARANTEE_TO_PROTO[batch.guarantee],
            residue_steps=batch.residue_steps,
            samples_read=batch.samples_read,
            apply_micros=batch.apply_micros,
        ))
    for sample_id, ref, forgotten in view.samples:
        outcome = unlearning_service_pb2.SampleOutcome(sample_id=sample_id, subject_ref=ref)
        if forgotten is None:  # pending: what was asked, nothing known yet
            outcome.strategy = STRATEGY_TO_PROTO[req.strategy]
        else:
            by, got = forgotten
            outcome.shard, outcome.slice, outcome.applied_seq = got.shard, got.slice, by.seq
            outcome.strategy = STRATEGY_TO_PROTO[got.strategy]
            outcome.guarantee = GUARANTEE_TO_PROTO[got.guarantee]
        response.samples.append(outcome)
    return response


__all__ = ["InferenceServicer", "UnlearningServicer", "status_for", "check_features", "parse_forget"]
