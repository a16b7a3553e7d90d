"""Restart recovery, failure by failure: the daemon folds the ledger and the store's tag and finishes every
acknowledged request exactly once, and refuses a ledger that does not belong to its store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import grpc
import pytest

from forgetd.ledger import Ledger, verify_ledger
from forgetd.server.engine.engine import Engine
from forgetd.server.errors import StoreError
from forgetd.server.runtime.events import LedgerFold
from forgetd.server.runtime.ledger_writer import LedgerWriter
from forgetd.v1 import common_pb2, inference_service_pb2 as ipb, unlearning_service_pb2 as upb

from helpers import running_daemon, start_and_stop


def fold_ledger(store: Path) -> LedgerFold:
    fold = LedgerFold()
    with Ledger(store / "ledger.sqlite") as ledger:
        for e in ledger.entries():
            fold.add(e.seq, e.type, e.leaf_hash, e.payload)
    return fold


def forget(unlearning, ids: list[str], request_id: str, strategy=common_pb2.STRATEGY_SISA) -> upb.ForgetResponse:
    return unlearning.Forget(upb.ForgetRequest(sample_ids=ids, strategy=strategy, request_id=request_id, wait=True))


def test_genesis_records_the_engine_the_head_key_and_version_0(store: Path) -> None:
    with running_daemon(store) as running:
        inference, _ = running.stubs()
        model = inference.GetModel(ipb.GetModelRequest())
    fold = fold_ledger(store)
    assert fold.size == 1 and fold.genesis is not None
    with Engine.open(store, device="cpu") as engine:
        assert fold.genesis.engine == engine.genesis_record()
        assert (fold.genesis.model.version, fold.genesis.model.digest) == (0, engine.digest())
        assert list(fold.genesis.model.shard_digests) == engine.shard_digests()
    assert fold.genesis.head_public_key == model.head_public_key


def test_a_batch_the_engine_published_before_its_forget_applied_is_recorded_from_the_store_not_reapplied(
        store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_append_many = LedgerWriter.append_many

    def disk_fails_on_applied(self, events):
        if any(event_type == "forget.applied" for event_type, _p, _e in events):
            raise OSError(28, "No space left on device")  # the daemon "dies" between the engine's commit and the ledger
        return real_append_many(self, events)

    monkeypatch.setattr(LedgerWriter, "append_many", disk_fails_on_applied)
    with running_daemon(store, apply_retry_seconds=0) as running:  # the first failure counts as lasting
        _, unlearning = running.stubs()
        with pytest.raises(grpc.RpcError) as info:  # its batch keeps failing: durable, pending
            forget(unlearning, ["synthetic:4", "synthetic:150"], "crashy")
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "forgetting is halted" in info.value.details()
        assert "No space left on device" in info.value.details() and "durable at seq 2" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:  # halted: no new request is taken meanwhile
            forget(unlearning, ["synthetic:5"], "after")
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "forgetting is halted" in info.value.details()
    monkeypatch.undo()
    with Engine.open(store, device="cpu") as engine:
        assert engine.version == 1 and engine.live_batch is not None
        assert engine.live_batch.request_ids == ("crashy",)
        tag = json.loads((store / "CURRENT.json").read_text())["tag"]
        assert json.loads(tag)["request_ids"] == ["crashy"]
        assert "synthetic:" not in tag  # the store keeps the tag: refs only, never the ids
        published = engine.digest()
    with running_daemon(store) as running:
        inference, unlearning = running.stubs()
        answer = unlearning.GetForgetRequest(upb.GetForgetRequestRequest(request_id="crashy")).forget
        assert answer.status == upb.FORGET_STATUS_APPLIED
        assert (answer.result.model_version, answer.result.model_digest) == (1, published)  # not applied twice
        assert {s.slice for s in answer.samples} >= {1} and all(s.applied_seq for s in answer.samples)
        assert inference.GetModel(ipb.GetModelRequest()).version == 1
        assert forget(unlearning, ["synthetic:6"], "next").result.model_version == 2
    fold = fold_ledger(store)
    assert fold.applied_by_request["crashy"].recovered and not fold.applied_by_request["next"].recovered
    assert len(fold.applied_by_request["crashy"].subjects) == 2
    with Ledger(store / "ledger.sqlite") as ledger:  # the recovered event still says where it ran
        assert ledger.entry(fold.applied_by_request["crashy"].seq).payload["device"] == "cpu"
    assert verify_ledger(store / "ledger.sqlite").ok


def test_a_request_the_engine_never_applied_is_applied_on_restart(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def engine_dies(self, ids, strategy="auto", *, request_ids=()):
        raise RuntimeError("killed before publishing anything")

    monkeypatch.setattr(Engine, "forget", engine_dies)
    with running_daemon(store, apply_retry_seconds=0) as running:
        _, unlearning = running.stubs()
        ack = unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:9"], request_id="lost?"))
        assert ack.status == upb.FORGET_STATUS_PENDING
        with pytest.raises(grpc.RpcError):
            forget(unlearning, ["synthetic:9"], "lost?", strategy=common_pb2.STRATEGY_UNSPECIFIED)
    monkeypatch.undo()
    assert [r.request_id for r in fold_ledger(store).pending()] == ["lost?"]
    with running_daemon(store) as running:
        _, unlearning = running.stubs()
        done = forget(unlearning, ["synthetic:9"], "lost?", strategy=common_pb2.STRATEGY_UNSPECIFIED)
        assert done.status == upb.FORGET_STATUS_APPLIED and done.result.model_version == 1
        assert done.receipt.requested_seq == ack.receipt.requested_seq
    fold = fold_ledger(store)
    assert fold.pending() == [] and not fold.applied_by_request["lost?"].recovered
    with Engine.open(store, device="cpu") as engine:
        assert engine.version == 1 and not engine.has_sample("synthetic:9")


def test_a_ledger_from_another_deployment_is_refused(store: Path, trained_store: Path, tmp_path: Path) -> None:
    with running_daemon(store) as running:
        forget(running.stubs()[1], ["synthetic:2"], "r1")
    other = tmp_path / "other"
    shutil.copytree(trained_store, other)
    shutil.copy(store / "ledger.sqlite", other / "ledger.sqlite")
    with pytest.raises(StoreError, match="is not the head key the ledger's genesis recorded"):
        start_and_stop(other)
    shutil.copytree(store / "keys", other / "keys", dirs_exist_ok=True)
    with pytest.raises(StoreError, match="the store is at version 0 .* but the ledger says version 1"):
        start_and_stop(other)


def test_requests_queued_behind_a_running_batch_are_coalesced_by_strategy_in_ledger_order(
        store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    real_forget = Engine.forget
    first_running, release = threading.Event(), threading.Event()
    calls: list[list[str]] = []

    def held_forget(self, ids, strategy="auto", *, request_ids=()):
        calls.append(list(ids))
        if len(calls) == 1:  # hold the first batch until the others are queued behind it
            first_running.set()
            release.wait(60)
        return real_forget(self, ids, strategy, request_ids=request_ids)

    monkeypatch.setattr(Engine, "forget", held_forget)
    dpus, sisa = common_pb2.STRATEGY_DPUS, common_pb2.STRATEGY_SISA
    with running_daemon(store) as running:
        _, unlearning = running.stubs()
        unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:0"], strategy=dpus, request_id="a"))
        assert first_running.wait(60)
        for rid, sample, strategy in [("b", 1, dpus), ("c", 2, dpus), ("d", 3, sisa), ("e", 4, dpus), ("f", 1, dpus)]:
            unlearning.Forget(upb.ForgetRequest(sample_ids=[f"synthetic:{sample}"], strategy=strategy, request_id=rid))
        release.set()
        last = forget(unlearning, ["synthetic:1"], "f", strategy=dpus)
        assert last.samples[0].applied_seq < last.receipt.applied_seq  # "b" forgot it first
    batches = [(b.request_ids, len(b.subjects)) for b in sorted(set(fold_ledger(store).applied_by_request.values()),
                                                                  key=lambda b: b.seq)]
    assert batches == [(("a",), 1), (("b", "c"), 2), (("d",), 1), (("e", "f"), 1)]
    assert calls == [["synthetic:0"], ["synthetic:1", "synthetic:2"], ["synthetic:3"], ["synthetic:4"]]
