"""The engine's configuration: one frozen dataclass, persisted in the store and committed in the ledger's genesis.

Defaults are the paper's (section 4.3): an MLP with two hidden layers of 128, batch 128, Adam with learning
rate 0.005, one shard. `to_json_dict()` has no floats because the ledger's canonical JSON (RFC 8785 with
integers only) rejects them: the learning rate and the linear family's reals travel as shortest decimal strings.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from forgetd.ledger import InvalidOrigin, LedgerError, parse_verifier_key, validate_origin

from forgetd.server.errors import InvalidConfig
from forgetd.server.vocabulary import AGGREGATIONS, DEFAULT_STRATEGIES, DEVICES, STRATEGIES, check_device
from forgetd.server.vocabulary import EPOCH_SCHEDULES, MLP, MODELS, PER_STEP_SCHEDULE
from forgetd.server.vocabulary import FLOAT16_INCREMENTS, FLOAT32_INCREMENTS, INCREMENT_PRECISIONS
from forgetd.server.vocabulary import INCREMENTS_CODECS, NO_INCREMENTS_CODEC, ZSTD_INCREMENTS
from forgetd.server.vocabulary import INLINE_EXECUTOR

__all__ = ["EngineConfig", "ServerConfig", "MIB", "DEFAULT_LISTEN", "LEDGER_READS", "STRATEGIES", "DEFAULT_STRATEGIES", "AGGREGATIONS", "DEVICES"]



@dataclass(frozen=True)
class EngineConfig:
    shards: int = 1  # K: constituent models, each trained on its own keyed-hash share of the data
    slices: int = 10  # S: slices per shard; step s trains on slices 1..s (cumulative)
    epochs: int = 5  # E: epochs of every step s (per-step), or of the whole training spread over the steps (sisa)
    # How the epochs fall on the steps (training.epochs_per_step): "per-step" runs E in every step, so a full
    # training reads about E * n * (S+1) / 2 samples; "sisa" spreads E as the SISA reference code does, about
    # E * n whatever S. A store's config without this field predates it and is per-step (from_json_dict).
    epoch_schedule: str = "sisa"
    batch_size: int = 128  # B: the paper's batch size
    learning_rate: float = 0.005  # Adam's step size, as in the paper
    hidden_sizes: tuple[int, ...] = (128, 128)  # the paper's MLP
    # phi: the retraining a forget may cost, in samples read (see training.threshold). None = half of a full
    # retrain of the largest shard (m = 3 when S = 10), so a fresh deployment has both regions without any tuning.
    budget: int | None = None
    seed: int = 0  # every random draw (shard key, slice order, init, batch plans) derives from it
    default_strategy: str = "hs"  # what "auto" means: hs (fastest) or ohs (more accurate)
    aggregation: str = "mean"  # how shards' predictions combine: mean of probabilities, or majority vote
    device: str = "auto"  # auto = cuda when present; digests are bitwise only on the same kind of device
    # The model family (vocabulary.MODELS): "mlp" (hidden_sizes, Adam, SISA slices) or "linear", L2-regularised
    # logistic regression trained per shard to the optimum of its perturbed objective (engine/linear.py), the
    # family CERTIFIED removal needs. hidden_sizes, epochs, batch_size and learning_rate do not apply to it.
    model: str = MLP
    epsilon: float = 1.0  # CERTIFIED: the certificate's epsilon (linear family)
    delta: float = 1e-5  # CERTIFIED: the certificate's delta, a probability below 1 (linear family)
    l2: float = 1e-5  # linear family: lambda of the objective's (lambda n / 2)||W||^2 term
    sigma: float = 1.0  # linear family: standard deviation of the objective's Gaussian perturbation b
    # The stored precision of the recorded increments (vocabulary.INCREMENT_PRECISIONS): "float16" halves the
    # largest files of the store (on Adult, 100 DPUS forgets then leave the accuracy unchanged and the model
    # 7e-5 of DPUS's own move away from float32's), "float32" keeps each step's delta exactly, "int8" quarters
    # them but ends 8e-3 of that move away (116x float16's), so float16 stays the default. A store's config
    # without this field predates it and is float32 (from_json_dict).
    increments: str = FLOAT16_INCREMENTS
    # How the increments files are encoded (vocabulary.INCREMENTS_CODECS): "zstd", one zstd frame per row
    # (engine/increments_codec.py), keeps about 0.63 of float16's bytes, 0.49 of int8's and 0.57 of float32's on
    # Purchase-shaped data, decoded to the same bits, so DPUS and the digests do not depend on it; "none" keeps
    # .npy files. A store's config without this field predates it and is "none" (from_json_dict).
    increments_codec: str = ZSTD_INCREMENTS

    def __post_init__(self) -> None:
        self._check_linear()
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        for name in ("shards", "slices", "epochs", "batch_size", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidConfig(f"{name} is {value!r}; give a whole number")
        if self.shards < 1:
            raise InvalidConfig(f"shards is {self.shards}; use at least 1 (the paper uses 1)")
        if self.slices < 1:
            raise InvalidConfig(f"slices is {self.slices}; use at least 1 (10 is a good start)")
        if self.epochs < 1:
            raise InvalidConfig(f"epochs is {self.epochs}; use at least 1")
        if self.batch_size < 1:
            raise InvalidConfig(f"batch_size is {self.batch_size}; use at least 1 (the paper uses 128)")
        if not 0 <= self.seed < 2**63:
            raise InvalidConfig(f"seed is {self.seed}; choose 0 <= seed < 2**63")
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < float(lr) < 1e3:
            raise InvalidConfig(f"learning_rate is {lr!r}; give a positive number such as 0.005")
        object.__setattr__(self, "learning_rate", float(lr))
        if not self.hidden_sizes or any(
            not isinstance(h, int) or isinstance(h, bool) or h < 1 for h in self.hidden_sizes
        ):
            raise InvalidConfig(f"hidden_sizes is {self.hidden_sizes!r}; give one or more positive widths, e.g. (128, 128)")
        if self.budget is not None and (
            not isinstance(self.budget, int) or isinstance(self.budget, bool) or self.budget < 0
        ):
            raise InvalidConfig(f"budget is {self.budget!r}; give the samples a forget may read (>= 0), or None")
        if self.default_strategy not in DEFAULT_STRATEGIES:
            raise InvalidConfig(
                f"default_strategy is {self.default_strategy!r}; choose one of {', '.join(DEFAULT_STRATEGIES)}"
            )
        if self.epoch_schedule not in EPOCH_SCHEDULES:
            raise InvalidConfig(f"epoch_schedule is {self.epoch_schedule!r}; choose one of {', '.join(EPOCH_SCHEDULES)}")
        if self.aggregation not in AGGREGATIONS:
            raise InvalidConfig(f"aggregation is {self.aggregation!r}; choose one of {', '.join(AGGREGATIONS)}")
        check_device(self.device)
        if self.increments not in INCREMENT_PRECISIONS:
            raise InvalidConfig(f"increments is {self.increments!r}; choose one of {', '.join(INCREMENT_PRECISIONS)}")
        if self.increments_codec not in INCREMENTS_CODECS:
            raise InvalidConfig(f"increments_codec is {self.increments_codec!r}; choose one of "
                                f"{', '.join(INCREMENTS_CODECS)}")

    def _check_linear(self) -> None:
        if self.model not in MODELS:
            raise InvalidConfig(f"model is {self.model!r}; choose one of {', '.join(MODELS)}")
        for name, low in (("epsilon", "a positive number such as 1"), ("delta", "a probability in (0, 1) such as 1e-5"),
                          ("l2", "a positive number such as 1e-5"), ("sigma", "0 (no perturbation) or more, e.g. 1")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidConfig(f"{name} is {value!r}; give {low}")
            object.__setattr__(self, name, float(value))
            if value < 0 or (value == 0 and name != "sigma") or (name == "delta" and value >= 1):
                raise InvalidConfig(f"{name} is {value!r}; give {low}")

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-safe dict with no floats: each real number becomes its shortest decimal string."""
        out = asdict(self)
        for name in _REALS:
            out[name] = repr(getattr(self, name))
        out["hidden_sizes"] = list(self.hidden_sizes)
        return out

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> EngineConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidConfig(f"unknown config key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
        values = dict(data)
        values.setdefault("epoch_schedule", PER_STEP_SCHEDULE)  # stores from before the field: E in every step
        values.setdefault("increments", FLOAT32_INCREMENTS)  # stores from before the field: float32 increments
        values.setdefault("increments_codec", NO_INCREMENTS_CODEC)  # stores from before the field: .npy files
        for name in _REALS:
            if name in values:
                try:
                    values[name] = float(values[name])
                except (TypeError, ValueError):
                    raise InvalidConfig(f"{name} is {data[name]!r}; give a decimal such as \"0.005\"") from None
        if "hidden_sizes" in values:
            values["hidden_sizes"] = tuple(values["hidden_sizes"])
        return cls(**values)


_REALS = ("learning_rate", "epsilon", "delta", "l2", "sigma")  # travel as decimal strings (no floats in the ledger)

MIB = 1024 * 1024
LEDGER_READS = ("open", "token")  # ServerConfig.ledger_reads
DEFAULT_LISTEN = "127.0.0.1:50051"


@dataclass(frozen=True)
class ServerConfig:
    store: Path  # a trained store (`forgetd train`); the ledger and the head key live inside it
    listen: str = DEFAULT_LISTEN  # HOST:PORT; port 0 picks a free port (create_server returns it)
    # HOST:PORT of the HTTP front (OIP REST, unlearning, ledger, metrics, dashboard); None = no HTTP port
    http_listen: str | None = None
    device: str = "auto"  # auto = cuda when present; the live parameters stay on this device
    token: str | None = None  # bearer token required for Forget; None = no auth (local use only)
    tls_cert: Path | None = None  # PEM server certificate chain; with tls_key, the port speaks TLS only
    tls_key: Path | None = None  # PEM private key of tls_cert
    tls_client_ca: Path | None = None  # PEM CA bundle; set = mTLS, clients must present a certificate it signed
    max_forget_ids: int = 10_000  # sample ids one Forget may name
    max_predict_rows: int = 65_536  # rows one Predict may carry
    max_message_bytes: int = 64 * MIB  # gRPC message limit both ways (gRPC's default is 4 MiB)
    max_batch_requests: int = 256  # Forget requests the worker coalesces into one engine call
    grace_seconds: float = 30.0  # on shutdown, how long calls in flight (a waited Forget) may take to finish
    threads: int = 16  # gRPC handler threads; a waited Forget holds one until applied
    # The unlearning SLA (server/observe/sla.py): the target mean time, in seconds, from acknowledging a Forget
    # to serving the model without it, over the last `sla_window` applied batches; None = no target (the mean
    # is still measured and exported).
    sla_seconds: float | None = None
    sla_window: int = 20
    # How long a failing forget batch is retried (backoff from 0.1 s, doubling up to 30 s) before forgetting
    # counts as halted: health says the Unlearning service is NOT_SERVING and Forget answers UNAVAILABLE with
    # the reason until a retry succeeds (the retries go on).
    apply_retry_seconds: float = 60.0
    # Who may read the ledger (ReadLedger, GetLedgerHead, GetForgetRequest): "open" (anyone, the auditor's
    # case: entries hold subject refs and request ids, never sample ids) or "token" (the bearer token's holder).
    ledger_reads: str = "open"
    # The origin line of the ledger's C2SP checkpoints (c2sp.org/tlog-checkpoint), e.g. "example.com/forgetd".
    # Committed in genesis when a new store is first served; a ledger keeps the origin it committed (one
    # without it uses the default). None = default_origin(head public key), i.e. forgetd/<key id>.
    checkpoint_origin: str | None = None
    # c2sp.org/tlog-witness witnesses asked to cosign every new head, each (submission URL, verifier key),
    # the key as `forgetd witness` prints it. Empty: nothing is sent anywhere and no forget is "published".
    witnesses: tuple[tuple[str, str], ...] = ()
    # Witnesses that must cosign a head before the forgets in it count as published; None = every witness.
    witness_quorum: int | None = None

    # The gold standard (runtime/gold.py): after every `gold_every` applied Forget requests, retrain from scratch
    # on a low-priority thread and compare with the live model; out of `gold_epsilon` test-accuracy points (either
    # way) it raises the alarm. None = no checks.
    gold_every: int | None = None
    gold_epsilon: float = 0.5
    # Where a forget's per-shard work runs (server/executors, vocabulary.EXECUTORS): inline, a local process pool
    # of `executor_workers` (None: one per core), or Ray tasks (a local Ray of that many CPUs, or the cluster at
    # `ray_address`). Not recorded in the store: the digests are the same under each.
    executor: str = INLINE_EXECUTOR
    executor_workers: int | None = None
    ray_address: str | None = None
    # Out of tolerance, retrain every shard from scratch on the live rows and publish it as the next version (a
    # `model.retrained` ledger entry naming the check; runtime/retrain_event.py). Needs gold_every.
    gold_retrain: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "store", Path(self.store))
        self._check_gold()
        for name in ("tls_cert", "tls_key", "tls_client_ca"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        for what, address, example in (("listen", self.listen, "127.0.0.1:50051"),
                                       ("http listen", self.http_listen, "127.0.0.1:8080")):
            host, sep, port = (address or "").rpartition(":")
            if address is not None and (not sep or not host or not port.isdigit() or int(port) > 65535):
                raise InvalidConfig(f"{what} address {address!r} is not HOST:PORT; use e.g. {example} "
                                    "(port 0 picks a free one)")
        check_device(self.device)
        if self.token is not None and (not self.token or not self.token.isprintable()
                                       or any(c.isspace() for c in self.token)):
            raise InvalidConfig("the token is empty or has whitespace or control characters; put one printable "
                                "word in the token file")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidConfig("TLS needs both --tls-cert and --tls-key; give both or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise InvalidConfig("--tls-client-ca (mTLS) needs TLS: give --tls-cert and --tls-key too")
        for name in ("max_forget_ids", "max_predict_rows", "max_batch_requests", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidConfig(f"{name} is {value!r}; give a whole number of at least 1")
        if not isinstance(self.max_message_bytes, int) or self.max_message_bytes < 4 * MIB:
            raise InvalidConfig(f"max_message_bytes is {self.max_message_bytes!r}; give at least {4 * MIB} "
                                "(gRPC's own default, 4 MiB)")
        if not self.grace_seconds >= 0:
            raise InvalidConfig(f"grace_seconds is {self.grace_seconds!r}; give 0 or more seconds")
        if self.sla_seconds is not None and not (isinstance(self.sla_seconds, (int, float)) and self.sla_seconds > 0):
            raise InvalidConfig(f"sla_seconds is {self.sla_seconds!r}; give a positive number of seconds, or none")
        if not isinstance(self.sla_window, int) or isinstance(self.sla_window, bool) or self.sla_window < 1:
            raise InvalidConfig(f"sla_window is {self.sla_window!r}; give a whole number of batches, at least 1")
        if not (isinstance(self.apply_retry_seconds, (int, float)) and self.apply_retry_seconds >= 0):
            raise InvalidConfig(f"apply_retry_seconds is {self.apply_retry_seconds!r}; give 0 or more seconds")
        if self.ledger_reads not in LEDGER_READS:
            raise InvalidConfig(f"ledger reads {self.ledger_reads!r}: choose one of {', '.join(LEDGER_READS)}")
        if self.ledger_reads == "token" and self.token is None:
            raise InvalidConfig("--ledger-reads token needs a bearer token: give --token-file too")
        self._check_transparency()

    def _check_transparency(self) -> None:
        if self.checkpoint_origin is not None:
            try:
                validate_origin(self.checkpoint_origin)
            except InvalidOrigin as exc:
                raise InvalidConfig(f"checkpoint origin: {exc}") from None
        object.__setattr__(self, "witnesses", tuple((str(u), str(k)) for u, k in self.witnesses))
        for url, vkey in self.witnesses:
            if not url.startswith(("http://", "https://")) or len(url) <= len("https://"):
                raise InvalidConfig(f"witness URL {url!r} is not http:// or https://; give its submission prefix, "
                                    "e.g. http://127.0.0.1:7380 (POST <URL>/add-checkpoint)")
            try:
                parse_verifier_key(vkey)
            except LedgerError as exc:
                raise InvalidConfig(f"witness {url}: {exc}; give the verifier key `forgetd witness` prints") from None
        urls, keys = [u.rstrip("/") for u, _ in self.witnesses], [k for _, k in self.witnesses]
        for what, items in (("URL", urls), ("key", keys)):
            if len(set(items)) != len(items):
                raise InvalidConfig(f"two witnesses share a {what}; name each witness once")
        quorum = self.witness_quorum
        if quorum is not None and (not isinstance(quorum, int) or isinstance(quorum, bool)
                                   or not 1 <= quorum <= len(self.witnesses)):
            raise InvalidConfig(f"witness_quorum is {quorum!r}; give 1 to the number of witnesses "
                                f"({len(self.witnesses)})" if self.witnesses else
                                "a witness quorum needs witnesses: give --witness URL=VERIFIERKEY too")

    def _check_gold(self) -> None:
        every, eps = self.gold_every, self.gold_epsilon
        if every is not None and (not isinstance(every, int) or isinstance(every, bool) or every < 1):
            raise InvalidConfig(f"gold_every is {every!r}; give a whole number of applied forgets, at least 1, or none")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (math.isfinite(eps) and eps >= 0):
            raise InvalidConfig(f"gold_epsilon is {eps!r}; give the accuracy points allowed, 0 or more (0.5 by default)")
        if self.gold_retrain and every is None:
            raise InvalidConfig("gold_retrain retrains when a gold-standard check fails, and no check runs without "
                                "gold_every: give --gold-every N too, or drop --gold-retrain")

    @property
    def quorum(self) -> int:
        """Cosignatures a head needs to count as published (every witness unless witness_quorum says)."""
        return len(self.witnesses) if self.witness_quorum is None else self.witness_quorum

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None
