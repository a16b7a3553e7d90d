"""The auditor's reading of ``model.retrained`` (docs/unlearning.md section 10): a full retrain of every shard
from scratch on the live rows that `forgetd serve --gold-retrain` published after a failed gold-standard check,
with no forget. Apart from forgetd.client.audit.events to keep that reader small.

It must name an audit.gold entry before it whose check failed (the only reason the daemon retrains), and its
model must be the next version; the replay retrains too and compares the digests (forgetd.server.replay).
A payload that does not fit raises ValueError naming the field; the event reader makes it a Problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from forgetd.client.audit.newton_events import Gold

__all__ = ["MODEL_RETRAINED", "RetrainFields", "retrained_fields"]

MODEL_RETRAINED = "model.retrained"


@dataclass(frozen=True)
class RetrainFields:
    gold_seq: int
    device: str
    apply_micros: int


def retrained_fields(seq: int, p: Any, golds: Mapping[int, Gold]) -> RetrainFields:
    """The retrain's own fields (its `model` is read by the caller); `golds` is the audit.gold entries so far."""
    if type(p) is not dict:
        raise ValueError(f"{MODEL_RETRAINED} payload must be an object, got {type(p).__name__}")
    gold_seq, device, timings = p.get("gold_seq"), p.get("device"), p.get("timings")
    micros = timings.get("apply_micros") if type(timings) is dict else None
    if type(gold_seq) is not int or type(device) is not str or type(micros) is not int or micros < 0:
        raise ValueError(f"{MODEL_RETRAINED} fields 'gold_seq' (an integer), 'device' (a string) and "
                         "'timings.apply_micros' (a non-negative integer) are required")
    if type(p.get("recovered")) is not bool or type(p.get("samples_read")) is not int:
        raise ValueError(f"{MODEL_RETRAINED} fields 'recovered' (true or false) and 'samples_read' (an integer) "
                         "are required")
    gold = golds.get(gold_seq)
    if gold is None or gold.seq >= seq:
        raise ValueError(f"{MODEL_RETRAINED} names gold check seq {gold_seq}, which is no audit.gold entry before it")
    if gold.passed:
        raise ValueError(f"{MODEL_RETRAINED} names gold check seq {gold_seq}, which passed: the daemon retrains only "
                         "after a failed check")
    return RetrainFields(gold_seq, device, micros)
