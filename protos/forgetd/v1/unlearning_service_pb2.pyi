from forgetd.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ForgetStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FORGET_STATUS_UNSPECIFIED: _ClassVar[ForgetStatus]
    FORGET_STATUS_PENDING: _ClassVar[ForgetStatus]
    FORGET_STATUS_APPLIED: _ClassVar[ForgetStatus]
FORGET_STATUS_UNSPECIFIED: ForgetStatus
FORGET_STATUS_PENDING: ForgetStatus
FORGET_STATUS_APPLIED: ForgetStatus

class ForgetRequest(_message.Message):
    __slots__ = ("sample_ids", "strategy", "request_id", "wait")
    SAMPLE_IDS_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    sample_ids: _containers.RepeatedScalarFieldContainer[str]
    strategy: _common_pb2.Strategy
    request_id: str
    wait: bool
    def __init__(self, sample_ids: _Optional[_Iterable[str]] = ..., strategy: _Optional[_Union[_common_pb2.Strategy, str]] = ..., request_id: _Optional[str] = ..., wait: _Optional[bool] = ...) -> None: ...

class SampleOutcome(_message.Message):
    __slots__ = ("sample_id", "subject_ref", "shard", "slice", "strategy", "guarantee", "applied_seq")
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_REF_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    SLICE_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    GUARANTEE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    sample_id: str
    subject_ref: str
    shard: int
    slice: int
    strategy: _common_pb2.Strategy
    guarantee: _common_pb2.Guarantee
    applied_seq: int
    def __init__(self, sample_id: _Optional[str] = ..., subject_ref: _Optional[str] = ..., shard: _Optional[int] = ..., slice: _Optional[int] = ..., strategy: _Optional[_Union[_common_pb2.Strategy, str]] = ..., guarantee: _Optional[_Union[_common_pb2.Guarantee, str]] = ..., applied_seq: _Optional[int] = ...) -> None: ...

class ForgetResult(_message.Message):
    __slots__ = ("model_version", "model_digest", "shard_digests", "strategy", "guarantee", "residue_steps", "samples_read", "apply_micros", "encoder_residue", "certificate", "influence")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    SHARD_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    GUARANTEE_FIELD_NUMBER: _ClassVar[int]
    RESIDUE_STEPS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_READ_FIELD_NUMBER: _ClassVar[int]
    APPLY_MICROS_FIELD_NUMBER: _ClassVar[int]
    ENCODER_RESIDUE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    INFLUENCE_FIELD_NUMBER: _ClassVar[int]
    model_version: int
    model_digest: str
    shard_digests: _containers.RepeatedScalarFieldContainer[str]
    strategy: _common_pb2.Strategy
    guarantee: _common_pb2.Guarantee
    residue_steps: int
    samples_read: int
    apply_micros: int
    encoder_residue: _containers.RepeatedCompositeFieldContainer[EncoderResidue]
    certificate: Certificate
    influence: _containers.RepeatedCompositeFieldContainer[InfluenceStep]
    def __init__(self, model_version: _Optional[int] = ..., model_digest: _Optional[str] = ..., shard_digests: _Optional[_Iterable[str]] = ..., strategy: _Optional[_Union[_common_pb2.Strategy, str]] = ..., guarantee: _Optional[_Union[_common_pb2.Guarantee, str]] = ..., residue_steps: _Optional[int] = ..., samples_read: _Optional[int] = ..., apply_micros: _Optional[int] = ..., encoder_residue: _Optional[_Iterable[_Union[EncoderResidue, _Mapping]]] = ..., certificate: _Optional[_Union[Certificate, _Mapping]] = ..., influence: _Optional[_Iterable[_Union[InfluenceStep, _Mapping]]] = ...) -> None: ...

