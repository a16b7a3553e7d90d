"""The per-shard artifacts beyond checkpoints and increments, and how a version reads and writes them.

- `shard<k>.linear` (linear family): the LinearShard state (engine/linear.py), float64, one per version that
  changed it; every linear store has one per shard from training on.
- `shard<k>.influenced` (MLP): the members removed by an INFLUENCE step since the shard was last retrained,
  int64, ascending. The step corrects only the live parameters theta_S, so the checkpoints theta_j..theta_{S-1}
  after such a member's slice j still hold its influence; a later retrain of the shard therefore starts no
  later than the earliest such slice (strategies.forget_shard), and re-runs every step the member took part in.
  Absent when the set is empty.

Both are named in the manifest's `files` like every artifact, so copy-on-write, garbage collection, the audit
vault and the replay's artifact comparison cover them with no code of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from forgetd.server.engine.linear import LinearShard
from forgetd.server.engine.strategies import ShardOutcome, ShardState
from forgetd.server.errors import StoreError
from forgetd.server.store.layout import Manifest, StorePaths, save_array

__all__ = ["linear_artifact", "influenced_artifact", "attach_extras", "write_extras", "swap_extras"]


def linear_artifact(shard: int) -> str:
    return f"shard{shard}.linear"


def influenced_artifact(shard: int) -> str:
    return f"shard{shard}.influenced"


def attach_extras(paths: StorePaths, manifest: Manifest, shards: list[ShardState]) -> None:
    """Read each shard's extras of the live version into its state (load_store calls this)."""
    for st in shards:
        name = manifest.files.get(linear_artifact(st.shard))
        if name is not None:
            st.linear = LinearShard.from_array(_load(paths.artifact(name)), name)
        name = manifest.files.get(influenced_artifact(st.shard))
        if name is not None:
            members = _load(paths.artifact(name))
            if members.ndim != 1 or members.dtype.kind != "i" or len(members) and (
                    members.min() < 0 or members.max() >= len(st.alive)):
                raise StoreError(f"{name}: not a list of shard {st.shard}'s members; the store is damaged")
            st.influenced = frozenset(int(j) for j in members)


def write_extras(o: ShardOutcome, files: dict[str, str], new_file: Callable[[str], Path]) -> None:
    """Write outcome `o`'s changed extras as new files of the version being committed (forgetting._commit)."""
    if o.linear is not None:
        save_array(new_file(linear_artifact(o.shard)), o.linear.to_array())
    if o.influenced is not None:
        if o.influenced:
            save_array(new_file(influenced_artifact(o.shard)), np.array(sorted(o.influenced), dtype=np.int64))
        else:
            files.pop(influenced_artifact(o.shard), None)


def swap_extras(st: ShardState, o: ShardOutcome) -> None:
    """Make the committed extras the in-memory ones (forgetting._swap_in)."""
    if o.linear is not None:
        st.linear = o.linear
    if o.influenced is not None:
        st.influenced = o.influenced
    if st.scaled is not None:  # no copy of a forgotten row stays in memory (forgetting._swap_in zeroes X's)
        st.scaled.forget(torch.from_numpy(~o.alive))


def _load(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: unreadable ({exc}); the store is damaged") from None
