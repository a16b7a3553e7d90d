"""The model as the Open Inference Protocol v2 sees it: name, versions, tensors, inference and statistics.

Both OIP fronts (gRPC in oip_grpc.py, REST in the HTTP front) translate onto this one object, which in
turn calls the runtime's live model, the same one forgetd.v1 Predict calls. So an answer from any front is
bitwise the same, and each carries the state it came from as response parameters:

- `model_version`: the live version that answered (a decimal string, as the protocol spells versions);
- `model_digest`: that version's SHA-256 digest, as GetModel reports it;
- `ledger_seq`: the ledger entry that published that version (0-based tree size = seq), so a kept answer can
  be checked against the ledger with `forgetd verify`.

Tensors: input `features`, FP32, shape [rows, F] (encoded rows), or instead one input per raw column of the
store's input schema, named after it (BYTES for a categorical column, FP64 for a numeric one, which also
takes FP32 or an integer type; shape [rows] or [rows, 1]), encoded as training encoded its rows (records.py);
outputs `probabilities` (FP32 [rows, C]) and `labels` (INT64 [rows]). The metadata lists `features` first,
then the columns. Only the live version is ready; the versions before it are gone (forgotten rows are in them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from forgetd.server.api.oip_tensors import InferRequest, TensorError
from forgetd.server.api.records import column_datatype, encode_tensor_columns
from forgetd.server.errors import InvalidRequest
from forgetd.server.runtime.slot import RuntimeSlot

MODEL_NAME = "forgetd"
PLATFORM = "forgetd_sisa"  # ModelConfig.platform and ModelMetadata.platform: what serves the model
INPUT = "features"
OUTPUTS = ("probabilities", "labels")
EXTENSIONS = ("model_configuration", "statistics", "model_repository", "binary_tensor_data")


class ModelNotFound(InvalidRequest):
    """The request names a model or version this server does not serve (NOT_FOUND / HTTP 404)."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 = any size


@dataclass(frozen=True)
class Answer:
    outputs: Mapping[str, np.ndarray]
    version: str
    parameters: Mapping[str, str | int]


@dataclass
class Durations:
    """Count and total nanoseconds, as the protocol's StatisticDuration."""

    count: int = 0
    ns: int = 0


@dataclass
class Statistics:
    """Counters behind ModelStatistics since the daemon started; one lock, a few integer adds per call."""

    success: Durations = field(default_factory=Durations)
    fail: Durations = field(default_factory=Durations)
    compute_infer: Durations = field(default_factory=Durations)
    inference_count: int = 0  # rows answered
    execution_count: int = 0  # batches answered
    last_inference_ms: int = 0  # wall clock of the last success, milliseconds since the epoch
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, ok: bool, started_ns: int, rows: int) -> None:
        elapsed = time.perf_counter_ns() - started_ns
        with self.lock:
            bucket = self.success if ok else self.fail
            bucket.count += 1
            bucket.ns += elapsed
            if ok:
                self.compute_infer.count += 1
                self.compute_infer.ns += elapsed
                self.inference_count += rows
                self.execution_count += 1
                self.last_inference_ms = time.time_ns() // 1_000_000


class OipModel:
    """The one model of this daemon, in the protocol's terms; every front's handlers call these methods."""

    def __init__(self, slot: RuntimeSlot, name: str = MODEL_NAME) -> None:
        self._slot = slot
        self.name = name
        self.stats = Statistics()

    # ------------------------------------------------------------------------------------------ readiness

    def server_ready(self) -> bool:
        return self._slot.runtime is not None and not self._slot.shutting_down

    def live_version(self) -> str:
        return str(self._slot.get().live.version)

    def check(self, name: str, version: str = "") -> str:
        """The live version string if (name, version) is served now; ModelNotFound names what is."""
        if name != self.name:
            raise ModelNotFound(f"unknown model {name!r}; this server serves one model, {self.name!r}")
        live = self.live_version()
        if version and version != live:
            raise ModelNotFound(f"model {self.name!r} version {version!r} is not served; the live version is "
                                f"{live} (earlier versions are retired when a forget publishes a new one)")
        return live

    def ready(self, name: str, version: str = "") -> bool:
        if not self.server_ready():
            return False
        try:
            self.check(name, version)
        except ModelNotFound:
            return False
        return True

    # ------------------------------------------------------------------------------------------ metadata

    def inputs(self) -> tuple[TensorSpec, ...]:
        """`features`, then one tensor per raw column: a request sends `features` alone or every column."""
        info = self._slot.get().info
        columns = tuple(TensorSpec(name, column_datatype(info.encoder, name), (-1,)) for name in info.encoder.column_names)
        return (TensorSpec(INPUT, "FP32", (-1, info.num_features)), *columns)

    def outputs(self) -> tuple[TensorSpec, ...]:
        classes = self._slot.get().info.num_classes
        return (TensorSpec("probabilities", "FP32", (-1, classes)), TensorSpec("labels", "INT64", (-1,)))

    # ------------------------------------------------------------------------------------------ inference

    def infer(self, name: str, version: str, request: InferRequest) -> Answer:
        """Answers `request` with the live model; the statistics count it either way."""
        started, rows = time.perf_counter_ns(), 0
        try:
            answer, rows = self._infer(name, version, request)
        except Exception:
            self.stats.record(False, started, 0)
            raise
        self.stats.record(True, started, rows)
        return answer

    def _infer(self, name: str, version: str, request: InferRequest) -> tuple[Answer, int]:
        self.check(name, version)
        runtime = self._slot.get()
        live = runtime.live  # read once: the whole request is answered by this version
        with runtime.metrics.inference(live.version):  # observe: success and duration, or a failure
            if INPUT in request.inputs:
                features = self._features(request, runtime.info.num_features, runtime.config.max_predict_rows)
            else:  # raw columns, encoded by the store's encoder
                features = encode_tensor_columns(request.inputs, runtime.info.encoder, runtime.config.max_predict_rows)
            rows = int(features.shape[0])
            probabilities, labels = live.predict(features.tobytes(), rows)
        outputs: dict[str, np.ndarray] = {
            "probabilities": np.asarray(probabilities, dtype=np.float32).reshape(rows, runtime.info.num_classes),
            "labels": np.asarray(labels, dtype=np.int64),
        }
        wanted = [o.name for o in request.outputs]
        for out in wanted:
            if out not in outputs:
                raise TensorError(f"output {out!r} is not an output of model {self.name!r}; ask for "
                                  f"{' or '.join(OUTPUTS)}, or for none to get both")
        if wanted:
            outputs = {out: outputs[out] for out in wanted}
        params: dict[str, str | int] = {"model_version": str(live.version), "model_digest": live.digest,
                                        "ledger_seq": live.ledger_seq}
        return Answer(outputs, str(live.version), params), rows

    @staticmethod
    def _features(request: InferRequest, width: int, max_rows: int) -> np.ndarray:
        names = list(request.inputs)
        if names != [INPUT]:
            raise TensorError(f"inputs are {names}; send exactly one input {INPUT!r}, FP32 of shape [rows, {width}]")
        x = request.inputs[INPUT]
        if x.dtype != np.float32:
            raise TensorError(f"input {INPUT!r} is {x.dtype}; send FP32")
        if x.ndim != 2 or x.shape[1] != width:
            raise TensorError(f"input {INPUT!r} has shape {list(x.shape)}; send [rows, {width}]")
        if not 1 <= x.shape[0] <= max_rows:
            raise TensorError(f"input {INPUT!r} has {x.shape[0]} rows; send 1 to {max_rows} rows")
        return np.ascontiguousarray(x, dtype="<f4")