class Certificate(_message.Message):
    __slots__ = ("epsilon", "delta", "sigma", "budget", "shards")
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    SIGMA_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    epsilon: float
    delta: float
    sigma: float
    budget: float
    shards: _containers.RepeatedCompositeFieldContainer[ShardCertificate]
    def __init__(self, epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., sigma: _Optional[float] = ..., budget: _Optional[float] = ..., shards: _Optional[_Iterable[_Union[ShardCertificate, _Mapping]]] = ...) -> None: ...

class ShardCertificate(_message.Message):
    __slots__ = ("shard", "step_bound", "bound_spent", "budget_left", "epsilon_spent", "removed", "retrained", "hessian_rebuilt")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    STEP_BOUND_FIELD_NUMBER: _ClassVar[int]
    BOUND_SPENT_FIELD_NUMBER: _ClassVar[int]
    BUDGET_LEFT_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    RETRAINED_FIELD_NUMBER: _ClassVar[int]
    HESSIAN_REBUILT_FIELD_NUMBER: _ClassVar[int]
    shard: int
    step_bound: float
    bound_spent: float
    budget_left: float
    epsilon_spent: float
    removed: int
    retrained: bool
    hessian_rebuilt: bool
    def __init__(self, shard: _Optional[int] = ..., step_bound: _Optional[float] = ..., bound_spent: _Optional[float] = ..., budget_left: _Optional[float] = ..., epsilon_spent: _Optional[float] = ..., removed: _Optional[int] = ..., retrained: _Optional[bool] = ..., hessian_rebuilt: _Optional[bool] = ...) -> None: ...

class InfluenceStep(_message.Message):
    __slots__ = ("shard", "cg_iterations", "relative_residual", "converged", "retained_gradient_norm", "retained_gradient_norm_before", "damping", "damping_retries", "retrained")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    CG_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_RESIDUAL_FIELD_NUMBER: _ClassVar[int]
    CONVERGED_FIELD_NUMBER: _ClassVar[int]
    RETAINED_GRADIENT_NORM_FIELD_NUMBER: _ClassVar[int]
    RETAINED_GRADIENT_NORM_BEFORE_FIELD_NUMBER: _ClassVar[int]
    DAMPING_FIELD_NUMBER: _ClassVar[int]
    DAMPING_RETRIES_FIELD_NUMBER: _ClassVar[int]
    RETRAINED_FIELD_NUMBER: _ClassVar[int]
    shard: int
    cg_iterations: int
    relative_residual: float
    converged: bool
    retained_gradient_norm: float
    retained_gradient_norm_before: float
    damping: float
    damping_retries: int
    retrained: bool
    def __init__(self, shard: _Optional[int] = ..., cg_iterations: _Optional[int] = ..., relative_residual: _Optional[float] = ..., converged: _Optional[bool] = ..., retained_gradient_norm: _Optional[float] = ..., retained_gradient_norm_before: _Optional[float] = ..., damping: _Optional[float] = ..., damping_retries: _Optional[int] = ..., retrained: _Optional[bool] = ...) -> None: ...

class EncoderResidue(_message.Message):
    __slots__ = ("column", "category", "feature")
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    column: str
    category: str
    feature: int
    def __init__(self, column: _Optional[str] = ..., category: _Optional[str] = ..., feature: _Optional[int] = ...) -> None: ...

