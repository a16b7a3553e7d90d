"""The daemon's Prometheus metrics: what they are, and the calls the runtime and the fronts make to record them.

One `Metrics` per runtime, each with its own CollectorRegistry (never prometheus_client's global one), so
several daemons in one process (the tests) keep their figures apart. Names follow Triton's nv_inference_*
with the forgetd_ prefix; every duration is in seconds, as Prometheus asks.

Cost on the Predict path: one dict lookup for the version's series, then a counter increment and a
histogram observation (prometheus_client's own per-value locks; none of ours). A scrape only reads: the
gauges that mirror runtime state (queue depth, ledger size, live version) are functions that read one
attribute each. The series of a model version are dropped two versions later (every forget publishes a
version, so keeping them all would grow without bound); their counts move into the dashboard's totals.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

from forgetd.server.observe.sla import SlaState, SlaWatch
from forgetd.server.vocabulary import OHS, RETRAIN, SISA

__all__ = ["MODEL", "RETRAINING", "Metrics", "InferenceTimer"]

log = logging.getLogger("forgetd.server")

# The per-sample strategies that retrain the sample's shard from a checkpoint; dpus subtracts recorded updates
# and influence and certified take a Newton step, so a shard only they changed was not retrained.
RETRAINING = frozenset({RETRAIN, SISA, OHS})

MODEL = "forgetd"  # the model label: a daemon serves one model (the Open Inference Protocol front's name for it)

# Predict on this model takes tens of microseconds to milliseconds; a forget, milliseconds to minutes.
INFERENCE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
UNLEARNING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


@dataclass(frozen=True)
class _Series:
    """One model version's inference series (labelled children, looked up once per version)."""

    success: Any
    failure: Any
    duration: Any


class InferenceTimer:
    """`with metrics.inference(version):` around answering one inference request: success and its duration,
    or a failure when the block raises (the exception still propagates)."""

    __slots__ = ("_series", "_started")

    def __init__(self, series: _Series) -> None:
        self._series = series
        self._started = 0.0

    def __enter__(self) -> InferenceTimer:
        self._started = time.perf_counter()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self._series.success.inc()
            self._series.duration.observe(time.perf_counter() - self._started)
        else:
            self._series.failure.inc()


