"""What the engine reports: the plan of a forget (Engine.plan) and the forget it applied (Engine.forget).

Guarantees are the vocabulary's words (forgetd.server.vocabulary: "exact", "approximate"), the same spelling
the ledger, the batch tag and the API use; only the benchmarks' tables print them in capitals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from forgetd.server.engine.model import ModelSnapshot
from forgetd.server.store.batch_tag import BatchTag
from forgetd.server.vocabulary import APPROXIMATE, EXACT  # re-exported: the engine's modules import them here

__all__ = ["EXACT", "APPROXIMATE", "PlanEntry", "Plan", "SampleResult", "ForgetReport"]



@dataclass(frozen=True)
class PlanEntry:
    sample_id: str
    shard: int
    slice: int  # 1-based
    region: str  # "update" | "retrain"
    strategy: str  # what this sample gets: retrain | sisa | dpus | ohs
    estimated_samples_read: int  # if it were forgotten alone
    guarantee: str  # vocabulary.EXACT | vocabulary.APPROXIMATE


@dataclass(frozen=True)
class Plan:
    strategy: str  # resolved: never "auto"
    m: int
    samples: tuple[PlanEntry, ...]
    estimated_samples_read: int  # the coalesced request (one retrain per shard from its earliest start)
    guarantee: str
    # Categories this forget leaves without a training row, {"feature", "column", "category"} each: they stay
    # in the feature encoder, and the samples that held them are APPROXIMATE (engine/encoder_residue.py).
    encoder_residue: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class SampleResult:
    sample_id: str
    shard: int
    slice: int
    region: str
    strategy: str
    guarantee: str


@dataclass(frozen=True)
class ForgetReport:
    """One applied forget: the version it published and what each sample got."""

    version: int
    digest: str
    shard_digests: tuple[str, ...]
    strategy: str  # resolved
    samples: tuple[SampleResult, ...]
    guarantee: str
    residue_steps: int  # unrecorded optimizer steps that held a DPUS-forgotten sample and were not retrained
    samples_read: int
    seconds: float
    snapshot: ModelSnapshot = field(repr=False, compare=False)  # the version published, ready to serve
    tag: BatchTag | None = None  # written with the version when the forget named its requests
    encoder_residue: tuple[dict[str, Any], ...] = ()  # as Plan.encoder_residue
    # What the Newton strategies did, as forget.applied records it: {"influence": [per shard]} and/or
    # {"certified": {...}} (engine/newton.py); empty for the others.
    details: dict[str, Any] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-safe, no floats: the duration is `micros`; the tag is its manifest text."""
        return {
            "version": self.version,
            "digest": self.digest,
            "shard_digests": list(self.shard_digests),
            "strategy": self.strategy,
            "samples": [vars(s).copy() for s in self.samples],
            "guarantee": self.guarantee,
            "residue_steps": self.residue_steps,
            "samples_read": self.samples_read,
            "micros": int(round(self.seconds * 1e6)),
            "tag": None if self.tag is None else self.tag.to_json(),
            "encoder_residue": [dict(r) for r in self.encoder_residue],
        }
