"""The linear family's certified-removal budget as the live version stands, per shard (GetModel's
`certified_budget`, `forgetd model`): what CERTIFIED removals have spent since each shard was last trained and
what they may still spend before the shard is retrained (docs/unlearning.md 14.3). Empty for an MLP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from forgetd.server.engine.linear import certified_config
from forgetd.server.engine.state import LoadedStore

__all__ = ["ShardBudget", "certified_budget"]


@dataclass(frozen=True)
class ShardBudget:
    shard: int
    budget: float  # sigma * epsilon / c
    bound_spent: float  # beta since the last training
    budget_left: float  # budget - beta
    epsilon_spent: float  # beta * c / sigma
    removed: int  # rows removed by certified steps since the last training
    voided: bool  # an influence step voided the certificate: the next certified removal retrains


def certified_budget(store: LoadedStore) -> tuple[ShardBudget, ...]:
    """Each linear shard's budget. Reads every shard's state reference once, without the engine's lock (a
    forget replaces a shard's LinearShard whole, never changes it), so a caller never waits for a forget."""
    cfg = store.config
    states = [(st.shard, st.linear) for st in store.shards]
    if any(state is None for _, state in states):
        return ()
    config = certified_config(cfg)
    out = []
    for k, state in states:
        assert state is not None
        spent = state.bound * config.c / cfg.sigma if cfg.sigma > 0 else math.inf
        out.append(ShardBudget(k, config.budget, state.bound, config.budget - state.bound, spent, state.removed,
                               state.void))
    return tuple(out)
