"""The row store's size and speed: the block format (v2) that stores are created in beside the one-record-a-row
format (v1) of stores written before it, in the same run, on the same synthetic rows.

v1 is written here the way forgetd wrote it (4 KiB pages, `rows(ord, id, y, x)`), then both files are used
through RowStore. Figures per format: the file's bytes and their ratio to the raw float32 features, open,
load() of every row, of a random subset, and of every row in random chunks of 16,384 (how the engine reads
its shards when it opens a store), and erase() of 1 and of 100 random ids (each call commits and
checkpoints, as a Forget does).

    python -m forgetd.server.bench.rows_bench 280367 600     # Purchase's shape; prints the figures as JSON
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from forgetd.server.store.rows import RowStore

__all__ = ["row_store_figures"]

_CHUNK = 16384  # the engine's rows per load when it reads a shard


def row_store_figures(n_rows: int, n_features: int, *, subset: int = 1000, seed: int = 0,
                      folder: Path | None = None) -> dict[str, Any]:
    """Figures for both formats on `n_rows` x `n_features` uniform float32 rows (ids `train-0000000`...).

    Needs about 3x the features in free disk under `folder` (a temporary directory by default) and in memory.
    """
    if n_rows < 101 + subset or n_features < 1:
        raise ValueError(f"{n_rows} rows x {n_features} features: need at least {101 + subset} rows (the erases "
                         "and the subset are disjoint) and one feature")
    rng = np.random.default_rng(seed)
    X = rng.random((n_rows, n_features), dtype=np.float32)  # (n, F)
    y = rng.integers(0, 100, n_rows)
    ids = [f"train-{i:07d}" for i in range(n_rows)]
    picks = rng.permutation(n_rows)
    plan = {"subset": [ids[i] for i in picks[:subset]], "erase_1": [ids[picks[subset]]],
            "erase_100": [ids[i] for i in picks[subset + 1: subset + 101]], "shuffled": [ids[i] for i in picks]}
    figures: dict[str, Any] = {"rows": n_rows, "features": n_features, "feature_bytes": int(X.nbytes)}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        for name, write in (("v1", _write_v1), ("v2", _write_v2)):
            path = Path(tmp) / name / "rows.sqlite"
            path.parent.mkdir()
            started = time.perf_counter()
            write(path, ids, X, y)
            figures[name] = {"create_s": time.perf_counter() - started, **_measure(path, plan, X.nbytes)}
            for leftover in path.parent.iterdir():
                leftover.unlink()
    return figures


def _measure(path: Path, plan: dict[str, list[str]], feature_bytes: int) -> dict[str, Any]:
    size = path.stat().st_size
    out: dict[str, Any] = {"bytes": size, "ratio": size / feature_bytes}
    started = time.perf_counter()
    store = RowStore.open(path)
    out["open_s"] = time.perf_counter() - started
    with store:
        out["format"] = store.format
        started = time.perf_counter()
        store.load()
        out["load_all_s"] = time.perf_counter() - started
        started = time.perf_counter()
        store.load(plan["subset"])
        out["load_subset_s"], out["subset_rows"] = time.perf_counter() - started, len(plan["subset"])
        started = time.perf_counter()
        for lo in range(0, len(plan["shuffled"]), _CHUNK):
            store.load(plan["shuffled"][lo: lo + _CHUNK])
        out["load_chunked_s"] = time.perf_counter() - started
        for key in ("erase_1", "erase_100"):
            started = time.perf_counter()
            store.erase(plan[key])
            out[f"{key}_s"] = time.perf_counter() - started
    out["bytes_after_erases"] = path.stat().st_size
    return out


def _write_v2(path: Path, ids: list[str], X: np.ndarray, y: np.ndarray) -> None:
    RowStore.create(path, ids, X, y).close()


def _write_v1(path: Path, ids: list[str], X: np.ndarray, y: np.ndarray) -> None:
    # The v1 layout as forgetd wrote it before blocks: one record a row, the default 4 KiB pages.
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA secure_delete=ON")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT")
        conn.execute("CREATE TABLE rows (ord INTEGER PRIMARY KEY, id TEXT NOT NULL, y INTEGER NOT NULL, "
                     "x BLOB NOT NULL) STRICT")
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO meta VALUES (?, ?)",
                         [("format", "forgetd.rowstore.v1"), ("num_features", str(X.shape[1]))])
        conn.executemany("INSERT INTO rows VALUES (?, ?, ?, ?)",
                         ((i, sid, int(label), X[i].tobytes()) for i, (sid, label) in enumerate(zip(ids, y.tolist()))))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


if __name__ == "__main__":
    print(json.dumps(row_store_figures(int(sys.argv[1]), int(sys.argv[2])), indent=2))
