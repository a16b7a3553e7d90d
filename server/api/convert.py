"""forgetd.v1 messages to and from the runtime's terms: requests checked and parsed, answers built.

The enum maps are built from the vocabulary's names (STRATEGY_<NAME>, GUARANTEE_<NAME> in common.proto), so a
strategy the vocabulary names but the proto lacks fails at import, not on the first Forget that uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from forgetd.v1 import common_pb2, inference_service_pb2, unlearning_service_pb2

from forgetd.server.api.forgets import (  # the checks every front shares
    MAX_REQUEST_ID_CHARS,
    MAX_SAMPLE_ID_CHARS,
    check_sample_ids,
    receipt_proofs,
    request_id_or_new,
)
from forgetd.server.errors import InvalidRequest
from forgetd.server.vocabulary import AUTO, GUARANTEES, STRATEGIES

if TYPE_CHECKING:
    from forgetd.ledger import Entry
    from forgetd.server.engine.budget import ShardBudget
    from forgetd.server.observe import SlaState
    from forgetd.server.observe.gold import GoldState
    from forgetd.server.runtime.ledger_writer import HeadWithSignature, InclusionPath
    from forgetd.server.runtime.runtime import RequestView, Runtime

__all__ = ["STRATEGY_FROM_PROTO", "STRATEGY_TO_PROTO", "GUARANTEE_TO_PROTO", "MAX_REQUEST_ID_CHARS",
           "MAX_SAMPLE_ID_CHARS", "check_features", "parse_forget", "head_proto", "inclusion_proto",
           "ledger_entry_proto", "forget_response", "sla_proto", "gold_proto", "budget_proto"]

# A request that leaves the strategy unset asks for "auto", as one that names STRATEGY_AUTO does.
STRATEGY_FROM_PROTO: dict[common_pb2.Strategy, str] = {
    common_pb2.STRATEGY_UNSPECIFIED: AUTO,
    **{common_pb2.Strategy.Value(f"STRATEGY_{name.upper()}"): name for name in STRATEGIES},
}
STRATEGY_TO_PROTO: dict[str, common_pb2.Strategy] = {name: value for value, name in STRATEGY_FROM_PROTO.items() if value}
GUARANTEE_TO_PROTO: dict[str, common_pb2.Guarantee] = {
    name: common_pb2.Guarantee.Value(f"GUARANTEE_{name.upper()}") for name in GUARANTEES
}


# ------------------------------------------------------------------------------------------- requests


def check_features(request: inference_service_pb2.PredictRequest, num_features: int, max_rows: int) -> None:
    """InvalidRequest, naming what is wrong and how to fix it, unless the request's shape is servable. The values
    are checked by the forward itself (NaN, infinity, overflow: see server/runtime/predictor.py), which costs
    nothing extra there."""
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
    check_sample_ids(ids, max_ids)
    strategy = STRATEGY_FROM_PROTO.get(request.strategy)
    if strategy is None:
        raise InvalidRequest(f"strategy {request.strategy} is not a known Strategy value; use one of "
                             + ", ".join(common_pb2.Strategy.Name(v) for v in STRATEGY_FROM_PROTO))
    return ids, strategy, request_id_or_new(request.request_id)


# ------------------------------------------------------------------------------------------- answers


def head_proto(head: HeadWithSignature) -> common_pb2.LedgerHead:
    return common_pb2.LedgerHead(size=head.size, chain_hash=head.chain_hash, merkle_root=head.merkle_root,
                                 signature=head.signature, public_key=head.public_key,
                                 checkpoint=head.checkpoint.decode("utf-8"))


def inclusion_proto(proof: InclusionPath) -> common_pb2.InclusionProof:
    return common_pb2.InclusionProof(seq=proof.seq, tree_size=proof.tree_size, hashes=proof.hashes)


def ledger_entry_proto(entry: Entry) -> unlearning_service_pb2.LedgerEntry:
    return unlearning_service_pb2.LedgerEntry(
        seq=entry.seq, event_id=entry.event_id, type=entry.type, schema_version=entry.v,
        recorded_at=entry.recorded_at, envelope=entry.envelope, leaf_hash=entry.leaf_hash, chain_hash=entry.chain_hash,
    )  # fmt: skip


def forget_response(runtime: Runtime, view: RequestView) -> unlearning_service_pb2.ForgetResponse:
    """The ForgetResponse for a request as it stands now, with a receipt against the current signed head."""
    req, batch = view.requested, view.applied
    proofs = receipt_proofs(runtime, view)
    receipt = unlearning_service_pb2.Receipt(
        request_id=req.request_id,
        requested_seq=req.seq,
        requested_leaf_hash=req.leaf_hash,
        head=head_proto(proofs.head),
        requested_proof=inclusion_proto(proofs.inclusions[0]),
        published=proofs.published,
        unpublished_reason="" if proofs.published else runtime.witnessing.unpublished_reason(
            batch.seq if batch is not None else req.seq),
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
            # What removed the request's own samples, earlier batches' included: not this batch's alone.
            strategy=STRATEGY_TO_PROTO.get(view.strategy or "", common_pb2.STRATEGY_UNSPECIFIED),
            guarantee=GUARANTEE_TO_PROTO[view.guarantee or batch.guarantee],
            residue_steps=batch.residue_steps,
            samples_read=batch.samples_read,
            apply_micros=batch.apply_micros,
            encoder_residue=[unlearning_service_pb2.EncoderResidue(
                column=str(r.get("column", "")), category=str(r.get("category", "")), feature=int(r.get("feature", 0)))
                for r in batch.encoder_residue],
        ))
        _newton_fields(response.result, runtime, batch.seq)
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


def _newton_fields(result: unlearning_service_pb2.ForgetResult, runtime: Runtime, applied_seq: int) -> None:
    """ForgetResult.certificate and .influence from the batch's forget.applied entry (engine/newton.py writes them;
    the fold does not keep them, so they are read back from the entry: one row)."""
    payload = next(iter(runtime.ledger.read(applied_seq, 1))).payload
    for step in payload.get("influence", ()):
        result.influence.append(unlearning_service_pb2.InfluenceStep(
            shard=step["shard"], cg_iterations=step.get("cg_iterations", 0),
            relative_residual=float(step.get("residual", "0")), converged=step.get("converged", False),
            retained_gradient_norm=float(step.get("retained_grad_norm", "0")),
            retained_gradient_norm_before=float(step.get("retained_grad_norm_before", "0")),
            damping=float(step["damping"]), damping_retries=step["damping_retries"], retrained=step["retrained"]))
    cert = payload.get("certified")
    if cert is not None:
        result.certificate.CopyFrom(unlearning_service_pb2.Certificate(
            epsilon=float(cert["epsilon"]), delta=float(cert["delta"]), sigma=float(cert["sigma"]),
            budget=float(cert["budget"]), shards=[unlearning_service_pb2.ShardCertificate(
                shard=sh["shard"], step_bound=float(sh["step_bound"]), bound_spent=float(sh["bound"]),
                budget_left=float(sh["budget_left"]), epsilon_spent=float(sh["epsilon_spent"]),
                removed=sh["removed"], retrained=sh["retrained"], hessian_rebuilt=sh["rebuilt"])
                for sh in cert["shards"]]))


def gold_proto(state: GoldState) -> inference_service_pb2.GoldStandard | None:
    """GetModelResponse.gold: the last gold-standard check, None (the field absent) before the first."""
    last = state.last
    if last is None:
        return None
    return inference_service_pb2.GoldStandard(
        passed=last.passed, model_version=last.version, ledger_seq=state.ledger_seq, live_accuracy=last.live_accuracy,
        gold_accuracy=last.gold_accuracy, gap_points=last.gap_points, tolerance_points=last.tolerance_points,
        label_agreement=last.label_agreement, max_probability_difference=last.max_probability_difference,
        parameter_distance=last.parameter_distance, live_loss=last.live_loss, gold_loss=last.gold_loss,
        checks=state.checks, failures=state.failures)


def sla_proto(state: SlaState) -> inference_service_pb2.UnlearningSla:
    return inference_service_pb2.UnlearningSla(target_seconds=state.target_seconds or 0.0, window=state.window,
                                               mean_seconds=state.mean_seconds, batches=state.batches,
                                               breached=state.breached)


def budget_proto(budget: Sequence[ShardBudget]) -> list[inference_service_pb2.ShardBudget]:
    """GetModelResponse.certified_budget: the linear family's budget per shard (empty for an MLP)."""
    return [inference_service_pb2.ShardBudget(shard=b.shard, budget=b.budget, bound_spent=b.bound_spent,
                                              budget_left=b.budget_left, epsilon_spent=b.epsilon_spent,
                                              removed=b.removed, voided=b.voided) for b in budget]
