"""The constituent model: the paper's MLP, with all its parameters in one flat float32 vector.

One flat vector makes the unlearning arithmetic plain: a checkpoint is a row, an increment Delta_t is
`flat_after - flat_before`, DPUS is a subtraction of rows, and the digest is a hash of the row's bytes.
The layout is part of the digest's definition: layer by layer, weight (out, in) row-major then bias (out,).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MLPShape", "MLP", "init_params", "forward"]


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


class MLP(nn.Module):
    """The trainable module: one nn.Parameter holding the flat vector, so Adam sees a single tensor."""

    def __init__(self, shape: MLPShape, flat: torch.Tensor) -> None:
        super().__init__()
        if flat.shape != (shape.num_params,):
            raise ValueError(f"flat parameters have shape {tuple(flat.shape)}; the MLP needs ({shape.num_params},)")
        self.shape = shape
        self.flat = nn.Parameter(flat.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F) -> (B, C)
        return forward(self.shape, self.flat, x)
