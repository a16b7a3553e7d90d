"""The server's vocabulary, each word defined once: strategies, guarantees, aggregations and devices.

Every other module imports these names; none spells a strategy list, a guarantee or a device rule of its own.
The wire forms (the proto enums) are mapped onto these in server/api, and the ledger records these spellings.
"""

from __future__ import annotations

from collections.abc import Iterable

from forgetd.server.errors import InvalidConfig, UnsupportedStrategy

__all__ = ["STRATEGIES", "CONCRETE_STRATEGIES", "DEFAULT_STRATEGIES", "AUTO", "RETRAIN", "SISA", "DPUS", "HS", "OHS",
           "EXACT", "APPROXIMATE", "GUARANTEES", "UPDATE_REGION", "RETRAIN_REGION", "REGIONS", "AGGREGATIONS",
           "DEVICES", "check_device", "resolve_device", "PER_STEP_SCHEDULE", "SISA_SCHEDULE", "EPOCH_SCHEDULES",
           "INFLUENCE", "CERTIFIED", "CERTIFIED_GUARANTEE", "MLP", "LINEAR", "MODELS", "supported_strategies",
           "check_supported", "weakest_guarantee", "FLOAT32_INCREMENTS", "FLOAT16_INCREMENTS", "INT8_INCREMENTS",
           "INCREMENT_PRECISIONS", "INLINE_EXECUTOR", "PROCESS_EXECUTOR", "RAY_EXECUTOR", "EXECUTORS"]

AUTO, RETRAIN, SISA, DPUS, HS, OHS = "auto", "retrain", "sisa", "dpus", "hs", "ohs"
# One damped Newton step on the live parameters (Koh and Liang's influence functions), and the certified
# Newton step of the linear family (Guo et al.): docs/unlearning.md sections 5.9 and 5.10.
INFLUENCE, CERTIFIED = "influence", "certified"
STRATEGIES = (AUTO, RETRAIN, SISA, DPUS, HS, OHS, INFLUENCE, CERTIFIED)  # what a request may name
CONCRETE_STRATEGIES = (RETRAIN, SISA, DPUS, HS, OHS, INFLUENCE, CERTIFIED)  # what a batch is applied with: never "auto"
DEFAULT_STRATEGIES = (HS, OHS)  # what "auto" may stand for (EngineConfig.default_strategy)

EXACT = "exact"  # the model is what retraining without the samples would give, bit for bit on the same device
# (epsilon, delta)-certified removal: the model is indistinguishable, up to epsilon and delta, from one
# retrained without the samples (the linear family's CERTIFIED strategy, docs/unlearning.md 5.10).
CERTIFIED_GUARANTEE = "certified"
APPROXIMATE = "approximate"  # the samples' recorded updates were subtracted; traces may remain (docs/unlearning.md)
GUARANTEES = (EXACT, APPROXIMATE, CERTIFIED_GUARANTEE)
_STRENGTH = {EXACT: 2, CERTIFIED_GUARANTEE: 1, APPROXIMATE: 0}  # a batch promises what its weakest sample gets

# The model families a store can train (EngineConfig.model): the paper's MLP, trained SISA-style with Adam,
# and L2-regularised logistic regression trained to its perturbed optimum (docs/unlearning.md 2.8).
MLP, LINEAR = "mlp", "linear"
MODELS = (MLP, LINEAR)

# Where a sample's slice lies: slices 1..S-m are the update region (increments recorded, DPUS can subtract
# them), S-m+1..S the retrain region (docs/unlearning.md, the threshold m).
UPDATE_REGION, RETRAIN_REGION = "update", "retrain"
REGIONS = (UPDATE_REGION, RETRAIN_REGION)

# How training spreads its epochs over the steps (docs/unlearning.md 2.3): E epochs in every step, or the
# SISA reference code's split of E over the steps. Stores trained before the choice existed are per-step.
PER_STEP_SCHEDULE, SISA_SCHEDULE = "per-step", "sisa"
EPOCH_SCHEDULES = (SISA_SCHEDULE, PER_STEP_SCHEDULE)

