"""`forgetd bench admission` (wired into `forgetd bench` by client/cli/main.py): acknowledged Forgets per second
through the real gRPC daemon, with 1 and with N concurrent clients, beside raw single-commit SQLite and beside
the daemon's own gRPC server answering calls that do no work.

Figures, not a test. Each Forget is sent with wait=false, so the figure is admission (validate, append
`forget.requested` durably, answer with a receipt), not unlearning; every request names its own sample of a
freshly trained small store, and the worker applies them in the background (DPUS, the cheapest strategy).
The yardstick is raw SQLite on the same disk in the same run: the ledger's file settings (WAL,
synchronous=FULL), one BEGIN IMMEDIATE + INSERT + COMMIT per row of the same size, from 1 and from N threads
with a connection each. Raw single-commit SQLite pays one fsync per row however many threads write; group
commit lets the daemon pay one per commit, shared by every Forget that arrived while the previous was in
flight, with the same durability: no Forget is answered before its own entry is on disk.

The second yardstick is the transport's own ceiling: the same client threads calling the daemon's
grpc.health.v1 Check (served by the same server and thread pool, no work behind it) as fast as they can.
On a small machine Python gRPC alone carries fewer empty calls per second than raw SQLite commits, so a
Forget rate is read against both: forgets/raw says what group commit buys over the disk, forgets/empty calls
how much of the transport's ceiling the daemon's own work leaves. The daemon's CPU per call (all its threads,
the worker applying in the background included) is measured around each figure.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import grpc

from grpc_health.v1 import health_pb2, health_pb2_grpc

from forgetd.ledger.merkle import HASH_SIZE
from forgetd.ledger.schema import COLUMNS, TABLE_SQL, connect
from forgetd.v1 import unlearning_service_pb2, unlearning_service_pb2_grpc

from forgetd.server.api.convert import STRATEGY_TO_PROTO
from forgetd.server.config import ServerConfig
from forgetd.server.vocabulary import DPUS

__all__ = ["admission_figures", "format_admission", "admission"]

_INSERT = f"INSERT INTO raw ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


def admission_figures(clients: int = 8, requests: int = 400, store_dir: str | Path | None = None,
                      progress: Callable[[str], None] = lambda _m: None, *, rounds: int = 4) -> dict[str, Any]:
    """Acknowledged Forgets/s with 1 and `clients` concurrent clients (`requests` Forgets each) through the real
    daemon, raw single-commit SQLite inserts/s with 1 and `clients` threads (`requests` rows each), empty gRPC
    calls/s to the daemon's server from 1 and `clients` threads (`requests` each), and their ratios. The six run
    in alternating `rounds`, so that a noisy disk or machine slows all alike. Everything lives in a
    temporary folder under `store_dir` (the disk measured; the system's temporary folder by default) and is
    removed afterwards."""
    if clients < 1 or rounds < 1 or requests < clients * rounds:
        raise ValueError(f"requests ({requests}) must be at least clients x rounds ({clients} x {rounds})")
    with tempfile.TemporaryDirectory(prefix="forgetd-admission-", dir=store_dir) as tmp:
        root = Path(tmp)
        progress(f"training a {4 * requests}-row synthetic store in {root}")
        _train(root / "store", 4 * requests)
        seconds, cpu, per_commit, row_bytes = _measure(root, clients, requests, rounds, progress)
    rate = {what: {n: requests / seconds[(what, n)] for n in (1, clients)} for what in _MEASURED}
    forgets, raw, empty = rate["forgetd"], rate["raw"], rate["empty"]
    return {
        "clients": clients, "requests": requests, "rounds": rounds, "row_bytes": row_bytes,
        "disk": str(Path(store_dir or tempfile.gettempdir()).resolve()),
        "forgets_per_s": {"1": forgets[1], str(clients): forgets[clients]},
        "raw_sqlite_commits_per_s": {"1": raw[1], str(clients): raw[clients]},
        "empty_calls_per_s": {"1": empty[1], str(clients): empty[clients]},
        "transport_baseline": "grpc.health.v1.Health/Check on the daemon's own server",
        "entries_per_commit": {"1": per_commit[1], str(clients): per_commit[clients]},
        # The daemon process's CPU (every thread: gRPC, admission, the worker's background applies) per call.
        "daemon_cpu_ms_per_forget": {"1": cpu[("forgetd", 1)], str(clients): cpu[("forgetd", clients)]},
        "daemon_cpu_ms_per_empty_call": {"1": cpu[("empty", 1)], str(clients): cpu[("empty", clients)]},
        "ratios": {f"forgets_{clients}_clients/raw_1_thread": forgets[clients] / raw[1],
                   f"forgets_{clients}_clients/raw_{clients}_threads": forgets[clients] / raw[clients],
                   "forgets_1_client/raw_1_thread": forgets[1] / raw[1],
                   f"forgets_{clients}_clients/forgets_1_client": forgets[clients] / forgets[1],
                   f"forgets_{clients}_clients/empty_calls_{clients}_clients": forgets[clients] / empty[clients],
                   "forgets_1_client/empty_calls_1_client": forgets[1] / empty[1]},
    }


_MEASURED = ("forgetd", "raw", "empty")  # Forgets, raw SQLite commits, empty gRPC calls


def _measure(root: Path, clients: int, requests: int, rounds: int, progress: Callable[[str], None]
             ) -> tuple[dict[tuple[str, int], float], dict[tuple[str, int], float], dict[int, float], int]:
    """Seconds per (what, clients), the daemon's CPU ms per call of each daemon figure, entries per commit per
    client count, a forget.requested envelope's size."""
    from forgetd.server.daemon.server import create_server

    daemon, port = create_server(ServerConfig(store=root / "store", listen="127.0.0.1:0", device="cpu"))
    with daemon, multiprocessing.get_context("spawn").Pool(1) as pool:
        # The clients run in their own process, as real clients do: sharing the daemon's GIL would charge
        # their work to the daemon. That process is otherwise idle, so this one's CPU is the daemon's.
        ids = sorted(daemon.runtime.engine.sample_ids())
        target, committer = f"127.0.0.1:{port}", daemon.runtime.ledger.committers[0]
        pool.apply(_send, (target, [ids[-1:]]))  # warms the channel; its entry gives the row size
        pool.apply(_send_empty, (target, 1, 1))
        row_bytes = len(next(e for e in daemon.runtime.ledger.read(1, None) if e.type == "forget.requested").envelope)
        seconds = {(w, n): 0.0 for w in _MEASURED for n in (1, clients)}
        cpu = {(w, n): 0.0 for w in _MEASURED if w != "raw" for n in (1, clients)}
        entries = {1: [0, 0], clients: [0, 0]}  # entries, commits
        step = requests // rounds
        for r in range(rounds):
            progress(f"round {r + 1}/{rounds}: {step} Forgets (wait=false), {step} raw SQLite commits and {step} "
                     f"empty gRPC calls, from 1 and from {clients} clients")
            for n in (1, clients):
                first = (2 * r + (n != 1)) * step
                seconds[("raw", n)] += _raw_seconds(root / f"raw-{n}.db", n, r * step, step, row_bytes)
                chunk = ids[first:first + step]
                before, began = committer.stats(), time.process_time()
                seconds[("forgetd", n)] += pool.apply(_send, (target, [chunk[i::n] for i in range(n)]))
                after = committer.stats()
                entries[n][0] += after.entries - before.entries
                entries[n][1] += after.commits - before.commits
                pool.apply(_drain, (target, chunk[-1:]))  # the worker catches up before the next figure
                cpu[("forgetd", n)] += time.process_time() - began  # its background applies included
                began = time.process_time()
                seconds[("empty", n)] += pool.apply(_send_empty, (target, n, step))
                cpu[("empty", n)] += time.process_time() - began
        ms_per_call = {key: 1e3 * value / (rounds * step) for key, value in cpu.items()}
        return seconds, ms_per_call, {n: e / max(1, c) for n, (e, c) in entries.items()}, row_bytes


def _train(path: Path, rows: int) -> None:
    from forgetd.server.config import EngineConfig
    from forgetd.server.data import load_dataset
    from forgetd.server.engine.engine import Engine

    config = EngineConfig(slices=4, epochs=1, epoch_schedule="per-step", hidden_sizes=(16, 16), batch_size=32,
                          seed=0, device="cpu")  # small: the figure is admission, and DPUS stays cheap
    Engine.train(load_dataset("synthetic", n=rows, seed=0), config, path).close()


def _send(target: str, chunks: Sequence[Sequence[str]]) -> float:
    """In the client process: each chunk's Forgets, one at a time, from a thread of its own, all started
    together; the seconds until the last is acknowledged."""
    channel = grpc.insecure_channel(target)
    stub = unlearning_service_pb2_grpc.UnlearningServiceStub(channel)

    def client(chunk: Sequence[str]) -> Callable[[], None]:
        def run() -> None:
            for sample in chunk:
                stub.Forget(unlearning_service_pb2.ForgetRequest(
                    sample_ids=[sample], strategy=STRATEGY_TO_PROTO[DPUS], request_id=f"bench-{sample}",
                    wait=False))
        return run

    try:
        return _timed_together([client(c) for c in chunks], "Forget")
    finally:
        channel.close()


def _send_empty(target: str, threads: int, calls: int) -> float:
    """In the client process: `calls` health Checks (no work behind them) from `threads` threads, each one call
    at a time, all started together; the seconds until the last is answered."""
    channel = grpc.insecure_channel(target)
    stub = health_pb2_grpc.HealthStub(channel)

    def client(count: int) -> Callable[[], None]:
        def run() -> None:
            for _ in range(count):
                stub.Check(health_pb2.HealthCheckRequest())
        return run

    try:
        return _timed_together([client(calls // threads + (i < calls % threads)) for i in range(threads)],
                               "health Check")
    finally:
        channel.close()


def _timed_together(works: Sequence[Callable[[], None]], what: str) -> float:
    """Each work on a thread of its own, all released at once; the seconds until the last ends. RuntimeError
    naming the first failure when any raised (re-raised in the bench's process)."""
    start = threading.Barrier(len(works) + 1)
    failures: list[BaseException] = []

    def run(work: Callable[[], None]) -> None:
        start.wait()
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in works]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise RuntimeError(f"{len(failures)} {what}(s) failed; the first: {failures[0]}")
    return elapsed


def _drain(target: str, last: Sequence[str]) -> None:
    """Waits (wait=true, same request id) until the run's last Forget is applied: the queue is in ledger order."""
    with grpc.insecure_channel(target) as channel:
        unlearning_service_pb2_grpc.UnlearningServiceStub(channel).Forget(unlearning_service_pb2.ForgetRequest(
            sample_ids=list(last), strategy=STRATEGY_TO_PROTO[DPUS], request_id=f"bench-{last[0]}", wait=True),
            timeout=600)


def _raw_seconds(path: Path, threads: int, done: int, rows: int, row_bytes: int) -> float:
    """Seconds raw SQLite with the ledger's settings takes for `rows` more rows (after `done`): one BEGIN
    IMMEDIATE + INSERT + COMMIT per row of `row_bytes` (a forget.requested entry's size), `threads` connections
    writing together."""
    setup = connect(path)
    setup.execute(TABLE_SQL.replace("CREATE TABLE entries", "CREATE TABLE IF NOT EXISTS raw"))
    setup.close()
    seqs = iter(range(done + 1, done + rows + 1))
    lock = threading.Lock()

    def writer(conn: sqlite3.Connection) -> Callable[[], None]:
        def run() -> None:
            while True:
                with lock:
                    seq = next(seqs, None)
                if seq is None:
                    break
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(_INSERT, (seq, str(uuid.uuid4()), "forget.requested", 1, "2025-01-01T00:00:00.000000Z",
                                       os.urandom(row_bytes), os.urandom(HASH_SIZE), os.urandom(HASH_SIZE)))
                conn.execute("COMMIT")
        return run

    conns = [connect(path) for _ in range(threads)]  # opened before the clock starts
    try:
        return _timed_together([writer(c) for c in conns], "raw SQLite writer")
    finally:
        for conn in conns:
            conn.close()


def format_admission(figures: dict[str, Any]) -> str:
    n = figures["clients"]
    f, raw, per = figures["forgets_per_s"], figures["raw_sqlite_commits_per_s"], figures["entries_per_commit"]
    lines = [f"forgetd bench admission ({figures['requests']} Forgets, raw commits and empty calls per figure, "
             f"wait=false, in {figures['rounds']} alternating rounds; disk {figures['disk']})",
             "", f"{'':<40}{'1':>12}{n:>12}",
             f"{'acknowledged Forgets/s (daemon)':<40}{f['1']:>12,.0f}{f[str(n)]:>12,.0f}",
             f"{'entries per ledger commit':<40}{per['1']:>12.2f}{per[str(n)]:>12.2f}",
             f"{'raw SQLite commits/s (FULL, WAL)':<40}{raw['1']:>12,.0f}{raw[str(n)]:>12,.0f}"]
    empty = figures.get("empty_calls_per_s")
    if empty is not None:  # figures from before the transport baseline was measured lack these
        fcpu, ecpu = figures["daemon_cpu_ms_per_forget"], figures["daemon_cpu_ms_per_empty_call"]
        lines += [f"{'empty gRPC calls/s (health Check)':<40}{empty['1']:>12,.0f}{empty[str(n)]:>12,.0f}",
                  f"{'daemon CPU ms per Forget (+ its apply)':<40}{fcpu['1']:>12.3f}{fcpu[str(n)]:>12.3f}",
                  f"{'daemon CPU ms per empty call':<40}{ecpu['1']:>12.3f}{ecpu[str(n)]:>12.3f}"]
    lines.append("")
    lines += [f"{name:<50}{value:>8.2f}x" for name, value in figures["ratios"].items()]
    return "\n".join(lines)


@click.command("admission", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--clients", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--requests", type=click.IntRange(min=1), default=400, show_default=True,
              help="Forgets per run (the store is trained with four times as many rows).")
@click.option("--dir", "store_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Where the store and the raw SQLite files go: the disk measured. Default: the temporary folder.")
@click.option("--rounds", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def admission(clients: int, requests: int, store_dir: Path | None, rounds: int, as_json: bool) -> None:
    """Acknowledged Forgets/s with 1 and N clients beside raw single-commit SQLite on the same disk and empty
    gRPC calls to the same server."""
    try:
        figures = admission_figures(clients, requests, store_dir, progress=lambda m: click.echo(m, err=True),
                                    rounds=rounds)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(figures, indent=2) if as_json else format_admission(figures))
