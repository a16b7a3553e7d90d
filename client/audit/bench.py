"""`forgetd bench audit`: what an audit costs.

Two figures, each measured on the real code path of `forgetd verify`:

- chain: `audit(store, chain_only=True)` on a ledger of N entries (default 100,000) shaped like a daemon's
  (genesis, then forget.requested / forget.applied pairs with realistic payloads): entries per second of the
  whole chain check (verify_ledger's recomputation plus the auditor's event fold), and of verify_ledger alone.
- replay: a store trained, served by a real daemon (in-process, port 0) that applies F single-sample forgets
  (default 100) of mixed strategies one after another; then a full `audit(store)`. The replay check's wall
  time (scratch copy of the vault, engine open, every forget, every digest) beside the time the daemon spent
  applying the same batches (the sum of their recorded apply_micros): the ratio, target <= 1.2x.

The daemon and the engine are imported lazily (the server extra), as `forgetd verify` does for its replay.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from forgetd.client.audit.auditor import audit
from forgetd.ledger import Ledger, verify_ledger

MIXED = ("hs", "sisa", "dpus", "ohs", "retrain", "auto")


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
    from forgetd.client.client import Client
    from forgetd.server.config import EngineConfig
    from forgetd.server import ServerConfig, create_server
    from forgetd.server.data.loaders import load_dataset
    from forgetd.server.engine.engine import Engine

    store = workdir / "replay-store"
    say(f"training a store on {rows} synthetic rows")
    Engine.train(load_dataset("synthetic", n=rows, seed=0),
                 EngineConfig(slices=10, epochs=2, hidden_sizes=(64, 64), device=device), store).close()
    daemon, port = create_server(ServerConfig(store=store, listen="127.0.0.1:0", device=device))
    daemon.start()
    try:
        with Client(f"127.0.0.1:{port}", timeout=600) as client:
            ids = daemon.runtime.engine.sample_ids()[:: max(1, rows // (forgets + 1))][:forgets]
            for i, sid in enumerate(ids):
                client.forget([sid], strategy=MIXED[i % len(MIXED)])
                if (i + 1) % 10 == 0:
                    say(f"daemon applied {i + 1}/{len(ids)} forgets")
    finally:
        daemon.stop(grace=5.0)
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

