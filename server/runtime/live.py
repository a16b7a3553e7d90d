"""What Predict and GetModel read: the live model, swapped whole after each forget.applied, and the facts
about the model that do not change while the daemon runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from forgetd.server.config import EngineConfig
from forgetd.server.data.encoder import FeatureEncoder
from forgetd.server.runtime.events import ModelState
from forgetd.server.runtime.predictor import Predict

if TYPE_CHECKING:
    from forgetd.server.engine.model import ModelSnapshot

__all__ = ["LiveModel", "ModelFacts"]


@dataclass(frozen=True)
class LiveModel:
    """One published version, ready to answer. A Predict reads the reference once and keeps it."""

    snapshot: ModelSnapshot  # the engine's immutable parameters of this version
    predict: Predict  # answers Predict for this version (see predictor.py)
    version: int
    digest: str
    shard_digests: tuple[str, ...]
    ledger_seq: int  # the entry that published this version (genesis for version 0)
    forgotten_count: int

    @classmethod
    def of(cls, snapshot: ModelSnapshot, predict: Predict, model: ModelState, ledger_seq: int,
           forgotten_count: int) -> LiveModel:
        """`snapshot` as the version the ledger states in `model` (prepare `predict` with predictor_for)."""
        return cls(snapshot, predict, model.version, model.digest, model.shard_digests, ledger_seq, forgotten_count)


@dataclass(frozen=True)
class ModelFacts:
    """What does not change while the daemon runs (GetModel's fixed fields)."""

    config: EngineConfig
    budget_samples: int
    threshold_m: int
    training_accuracy: float  # on the training split, measured at training time
    test_accuracy: float  # on the held-out test split, measured at training time (0 without one)
    num_features: int
    num_classes: int
    device: str
    head_public_key: str  # hex
    checkpoint_origin: str  # the origin line of the ledger's checkpoints (committed in genesis)
    verifier_key: str  # the signed-note verifier key of the head key under that origin
    encoder: FeatureEncoder  # the input schema: raw records -> features, as the model was trained