class Receipt(_message.Message):
    __slots__ = ("request_id", "requested_seq", "requested_leaf_hash", "applied_seq", "applied_leaf_hash", "head", "requested_proof", "applied_proof", "published", "unpublished_reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_SEQ_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_LEAF_HASH_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    APPLIED_LEAF_HASH_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_PROOF_FIELD_NUMBER: _ClassVar[int]
    APPLIED_PROOF_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    UNPUBLISHED_REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    requested_seq: int
    requested_leaf_hash: bytes
    applied_seq: int
    applied_leaf_hash: bytes
    head: _common_pb2.LedgerHead
    requested_proof: _common_pb2.InclusionProof
    applied_proof: _common_pb2.InclusionProof
    published: bool
    unpublished_reason: str
    def __init__(self, request_id: _Optional[str] = ..., requested_seq: _Optional[int] = ..., requested_leaf_hash: _Optional[bytes] = ..., applied_seq: _Optional[int] = ..., applied_leaf_hash: _Optional[bytes] = ..., head: _Optional[_Union[_common_pb2.LedgerHead, _Mapping]] = ..., requested_proof: _Optional[_Union[_common_pb2.InclusionProof, _Mapping]] = ..., applied_proof: _Optional[_Union[_common_pb2.InclusionProof, _Mapping]] = ..., published: _Optional[bool] = ..., unpublished_reason: _Optional[str] = ...) -> None: ...

class ForgetResponse(_message.Message):
    __slots__ = ("request_id", "status", "receipt", "result", "samples")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    status: ForgetStatus
    receipt: Receipt
    result: ForgetResult
    samples: _containers.RepeatedCompositeFieldContainer[SampleOutcome]
    def __init__(self, request_id: _Optional[str] = ..., status: _Optional[_Union[ForgetStatus, str]] = ..., receipt: _Optional[_Union[Receipt, _Mapping]] = ..., result: _Optional[_Union[ForgetResult, _Mapping]] = ..., samples: _Optional[_Iterable[_Union[SampleOutcome, _Mapping]]] = ...) -> None: ...

class GetForgetRequestRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class GetForgetRequestResponse(_message.Message):
    __slots__ = ("forget",)
    FORGET_FIELD_NUMBER: _ClassVar[int]
    forget: ForgetResponse
    def __init__(self, forget: _Optional[_Union[ForgetResponse, _Mapping]] = ...) -> None: ...

class ReadLedgerRequest(_message.Message):
    __slots__ = ("start_seq", "limit")
    START_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    start_seq: int
    limit: int
    def __init__(self, start_seq: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class LedgerEntry(_message.Message):
    __slots__ = ("seq", "event_id", "type", "schema_version", "recorded_at", "envelope", "leaf_hash", "chain_hash")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    LEAF_HASH_FIELD_NUMBER: _ClassVar[int]
    CHAIN_HASH_FIELD_NUMBER: _ClassVar[int]
    seq: int
    event_id: str
    type: str
    schema_version: int
    recorded_at: str
    envelope: bytes
    leaf_hash: bytes
    chain_hash: bytes
    def __init__(self, seq: _Optional[int] = ..., event_id: _Optional[str] = ..., type: _Optional[str] = ..., schema_version: _Optional[int] = ..., recorded_at: _Optional[str] = ..., envelope: _Optional[bytes] = ..., leaf_hash: _Optional[bytes] = ..., chain_hash: _Optional[bytes] = ...) -> None: ...

class ReadLedgerResponse(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: LedgerEntry
    def __init__(self, entry: _Optional[_Union[LedgerEntry, _Mapping]] = ...) -> None: ...

class GetLedgerHeadRequest(_message.Message):
    __slots__ = ("consistency_from_size", "inclusion_seqs")
    CONSISTENCY_FROM_SIZE_FIELD_NUMBER: _ClassVar[int]
    INCLUSION_SEQS_FIELD_NUMBER: _ClassVar[int]
    consistency_from_size: int
    inclusion_seqs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, consistency_from_size: _Optional[int] = ..., inclusion_seqs: _Optional[_Iterable[int]] = ...) -> None: ...

class GetLedgerHeadResponse(_message.Message):
    __slots__ = ("head", "consistency", "inclusions")
    HEAD_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    INCLUSIONS_FIELD_NUMBER: _ClassVar[int]
    head: _common_pb2.LedgerHead
    consistency: _common_pb2.ConsistencyProof
    inclusions: _containers.RepeatedCompositeFieldContainer[_common_pb2.InclusionProof]
    def __init__(self, head: _Optional[_Union[_common_pb2.LedgerHead, _Mapping]] = ..., consistency: _Optional[_Union[_common_pb2.ConsistencyProof, _Mapping]] = ..., inclusions: _Optional[_Iterable[_Union[_common_pb2.InclusionProof, _Mapping]]] = ...) -> None: ...
