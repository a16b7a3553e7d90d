"""What the Newton strategies and the gold standard report, as the client returns them: a CERTIFIED batch's
certificate and budget, an INFLUENCE batch's steps (ForgetResult), and the last gold-standard check (ModelInfo).

Plain frozen dataclasses like forgetd.client.types, read from the forgetd.v1 messages and from the receipt's
JSON form (`forgetd forget --json`), where they appear as the dataclasses' fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from forgetd.v1 import inference_service_pb2, unlearning_service_pb2

__all__ = ["Certificate", "ShardCertificate", "InfluenceStep", "GoldStandard", "ShardBudget", "newton_fields_from_json"]


@dataclasses.dataclass(frozen=True)
class ShardCertificate:
    """What one shard spent of its (epsilon, delta) budget in a CERTIFIED batch."""

    shard: int
    step_bound: float  # this batch's share of the gradient-residual bound; 0 when the shard was retrained
    bound_spent: float  # the accumulated bound after the batch
    budget_left: float  # what later removals may still add before the shard is retrained
    epsilon_spent: float  # the smallest epsilon the shard's model is certified for now
    removed: int  # rows removed by certified steps since the shard was last trained
    retrained: bool  # the budget would have been passed: retrained exactly, the bound reset
    hessian_rebuilt: bool  # the step's Hessian was formed afresh over the shard's rows


@dataclasses.dataclass(frozen=True)
class Certificate:
    """The certificate of a CERTIFIED batch: epsilon, delta, the noise and the budget, per shard what it spent."""

    epsilon: float
    delta: float
    sigma: float
    budget: float  # sigma * epsilon / sqrt(2 ln(1.5 / delta))
    shards: tuple[ShardCertificate, ...]

    @classmethod
    def from_proto(cls, msg: unlearning_service_pb2.Certificate) -> Certificate:
        return cls(msg.epsilon, msg.delta, msg.sigma, msg.budget, tuple(
            ShardCertificate(s.shard, s.step_bound, s.bound_spent, s.budget_left, s.epsilon_spent, s.removed,
                             s.retrained, s.hessian_rebuilt) for s in msg.shards))


@dataclasses.dataclass(frozen=True)
class InfluenceStep:
    """What an INFLUENCE batch's damped Newton step did in one shard."""

    shard: int
    cg_iterations: int
    relative_residual: float
    converged: bool
    retained_gradient_norm: float  # after the step
    retained_gradient_norm_before: float
    damping: float
    damping_retries: int  # times the damping was raised 10x after non-positive curvature
    retrained: bool  # no damping worked: the shard was retrained from scratch instead

    @classmethod
    def from_proto(cls, m: unlearning_service_pb2.InfluenceStep) -> InfluenceStep:
        return cls(m.shard, m.cg_iterations, m.relative_residual, m.converged, m.retained_gradient_norm,
                   m.retained_gradient_norm_before, m.damping, m.damping_retries, m.retrained)


@dataclasses.dataclass(frozen=True)
class GoldStandard:
    """The daemon's last gold-standard check (`forgetd serve --gold-every`): the live model beside one retrained
    from scratch on the live rows."""

    passed: bool
    model_version: int
    ledger_seq: int  # its audit.gold entry
    live_accuracy: float
    gold_accuracy: float
    gap_points: float  # live minus retrained, percentage points
    tolerance_points: float
    label_agreement: float
    max_probability_difference: float
    parameter_distance: float
    live_loss: float
    gold_loss: float
    checks: int
    failures: int

    @classmethod
    def from_proto(cls, m: inference_service_pb2.GoldStandard) -> GoldStandard:
        return cls(*(getattr(m, f.name) for f in dataclasses.fields(cls)))


@dataclasses.dataclass(frozen=True)
class ShardBudget:
    """One linear-family shard's certified-removal budget as the live version stands (GetModel)."""

    shard: int
    budget: float  # sigma * epsilon / sqrt(2 ln(1.5 / delta))
    bound_spent: float  # the accumulated bound since the shard was last trained
    budget_left: float  # what later removals may still add before the shard is retrained
    epsilon_spent: float  # the smallest epsilon the shard's model is certified for now
    removed: int  # rows removed by certified steps since the shard was last trained
    voided: bool  # an INFLUENCE step voided the certificate: the next CERTIFIED removal retrains the shard

    @classmethod
    def from_proto(cls, m: inference_service_pb2.ShardBudget) -> ShardBudget:
        return cls(*(getattr(m, f.name) for f in dataclasses.fields(cls)))


def newton_fields_from_json(result: Mapping[str, Any]) -> dict[str, Any]:
    """ForgetResult's `certificate` and `influence` from a receipt's JSON `result` (absent: None and ())."""
    cert = result.get("certificate")
    return {
        "certificate": None if cert is None else Certificate(
            **{**cert, "shards": tuple(ShardCertificate(**s) for s in cert["shards"])}),
        "influence": tuple(InfluenceStep(**s) for s in result.get("influence", ())),
    }