class _LedgerCommits:
    """Group commit (runtime/group_commit.py): entries / commits is how many Forgets one fsync acknowledged."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.commits = Counter("forgetd_ledger_commits", "Ledger commits (one transaction, one fsync each) that "
                               "made admitted Forget requests durable", registry=registry)
        self.entries = Counter("forgetd_ledger_committed_entries", "forget.requested entries those commits made "
                               "durable", registry=registry)

    def record(self, entries: int) -> None:
        self.commits.inc()
        self.entries.inc(entries)


class Metrics:
    """The metrics of one daemon and the calls that record them (module docstring)."""

    def __init__(self, sla_seconds: float | None = None, sla_window: int = 20) -> None:
        self.registry = r = CollectorRegistry()
        version = ("model", "version")
        self.inference_success = Counter("forgetd_inference_request_success", "Inference requests answered, by "
                                         "the model version that answered", version, registry=r)
        self.inference_failure = Counter("forgetd_inference_request_failure", "Inference requests refused or "
                                         "failed (bad input included) while a version was live", version, registry=r)
        self.inference_duration = Histogram("forgetd_inference_request_duration_seconds", "Time to answer a "
                                            "successful inference request inside the server (validation, the "
                                            "forward, the answer), seconds", version, registry=r,
                                            buckets=INFERENCE_BUCKETS)
        self.unlearning_duration = Histogram("forgetd_unlearning_duration_seconds", "Engine time of one applied "
                                             "forget batch, by the strategy it resolved to, seconds", ("strategy",),
                                             registry=r, buckets=UNLEARNING_BUCKETS)
        self.unlearning_completion = Histogram("forgetd_unlearning_completion_seconds", "Time from acknowledging "
                                               "the oldest request of a batch to serving the version without its "
                                               "samples (queueing included), seconds", ("strategy",), registry=r,
                                               buckets=UNLEARNING_BUCKETS)
        self.shard_retrain = Histogram("forgetd_shard_retrain_seconds", "Engine time of forget batches that "
                                       "retrained this shard (the engine times a batch as a whole: a batch that "
                                       "retrained several shards counts for each), seconds", ("shard",),
                                       registry=r, buckets=UNLEARNING_BUCKETS)
        self.samples_read = Counter("forgetd_unlearning_samples_read", "Training samples read by retraining, "
                                    "by resolved strategy", ("strategy",), registry=r)
        self.samples_forgotten = Counter("forgetd_unlearning_samples_forgotten", "Samples forgotten, by what each "
                                         "got (strategy) and its guarantee", ("strategy", "guarantee"), registry=r)
        self.acknowledged = Counter("forgetd_unlearning_requests_acknowledged", "Forget requests made durable "
                                    "and acknowledged (repeats of a request id not counted)", registry=r)
        self._commits = _LedgerCommits(r)
        self.applied = Counter("forgetd_unlearning_requests_applied", "Forget requests applied and live",
                               registry=r)
        self._gauges = {
            "queue": Gauge("forgetd_unlearning_queue_depth", "Forget requests acknowledged, not yet applied",
                           registry=r),
            "halted": Gauge("forgetd_unlearning_halted", "1 while forgetting is halted (a batch kept failing past "
                            "the retry window, or needs a restart: GetModel says which; acknowledged requests "
                            "stay durable), else 0", registry=r),
            "version": Gauge("forgetd_model_version", "The live model version", registry=r),
            "forgotten": Gauge("forgetd_model_forgotten_samples", "Training samples the live version has forgotten",
                               registry=r),
            "ledger": Gauge("forgetd_ledger_entries", "Entries in the ledger (its head's size)", registry=r),
            "published": Gauge("forgetd_ledger_published_entries", "Entries in the newest head the witness quorum "
                               "cosigned (0 without witnesses)", registry=r),
        }
        self._sla_target = Gauge("forgetd_sla_target_seconds", "The unlearning SLA's target mean completion time "
                                 "(forgetd serve --sla-seconds), seconds; 0 when none is set", registry=r)
        self._sla_mean = Gauge("forgetd_sla_mean_seconds", "Mean completion time of the last forgetd_sla_window "
                               "applied batches, seconds", registry=r)
        Gauge("forgetd_sla_window", "Applied batches the SLA mean is taken over (--sla-window)",
              registry=r).set(sla_window)
        self._sla_breached = Gauge("forgetd_sla_breached", "1 while the SLA mean is above its target, else 0",
                                   registry=r)
        self._sla_target.set(sla_seconds or 0.0)
        self._sla = SlaWatch(sla_seconds, sla_window)
        self._series: dict[int, _Series] = {}
        self._retired = [0.0, 0.0]  # success and failure counts of dropped versions' series
        self._lock = threading.Lock()  # only when a version is first seen, never per request

    # -- the fronts -----------------------------------------------------------------------------------------

    def inference(self, version: int) -> InferenceTimer:
        """Times one inference request answered by `version` (use it as a context manager)."""
        series = self._series.get(version)
        if series is None:
            series = self._open(version)
        return InferenceTimer(series)

    def _open(self, version: int) -> _Series:
        with self._lock:
            if version not in self._series:
                labels = (MODEL, str(version))
                self._series[version] = _Series(self.inference_success.labels(*labels),
                                                self.inference_failure.labels(*labels),
                                                self.inference_duration.labels(*labels))
                for old in [v for v in self._series if v < version - 1]:
                    self._retire(old)
            return self._series[version]

    def _retire(self, version: int) -> None:
        labels = (MODEL, str(version))
        success, failure = self._totals_of(str(version))
        self._retired[0] += success
        self._retired[1] += failure
        for metric in (self.inference_success, self.inference_failure, self.inference_duration):
            metric.remove(*labels)
        del self._series[version]

    def _totals_of(self, version: str | None) -> tuple[float, float]:
        out = []
        for metric in (self.inference_success, self.inference_failure):
            out.append(math.fsum(s.value for family in metric.collect() for s in family.samples
                                 if s.name.endswith("_total") and version in (None, s.labels.get("version"))))
        return out[0], out[1]

    def inference_totals(self) -> tuple[float, float]:
        """Inference requests answered and failed since the daemon started, all versions (for the dashboard)."""
        with self._lock:
            success, failure = self._totals_of(None)
            return self._retired[0] + success, self._retired[1] + failure

    # -- the runtime ----------------------------------------------------------------------------------------

    def watch(self, **readers: Callable[[], float]) -> None:
        """Binds the gauges that mirror runtime state to functions read at scrape time: queue, halted,
        version, forgotten, ledger (each reads one attribute; no work is done at scrape time)."""
        for name, read in readers.items():
            self._gauges[name].set_function(read)

    def request_acknowledged(self) -> None:
        self.acknowledged.inc()

    def ledger_commit(self, entries: int) -> None:
        """One group commit of `entries` admitted Forgets became durable."""
        self._commits.record(entries)

    def batch_applied(self, applied: Mapping[str, Any], requests: int, completion_seconds: float) -> None:
        """Records one applied batch from its forget.applied payload (server/runtime/events.py's schema). Never
        raises: the batch is already durable and live, and a figure must not halt the worker."""
        try:
            self._batch_applied(applied, requests, completion_seconds)
        except Exception:  # noqa: BLE001 - logged with its stack; the next batch records normally
            log.exception("recording the metrics of an applied forget batch failed")

    def _batch_applied(self, applied: Mapping[str, Any], requests: int, completion_seconds: float) -> None:
        strategy = applied["resolved_strategy"]
        subjects = applied["subjects"]
        self.applied.inc(requests)
        if subjects:  # a batch that found nothing left to forget did no engine work
            seconds = applied["timings"]["apply_micros"] / 1e6
            self.unlearning_duration.labels(strategy).observe(seconds)
            self.samples_read.labels(strategy).inc(applied["samples_read"])
            for (got, guarantee), n in Tally((s["strategy"], s["guarantee"]) for s in subjects).items():
                self.samples_forgotten.labels(got, guarantee).inc(n)
            for shard in sorted({s["shard"] for s in subjects if s["strategy"] in RETRAINING}):
                self.shard_retrain.labels(str(shard)).observe(seconds)
        self.unlearning_completion.labels(strategy).observe(completion_seconds)
        state = self._sla.record(completion_seconds)
        self._sla_mean.set(state.mean_seconds)
        self._sla_breached.set(1 if state.breached else 0)

    @property
    def sla(self) -> SlaState:
        return self._sla.state

    # -- the scrape -----------------------------------------------------------------------------------------

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """One sample's value by its exposition name (e.g. forgetd_unlearning_queue_depth), 0.0 if absent."""
        found = self.registry.get_sample_value(name, dict(labels or {}))
        return 0.0 if found is None else float(found)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The registry in the format the scraper's Accept header asks for (OpenMetrics or Prometheus text;
        the plain 0.0.4 text, which every Prometheus reads, when it names neither), and its content type."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type
