from forgetd.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ColumnKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLUMN_KIND_UNSPECIFIED: _ClassVar[ColumnKind]
    COLUMN_KIND_NUMERIC: _ClassVar[ColumnKind]
    COLUMN_KIND_CATEGORICAL: _ClassVar[ColumnKind]

class UnknownCategoryPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN_CATEGORY_POLICY_UNSPECIFIED: _ClassVar[UnknownCategoryPolicy]
    UNKNOWN_CATEGORY_POLICY_ERROR: _ClassVar[UnknownCategoryPolicy]
    UNKNOWN_CATEGORY_POLICY_ZEROS: _ClassVar[UnknownCategoryPolicy]
COLUMN_KIND_UNSPECIFIED: ColumnKind
COLUMN_KIND_NUMERIC: ColumnKind
COLUMN_KIND_CATEGORICAL: ColumnKind
UNKNOWN_CATEGORY_POLICY_UNSPECIFIED: UnknownCategoryPolicy
UNKNOWN_CATEGORY_POLICY_ERROR: UnknownCategoryPolicy
UNKNOWN_CATEGORY_POLICY_ZEROS: UnknownCategoryPolicy

class PredictRequest(_message.Message):
    __slots__ = ("features", "rows", "columns", "records")
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    features: bytes
    rows: int
    columns: int
    records: _containers.RepeatedCompositeFieldContainer[Record]
    def __init__(self, features: _Optional[bytes] = ..., rows: _Optional[int] = ..., columns: _Optional[int] = ..., records: _Optional[_Iterable[_Union[Record, _Mapping]]] = ...) -> None: ...

class Record(_message.Message):
    __slots__ = ("fields",)
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: RecordValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[RecordValue, _Mapping]] = ...) -> None: ...
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.MessageMap[str, RecordValue]
    def __init__(self, fields: _Optional[_Mapping[str, RecordValue]] = ...) -> None: ...

