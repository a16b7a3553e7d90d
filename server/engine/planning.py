"""Planning a forget: where each sample sits, what it gets (route), and what the forget will cost.

One plan serves Engine.plan, which only reports it, and Engine.forget, which carries it out and writes it
into the batch tag, so what a forget reports, applies and records never come from two computations.
Every check happens here, before anything changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from forgetd.server.engine.encoder_residue import encoder_residue
from forgetd.server.engine.reports import APPROXIMATE, Plan, PlanEntry
from forgetd.server.engine.state import LoadedStore
from forgetd.server.engine.strategies import SampleRoute, ShardState, influenced_floor, route
from forgetd.server.engine.training import config_epochs, cost
from forgetd.server.errors import AlreadyForgotten, EmptyRequest, InvalidStrategy, UnknownSample
from forgetd.server.vocabulary import AUTO, LINEAR, MLP, OHS, RETRAIN, SISA, STRATEGIES
from forgetd.server.vocabulary import check_supported, weakest_guarantee

__all__ = ["Located", "PlannedForget", "resolve_strategy", "locate", "step_sizes", "plan_forget"]


@dataclass(frozen=True)
class Located:
    """One sample of a forget request, found in the store."""

    sample_id: str  # as the request spells it
    row_id: str  # as the row store spells it: the same id, possibly in another Unicode normal form
    position: int  # row in the training split
    shard: int
    local: int  # index among the shard's members


@dataclass(frozen=True)
class PlannedForget:
    plan: Plan
    located: tuple[Located, ...]  # in request order, each sample once
    routes: dict[int, list[SampleRoute]]  # shard -> its members of the forget set
    shards: tuple[int, ...]  # the shards the forget changes: every one for RETRAIN


def resolve_strategy(strategy: str, default: str, model: str = MLP) -> str:
    """The strategy a request names, with "auto" replaced by the configured default; UnsupportedStrategy when
    the store's model family cannot apply it."""
    if strategy not in STRATEGIES:
        raise InvalidStrategy(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    check_supported(strategy, model)
    return default if strategy == AUTO else strategy


def locate(store: LoadedStore, ids: Iterable[str]) -> list[Located]:
    """Each distinct sample of `ids` in request order; UnknownSample, AlreadyForgotten or EmptyRequest first."""
    if isinstance(ids, str):
        raise TypeError("ids must be a collection of sample ids, not one string")
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        raise EmptyRequest("the request names no sample ids; give at least one")
    out: list[Located] = []
    unknown: list[str] = []
    gone: list[str] = []
    taken: set[int] = set()
    forgotten = set(store.manifest.forgotten)
    index = store.index
    for sid in wanted:
        p = index.position(store.subject_key, sid) if isinstance(sid, str) else None
        if p is None:
            unknown.append(sid if isinstance(sid, str) else repr(sid))
        elif p in forgotten:
            gone.append(sid)
        elif p not in taken:  # two normal forms of one id are one sample, forgotten once
            taken.add(p)
            out.append(Located(sid, index.row_id[p], p, int(index.shard_of[p]), int(index.local_of[p])))
    if unknown:
        raise UnknownSample(unknown)
    if gone:
        raise AlreadyForgotten(gone)
    return out


def step_sizes(state: ShardState) -> list[int]:
    """|slices 1..s| of the shard's samples still present, for s = 1..S."""
    alive_per_slice = np.add.reduceat(state.alive.astype(np.int64), state.layout.bounds[:-1])  # slices are non-empty
    return [int(n) for n in np.cumsum(alive_per_slice)]


def plan_forget(store: LoadedStore, ids: Iterable[str], strategy: str) -> PlannedForget:
    """What forgetting `ids` with `strategy` does, per sample and in all; validates and changes nothing."""
    resolved = resolve_strategy(strategy, store.config.default_strategy, store.config.model)
    located = locate(store, ids)
    S, m, E = store.config.slices, store.m, config_epochs(store.config)
    sizes = [step_sizes(st) for st in store.shards]
    everything = sum(cost(sz, E, 1) for sz in sizes)
    entries: list[PlanEntry] = []
    routes: dict[int, list[SampleRoute]] = {}
    starts: dict[int, int] = {}  # shard -> the first step its retrain runs
    for loc in located:
        k = loc.shard
        sl = store.layouts[k].slice_of(loc.local)
        region, strat, guarantee = route(resolved, sl, S, m)
        first = {RETRAIN: 1, SISA: sl, OHS: S - m + 1}.get(strat, S + 1)  # DPUS, INFLUENCE, CERTIFIED: none
        if first <= S:  # a retrain also re-runs what an INFLUENCE step left in the checkpoints
            first = min(first, influenced_floor(store.shards[k]))
        alone = everything if strat == RETRAIN else cost(sizes[k], E, first)
        starts[k] = min(starts.get(k, S + 1), first)
        entries.append(PlanEntry(loc.sample_id, k, sl, region, strat, alone, guarantee))
        routes.setdefault(k, []).append(SampleRoute(loc.local, sl, region, strat, guarantee))
    total = everything if resolved == RETRAIN else sum(cost(sizes[k], E, first) for k, first in starts.items())
    # A category only forgotten rows held stays in the encoder: a trace of them (encoder_residue.py).
    residue, holders = encoder_residue(store, [(loc.position, loc.shard, loc.local) for loc in located])
    entries = [replace(e, guarantee=APPROXIMATE) if loc.position in holders else e for e, loc in zip(entries, located)]
    guarantee = weakest_guarantee(e.guarantee for e in entries)
    shards = tuple(range(store.config.shards)) if resolved == RETRAIN else tuple(sorted(routes))
    if store.config.model == LINEAR:  # a retrain there reads a shard's rows once per Newton step (newton.py)
        total = sum(int(store.shards[k].alive.sum()) for k in shards if starts.get(k, 1) <= S)
    plan = Plan(resolved, m, tuple(entries), total, guarantee, residue)
    return PlannedForget(plan, tuple(located), routes, shards)
