"""The figures `forgetd bench scale` takes of one trained store: its size on disk, part by part, and what
training read and recorded.

The parts come from walking the store folder and naming each file by the StorePaths entry it sits under,
so a file no part claims still counts in the total (as "other") rather than going unseen. Each file counts
once however many names it has: the audit vault hard-links the store's immutable files, so what the vault
part holds is only what it copied (the rows as they were).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from forgetd.server.config import EngineConfig
from forgetd.server.engine.schedule import config_epochs, cost
from forgetd.server.engine.training import make_layout
from forgetd.server.store.layout import Manifest, StorePaths

__all__ = ["PARTS", "store_parts", "store_figures", "training_samples"]

# What the walk names each file of a store; "other" holds the small immutable records, the keys and the test split.
PARTS = ("rows", "increments", "checkpoints", "indexes", "ledger", "test", "vault", "other")


def _allocated(path: Path) -> int:
    """Bytes the file takes on disk (allocated blocks): the reserved increments count, holes do not."""
    st = path.stat()
    return int(getattr(st, "st_blocks", 0)) * 512 or st.st_size


def _part_of(path: Path, paths: StorePaths, increments: set[str]) -> str:
    if paths.audit in path.parents:
        return "vault"
    if path == paths.test:
        return "test"
    if path.parent == paths.artifacts:
        return "increments" if path.name in increments else "checkpoints"
    if paths.index_dir in path.parents:
        return "indexes"
    for part, base in (("rows", paths.rows), ("ledger", paths.ledger)):
        # SQLite's companions (-wal, -shm, -journal) and any sibling the part's file name starts
        if path.parent == base.parent and path.name.startswith(base.stem):
            return part
    return "other"


def store_parts(store: Path) -> dict[str, int]:
    """Allocated bytes of each part of the store at `store` (PARTS), from a walk of the whole folder."""
    paths = StorePaths(Path(store))
    manifest = Manifest.read(paths.manifest)
    increments = {name for logical, name in manifest.files.items() if logical.endswith(".inc")}
    named = [(_part_of(Path(d) / f, paths, increments), Path(d) / f)
             for d, _dirs, files in os.walk(paths.root) for f in files if not (Path(d) / f).is_symlink()]
    parts = dict.fromkeys(PARTS, 0)
    seen: set[tuple[int, int]] = set()
    for part, path in sorted(named, key=lambda item: item[0] == "vault"):  # a link counts where the store has it
        st = path.stat()
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            parts[part] += _allocated(path)
    return parts


def store_figures(store: Path, n: int, features: int) -> dict[str, Any]:
    """The store's size against the raw float32 training features (n x features x 4 bytes), and the
    recorded increments per training sample per parameter."""
    paths = StorePaths(Path(store))
    meta = json.loads(paths.meta.read_text())
    parts = store_parts(store)
    raw = n * features * 4
    total = sum(parts.values())
    params = int(meta["num_params"]) * int(meta["config"]["shards"])
    return {
        "raw_feature_bytes": raw,
        "num_params": params,
        "m": int(meta["m"]),
        "store_bytes": total,
        "parts_bytes": parts,
        "store_over_raw": total / raw,
        "increments_bytes": parts["increments"],
        "increments_per_sample_per_param": parts["increments"] / (n * params),
        "test_accuracy": meta["test_accuracy_ppm"] / 1e6,
    }


def training_samples(ids: tuple[str, ...], config: EngineConfig, m: int) -> tuple[int, int]:
    """(samples a full training reads, of them those in the update region's steps, which record increments)."""
    epochs = config_epochs(config)
    read = recorded = 0
    for lay in make_layout(ids, config.shards, config.slices, config.seed):
        sizes = [lay.step_size(s) for s in range(1, config.slices + 1)]
        read += cost(sizes, epochs, 1)
        recorded += cost(sizes, epochs, 1) - (cost(sizes, epochs, config.slices - m + 1) if m else 0)
    return read, recorded
