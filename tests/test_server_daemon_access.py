"""Who may read what, with a bearer token configured.

The rule: Forget needs the token. The ledger reads (ReadLedger, GetLedgerHead, GetForgetRequest) are open
by default, for auditors: the ledger names samples by subject ref only. `--ledger-reads token` closes them
to anyone without the token (request ids are in the entries). Raw sample ids are shown only to whoever may
know them: in the answer to the Forget that sent them, and by GetForgetRequest to the token's holder while
the request is pending; once applied, never (the daemon drops them), as after a restart.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from forgetd.server.config import ServerConfig
from forgetd.server.engine.engine import Engine
from forgetd.server.errors import InvalidConfig
from forgetd.v1 import common_pb2, inference_service_pb2 as ipb, unlearning_service_pb2 as upb

from helpers import running_daemon

TOKEN = "s3cret-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
WRONG = (("authorization", "Bearer nope"),)
DPUS = common_pb2.STRATEGY_DPUS


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Holds every engine.forget until the event is set, so a request stays pending as long as a test needs."""
    release = threading.Event()
    real = Engine.forget

    def forget(self, ids, strategy="auto", *, request_ids=()):
        release.wait(120)
        return real(self, ids, strategy, request_ids=request_ids)

    monkeypatch.setattr(Engine, "forget", forget)
    yield release
    release.set()


def sample_ids(answer: upb.ForgetResponse) -> list[str]:
    return [s.sample_id for s in answer.samples]


def test_raw_ids_go_to_the_token_holder_while_pending_and_to_nobody_once_applied(store: Path, held) -> None:
    with running_daemon(store, token=TOKEN) as running:
        inference, unlearning = running.stubs()
        ack = unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:3", "synthetic:4"], strategy=DPUS,
                                                  request_id="r1"), metadata=AUTH)
        assert ack.status == upb.FORGET_STATUS_PENDING and sample_ids(ack) == ["synthetic:3", "synthetic:4"]
        ask = upb.GetForgetRequestRequest(request_id="r1")
        assert sample_ids(unlearning.GetForgetRequest(ask).forget) == ["", ""]  # anonymous: refs only
        assert sample_ids(unlearning.GetForgetRequest(ask, metadata=WRONG).forget) == ["", ""]
        pending = unlearning.GetForgetRequest(ask, metadata=AUTH).forget
        assert pending.status == upb.FORGET_STATUS_PENDING
        assert sample_ids(pending) == ["synthetic:3", "synthetic:4"]
        assert all(len(s.subject_ref) == 64 for s in pending.samples)
        held.set()
        done = unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:3", "synthetic:4"], strategy=DPUS,
                                                   request_id="r1", wait=True), metadata=AUTH)
        assert done.status == upb.FORGET_STATUS_APPLIED and sample_ids(done) == ["synthetic:3", "synthetic:4"]
        applied = unlearning.GetForgetRequest(ask, metadata=AUTH).forget
        assert applied.status == upb.FORGET_STATUS_APPLIED and sample_ids(applied) == ["", ""]
        assert [s.subject_ref for s in applied.samples] == [s.subject_ref for s in done.samples]
        # Open reads: anyone reads the ledger and the head by default.
        assert len(list(unlearning.ReadLedger(upb.ReadLedgerRequest()))) == 3
        assert unlearning.GetLedgerHead(upb.GetLedgerHeadRequest()).head.size == 3
        assert inference.GetModel(ipb.GetModelRequest()).version == 1


def test_token_gated_ledger_reads_refuse_anonymous_callers(store: Path) -> None:
    with running_daemon(store, token=TOKEN, ledger_reads="token") as running:
        inference, unlearning = running.stubs()
        done = unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:5"], strategy=DPUS, request_id="r2",
                                                   wait=True), metadata=AUTH)
        reads = [
            lambda md: list(unlearning.ReadLedger(upb.ReadLedgerRequest(), metadata=md)),
            lambda md: unlearning.GetLedgerHead(upb.GetLedgerHeadRequest(), metadata=md),
            lambda md: unlearning.GetForgetRequest(upb.GetForgetRequestRequest(request_id="r2"), metadata=md),
        ]
        for read in reads:
            for metadata in ((), WRONG):
                with pytest.raises(grpc.RpcError) as info:
                    read(metadata)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            read(AUTH)  # the token's holder reads
        assert inference.GetModel(ipb.GetModelRequest()).version == done.result.model_version  # inference stays open


def test_without_a_token_every_caller_is_the_holder(store: Path, held) -> None:
    with running_daemon(store) as running:
        _, unlearning = running.stubs()
        unlearning.Forget(upb.ForgetRequest(sample_ids=["synthetic:7"], strategy=DPUS, request_id="r3"))
        pending = unlearning.GetForgetRequest(upb.GetForgetRequestRequest(request_id="r3")).forget
        assert pending.status == upb.FORGET_STATUS_PENDING and sample_ids(pending) == ["synthetic:7"]
        held.set()  # before the daemon stops, so its drain finishes the batch


def test_token_gated_reads_need_a_token(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="--ledger-reads token needs a bearer token"):
        ServerConfig(store=tmp_path, ledger_reads="token")
    with pytest.raises(InvalidConfig, match="choose one of open, token"):
        ServerConfig(store=tmp_path, token=TOKEN, ledger_reads="sometimes")
