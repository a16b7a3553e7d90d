"""The constituent model: the paper's MLP, with all its parameters in one flat float32 vector.

One flat vector makes the unlearning arithmetic plain: a checkpoint is a row, an increment Delta_t is
`flat_after - flat_before`, DPUS is a subtraction of rows, and the digest is a hash of the row's bytes.
The layout is part of the digest's definition: layer by layer, weight (out, in) row-major then bias (out,).
Training runs `forward` under autograd on a flat nn.Parameter (training.run_steps); serving runs it through
a `ModelSnapshot`, one version's parameters frozen on the engine's device. The linear family is served as
the same network with no hidden layer (`model_shape`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from forgetd.server.vocabulary import LINEAR

__all__ = ["MLPShape", "ModelSnapshot", "model_shape", "init_params", "forward", "param_digest", "model_digest"]


@dataclass(frozen=True)
class MLPShape:
    num_features: int  # F
    hidden_sizes: tuple[int, ...]  # e.g. (128, 128)
    num_classes: int  # C

    @property
    def layers(self) -> list[tuple[int, int]]:
        """(fan_in, fan_out) of every linear layer, input to output."""
        widths = [self.num_features, *self.hidden_sizes, self.num_classes]
        return list(zip(widths[:-1], widths[1:]))

    @property
    def num_params(self) -> int:
        return sum(fo * fi + fo for fi, fo in self.layers)


def model_shape(model: str, hidden_sizes: Sequence[int], num_features: int, num_classes: int) -> MLPShape:
    """The served shape of a store's model family: the MLP's, or the linear family's one layer F -> C (its
    logistic regression written as logits; engine/linear.py)."""
    return MLPShape(num_features, () if model == LINEAR else tuple(hidden_sizes), num_classes)


def init_params(shape: MLPShape, seed: int) -> torch.Tensor:
    """PyTorch's nn.Linear initialisation (uniform in +-1/sqrt(fan_in) for weights and biases), drawn from
    a private CPU generator so the result is the same on every device and never touches global RNG state."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    parts = []
    for fan_in, fan_out in shape.layers:
        bound = 1.0 / math.sqrt(fan_in)
        parts.append(torch.empty(fan_out * fan_in).uniform_(-bound, bound, generator=gen))
        parts.append(torch.empty(fan_out).uniform_(-bound, bound, generator=gen))
    return torch.cat(parts)  # (P,)


def forward(shape: MLPShape, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Logits of the MLP whose parameters are `flat` (P,), for inputs x (B, F) -> (B, C)."""
    offset = 0
    layers = shape.layers
    for i, (fan_in, fan_out) in enumerate(layers):
        w = flat[offset : offset + fan_out * fan_in].view(fan_out, fan_in)
        offset += fan_out * fan_in
        b = flat[offset : offset + fan_out]
        offset += fan_out
        x = F.linear(x, w, b)  # (B, fan_out)
        if i < len(layers) - 1:
            x = F.relu(x)
    return x


def param_digest(params: np.ndarray) -> str:
    """A shard's digest: hex SHA-256 of its parameters (P,) as little-endian float32 in the flat layout."""
    return hashlib.sha256(np.ascontiguousarray(params, dtype="<f4").tobytes()).hexdigest()


def model_digest(shard_params: Sequence[np.ndarray]) -> str:
    """The model's digest: hex SHA-256 of every shard's parameter bytes (as param_digest hashes them), in
    shard order 0..K-1."""
    h = hashlib.sha256()
    for params in shard_params:
        h.update(np.ascontiguousarray(params, dtype="<f4").tobytes())
    return h.hexdigest()


class ModelSnapshot:
    """One model version's parameters on the engine's device; never mutated after it is handed out."""

    def __init__(self, version: int, digest: str, shard_digests: tuple[str, ...], shape: MLPShape,
                 params: tuple[torch.Tensor, ...], aggregation: str, device: str) -> None:
        self.version = version
        self.digest = digest
        self.shard_digests = shard_digests
        self.shape = shape
        self.aggregation = aggregation
        self.device = device
        self._params = params  # each (P,), private copies

    @property
    def params(self) -> tuple[torch.Tensor, ...]:
        """Each shard's flat parameters (P,), on the snapshot's device. Shared, not copied: never write to them."""
        return self._params

    @property
    def num_features(self) -> int:
        return self.shape.num_features

    @property
    def num_classes(self) -> int:
        return self.shape.num_classes

    @torch.no_grad()
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (N, C) float32 for rows X (N, F), aggregated over shards."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.shape.num_features:
            raise ValueError(f"X has shape {X.shape}; the model takes (rows, {self.shape.num_features})")
        x = torch.from_numpy(np.array(X, dtype=np.float32, order="C")).to(self.device)  # (N, F), our own copy
        out = torch.zeros((x.shape[0], self.shape.num_classes), dtype=torch.float32, device=self.device)
        for flat in self._params:
            logits = forward(self.shape, flat, x)  # (N, C)
            if self.aggregation == "vote":
                out += F.one_hot(logits.argmax(dim=1), self.shape.num_classes).float()
            else:
                out += torch.softmax(logits, dim=1)
        out /= len(self._params)
        return out.cpu().numpy()
