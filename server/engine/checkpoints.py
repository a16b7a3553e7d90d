"""Checkpoints theta_0..theta_S of one shard: parameters and Adam state after every step.

Held in memory as arrays (row s = theta_s; theta_0 is the initialisation) and persisted as two files per
shard and version: `.params` (S+1, P) float32, which DPUS corrections rewrite, and `.optim` (the Adam
moments and step counts), which only retraining rewrites. theta_S is the shard's live model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from forgetd.server.errors import StoreError
from forgetd.server.engine.training import OptState

__all__ = ["ShardCheckpoints"]


@dataclass
class ShardCheckpoints:
    params: np.ndarray  # (S+1, P) float32
    exp_avg: np.ndarray  # (S+1, P) float32
    exp_avg_sq: np.ndarray  # (S+1, P) float32
    adam_steps: np.ndarray  # (S+1,) int64

    @classmethod
    def empty(cls, slices: int, num_params: int) -> ShardCheckpoints:
        z = np.zeros((slices + 1, num_params), dtype=np.float32)
        return cls(params=z.copy(), exp_avg=z.copy(), exp_avg_sq=z.copy(), adam_steps=np.zeros(slices + 1, np.int64))

    @property
    def live(self) -> np.ndarray:
        """theta_S's parameters (P,): the shard's live model."""
        return self.params[-1]

    def state(self, s: int) -> OptState:
        return OptState(
            params=torch.from_numpy(self.params[s].copy()),
            exp_avg=torch.from_numpy(self.exp_avg[s].copy()),
            exp_avg_sq=torch.from_numpy(self.exp_avg_sq[s].copy()),
            adam_step=int(self.adam_steps[s]),
        )

    def set(self, s: int, state: OptState) -> None:
        self.params[s] = state.params.detach().cpu().numpy()
        self.exp_avg[s] = state.exp_avg.detach().cpu().numpy()
        self.exp_avg_sq[s] = state.exp_avg_sq.detach().cpu().numpy()
        self.adam_steps[s] = state.adam_step

    def copy(self) -> ShardCheckpoints:
        return ShardCheckpoints(
            params=self.params.copy(),
            exp_avg=self.exp_avg.copy(),
            exp_avg_sq=self.exp_avg_sq.copy(),
            adam_steps=self.adam_steps.copy(),
        )

    def save_params(self, path: Path) -> None:
        from forgetd.server.store.layout import save_array

        save_array(path, self.params)

    def save_optim(self, path: Path) -> None:
        from forgetd.server.store.layout import save_array

        # One array keeps the file a plain .npy: rows 0..S exp_avg, then S+1..2S+1 exp_avg_sq; the step
        # counts (< 2**24, exact in float32) are stored as a last column so the file stays one dtype.
        steps = self.adam_steps.astype(np.float32)[:, None]
        moments = np.concatenate([self.exp_avg, self.exp_avg_sq])  # (2(S+1), P)
        save_array(path, np.concatenate([moments, np.concatenate([steps, steps])], axis=1))

    @classmethod
    def load(cls, params_path: Path, optim_path: Path) -> ShardCheckpoints:
        try:
            params = np.load(params_path, allow_pickle=False)
            optim = np.load(optim_path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise StoreError(f"checkpoint file unreadable ({exc}); the store is damaged") from None
        rows, p = params.shape
        if optim.shape != (2 * rows, p + 1):
            raise StoreError(f"{optim_path}: shape {optim.shape}, expected {(2 * rows, p + 1)}; the store is damaged")
        return cls(
            params=np.ascontiguousarray(params, dtype=np.float32),
            exp_avg=np.ascontiguousarray(optim[:rows, :p]),
            exp_avg_sq=np.ascontiguousarray(optim[rows:, :p]),
            adam_steps=optim[:rows, p].astype(np.int64),
        )
