"""The batch tag: which Forget requests made the store's live version, written in the manifest beside it.

Why it exists: the daemon appends `forget.applied` to the ledger only after the engine has published the
version, so a daemon that dies between the two leaves a store one version ahead of its ledger. The engine
writes this tag in the same rename that publishes the version (Manifest.tag), and restart recovery writes the
missing `forget.applied` from it (flagged `recovered`) instead of applying the batch twice.

Its text is part of the store format: `to_json` gives exactly the bytes forgetd has always written,
`json.dumps` with sorted keys of

    {"format": "forgetd.batch.v1",
     "request_ids": ["<id>", ...],          # the batch's requests, in ledger order
     "strategy": "<as asked>", "resolved_strategy": "<never auto>",
     "subjects": [{"subject_ref": "<hex>", "shard": int, "slice": int, "region": "update"|"retrain",
                   "strategy": "<what the sample got>", "guarantee": "exact"|"approximate"}, ...],
     "residue_steps": 0,                    # the plan the tag is made from knows no residue
     "samples_read": int,                   # that plan's estimate, not the count the forget measured
     "device": "cpu"|"cuda:0"|...,          # where the engine ran the batch
     "encoder_residue": [{"feature": int, "column": str, "category": str}, ...]}
                                            # categories left without a training row; only when any

It names samples by subject ref only: the store keeps the tag, and no store file holds a sample id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from forgetd.server.errors import StoreError

__all__ = ["TAG_FORMAT", "BatchTag", "TaggedSubject"]

TAG_FORMAT = "forgetd.batch.v1"


@dataclass(frozen=True)
class TaggedSubject:
    """One sample the batch removed, as its forget.applied entry names it."""

    subject_ref: str
    shard: int
    slice: int  # 1-based
    region: str  # update | retrain
    strategy: str  # what this sample got: retrain | sisa | dpus | ohs
    guarantee: str  # exact | approximate

    def to_json(self) -> dict[str, Any]:
        return {"subject_ref": self.subject_ref, "shard": self.shard, "slice": self.slice, "region": self.region,
                "strategy": self.strategy, "guarantee": self.guarantee}


@dataclass(frozen=True)
class BatchTag:
    """What a restart needs to record the batch that made the live version (see the module docstring)."""

    request_ids: tuple[str, ...]
    strategy: str  # as asked
    resolved_strategy: str
    subjects: tuple[TaggedSubject, ...]  # in the order the engine was given the samples
    samples_read: int  # the plan's estimate
    device: str | None  # None in tags that never recorded it
    residue_steps: int = 0
    encoder_residue: tuple[dict[str, Any], ...] = ()  # forget.applied's (engine/encoder_residue.py)

    def to_json(self) -> str:
        """The manifest's `tag` text, byte for byte as the store format has it."""
        tag: dict[str, Any] = {
            "format": TAG_FORMAT,
            "request_ids": list(self.request_ids),
            "strategy": self.strategy,
            "resolved_strategy": self.resolved_strategy,
            "subjects": [s.to_json() for s in self.subjects],
            "residue_steps": self.residue_steps,
            "samples_read": self.samples_read,
        }
        if self.device is not None:
            tag["device"] = self.device
        if self.encoder_residue:  # absent otherwise, so every other tag keeps its bytes
            tag["encoder_residue"] = [dict(r) for r in self.encoder_residue]
        return json.dumps(tag, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> BatchTag | None:
        """The tag in a manifest's `tag` text; None when there is none (after training) or the text is not a
        batch tag (a store forgotten from outside the daemon). StoreError when it is one but is damaged."""
        if not text:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("format") != TAG_FORMAT:
            return None
        try:
            return cls(
                request_ids=tuple(str(r) for r in data["request_ids"]),
                strategy=str(data["strategy"]),
                resolved_strategy=str(data["resolved_strategy"]),
                subjects=tuple(TaggedSubject(str(s["subject_ref"]), int(s["shard"]), int(s["slice"]),
                                             str(s["region"]), str(s["strategy"]), str(s["guarantee"]))
                               for s in data["subjects"]),
                samples_read=int(data["samples_read"]),
                device=None if data.get("device") is None else str(data["device"]),
                residue_steps=int(data["residue_steps"]),
                encoder_residue=tuple({"feature": int(r["feature"]), "column": str(r["column"]),
                                       "category": str(r["category"])} for r in data.get("encoder_residue", [])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"the manifest's batch tag is damaged ({exc!r}); the store cannot say which "
                             "requests made its live version") from None
