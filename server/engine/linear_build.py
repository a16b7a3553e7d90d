"""Training a linear-family store's shards (building.build_store calls this instead of the MLP's sliced training).

Per shard k it writes what every store holds, so the rest of the engine reads a linear store like any other:

- `index/shard<k>.npz`: empty. Newton's method has no batch plan, so no member is in any optimizer step.
- `shard<k>.params`: two rows, theta_0 = 0 (where a training starts) and the live parameters, the one-layer
  MLP linear.served_params makes of W; `shard<k>.optim`: zeros (no Adam state).
- `shard<k>.linear`: the LinearShard state (engine/linear.py).

No increments: the linear family has no update region (m = S), so HS and OHS resolve every sample to SISA.
The input scale r is taken over the whole training split, so it is one number for every shard.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from forgetd.server.config import EngineConfig
from forgetd.server.data.dataset import Dataset
from forgetd.server.engine.checkpoints import ShardCheckpoints
from forgetd.server.engine.increments import ShardIndex
from forgetd.server.engine.linear import input_scale, served_params, train_shard
from forgetd.server.engine.shard_extras import linear_artifact
from forgetd.server.engine.training import ShardLayout
from forgetd.server.store.layout import StorePaths, optim_artifact, params_artifact, save_array, versioned_file

__all__ = ["train_linear_shards"]


def train_linear_shards(paths: StorePaths, ds: Dataset, cfg: EngineConfig, layouts: Sequence[ShardLayout],
                        progress: Callable[[int, int], None] | None) -> tuple[dict[str, str], list[np.ndarray]]:
    """Train every shard; the manifest's files (logical name -> file) and each shard's live parameters."""
    scale = input_scale(ds.X_train)
    files: dict[str, str] = {}
    lives: list[np.ndarray] = []
    for k, lay in enumerate(layouts):
        members = len(lay.members)
        ShardIndex(np.zeros(members + 1, np.int64), np.zeros(0, np.int32)).save(paths.index(k))
        X = torch.from_numpy(np.ascontiguousarray(ds.X_train[lay.members]))
        y = torch.from_numpy(np.ascontiguousarray(ds.y_train[lay.members]))
        state, _ = train_shard(X, y, ds.num_classes, scale, cfg, k)
        live = served_params(state, ds.num_features, ds.num_classes)
        ckpt = ShardCheckpoints.empty(1, len(live))
        ckpt.params[1] = live
        for logical, save in ((params_artifact(k), ckpt.save_params), (optim_artifact(k), ckpt.save_optim)):
            files[logical] = name = versioned_file(logical, 0)
            save(paths.artifact(name))
        files[linear_artifact(k)] = name = versioned_file(linear_artifact(k), 0)
        save_array(paths.artifact(name), state.to_array())
        lives.append(live)
        if progress is not None:
            progress(k + 1, len(layouts))
    return files, lives
