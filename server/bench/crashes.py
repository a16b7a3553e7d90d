"""SIGKILL rounds: a daemon killed at random moments while Forgets stream in never loses an acknowledged one.

Each round starts `forgetd serve`, checks what the previous kill left (every acknowledged request is in the
ledger; asked again with wait=true, each is applied, exactly once), then streams Forgets (wait=false) and
SIGKILLs the daemon after a random number of acknowledgements plus a random delay, so kills land anywhere:
mid-append, mid-retrain, between the engine's commit and forget.applied. A last start checks the last round.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc

from forgetd.ledger import Ledger
from forgetd.v1 import common_pb2, unlearning_service_pb2 as upb, unlearning_service_pb2_grpc

from forgetd.server.bench.processes import DaemonProcess
from forgetd.server.errors import MalformedEvent
from forgetd.server.runtime.events import LedgerFold

__all__ = ["CrashFigures", "run_crash_rounds"]

_STRATEGIES = (common_pb2.STRATEGY_DPUS, common_pb2.STRATEGY_SISA, common_pb2.STRATEGY_HS, common_pb2.STRATEGY_OHS)


@dataclass(frozen=True)
class CrashFigures:
    rounds: int  # daemons SIGKILLed
    acknowledged: int  # Forgets the daemon answered (durable, it said) before a kill
    lost: int  # acknowledged but missing from the ledger after the restart: must be 0
    not_applied: int  # in the ledger but not applied after the restarts: must be 0
    applied_twice: int  # requests or subjects the ledger applied more than once: must be 0
    recovered: int  # batches the engine had published when it died, recorded at restart from the store's tag
    seconds: float


@dataclass
class _Sent:
    requests: dict[str, tuple[list[str], common_pb2.Strategy]]  # request id -> (sample ids, strategy)
    acknowledged: set[str]


def _fold(store: Path) -> LedgerFold:
    """The ledger's state; LedgerFold raises MalformedEvent when a request or a subject is applied twice."""
    fold = LedgerFold()
    with Ledger(store / "ledger.sqlite", readonly=True) as ledger:
        for e in ledger.entries():
            fold.add(e.seq, e.type, e.leaf_hash, e.payload)
    return fold


def _check(address: str, store: Path, sent: _Sent) -> tuple[int, int]:
    """After a restart: (acknowledged requests missing from the ledger, requests not applied when asked again).
    MalformedEvent when the ledger applied a request or a subject twice."""
    requested = _fold(store).requests
    lost = len(sent.acknowledged - set(requested))
    not_applied = 0
    with grpc.insecure_channel(address) as channel:
        unlearning = unlearning_service_pb2_grpc.UnlearningServiceStub(channel)
        for rid in requested:
            ids, strategy = sent.requests[rid]
            answer = unlearning.Forget(upb.ForgetRequest(sample_ids=ids, strategy=strategy, request_id=rid, wait=True),
                                       timeout=300)
            not_applied += answer.status != upb.FORGET_STATUS_APPLIED
    return lost, not_applied


def _stream_and_kill(daemon: DaemonProcess, sent: _Sent, samples: list[str], rng: random.Random) -> None:
    """Forgets with wait=false until the kill; the kill comes after 0-3 acknowledgements and 0-80 ms more."""
    kill_after, enough = rng.randint(0, 3), threading.Event()
    done = threading.Event()
    plan = [(str(uuid.uuid4()), [samples.pop()], rng.choice(_STRATEGIES))
            for _ in range(min(kill_after + 4, len(samples)))]

    def stream() -> None:
        try:
            with grpc.insecure_channel(daemon.address) as channel:
                unlearning = unlearning_service_pb2_grpc.UnlearningServiceStub(channel)
                for count, (rid, ids, strategy) in enumerate(plan, start=1):
                    sent.requests[rid] = (ids, strategy)
                    unlearning.Forget(upb.ForgetRequest(sample_ids=ids, strategy=strategy, request_id=rid), timeout=60)
                    sent.acknowledged.add(rid)
                    if count >= kill_after:
                        enough.set()
        except grpc.RpcError:
            pass  # the daemon died under the call: what the round is for
        finally:
            enough.set()
            done.set()

    sender = threading.Thread(target=stream, name="reliability-forgets")
    sender.start()
    enough.wait(120)
    done.wait(rng.uniform(0.0, 0.08))  # the random moment; returns early only if the stream already ended
    daemon.kill()
    sender.join()


def run_crash_rounds(store: Path, samples: list[str], rounds: int, seed: int) -> CrashFigures:
    """`rounds` SIGKILL rounds on `store` (which they change), forgetting from `samples` (popped from the end)."""
    started = time.perf_counter()
    rng = random.Random(seed)
    sent = _Sent({}, set())
    samples = list(samples)
    lost = not_applied = twice = 0
    try:
        for _ in range(rounds):
            daemon = DaemonProcess.start(store)
            missing, unapplied = _check(daemon.address, store, sent)
            lost, not_applied = lost + missing, not_applied + unapplied
            _stream_and_kill(daemon, sent, samples, rng)
        daemon = DaemonProcess.start(store)
        missing, unapplied = _check(daemon.address, store, sent)
        lost, not_applied = lost + missing, not_applied + unapplied
        daemon.stop()
        fold = _fold(store)
    except MalformedEvent:  # what the fold says of a request or a subject applied twice
        twice += 1
        daemon.kill()
        fold = LedgerFold()
    recovered = len({a.seq for a in fold.applied_by_request.values() if a.recovered})
    return CrashFigures(rounds, len(sent.acknowledged), lost, not_applied, twice, recovered,
                        time.perf_counter() - started)
