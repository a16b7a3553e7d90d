"""The forgetd.v1 front: InferenceService and UnlearningService, each rpc a thin translation onto the runtime.

Servicers only translate: protobuf in (convert.py checks and parses it), one call on the runtime
(forgetd.server.runtime.runtime.Runtime), protobuf out (convert.py builds it). Errors become status codes
through the one table in status.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import grpc

from forgetd.v1 import common_pb2, inference_service_pb2, inference_service_pb2_grpc
from forgetd.v1 import unlearning_service_pb2, unlearning_service_pb2_grpc

from forgetd.server.api.convert import (
    STRATEGY_TO_PROTO,
    budget_proto,
    check_features,
    forget_response,
    head_proto,
    inclusion_proto,
    ledger_entry_proto,
    gold_proto,
    parse_forget,
    sla_proto,
)
from forgetd.server.api.records import encode_v1_records, input_schema_proto
from forgetd.server.api.status import answer_errors, answer_stream_errors
from forgetd.server.errors import InvalidRequest
from forgetd.server.vocabulary import supported_strategies

if TYPE_CHECKING:
    from forgetd.server.runtime.runtime import Runtime
    from forgetd.server.runtime.slot import RuntimeSlot

__all__ = ["InferenceServicer", "UnlearningServicer"]


class InferenceServicer(inference_service_pb2_grpc.InferenceServiceServicer):
    def __init__(self, slot: RuntimeSlot) -> None:
        self._slot = slot

    @answer_errors
    def Predict(self, request: inference_service_pb2.PredictRequest,
                context: grpc.ServicerContext) -> inference_service_pb2.PredictResponse:
        runtime: Runtime = self._slot.get()
        live = runtime.live  # read once: the whole batch is answered by this version, whatever swaps meanwhile
        with runtime.metrics.inference(live.version):  # observe: success and duration, or a failure
            if request.records:  # raw rows: encoded as training encoded them (records.py)
                features, rows = encode_v1_records(request, runtime.info.encoder, runtime.config.max_predict_rows)
            else:
                check_features(request, runtime.info.num_features, runtime.config.max_predict_rows)
                features, rows = request.features, request.rows
            # Lists, not arrays: protobuf copies a list in one pass but walks a numpy array item by item.
            probabilities, labels = live.predict(features, rows)
        return inference_service_pb2.PredictResponse(
            rows=len(labels),
            classes=runtime.info.num_classes,
            probabilities=probabilities,
            labels=labels,
            model_version=live.version,
            model_digest=live.digest,
        )

    @answer_errors
    def GetModel(self, request: inference_service_pb2.GetModelRequest,
                 context: grpc.ServicerContext) -> inference_service_pb2.GetModelResponse:
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
                model=cfg.model,
                certified_epsilon=cfg.epsilon,
                certified_delta=cfg.delta,
                epoch_schedule=cfg.epoch_schedule,
            ),
            threshold_m=info.threshold_m,
            training_accuracy=info.training_accuracy,
            forgotten_count=live.forgotten_count,
            num_features=info.num_features,
            num_classes=info.num_classes,
            device=info.device,
            head_public_key=info.head_public_key,
            ledger_seq=live.ledger_seq,
            verifier_key=info.verifier_key,
            checkpoint_origin=info.checkpoint_origin,
            sla=sla_proto(runtime.metrics.sla),
            input_schema=input_schema_proto(info.encoder),
            test_accuracy=info.test_accuracy,
            unlearning_halted_reason=runtime.halt_reason or "",
            supported_strategies=[STRATEGY_TO_PROTO[s] for s in supported_strategies(cfg.model)],
            gold=gold_proto(runtime.gold_alarm.state),
            certified_budget=budget_proto(runtime.engine.certified_budget()),
        )


class UnlearningServicer(unlearning_service_pb2_grpc.UnlearningServiceServicer):
    """`reveals_ids(context)`: whether this call may see a pending request's raw sample ids (the daemon says: it
    carries the bearer token, or the server has none); never, by default."""

    def __init__(self, slot: RuntimeSlot,
                 reveals_ids: Callable[[grpc.ServicerContext], bool] = lambda context: False) -> None:
        self._slot = slot
        self._reveals_ids = reveals_ids

    @answer_errors
    def Forget(self, request: unlearning_service_pb2.ForgetRequest,
               context: grpc.ServicerContext) -> unlearning_service_pb2.ForgetResponse:
        runtime: Runtime = self._slot.get()
        ids, strategy, request_id = parse_forget(request, runtime.config.max_forget_ids)
        view = runtime.submit(ids, strategy, request_id)  # names the samples by the caller's ids: it sent them
        if request.wait and view.applied is None:
            waited = runtime.wait_applied(view.requested.request_id, context.time_remaining, context.is_active)
            view = waited.named([i for i, _, _ in view.samples])
        return forget_response(runtime, view)

    @answer_errors
    def GetForgetRequest(self, request: unlearning_service_pb2.GetForgetRequestRequest,
                         context: grpc.ServicerContext) -> unlearning_service_pb2.GetForgetRequestResponse:
        runtime: Runtime = self._slot.get()
        if not request.request_id:
            raise InvalidRequest("request_id is empty: give the request_id a Forget returned")
        view = runtime.request(request.request_id, reveal_ids=self._reveals_ids(context))
        return unlearning_service_pb2.GetForgetRequestResponse(forget=forget_response(runtime, view))

    @answer_stream_errors
    def ReadLedger(self, request: unlearning_service_pb2.ReadLedgerRequest,
                   context: grpc.ServicerContext) -> Iterator[unlearning_service_pb2.ReadLedgerResponse]:
        runtime: Runtime = self._slot.get()
        start = request.start_seq or 1
        for entry in runtime.ledger.read(start, request.limit or None):
            if not context.is_active():
                return
            yield unlearning_service_pb2.ReadLedgerResponse(entry=ledger_entry_proto(entry))

    @answer_errors
    def GetLedgerHead(self, request: unlearning_service_pb2.GetLedgerHeadRequest,
                      context: grpc.ServicerContext) -> unlearning_service_pb2.GetLedgerHeadResponse:
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
