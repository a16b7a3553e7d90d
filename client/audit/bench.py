"""`forgetd bench audit`: what an audit costs.

Two figures, each measured on the real code path of `forgetd verify`:

- chain: `audit(store, chain_only=True)` on a ledger of N entries (default 100,000) shaped like a daemon's
  (genesis, then forget.requested / forget.applied pairs with realistic payloads): entries per second of the
  whole chain check (verify_ledger's recomputation plus the auditor's event fold), and of verify_ledger alone.
- replay: a store trained with `forgetd train`, served by `forgetd serve` (port 0, waited on through health),
  which applies F single-sample forgets (default 100) of mixed strategies one after another (after one
  warm-up forget that a sealed audit puts behind the vault); then a full `audit(store)`. The replay check's
  wall time (scratch copy of the vault, engine open, every forget, every digest) beside the time the daemon
  spent applying the same batches (the sum of their recorded apply_micros): the ratio, target <= 1.2x.

The store and the daemon are made the way an operator makes them, through the commands in subprocesses: the
client imports nothing of the server but the replay the audit itself runs (which needs the server extra).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from forgetd.client.audit import store_reader
from forgetd.client.audit.auditor import audit
from forgetd.client.client import Client
from forgetd.ledger import Ledger, verify_ledger

MIXED = ("hs", "sisa", "dpus", "ohs", "retrain", "auto")
# The replayed store: the settings the figures in the README were measured with.
TRAIN_ARGS = ("--slices", "10", "--epochs", "2", "--epoch-schedule", "per-step", "--hidden", "64,64")
_LISTENING = re.compile(r"listening on (\S+:\d+)")  # the line `forgetd serve` prints once bound
_SERVE_WAIT_S = 600.0  # loading the store and folding the ledger, on a slow shared machine


@dataclass(frozen=True)
class ChainFigures:
    entries: int
    chain_check_s: float  # audit(chain_only=True): verify_ledger + event fold
    verify_ledger_s: float  # verify_ledger alone
    entries_per_s: float
    verify_ledger_entries_per_s: float


@dataclass(frozen=True)
class ReplayFigures:
    forgets: int
    rows: int
    strategies: str
    device: str
    daemon_apply_s: float  # sum of the replayed batches' apply_micros, as the daemon recorded them
    replay_s: float  # the replay check's wall time
    replay_forget_s: float  # the engine's time inside forget() on replay
    ratio: float  # replay_s / daemon_apply_s
    audit_s: float  # the whole audit (chain, genesis, replay, data)
    bitwise: bool
    ok: bool


def _digest(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def build_ledger(path: Path, entries: int, *, batch: int = 5000) -> None:
    """A ledger of `entries` entries shaped like a daemon's: genesis, then requested/applied pairs."""
    key = os.urandom(32).hex()
    genesis = {"engine": {"config": {"shards": 1}, "artifacts": {"layout": _digest("layout")}, "device": "cpu"},
               "head_public_key": key,
               "model": {"version": 0, "digest": _digest(0), "shard_digests": [_digest(0, 0)]},
               "vault": {"format": "forgetd.vault.v1", "name": "genesis", "version": 0, "files": {}, "rows": 0,
                         "rows_digest": _digest("rows")}}
    with Ledger(path) as ledger:
        ledger.append("genesis", genesis, event_id="genesis")
        pending: list[tuple[str, dict[str, Any], str]] = []
        version = 0
        for i in range(1, entries):
            n = (i + 1) // 2
            rid = f"bench-{n:08d}"
            ref = _digest("subject", n)
            if i % 2:
                pending.append(("forget.requested", {"request_id": rid, "subjects": [ref], "strategy": "hs",
                                                     "requested_at": "2026-01-01T00:00:00.000000Z"},
                                f"forget.requested:{rid}"))
            else:
                version += 1
                pending.append(("forget.applied", {
                    "request_ids": [rid], "strategy": "hs", "resolved_strategy": "hs",
                    "subjects": [{"subject_ref": ref, "shard": 0, "slice": 3, "region": "update", "strategy": "dpus",
                                  "guarantee": "approximate"}],
                    "model": {"version": version, "digest": _digest(version), "shard_digests": [_digest(version, 0)]},
                    "guarantee": "approximate", "residue_steps": 0, "samples_read": 0,
                    "timings": {"apply_micros": 1000, "queued_micros": 10}, "recovered": False, "device": "cpu",
                }, f"forget.applied:{rid}"))
            if len(pending) == batch:
                ledger.append_many(pending)  # type: ignore[arg-type]
                pending = []
        if pending:
            ledger.append_many(pending)  # type: ignore[arg-type]


