"""What a forget leaves in the feature encoder: the categories whose every training row is now forgotten.

The encoder (forgetd.server.data.encoder) is fitted once, on the training split, and never refitted: its
category lists and numeric scaling fix the model's input layout, as the slice layout is fixed (so a forget
never changes the width of the model or of what clients send). A category is a column of the model; a
category that only forgotten rows held is a trace of those rows that no retrain removes, since the column
stays in the encoder (the retrained weights of that input never move from their initial values: its
input is 0 in every remaining row). So the forget that leaves a category without a training row:

- names it in its outcome (`encoder_residue`, in the report, the batch tag and the ledger's forget.applied);
- downgrades to APPROXIMATE the guarantee of each of its samples that held the category.

Numeric scaling (a mean and a standard deviation over every training row) is an aggregate, kept like the
slice layout and not reported per forget (docs/unlearning.md, section 13).

Cost: the rows holding each category are indexed once per opened store; a forget then looks at the
categories its own rows hold, and for each stops at the first remaining row that holds it, so the DPUS
path pays microseconds for it, not a scan of the training rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from forgetd.server.engine.state import LoadedStore

__all__ = ["encoder_residue"]

Residue = dict[str, Any]  # {"feature": int, "column": str, "category": str}, as the ledger records it
Sample = tuple[int, int, int]  # (row position in the training split, shard, local index in the shard)
_CHUNK = 256  # holders looked at per step: a common category has a remaining holder in the first chunk


def encoder_residue(store: LoadedStore, located: Sequence[Sample]) -> tuple[tuple[Residue, ...], frozenset[int]]:
    """(the categories forgetting the `located` samples leaves without a training row, in feature order;
    the positions of those samples that hold one of them). Nothing for an encoder without categories."""
    onehot = store.encoder.categorical_features()
    if not onehot or not located:
        return (), frozenset()
    holders = _holders(store, sorted(onehot))
    going: dict[int, set[int]] = {}
    held_by: dict[int, list[int]] = {}
    for position, shard, local in located:
        going.setdefault(shard, set()).add(local)
        row = store.shards[shard].X[local].cpu().numpy()  # (F,)
        for f in holders:
            if row[f] != 0:
                held_by.setdefault(f, []).append(position)
    emptied = [f for f in sorted(held_by) if not _still_held(store, holders[f], going)]
    residue = tuple({"feature": f, "column": onehot[f][0], "category": onehot[f][1]} for f in emptied)
    return residue, frozenset(p for f in emptied for p in held_by[f])


def _still_held(store: LoadedStore, per_shard: list[np.ndarray], going: dict[int, set[int]]) -> bool:
    """Whether a row that is neither forgotten nor being forgotten holds the category."""
    for st, locals_ in zip(store.shards, per_shard):
        leaving = going.get(st.shard, set())
        for start in range(0, len(locals_), _CHUNK):
            chunk = locals_[start:start + _CHUNK]
            if any(j not in leaving for j in chunk[st.alive[chunk]].tolist()):
                return True
    return False


def _holders(store: LoadedStore, onehot: list[int]) -> dict[int, list[np.ndarray]]:
    """One-hot feature -> per shard, the local indices of the rows holding it (cached on the store)."""
    if store.category_holders is None:
        cols = np.asarray(onehot, dtype=np.int64)
        per_shard = []
        for st in store.shards:
            nz = torch.nonzero(st.X[:, torch.as_tensor(cols, device=st.X.device)]).cpu().numpy()  # (M, 2)
            order = np.argsort(nz[:, 1], kind="stable")
            rows, which = nz[order, 0], nz[order, 1]
            cuts = np.searchsorted(which, np.arange(len(cols) + 1))
            per_shard.append([rows[cuts[j]:cuts[j + 1]] for j in range(len(cols))])
        store.category_holders = {int(f): [shard[j] for shard in per_shard] for j, f in enumerate(cols)}
    return store.category_holders