class RecordValue(_message.Message):
    __slots__ = ("number", "text")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    number: float
    text: str
    def __init__(self, number: _Optional[float] = ..., text: _Optional[str] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("rows", "classes", "probabilities", "labels", "model_version", "model_digest")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    rows: int
    classes: int
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    labels: _containers.RepeatedScalarFieldContainer[int]
    model_version: int
    model_digest: str
    def __init__(self, rows: _Optional[int] = ..., classes: _Optional[int] = ..., probabilities: _Optional[_Iterable[float]] = ..., labels: _Optional[_Iterable[int]] = ..., model_version: _Optional[int] = ..., model_digest: _Optional[str] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelConfig(_message.Message):
    __slots__ = ("shards", "slices", "epochs", "batch_size", "learning_rate", "hidden_sizes", "budget_samples", "seed", "default_strategy", "aggregation", "model", "certified_epsilon", "certified_delta", "epoch_schedule")
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    SLICES_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_SIZES_FIELD_NUMBER: _ClassVar[int]
    BUDGET_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CERTIFIED_EPSILON_FIELD_NUMBER: _ClassVar[int]
    CERTIFIED_DELTA_FIELD_NUMBER: _ClassVar[int]
    EPOCH_SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    shards: int
    slices: int
    epochs: int
    batch_size: int
    learning_rate: float
    hidden_sizes: _containers.RepeatedScalarFieldContainer[int]
    budget_samples: int
    seed: int
    default_strategy: _common_pb2.Strategy
    aggregation: str
    model: str
    certified_epsilon: float
    certified_delta: float
    epoch_schedule: str
    def __init__(self, shards: _Optional[int] = ..., slices: _Optional[int] = ..., epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., hidden_sizes: _Optional[_Iterable[int]] = ..., budget_samples: _Optional[int] = ..., seed: _Optional[int] = ..., default_strategy: _Optional[_Union[_common_pb2.Strategy, str]] = ..., aggregation: _Optional[str] = ..., model: _Optional[str] = ..., certified_epsilon: _Optional[float] = ..., certified_delta: _Optional[float] = ..., epoch_schedule: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("version", "digest", "shard_digests", "config", "threshold_m", "training_accuracy", "forgotten_count", "num_features", "num_classes", "device", "head_public_key", "ledger_seq", "verifier_key", "checkpoint_origin", "sla", "input_schema", "test_accuracy", "unlearning_halted_reason", "supported_strategies", "gold", "certified_budget")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SHARD_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_M_FIELD_NUMBER: _ClassVar[int]
    TRAINING_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    FORGOTTEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    NUM_FEATURES_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    HEAD_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    LEDGER_SEQ_FIELD_NUMBER: _ClassVar[int]
    VERIFIER_KEY_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ORIGIN_FIELD_NUMBER: _ClassVar[int]
    SLA_FIELD_NUMBER: _ClassVar[int]
    INPUT_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    TEST_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    UNLEARNING_HALTED_REASON_FIELD_NUMBER: _ClassVar[int]
    SUPPORTED_STRATEGIES_FIELD_NUMBER: _ClassVar[int]
    GOLD_FIELD_NUMBER: _ClassVar[int]
    CERTIFIED_BUDGET_FIELD_NUMBER: _ClassVar[int]
    version: int
    digest: str
    shard_digests: _containers.RepeatedScalarFieldContainer[str]
    config: ModelConfig
    threshold_m: int
    training_accuracy: float
    forgotten_count: int
    num_features: int
    num_classes: int
    device: str
    head_public_key: str
    ledger_seq: int
    verifier_key: str
    checkpoint_origin: str
    sla: UnlearningSla
    input_schema: InputSchema
    test_accuracy: float
    unlearning_halted_reason: str
    supported_strategies: _containers.RepeatedScalarFieldContainer[_common_pb2.Strategy]
    gold: GoldStandard
    certified_budget: _containers.RepeatedCompositeFieldContainer[ShardBudget]
    def __init__(self, version: _Optional[int] = ..., digest: _Optional[str] = ..., shard_digests: _Optional[_Iterable[str]] = ..., config: _Optional[_Union[ModelConfig, _Mapping]] = ..., threshold_m: _Optional[int] = ..., training_accuracy: _Optional[float] = ..., forgotten_count: _Optional[int] = ..., num_features: _Optional[int] = ..., num_classes: _Optional[int] = ..., device: _Optional[str] = ..., head_public_key: _Optional[str] = ..., ledger_seq: _Optional[int] = ..., verifier_key: _Optional[str] = ..., checkpoint_origin: _Optional[str] = ..., sla: _Optional[_Union[UnlearningSla, _Mapping]] = ..., input_schema: _Optional[_Union[InputSchema, _Mapping]] = ..., test_accuracy: _Optional[float] = ..., unlearning_halted_reason: _Optional[str] = ..., supported_strategies: _Optional[_Iterable[_Union[_common_pb2.Strategy, str]]] = ..., gold: _Optional[_Union[GoldStandard, _Mapping]] = ..., certified_budget: _Optional[_Iterable[_Union[ShardBudget, _Mapping]]] = ...) -> None: ...

class ShardBudget(_message.Message):
    __slots__ = ("shard", "budget", "bound_spent", "budget_left", "epsilon_spent", "removed", "voided")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    BOUND_SPENT_FIELD_NUMBER: _ClassVar[int]
    BUDGET_LEFT_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    VOIDED_FIELD_NUMBER: _ClassVar[int]
    shard: int
    budget: float
    bound_spent: float
    budget_left: float
    epsilon_spent: float
    removed: int
    voided: bool
    def __init__(self, shard: _Optional[int] = ..., budget: _Optional[float] = ..., bound_spent: _Optional[float] = ..., budget_left: _Optional[float] = ..., epsilon_spent: _Optional[float] = ..., removed: _Optional[int] = ..., voided: _Optional[bool] = ...) -> None: ...

class GoldStandard(_message.Message):
    __slots__ = ("passed", "model_version", "ledger_seq", "live_accuracy", "gold_accuracy", "gap_points", "tolerance_points", "label_agreement", "max_probability_difference", "parameter_distance", "live_loss", "gold_loss", "checks", "failures")
    PASSED_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    LEDGER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIVE_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    GOLD_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    GAP_POINTS_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_POINTS_FIELD_NUMBER: _ClassVar[int]
    LABEL_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    MAX_PROBABILITY_DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    LIVE_LOSS_FIELD_NUMBER: _ClassVar[int]
    GOLD_LOSS_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    passed: bool
    model_version: int
    ledger_seq: int
    live_accuracy: float
    gold_accuracy: float
    gap_points: float
    tolerance_points: float
    label_agreement: float
    max_probability_difference: float
    parameter_distance: float
    live_loss: float
    gold_loss: float
    checks: int
    failures: int
    def __init__(self, passed: _Optional[bool] = ..., model_version: _Optional[int] = ..., ledger_seq: _Optional[int] = ..., live_accuracy: _Optional[float] = ..., gold_accuracy: _Optional[float] = ..., gap_points: _Optional[float] = ..., tolerance_points: _Optional[float] = ..., label_agreement: _Optional[float] = ..., max_probability_difference: _Optional[float] = ..., parameter_distance: _Optional[float] = ..., live_loss: _Optional[float] = ..., gold_loss: _Optional[float] = ..., checks: _Optional[int] = ..., failures: _Optional[int] = ...) -> None: ...

class InputSchema(_message.Message):
    __slots__ = ("columns", "unknown_category", "encoder_digest")
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    ENCODER_DIGEST_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedCompositeFieldContainer[InputColumn]
    unknown_category: UnknownCategoryPolicy
    encoder_digest: str
    def __init__(self, columns: _Optional[_Iterable[_Union[InputColumn, _Mapping]]] = ..., unknown_category: _Optional[_Union[UnknownCategoryPolicy, str]] = ..., encoder_digest: _Optional[str] = ...) -> None: ...

class InputColumn(_message.Message):
    __slots__ = ("name", "kind", "mean", "scale", "categories", "feature_offset")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    FEATURE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: ColumnKind
    mean: float
    scale: float
    categories: _containers.RepeatedScalarFieldContainer[str]
    feature_offset: int
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[ColumnKind, str]] = ..., mean: _Optional[float] = ..., scale: _Optional[float] = ..., categories: _Optional[_Iterable[str]] = ..., feature_offset: _Optional[int] = ...) -> None: ...

class UnlearningSla(_message.Message):
    __slots__ = ("target_seconds", "window", "mean_seconds", "batches", "breached")
    TARGET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    MEAN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    BREACHED_FIELD_NUMBER: _ClassVar[int]
    target_seconds: float
    window: int
    mean_seconds: float
    batches: int
    breached: bool
    def __init__(self, target_seconds: _Optional[float] = ..., window: _Optional[int] = ..., mean_seconds: _Optional[float] = ..., batches: _Optional[int] = ..., breached: _Optional[bool] = ...) -> None: ...