def bench_chain(workdir: Path, entries: int = 100_000, runs: int = 3,
                say: Callable[[str], None] = lambda s: None) -> ChainFigures:
    store = workdir / "chain-store"
    store.mkdir()
    say(f"building a ledger of {entries:,} entries")
    build_ledger(store / "ledger.sqlite", entries)
    best_check = best_verify = float("inf")
    for run in range(runs):
        t0 = time.perf_counter()
        report = audit(store, chain_only=True)
        best_check = min(best_check, time.perf_counter() - t0)
        if not report.ok:
            raise click.ClickException(f"the bench ledger did not verify: {report.checks[0].summary}")
        t0 = time.perf_counter()
        verify_ledger(store / "ledger.sqlite")
        best_verify = min(best_verify, time.perf_counter() - t0)
        say(f"chain run {run + 1}/{runs}: {best_check:.3f} s (verify_ledger {best_verify:.3f} s)")
    return ChainFigures(entries, best_check, best_verify, entries / best_check, entries / best_verify)


def bench_replay(workdir: Path, forgets: int = 100, rows: int = 4000, device: str = "cpu",
                 say: Callable[[str], None] = lambda s: None) -> ReplayFigures:
    store = workdir / "replay-store"
    say(f"training a store on {rows} synthetic rows")
    _forgetd("train", "--data", "synthetic", "--rows", str(rows), "--store", str(store), *TRAIN_ARGS,
             "--device", device, "--quiet")
    # The training rows in training-data order, as the daemon lists its samples.
    trained = [sid for _ord, sid, _y, _x in store_reader.iter_rows(store / "rows.sqlite")]
    ids = trained[:: max(1, rows // (forgets + 1))][:forgets]
    measured = set(ids)
    spare = [sid for sid in reversed(trained) if sid not in measured]
    if not spare:
        raise click.ClickException(f"--forgets {forgets} leaves no training row of the {rows} for the warm-up")
    with _serving(store, device) as address, Client(address, timeout=600) as client:
        _warm_up(store, client, spare[0], device, say)
        for i, sid in enumerate(ids):
            client.forget([sid], strategy=MIXED[i % len(MIXED)])
            if (i + 1) % 10 == 0:
                say(f"daemon applied {i + 1}/{len(ids)} forgets")
    say("auditing (full replay)")
    t0 = time.perf_counter()
    report = audit(store, device=device)
    audit_s = time.perf_counter() - t0
    fig = report.check("replay").figures
    if not fig:
        raise click.ClickException(f"the replay did not run: {report.check('replay').summary}")
    return ReplayFigures(forgets=len(ids), rows=rows, strategies="/".join(MIXED), device=str(fig["device"]),
                         daemon_apply_s=float(fig["daemon_seconds"]), replay_s=float(fig["seconds"]),
                         replay_forget_s=float(fig["forget_seconds"]), ratio=float(fig["ratio"]),
                         audit_s=audit_s, bitwise=bool(fig["bitwise"]), ok=report.ok)


def _warm_up(store: Path, client: Client, sample_id: str, device: str, say: Callable[[str], None]) -> None:
    """One retrain in the daemon and one replay here before anything is timed, then a seal, so that the timed
    audit replays the measured forgets only. A fresh process's first retrain loads torch's optimizer stack
    (seconds): a daemon that has served a while paid it long ago, and neither figure may count it."""
    say("warming up: one forget in the daemon, one sealed audit here")
    client.forget([sample_id], strategy="sisa")
    report = audit(store, device=device, seal=True)
    if report.sealed is None:
        raise click.ClickException(f"the warm-up audit did not seal:\n{report.text()}")


def _command(*args: str) -> list[str]:
    """`forgetd ARGS...` run by this interpreter, so the daemon is the forgetd installed beside this client."""
    return [sys.executable, "-c", "import sys; from forgetd.client.cli import main; main(sys.argv[1:], 'forgetd')",
            *args]


def _forgetd(*args: str) -> None:
    done = subprocess.run(_command(*args), stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        raise click.ClickException(f"forgetd {args[0]} failed (exit {done.returncode}): {done.stderr.strip()}")


@contextlib.contextmanager
def _serving(store: Path, device: str) -> Iterator[str]:
    """`forgetd serve` on port 0; its address once health says SERVING; SIGTERM (finish, exit 0) on the way out."""
    proc = subprocess.Popen(_command("serve", "--store", str(store), "--listen", "127.0.0.1:0", "--device", device,
                                     "--log-level", "warning"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    try:
        address = _bound_address(proc, log)
        # The rest of its stderr is drained (a full pipe would block the daemon) and kept for an error message.
        assert proc.stderr is not None
        threading.Thread(target=log.extend, args=(proc.stderr,), name="serve-stderr", daemon=True).start()
        _wait_serving(address)
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=_SERVE_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    if code != 0:
        raise click.ClickException(f"forgetd serve exited {code}: {''.join(log[-20:]).strip()}")


def _bound_address(proc: subprocess.Popen[str], log: list[str]) -> str:
    assert proc.stderr is not None
    for line in proc.stderr:
        log.append(line)
        if (m := _LISTENING.search(line)) is not None:
            return m.group(1)
    raise click.ClickException(f"forgetd serve did not bind (exit {proc.wait()}): {''.join(log).strip()}")


def _wait_serving(address: str) -> None:
    """Block until the daemon's overall health is SERVING (a Watch stream: no polling)."""
    with grpc.insecure_channel(address) as channel:
        stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""),
                                                           timeout=_SERVE_WAIT_S, wait_for_ready=True)
        try:
            for update in stream:
                if update.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError as exc:
            raise click.ClickException(f"forgetd serve did not become healthy: {exc.code().name}") from exc
        finally:
            stream.cancel()
    raise click.ClickException("forgetd serve's health stream ended before it said SERVING")


@click.command("audit", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--entries", type=click.IntRange(min=2), default=100_000, show_default=True,
              help="Ledger entries for the chain-only figure.")
@click.option("--forgets", type=click.IntRange(min=1), default=100, show_default=True,
              help="Forgets the daemon applies and the audit replays.")
@click.option("--rows", type=click.IntRange(min=100), default=4000, show_default=True,
              help="Synthetic training rows of the replayed store.")
@click.option("--device", default="cpu", show_default=True, help="Where the daemon and the replay run.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), help="Scratch space (default: a temp dir).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def audit_command(entries: int, forgets: int, rows: int, device: str, workdir: Path | None, as_json: bool) -> None:
    """Chain-only verification speed at --entries, and full replay time beside the daemon's for --forgets."""
    say = (lambda s: None) if as_json else (lambda s: click.echo(f"  .. {s}", err=True))
    with tempfile.TemporaryDirectory(prefix="forgetd-audit-bench-", dir=workdir) as tmp:
        chain = bench_chain(Path(tmp), entries, say=say)
        replay = bench_replay(Path(tmp), forgets, rows, device, say=say)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    if as_json:
        click.echo(json.dumps({"chain": asdict(chain), "replay": asdict(replay), "machine": machine}, indent=2))
        return
    click.echo(f"machine: {machine}")
    click.echo(f"chain-only verification, {chain.entries:,} entries: {chain.entries_per_s:,.0f} entries/s "
               f"({chain.chain_check_s:.3f} s; verify_ledger alone {chain.verify_ledger_entries_per_s:,.0f} entries/s)")
    click.echo(f"full replay, {replay.forgets} forgets ({replay.strategies}) on {replay.rows} rows, {replay.device}: "
               f"replay {replay.replay_s:.2f} s vs daemon {replay.daemon_apply_s:.2f} s = {replay.ratio:.2f}x "
               f"(target <= 1.2x); engine time on replay {replay.replay_forget_s:.2f} s; whole audit "
               f"{replay.audit_s:.2f} s; {'bitwise' if replay.bitwise else 'within tolerance'}, "
               f"{'verified' if replay.ok else 'NOT verified'}")

