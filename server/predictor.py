"""Serving-side inference: how a live model version answers Predict.

On CUDA the engine's snapshot answers (its parameters stay in GPU memory and the forward runs there). On
CPU the engine's forward slices its flat parameter vector and allocates an accumulator on every call, which
for a one-row batch costs more than the arithmetic, so the daemon lays each published version out once as
per-layer tensors (weights transposed for addmm) and runs a lean forward under inference_mode. The
arithmetic is the same (tests/test_server_predictor.py holds it to the engine's forward with allclose).

Threads: the daemon serves Predicts concurrently on its gRPC threads; intra-op worker threads would only
spin against them on a small machine (numpy's OpenBLAS made a 1024-row Predict 40x slower that way), so
`serving_threads` pins torch to one intra-op thread while a daemon runs. The engine's training sets its
own thread count for the duration of a forget.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

Predict = Callable[[np.ndarray], np.ndarray]  # (B, F) float32 -> (B, C) float32 probabilities


def predictor_for(snapshot: Any) -> Predict:
    """The function that answers Predict for this snapshot: a lean forward on CPU, the snapshot elsewhere."""
    if str(snapshot.device) != "cpu":
        return snapshot.predict_proba
    return CpuPredictor(snapshot).predict_proba


@contextlib.contextmanager
def serving_threads() -> Iterator[None]:
    """One torch intra-op thread for the duration (restored after): parallelism comes from the requests."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class CpuPredictor:
    """One model version as per-layer tensors; immutable once built, so concurrent calls need no lock."""

    def __init__(self, snapshot: Any) -> None:
        shape = snapshot.shape
        self.num_classes = int(shape.num_classes)
        self.vote = snapshot.aggregation == "vote"
        # The engine's flat layout (server/model.py): per layer, weight (out, in) row-major, then bias (out,).
        self.shards: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        for flat in snapshot._params:  # the snapshot's private (P,) tensors: read once, copied here
            layers, offset = [], 0
            for fan_in, fan_out in shape.layers:
                w = flat[offset : offset + fan_out * fan_in].view(fan_out, fan_in)
                offset += fan_out * fan_in
                b = flat[offset : offset + fan_out]
                offset += fan_out
                layers.append((w.t().contiguous(), b.clone()))  # (in, out), so addmm gives (B, out)
            self.shards.append(layers)

    @torch.inference_mode()
    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (B, C) float32 for rows x (B, F), aggregated over shards like the engine."""
        rows = torch.from_numpy(np.array(x, dtype=np.float32, order="C"))  # (B, F), a writable copy
        out: torch.Tensor | None = None
        for layers in self.shards:
            h = rows
            for i, (w, b) in enumerate(layers):
                h = torch.addmm(b, h, w)  # (B, out)
                if i < len(layers) - 1:
                    h.relu_()
            if self.vote:
                part = torch.nn.functional.one_hot(h.argmax(dim=1), self.num_classes).float()
            else:
                part = torch.softmax(h, dim=1)
            out = part if out is None else out.add_(part)
        assert out is not None
        if len(self.shards) > 1:
            out.div_(len(self.shards))
        return out.numpy()
