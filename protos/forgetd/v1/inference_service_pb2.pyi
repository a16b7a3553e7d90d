from forgetd.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PredictRequest(_message.Message):
    __slots__ = ("features", "rows", "columns")
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    features: bytes
    rows: int
    columns: int
    def __init__(self, features: _Optional[bytes] = ..., rows: _Optional[int] = ..., columns: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("shards", "slices", "epochs", "batch_size", "learning_rate", "hidden_sizes", "budget_samples", "seed", "default_strategy", "aggregation")
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
    def __init__(self, shards: _Optional[int] = ..., slices: _Optional[int] = ..., epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., hidden_sizes: _Optional[_Iterable[int]] = ..., budget_samples: _Optional[int] = ..., seed: _Optional[int] = ..., default_strategy: _Optional[_Union[_common_pb2.Strategy, str]] = ..., aggregation: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("version", "digest", "shard_digests", "config", "threshold_m", "training_accuracy", "forgotten_count", "num_features", "num_classes", "device", "head_public_key", "ledger_seq", "verifier_key", "checkpoint_origin", "sla")
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
    def __init__(self, version: _Optional[int] = ..., digest: _Optional[str] = ..., shard_digests: _Optional[_Iterable[str]] = ..., config: _Optional[_Union[ModelConfig, _Mapping]] = ..., threshold_m: _Optional[int] = ..., training_accuracy: _Optional[float] = ..., forgotten_count: _Optional[int] = ..., num_features: _Optional[int] = ..., num_classes: _Optional[int] = ..., device: _Optional[str] = ..., head_public_key: _Optional[str] = ..., ledger_seq: _Optional[int] = ..., verifier_key: _Optional[str] = ..., checkpoint_origin: _Optional[str] = ..., sla: _Optional[_Union[UnlearningSla, _Mapping]] = ...) -> None: ...

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