# The precision the recorded increments are stored in (EngineConfig.increments, docs/unlearning.md 2.4): each
# optimizer step's float32 delta as is, rounded to nearest-even float16 (half the bytes), or quantised to int8
# levels of one float32 scale per step (a quarter). DPUS subtracts the stored values, whichever they are.
# Stores trained before the choice existed are float32.
FLOAT32_INCREMENTS, FLOAT16_INCREMENTS, INT8_INCREMENTS = "float32", "float16", "int8"
INCREMENT_PRECISIONS = (FLOAT32_INCREMENTS, FLOAT16_INCREMENTS, INT8_INCREMENTS)

# How the increments files are encoded (EngineConfig.increments_codec, docs/unlearning.md 2.4): as .npy arrays,
# or one zstd frame per row (engine/increments_codec.py), decoded to the same bytes. Stores trained before the
# choice existed are "none".
NO_INCREMENTS_CODEC, ZSTD_INCREMENTS = "none", "zstd"
INCREMENTS_CODECS = (NO_INCREMENTS_CODEC, ZSTD_INCREMENTS)

AGGREGATIONS = ("mean", "vote")  # how shard outputs combine: mean of probabilities, or majority of labels

DEVICES = ("auto", "cpu", "cuda")  # plus "cuda:N"; auto = the first CUDA device when torch sees one

# Where the per-shard work of training and forgetting runs (server/executors): in the daemon's own thread one
# shard after another, in a local pool of spawned processes, or as Ray tasks. A runtime choice: the store does
# not record it, and the digests are the same under each.
INLINE_EXECUTOR, PROCESS_EXECUTOR, RAY_EXECUTOR = "inline", "process", "ray"
EXECUTORS = (INLINE_EXECUTOR, PROCESS_EXECUTOR, RAY_EXECUTOR)


def supported_strategies(model: str) -> tuple[str, ...]:
    """The strategies a store of this model family accepts, "auto" included. CERTIFIED needs the linear
    family's convex objective; the linear family records no per-batch increments (it trains by Newton's
    method), so DPUS has nothing to subtract there."""
    if model == LINEAR:
        return tuple(s for s in STRATEGIES if s != DPUS)
    return tuple(s for s in STRATEGIES if s != CERTIFIED)


def check_supported(strategy: str, model: str) -> None:
    """UnsupportedStrategy, saying what to do instead, unless a `model` store can apply `strategy`."""
    if strategy in supported_strategies(model):
        return
    if strategy == CERTIFIED:
        raise UnsupportedStrategy("certified removal needs the linear model family, whose objective is convex; this "
                                  "store trains an MLP: train one with `forgetd train --model linear`, or ask for "
                                  "influence, sisa or retrain")
    raise UnsupportedStrategy(f"{strategy} is not available for the {model} model family (it trains by Newton's "
                              "method and records no increments to subtract); use one of "
                              + ", ".join(supported_strategies(model)))


def weakest_guarantee(guarantees: Iterable[str]) -> str:
    """What a batch guarantees: the weakest of its samples' guarantees (exact > certified > approximate);
    exact for a batch with no sample."""
    return min(guarantees, key=_STRENGTH.__getitem__, default=EXACT)


def check_device(device: str) -> str:
    """The device name if it is one forgetd accepts (auto, cpu, cuda, cuda:N); InvalidConfig says how to fix it."""
    if device in DEVICES or (device.startswith("cuda:") and device[5:].isdigit()):
        return device
    raise InvalidConfig(f"device is {device!r}; choose auto, cpu, cuda or cuda:N")


def resolve_device(device: str) -> str:
    """The concrete torch device a name stands for: auto picks cuda:0 when present, else cpu."""
    import torch  # only the engine and the daemon resolve; the vocabulary itself must import without torch

    check_device(device)
    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InvalidConfig(f"device {device!r} asked for, but torch sees no CUDA device; use --device cpu")
        return "cuda:0" if device == "cuda" else device
    return device
