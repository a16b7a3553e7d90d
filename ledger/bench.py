"""Ledger benchmark: durable appends beside raw SQLite, batched appends, verification and proofs at scale.

Raw SQLite is the yardstick the ledger is held to: the same file settings (WAL, synchronous=FULL, one
BEGIN IMMEDIATE transaction per insert), the same STRICT table with the same UNIQUE event_id, rows of the
same size, but no canonicalisation, no hashing and no idempotency lookup. The two run in alternating rounds
in one process so that a noisy machine slows both alike.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .merkle import HASH_SIZE
from .proofs import verify_inclusion
from .schema import COLUMNS, TABLE_SQL, connect
from .store import Ledger
from .verify import verify_ledger


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "unit": self.unit, "note": self.note}


def forget_payload(i: int) -> dict[str, Any]:
    """A payload shaped like a real forget.requested event: two subject references, a strategy."""
    subjects = [hashlib.sha256(f"subject-{i}-{k}".encode()).hexdigest() for k in range(2)]
    return {"request_id": f"bench-{i:08d}", "subjects": subjects, "strategy": "auto", "wait": False}


def run_bench(
    workdir: str | Path | None = None,
    *,
    appends: int = 2000,
    rounds: int = 4,
    batched: int = 20000,
    batch_size: int = 500,
    verify_entries: int = 100_000,
    verify_runs: int = 3,
    proofs: int = 200,
    progress: Callable[[str], None] = lambda message: None,
) -> list[Figure]:
    """Run every measurement in `workdir` (a fresh temporary directory by default) and return the figures."""
    with tempfile.TemporaryDirectory(prefix="forgetd-ledger-bench-", dir=workdir) as tmp:
        root = Path(tmp)
        figures: list[Figure] = []
        figures += _single_appends(root, appends, rounds, progress)
        figures.append(_batched_appends(root, batched, batch_size, progress))
        figures += _verify_and_prove(root, verify_entries, verify_runs, proofs, progress)
        return figures


def _single_appends(root: Path, n: int, rounds: int, progress: Callable[[str], None]) -> list[Figure]:
    progress(f"durable single appends: {n} ledger appends and {n} raw SQLite inserts in {rounds} alternating rounds")
    ledger = Ledger(root / "single.db")
    raw = connect(root / "raw.db")
    raw.execute(TABLE_SQL.replace("CREATE TABLE entries", "CREATE TABLE raw"))
    insert = f"INSERT INTO raw ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    sample = ledger.append("bench.sample", forget_payload(-1), event_id="sample")  # row size to mimic
    per_round = max(1, n // rounds)
    t_ledger = t_raw = 0.0
    done = 0
    for _ in range(rounds):
        payloads = [forget_payload(done + i) for i in range(per_round)]
        rows = [
            (done + i + 1, f"raw-{done + i}", sample.type, 1, sample.recorded_at, os.urandom(len(sample.envelope)),
             os.urandom(HASH_SIZE), os.urandom(HASH_SIZE))
            for i in range(per_round)
        ]
        start = time.perf_counter()
        for row in rows:
            raw.execute("BEGIN IMMEDIATE")
            raw.execute(insert, row)
            raw.execute("COMMIT")
        t_raw += time.perf_counter() - start
        start = time.perf_counter()
        for payload in payloads:
            ledger.append("forget.requested", payload)
        t_ledger += time.perf_counter() - start
        done += per_round
    raw.close()
    ledger.close()
    raw_rate, ledger_rate = done / t_raw, done / t_ledger
    return [
        Figure("durable single appends (ledger)", ledger_rate, "appends/s", f"{done} appends, 1 fsync each"),
        Figure("raw SQLite inserts, same settings", raw_rate, "inserts/s", "WAL, synchronous=FULL, BEGIN IMMEDIATE"),
        Figure("ledger / raw SQLite", ledger_rate / raw_rate, "x", "target >= 0.6"),
    ]


def _batched_appends(root: Path, n: int, batch_size: int, progress: Callable[[str], None]) -> Figure:
    progress(f"batched appends: {n} in batches of {batch_size}")
    with Ledger(root / "batched.db") as ledger:
        start = time.perf_counter()
        for first in range(0, n, batch_size):
            ledger.append_many([("forget.requested", forget_payload(i)) for i in range(first, min(n, first + batch_size))])
        elapsed = time.perf_counter() - start
    return Figure("batched appends", n / elapsed, "appends/s", f"append_many, {batch_size} per transaction")


def _verify_and_prove(root: Path, n: int, runs: int, proofs: int, progress: Callable[[str], None]) -> list[Figure]:
    path = root / "verify.db"
    progress(f"building a ledger of {n} entries")
    with Ledger(path) as ledger:
        for first in range(0, n, 1000):
            ledger.append_many([("forget.requested", forget_payload(i)) for i in range(first, min(n, first + 1000))])
    figures = []
    many = _parallel_jobs(n)
    for jobs, label in [(1, "1 process")] + ([(many, f"{many} processes")] if many > 1 else []):
        progress(f"verify_ledger at {n} entries, {label}, {runs} runs")
        times, cpu = [], []
        for _ in range(runs):
            started = time.process_time()
            report = verify_ledger(path, jobs=jobs)
            cpu.append(time.process_time() - started)
            if not report.ok:
                raise RuntimeError(f"the benchmark ledger failed verification: {report.summary()}")
            times.append(report.elapsed_s)
        wall = statistics.median(times)
        figures.append(Figure(f"verify_ledger at {n} entries, {label}", n / wall, "entries/s",
                              f"wall clock, median of {runs} ({wall:.3f} s); target >= 100000"))
        if jobs == 1:
            figures.append(Figure(f"verify_ledger at {n} entries, per CPU second", n / statistics.median(cpu),
                                  "entries/s", "1 process; CPU time of the row pass and integrity_check together"))
    progress(f"inclusion proofs at {n} entries")
    with Ledger(path, readonly=True) as ledger:
        start = time.perf_counter()
        head = ledger.head()  # the first call reads every leaf hash into memory
        cold = time.perf_counter() - start
        step = max(1, n // max(1, proofs))
        seqs = list(range(1, n + 1, step))[:proofs]
        start = time.perf_counter()
        made = [ledger.prove_inclusion(seq) for seq in seqs]
        warm = (time.perf_counter() - start) / len(made)
        start = time.perf_counter()
        for proof in made:
            verify_inclusion(proof.leaf_hash, proof.seq, proof, head)
        check = (time.perf_counter() - start) / len(made)
    sizes = [len(p.hashes) for p in made]
    figures += [
        Figure(f"open + first head at {n} entries", cold * 1000, "ms", "reads every leaf hash once per process"),
        Figure(f"inclusion proof at {n} entries", warm * 1e6, "us", f"mean over {len(made)} seqs"),
        Figure(f"inclusion proof size at {n} entries", max(sizes) * HASH_SIZE, "bytes", f"{max(sizes)} hashes (max)"),
        Figure("inclusion proof check (client side)", check * 1e6, "us", "hashes only"),
    ]
    return figures


def _parallel_jobs(entries: int) -> int:
    """Processes for the second verification figure: one per CPU (up to MAX_JOBS), for ledgers large enough
    to be split. (verify_ledger's own default counts only idle CPUs.)"""
    from .scan import MAX_JOBS, PARALLEL_MIN_ENTRIES

    return 1 if entries < PARALLEL_MIN_ENTRIES else max(1, min(os.cpu_count() or 1, MAX_JOBS))


def format_table(figures: list[Figure]) -> str:
    rows = [(f.name, _fmt(f.value), f.unit, f.note) for f in figures]
    widths = [max(len(r[i]) for r in rows + [("figure", "value", "unit", "note")]) for i in range(4)]
    lines = [
        "  ".join(h.ljust(w) if i != 1 else h.rjust(w) for i, (h, w) in enumerate(zip(("figure", "value", "unit", "note"), widths))).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i != 1 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    return "\n".join(lines)


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"
