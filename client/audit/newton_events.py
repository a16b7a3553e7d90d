"""The auditor's reading of what the Newton strategies and the gold standard write in the ledger (the layout in
docs/unlearning.md section 10), apart from forgetd.client.audit.events to keep that reader small.

- forget.applied's optional `influence` (a list, one object per shard) and `certified` (an object with
  `shards`): read as they are, checked for shape here, and handed to the replay, which recomputes them and
  compares them field by field (forgetd.server.replay_details). A batch written from the store's tag
  (recovered at restart, or finished by the worker's retry) carries none, so nothing is compared for it.
- ``audit.gold`` -- event_id ``"audit.gold:<its seq>"``; the gold standard's figures (engine/gold.py), appended by
  the daemon (`forgetd serve --gold-every`) or by `forgetd verify --gold`: a record, not a finding. Its model must
  be one the ledger says was live by then.

A payload that does not fit raises ValueError naming the field; the event reader makes it a Problem.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["AUDIT_GOLD", "Gold", "applied_details", "parse_gold"]

AUDIT_GOLD = "audit.gold"
_REALS = ("live_accuracy", "gold_accuracy", "live_loss", "gold_loss", "label_agreement",
          "max_probability_difference", "parameter_distance", "tolerance_points", "gap_points")


@dataclass(frozen=True)
class Gold:
    """One audit.gold event."""

    seq: int
    version: int
    digest: str
    passed: bool
    figures: Mapping[str, float]  # the reals of the payload, as numbers
    by: str  # "daemon" or "verify"


def applied_details(p: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The batch's `influence` and `certified` fields as recorded, or None when it has neither: a batch of
    another strategy, or one written from the store's tag (recovered at restart, or finished by a retry), whose
    figures were never recorded. The replay compares what is recorded, and only that."""
    influence, certified = p.get("influence"), p.get("certified")
    if p.get("recovered") is True or (influence is None and certified is None):
        return None
    if influence is not None and not (type(influence) is list and all(type(s) is dict for s in influence)):
        raise ValueError(f"forget.applied field 'influence' must be a list of objects, got {_short(influence)}")
    if certified is not None and not (type(certified) is dict and type(certified.get("shards")) is list):
        raise ValueError(f"forget.applied field 'certified' must be an object with a 'shards' list, got "
                         f"{_short(certified)}")
    return {k: v for k, v in (("influence", influence), ("certified", certified)) if v is not None}


def parse_gold(seq: int, p: Any, digest_of_version: Callable[[int], str | None]) -> Gold:
    """The audit.gold event at `seq`; `digest_of_version(v)` is the digest the ledger gave version v by then."""
    if type(p) is not dict:
        raise ValueError(f"audit.gold payload must be an object, got {_short(p)}")
    model = p.get("model")
    if type(model) is not dict or type(model.get("version")) is not int or type(model.get("digest")) is not str:
        raise ValueError(f"audit.gold field 'model' must be {{version, digest}}, got {_short(model)}")
    figures: dict[str, float] = {}
    for name in _REALS:
        value = p.get(name)
        try:
            figures[name] = float(value) if type(value) is str else float("nan")
        except ValueError:
            figures[name] = float("nan")
        if figures[name] != figures[name]:  # NaN: missing, not a string, or not a number
            raise ValueError(f"audit.gold field {name!r} must be a real number as a decimal string, got {_short(value)}")
    if type(p.get("passed")) is not bool or type(p.get("rows")) is not int:
        raise ValueError("audit.gold fields 'passed' (true or false) and 'rows' (an integer) are required")
    if p["passed"] != (abs(figures["gap_points"]) <= figures["tolerance_points"]):
        raise ValueError(f"audit.gold says passed={p['passed']} but its gap of {figures['gap_points']:g} points "
                         f"against a tolerance of {figures['tolerance_points']:g} says otherwise")
    want = digest_of_version(model["version"])
    if want != model["digest"]:
        raise ValueError(f"audit.gold checked version {model['version']} with digest {model['digest'][:16]}..., "
                         f"which the ledger never made live by then ({'no such version' if want is None else want[:16]})")
    return Gold(seq, model["version"], model["digest"], p["passed"], figures, str(p.get("by", "")))


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
