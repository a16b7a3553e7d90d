"""The Newton-step strategies, one shard at a time: INFLUENCE on the MLP, and every strategy of the linear family
(docs/unlearning.md 5.9, 5.10). Like strategies.forget_shard, each returns the shard's new state as copies.

INFLUENCE on the MLP: one damped Newton step (influence.influence_removal) that removes the shard's members of
F from its live parameters theta_S, the retained rows being the shard's members still present. The MLP's loss
is not convex, so the damped Hessian can have a direction of non-positive curvature; conjugate gradients then
stops, and the step is solved again with 10x the damping, at most DAMPING_RETRIES times. Should every damping
fail, the shard is retrained from theta_0 (RETRAIN for that shard: exact, so stronger than what the request
was promised). The ledger records the damping used and the retries.

The linear family (engine/linear.py): CERTIFIED takes the certified Newton step while the shard's accumulated
bound stays within its budget and otherwise retrains the shard without every forgotten row (its bound then
starts again from training's residual); INFLUENCE takes linear.linear_influence; RETRAIN, SISA, HS and OHS all
retrain the shard (its optimum does not depend on slices, so there is nothing to restart from).

Every figure the ledger records is a real number written as its shortest decimal string (repr), because the
ledger's canonical JSON has no floats; the replay compares these strings, so they are deterministic too.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from forgetd.server.config import EngineConfig
from forgetd.server.engine.influence import InfluenceConfig, InfluenceResult, NegativeCurvature, influence_removal
from forgetd.server.engine.influence import mlp_loss
from forgetd.server.engine.linear import LinearShard, certified_config, certified_step, linear_influence
from forgetd.server.engine.linear import ScaledRows, rows_read, served_params, train_shard
from forgetd.server.engine.strategies import IncrementsFile, SampleRoute, ShardOutcome, ShardState, TrainParams
from forgetd.server.engine.strategies import forget_shard
from forgetd.server.vocabulary import CERTIFIED, INFLUENCE, RETRAIN

__all__ = ["INFLUENCE_CONFIG", "DAMPING_RETRIES", "forget_by_influence", "forget_linear_shard", "ledger_details"]

# The MLP's first try: Koh and Liang's damping, CG to a relative residual of 1e-4 (or 50 products).
INFLUENCE_CONFIG = InfluenceConfig(damping=0.01, cg_max_iterations=50, cg_tolerance=1e-4, chunk_rows=4096)
DAMPING_RETRIES = 4  # 0.01, 0.1, 1, 10, 100: past 100 the step would be little more than a scaled gradient


def forget_by_influence(state: ShardState, routes: list[SampleRoute], params: TrainParams,
                        increments: IncrementsFile) -> ShardOutcome:
    """INFLUENCE on an MLP shard (module docstring)."""
    members = [r.member for r in routes]
    alive = state.alive.copy()
    alive[members] = False
    keep = torch.from_numpy(alive).to(state.X.device)
    gone = torch.tensor(members, dtype=torch.int64, device=state.X.device)
    solved = None
    if keep.any():
        theta = torch.from_numpy(state.checkpoints.live.copy()).to(state.X.device)
        solved = _damped(mlp_loss(params.shape), theta, (state.X[keep], state.y[keep]), (state.X[gone], state.y[gone]))
    if solved is None:  # no damping worked, or nothing is left to retain: retrain the shard from theta_0
        retrained = forget_shard(state, [_as(r, RETRAIN) for r in routes], RETRAIN, params, increments)
        retrained.influence = _influence_record(state.shard, None, INFLUENCE_CONFIG.damping * 10.0**DAMPING_RETRIES,
                                                DAMPING_RETRIES, retrained=True)
        return retrained
    result, damping, retries = solved
    ckpt = state.checkpoints.copy()
    ckpt.params[-1] = result.params.detach().cpu().numpy()
    return ShardOutcome(
        shard=state.shard, checkpoints=ckpt, params_changed=True, optim_changed=False, new_increments={},
        subtracted=set(state.subtracted), alive=alive, residue_steps=0,
        samples_read=rows_read(int(keep.sum()), result.cg_iterations + 3),  # + both gradient norms, the residual
        influenced=state.influenced | frozenset(members),
        influence=_influence_record(state.shard, result, damping, retries, retrained=False),
    )


def forget_linear_shard(state: ShardState, routes: list[SampleRoute], strategy: str, cfg: EngineConfig,
                        num_features: int, num_classes: int) -> ShardOutcome:
    """Any strategy on a linear-family shard (module docstring)."""
    assert state.linear is not None
    lin = state.linear
    members = [r.member for r in routes]
    alive = state.alive.copy()
    alive[members] = False
    keep = torch.from_numpy(alive).to(state.X.device)
    gone = torch.tensor(members, dtype=torch.int64, device=state.X.device)
    new: LinearShard | None = None
    read, influence, certified = 0, None, None
    if strategy == CERTIFIED and not lin.void and keep.any():
        if state.scaled is None:
            state.scaled = ScaledRows.of(state.X, lin.scale)  # kept for every later certified removal
        scaled = state.scaled
        step = certified_step(lin, (state.X[gone], state.y[gone]), num_classes, cfg, lambda: (scaled, keep.cpu()))
        if step is not None:
            new, read = step.state, rows_read(step.state.rows, 1) if step.rebuilt else 0
            certified = _certified_record(state.shard, new, step.step_bound, cfg, retrained=False, rebuilt=step.rebuilt)
    elif strategy == INFLUENCE and keep.any():
        new, result = linear_influence(lin, (state.X[keep], state.y[keep]), (state.X[gone], state.y[gone]),
                                       num_classes, cfg, InfluenceConfig(damping=0.0, cg_tolerance=1e-10,
                                                                         cg_max_iterations=200))
        read = rows_read(int(keep.sum()), result.cg_iterations + 3)
        influence = _influence_record(state.shard, result, 0.0, 0, retrained=False)
    if new is None:  # a retrain: the strategy asks for one, or the budget (or a void certificate) requires it
        new, read = train_shard(state.X[keep], state.y[keep], num_classes, lin.scale, cfg, state.shard)
        if strategy == CERTIFIED:
            certified = _certified_record(state.shard, new, 0.0, cfg, retrained=True, rebuilt=True)
    ckpt = state.checkpoints.copy()
    ckpt.params[-1] = served_params(new, num_features, num_classes)
    return ShardOutcome(
        shard=state.shard, checkpoints=ckpt, params_changed=True, optim_changed=False, new_increments={},
        subtracted=set(), alive=alive, residue_steps=0, samples_read=read, linear=new, influence=influence,
        certified=certified,
    )


def ledger_details(outcomes: list[ShardOutcome], cfg: EngineConfig) -> dict[str, Any]:
    """The forget.applied fields of the Newton strategies: {"influence": [per shard]} and/or {"certified": {...}},
    empty when the batch used neither (server/runtime/events.py documents them)."""
    out: dict[str, Any] = {}
    influence = [o.influence for o in outcomes if o.influence is not None]
    if influence:
        out["influence"] = influence
    certified = [o.certified for o in outcomes if o.certified is not None]
    if certified:
        config = certified_config(cfg)
        out["certified"] = {"epsilon": repr(cfg.epsilon), "delta": repr(cfg.delta), "sigma": repr(cfg.sigma),
                            "budget": repr(config.budget), "shards": certified}
    return out


# -- pieces -----------------------------------------------------------------------------------------------------


def _damped(loss: Any, theta: torch.Tensor, retained: tuple[torch.Tensor, torch.Tensor],
            forget: tuple[torch.Tensor, torch.Tensor]) -> tuple[InfluenceResult, float, int] | None:
    """(the step, the damping that worked, the retries it took), or None when every damping met negative curvature."""
    damping = INFLUENCE_CONFIG.damping
    for retries in range(DAMPING_RETRIES + 1):
        config = InfluenceConfig(damping=damping, cg_max_iterations=INFLUENCE_CONFIG.cg_max_iterations,
                                 cg_tolerance=INFLUENCE_CONFIG.cg_tolerance, chunk_rows=INFLUENCE_CONFIG.chunk_rows)
        try:
            return influence_removal(loss, theta, retained, forget, config), damping, retries
        except NegativeCurvature:
            damping *= 10.0
    return None


def _as(r: SampleRoute, strategy: str) -> SampleRoute:
    return SampleRoute(r.member, r.slice, r.region, strategy, r.guarantee)


def _real(x: float) -> str:
    return repr(float(x))


def _influence_record(shard: int, result: InfluenceResult | None, damping: float, retries: int, *,
                      retrained: bool) -> dict[str, Any]:
    record: dict[str, Any] = {"shard": shard, "damping": _real(damping), "damping_retries": retries,
                              "retrained": retrained}
    if result is not None:
        record.update(cg_iterations=result.cg_iterations, residual=_real(result.relative_residual),
                      converged=result.converged, retained_grad_norm=_real(result.retained_grad_norm),
                      retained_grad_norm_before=_real(result.retained_grad_norm_before))
    return record


def _certified_record(shard: int, state: LinearShard, step_bound: float, cfg: EngineConfig, *, retrained: bool,
                      rebuilt: bool) -> dict[str, Any]:
    config = certified_config(cfg)
    spent = state.bound * config.c / cfg.sigma if cfg.sigma > 0 else math.inf
    return {"shard": shard, "step_bound": _real(step_bound), "bound": _real(state.bound),
            "budget_left": _real(config.budget - state.bound), "epsilon_spent": _real(spent),
            "removed": state.removed, "retrained": retrained, "rebuilt": rebuilt}
