"""A full retrain of every shard from scratch on the live rows, published as the next version with no forget
(`forgetd serve --gold-retrain`, after a gold-standard check out of tolerance; and its replay in `forgetd
verify`).

It is what RETRAIN does to every shard, with nothing to remove: each MLP shard from theta_0 on its layout and
batch plan without the rows forgotten so far (its recorded increments, subtractions and influence bookkeeping
start again), each linear-family shard at its optimum on the rows still present (its certified budget starts
again). So the new model is bitwise the gold standard's reference (engine/gold.py) on this device, and the
version is published exactly as a forget's is (forgetting.forget_planned: files, then the manifest rename,
then the in-memory swap), with a RetrainTag in the manifest so a crash before its ledger entry is recovered.
"""

from __future__ import annotations

import time

from forgetd.server.engine.forgetting import forget_planned
from forgetd.server.engine.planning import PlannedForget
from forgetd.server.engine.reports import EXACT, ForgetReport, Plan
from forgetd.server.engine.state import LoadedStore
from forgetd.server.store.retrain_tag import RetrainTag
from forgetd.server.vocabulary import RETRAIN

__all__ = ["retrain_store"]


def retrain_store(store: LoadedStore, gold_seq: int) -> ForgetReport:
    """Retrain every shard of `store` and publish it as the next version, tagged with the audit.gold entry that
    asked for it (hold the engine's lock). On failure before the commit the old version stays live and whole."""
    t0 = time.perf_counter()
    every = tuple(range(len(store.shards)))
    planned = PlannedForget(plan=Plan(RETRAIN, store.m, (), 0, EXACT), located=(), routes={}, shards=every)
    tag = RetrainTag.of(gold_seq, store.device)
    outcomes = forget_planned(store, planned, tag)
    snap = store.snapshot
    return ForgetReport(
        version=snap.version, digest=snap.digest, shard_digests=snap.shard_digests, strategy=RETRAIN, samples=(),
        guarantee=EXACT, residue_steps=0, samples_read=sum(o.samples_read for o in outcomes),
        seconds=time.perf_counter() - t0, snapshot=snap, tag=tag,
    )
