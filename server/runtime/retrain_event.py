"""`forgetd serve --gold-retrain`: a gold-standard check out of tolerance is answered by a full retrain of every
shard from scratch on the live rows, published as a new version with no forget, and its ledger event.

``model.retrained`` -- event_id ``"model.retrained:<version>"``; appended after the engine has published the
retrained version and before the daemon serves it, as forget.applied is::

    {"gold_seq": int,                     # the audit.gold entry (a failed check) that asked for it
     "model": {"version": int, "digest": "<hex>", "shard_digests": ["<hex>", ...]},   # the new live version,
                                          # one past the previous one
     "samples_read": int,                 # what the retrain read (0 when recovered)
     "timings": {"apply_micros": int},    # the engine's time (0 when recovered)
     "recovered": bool,                   # true: written at restart from the store's retrain tag
     "device": "cpu"|"cuda:0"|...}        # where the engine ran it: replay is bitwise on the same device type

This module is the event's schema and its part of the daemon's fold (`RetrainFold`: a retrain makes the live
model as a batch does), pure like events.py; runtime/retraining.py runs the retrain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from forgetd.server.errors import MalformedEvent
from forgetd.server.runtime.events import LedgerFold, ModelState, _Reader

__all__ = ["MODEL_RETRAINED", "Retrained", "RetrainFold", "retrained_event_id", "retrained_payload",
           "parse_retrained"]

MODEL_RETRAINED = "model.retrained"
_AUDIT_GOLD = "audit.gold"  # runtime/gold.py's event, read here only for `passed` and `by`


def retrained_event_id(version: int) -> str:
    return f"{MODEL_RETRAINED}:{version}"


@dataclass(frozen=True)
class Retrained:
    seq: int
    gold_seq: int
    model: ModelState
    recovered: bool


def retrained_payload(gold_seq: int, model: ModelState, *, samples_read: int, apply_micros: int, recovered: bool,
                      device: str) -> dict[str, Any]:
    return {"gold_seq": gold_seq, "model": model.to_json(), "samples_read": samples_read,
            "timings": {"apply_micros": apply_micros}, "recovered": recovered, "device": device}


def parse_retrained(seq: int, payload: Mapping[str, Any]) -> Retrained:
    r = _Reader(seq, MODEL_RETRAINED)
    timings = r.get(payload, "timings", "timings")
    r.natural(timings, "apply_micros", "timings.apply_micros")
    r.natural(payload, "samples_read")
    r.text(payload, "device")
    return Retrained(seq, r.natural(payload, "gold_seq"), r.model(payload, "model"), r.flag(payload, "recovered"))


@dataclass
class RetrainFold(LedgerFold):
    """The daemon's fold with model.retrained in it: a retrain makes the live model as a batch does."""

    last_retrained: Retrained | None = None
    # The last audit.gold the daemon wrote that failed, and whether a model.retrained has answered it since.
    last_failed_gold: int | None = None
    answered: bool = True

    def add(self, seq: int, event_type: str, leaf_hash: bytes, payload: Mapping[str, Any]) -> None:
        super().add(seq, event_type, leaf_hash, payload)
        if event_type == MODEL_RETRAINED:
            got, before = parse_retrained(seq, payload), self.live_model()
            if before is None or got.model.version != before.version + 1:
                raise MalformedEvent(f"seq {seq} ({MODEL_RETRAINED}): version {got.model.version} does not follow "
                                     f"the live version {None if before is None else before.version}")
            self.last_retrained = got
            self.answered = self.answered or got.gold_seq == self.last_failed_gold
        elif event_type == _AUDIT_GOLD and isinstance(payload, Mapping) and payload.get("by") == "daemon":
            if payload.get("passed") is False:
                self.last_failed_gold, self.answered = seq, False

    def live_model(self) -> ModelState | None:
        r, batch = self.last_retrained, self.last_applied
        if r is not None and (batch is None or r.seq > batch.seq):
            return r.model
        return super().live_model()

    def live_seq(self) -> int:
        """The entry that made the live model: the last forget.applied or model.retrained, else genesis."""
        seqs = [e.seq for e in (self.last_retrained, self.last_applied, self.genesis) if e is not None]
        return max(seqs, default=0)

    def unanswered_gold(self) -> int | None:
        """The daemon's last failed gold check when no retrain has answered it (a crash came between)."""
        return None if self.answered else self.last_failed_gold
