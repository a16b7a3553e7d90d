"""The server's vocabulary, each word defined once: strategies, guarantees, aggregations and devices.

Every other module imports these names; none spells a strategy list, a guarantee or a device rule of its own.
The wire forms (the proto enums) are mapped onto these in server/api, and the ledger records these spellings.
"""

from __future__ import annotations

from forgetd.server.errors import InvalidConfig

__all__ = ["STRATEGIES", "CONCRETE_STRATEGIES", "DEFAULT_STRATEGIES", "AUTO", "RETRAIN", "SISA", "DPUS", "HS", "OHS",
           "EXACT", "APPROXIMATE", "GUARANTEES", "UPDATE_REGION", "RETRAIN_REGION", "REGIONS", "AGGREGATIONS",
           "DEVICES", "check_device", "resolve_device"]

AUTO, RETRAIN, SISA, DPUS, HS, OHS = "auto", "retrain", "sisa", "dpus", "hs", "ohs"
STRATEGIES = (AUTO, RETRAIN, SISA, DPUS, HS, OHS)  # what a request may name
CONCRETE_STRATEGIES = (RETRAIN, SISA, DPUS, HS, OHS)  # what a batch is applied with: never "auto"
DEFAULT_STRATEGIES = (HS, OHS)  # what "auto" may stand for (EngineConfig.default_strategy)

EXACT = "exact"  # the model is what retraining without the samples would give, bit for bit on the same device
APPROXIMATE = "approximate"  # the samples' recorded updates were subtracted; traces may remain (docs/unlearning.md)
GUARANTEES = (EXACT, APPROXIMATE)

# Where a sample's slice lies: slices 1..S-m are the update region (increments recorded, DPUS can subtract
# them), S-m+1..S the retrain region (docs/unlearning.md, the threshold m).
UPDATE_REGION, RETRAIN_REGION = "update", "retrain"
REGIONS = (UPDATE_REGION, RETRAIN_REGION)

AGGREGATIONS = ("mean", "vote")  # how shard outputs combine: mean of probabilities, or majority of labels

DEVICES = ("auto", "cpu", "cuda")  # plus "cuda:N"; auto = the first CUDA device when torch sees one


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
