"""Ledger benchmark: durable appends beside raw SQLite, batched appends, verification and proofs at scale.

Raw SQLite is the yardstick the ledger is held to: the same file settings (WAL, synchronous=FULL, one
BEGIN IMMEDIATE transaction per insert), the same STRICT table with the same UNIQUE event_id, rows of the
same size, but no canonicalisation, no hashing and no idempotency lookup. The two run in alternating rounds
in one process so that a noisy machine slows both alike.

Group commit is measured in the same rounds: N writer threads, each appending Forget-shaped events (the
daemon's `forget.requested` payload and event id) through one GroupCommitter and each waiting until its own
entry is durable, as an admission thread does before it answers. Its rate is appends acknowledged per second
across all writers; events per commit is how many of them one fsync carried.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .group_commit import Event, GroupCommitter
from .merkle import HASH_SIZE
from .proofs import verify_inclusion
from .schema import COLUMNS, TABLE_SQL, connect
from .model import Entry
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


WRITERS = (8, 32)  # group-commit writer threads: the figure asked of the ledger (8), and how it grows (32)


def daemon_forget(i: int) -> tuple[str, dict[str, Any], str]:
    """An event as the daemon's admission appends it: forget.requested, one subject reference, its event id."""
    request_id = f"bench-{i:08d}"
    payload = {"request_id": request_id, "subjects": [hashlib.sha256(f"subject-{i}".encode()).hexdigest()],
               "strategy": "auto", "requested_at": "2025-01-02T03:04:05.000006Z"}
    return "forget.requested", payload, f"forget.requested:{request_id}"


def run_bench(
    workdir: str | Path | None = None,
    *,
    appends: int = 2000,
    rounds: int = 4,
    grouped: int = 4000,
    writers: tuple[int, ...] = WRITERS,
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
        figures += _single_appends(root, appends, rounds, progress, grouped=grouped, writers=writers)
        figures.append(_batched_appends(root, batched, batch_size, progress))
        figures += _verify_and_prove(root, verify_entries, verify_runs, proofs, progress)
        return figures


def _single_appends(root: Path, n: int, rounds: int, progress: Callable[[str], None], *, grouped: int = 0,
                    writers: tuple[int, ...] = ()) -> list[Figure]:
    progress(f"durable single appends: {n} ledger appends and {n} raw SQLite inserts in {rounds} alternating rounds"
             + (f", with {grouped} group-commit appends per writer count ({', '.join(map(str, writers))})"
                if writers else ""))
    ledger = Ledger(root / "single.db")
    raw = _RawSqlite(root / "raw.db", ledger.append("bench.sample", forget_payload(-1), event_id="sample"))
    groups = [_Grouped(root / f"grouped-{w}.db", w) for w in writers]
    per_round, group_round = max(1, n // rounds), max(1, grouped // rounds)
    t_ledger = t_raw = 0.0
    done = 0
    for _ in range(rounds):
        payloads = [forget_payload(done + i) for i in range(per_round)]
        t_raw += raw.run(per_round)
        start = time.perf_counter()
        for payload in payloads:
            ledger.append("forget.requested", payload)
        t_ledger += time.perf_counter() - start
        for group in groups:
            group.run(group_round)
        done += per_round
    raw.close()
    ledger.close()
    raw_rate, ledger_rate = done / t_raw, done / t_ledger
    figures = [
        Figure("durable single appends (ledger)", ledger_rate, "appends/s", f"{done} appends, 1 fsync each"),
        Figure("raw SQLite inserts, same settings", raw_rate, "inserts/s", "WAL, synchronous=FULL, BEGIN IMMEDIATE"),
        Figure("ledger / raw SQLite", ledger_rate / raw_rate, "x", "target >= 0.6"),
    ]
    for group in groups:
        figures += group.figures(raw_rate)
        group.close()
    return figures


class _RawSqlite:
    """Raw single-commit SQLite: one BEGIN IMMEDIATE + INSERT + COMMIT per row, rows the size of `sample`'s."""

    def __init__(self, path: Path, sample: Entry) -> None:
        self._conn = connect(path)
        self._conn.execute(TABLE_SQL.replace("CREATE TABLE entries", "CREATE TABLE raw"))
        self._insert = f"INSERT INTO raw ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        self._sample = sample
        self._done = 0

    def run(self, count: int) -> float:
        """Inserts `count` rows, one commit each; the seconds it took."""
        s, first = self._sample, self._done
        rows = [(first + i + 1, f"raw-{first + i}", s.type, 1, s.recorded_at, os.urandom(len(s.envelope)),
                 os.urandom(HASH_SIZE), os.urandom(HASH_SIZE)) for i in range(count)]
        conn, insert = self._conn, self._insert
        start = time.perf_counter()
        for row in rows:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(insert, row)
            conn.execute("COMMIT")
        self._done += count
        return time.perf_counter() - start

    def close(self) -> None:
        self._conn.close()


class _Grouped:
    """`writers` threads appending through one GroupCommitter to their own ledger, each waiting for its entry."""

    def __init__(self, path: Path, writers: int) -> None:
        self.writers = writers
        self._ledger = Ledger(path)
        self._committer: GroupCommitter[None] = GroupCommitter(self._commit, lambda durable: None)
        self._done = 0
        self._seconds = 0.0

    def _commit(self, events: Sequence[Event]) -> list[Entry]:
        return self._ledger.append_many([(t, dict(p), e) for t, p, e in events])  # as the daemon's writer does

    def run(self, count: int) -> None:
        """`count` appends spread over the writers, timed from their common start until the last is durable."""
        first, committer = self._done, self._committer
        events = [daemon_forget(first + i) for i in range(count)]
        shares = [events[k::self.writers] for k in range(self.writers)]
        gate = threading.Barrier(self.writers + 1)

        def write(share: list[tuple[str, dict[str, Any], str]]) -> None:
            gate.wait()
            for event in share:
                committer.append(event, None)

        threads = [threading.Thread(target=write, args=(share,), daemon=True) for share in shares]
        for t in threads:
            t.start()
        gate.wait()
        start = time.perf_counter()
        for t in threads:
            t.join()
        self._seconds += time.perf_counter() - start
        self._done += count

    def figures(self, raw_rate: float) -> list[Figure]:
        stats = self._committer.stats()
        if stats.entries != self._done:
            raise RuntimeError(f"{self._done} group-commit appends made but {stats.entries} committed: {stats}")
        rate, w = self._done / self._seconds, self.writers
        per_commit = stats.entries / max(1, stats.commits)
        return [
            Figure(f"group-commit appends, {w} writers", rate, "appends/s",
                   f"{self._done} appends, each writer waits for its own fsync"),
            Figure(f"events per commit, {w} writers", per_commit, "events", f"{stats.commits} commits, largest {stats.largest}"),
            Figure(f"group commit {w} writers / raw SQLite", rate / raw_rate, "x",
                   "target >= 3 at 8 writers" if w == 8 else "same raw SQLite rounds"),
        ]

    def close(self) -> None:
        self._committer.close()
        self._ledger.close()


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
