"""The client's dataclasses built from forgetd.v1 messages: every field carried over, JSON-ready output."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from forgetd.client.types import ForgetStatus, Prediction, Receipt, to_jsonable
from forgetd.v1 import common_pb2, inference_service_pb2, unlearning_service_pb2

u64 = st.integers(0, 2**64 - 1)
u32 = st.integers(0, 2**32 - 1)
digest = st.binary(min_size=32, max_size=32)
text = st.text(max_size=12)
strategy = st.sampled_from(list(common_pb2.Strategy.values()))
guarantee = st.sampled_from(list(common_pb2.Guarantee.values()))

heads = st.builds(common_pb2.LedgerHead, size=u64, chain_hash=digest, merkle_root=digest, signature=st.binary(max_size=64),
                  public_key=st.binary(max_size=32))  # fmt: skip
proofs = st.builds(common_pb2.InclusionProof, seq=u64, tree_size=u64, hashes=st.lists(digest, max_size=4))
samples = st.builds(unlearning_service_pb2.SampleOutcome, sample_id=text, subject_ref=text, shard=u32, slice=u32,
                    strategy=strategy, guarantee=guarantee, applied_seq=u64)  # fmt: skip
results = st.builds(unlearning_service_pb2.ForgetResult, model_version=u64, model_digest=text,
                    shard_digests=st.lists(text, max_size=3), strategy=strategy, guarantee=guarantee,
                    residue_steps=u64, samples_read=u64, apply_micros=u64)  # fmt: skip


@st.composite
def forget_responses(draw: st.DrawFn) -> unlearning_service_pb2.ForgetResponse:
    applied = draw(st.booleans())
    receipt = unlearning_service_pb2.Receipt(
        request_id=draw(text), requested_seq=draw(u64), requested_leaf_hash=draw(digest),
        head=draw(heads), requested_proof=draw(proofs),
    )  # fmt: skip
    msg = unlearning_service_pb2.ForgetResponse(
        request_id=receipt.request_id,
        status=unlearning_service_pb2.FORGET_STATUS_APPLIED if applied else unlearning_service_pb2.FORGET_STATUS_PENDING,
        receipt=receipt, samples=draw(st.lists(samples, max_size=4)),
    )  # fmt: skip
    if applied:
        msg.receipt.applied_seq = draw(u64)
        msg.receipt.applied_leaf_hash = draw(digest)
        msg.receipt.applied_proof.CopyFrom(draw(proofs))
        msg.result.CopyFrom(draw(results))
    return msg


@given(forget_responses())
def test_a_receipt_carries_every_field_and_prints_as_json(msg: unlearning_service_pb2.ForgetResponse) -> None:
    r = Receipt.from_proto(msg)
    assert r.applied == (r.status is ForgetStatus.APPLIED) == msg.HasField("result") == (r.result is not None)
    assert (r.request_id, r.requested_seq, r.requested_leaf_hash) == (
        msg.request_id, msg.receipt.requested_seq, msg.receipt.requested_leaf_hash)  # fmt: skip
    assert r.head is not None and r.head.merkle_root == msg.receipt.head.merkle_root
    assert (r.applied_proof is None) == (not r.applied)
    assert [s.sample_id for s in r.samples] == [s.sample_id for s in msg.samples]
    if r.result is not None:
        assert (r.result.model_version, r.result.apply_micros) == (msg.result.model_version, msg.result.apply_micros)
    out = json.loads(json.dumps(to_jsonable(r)))
    assert out["status"] == r.status.value
    assert bytes.fromhex(out["requested_leaf_hash"]) == r.requested_leaf_hash
    assert Receipt.from_proto(msg) == r  # frozen values compare by content: a retry's answer can be compared


@given(st.integers(0, 5), st.integers(1, 4), st.data())
def test_a_prediction_is_reshaped_row_major(rows: int, classes: int, data: st.DataObject) -> None:
    flat = data.draw(st.lists(st.floats(0, 1, width=32), min_size=rows * classes, max_size=rows * classes))
    msg = inference_service_pb2.PredictResponse(rows=rows, classes=classes, probabilities=flat,
                                                labels=[0] * rows, model_version=3, model_digest="ab")  # fmt: skip
    p = Prediction.from_proto(msg)
    assert [v for row in p.probabilities for v in row] == list(msg.probabilities)
    assert all(len(row) == classes for row in p.probabilities) and len(p.probabilities) == rows
