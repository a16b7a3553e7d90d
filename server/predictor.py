"""Serving-side inference: how a live model version answers Predict.

On CUDA the engine's snapshot answers (its parameters stay in GPU memory and the forward runs there). On
CPU a small MLP spends most of a torch forward in per-op dispatch (tens of microseconds per op for a
one-row batch), which would dominate a Predict call, so the daemon keeps a numpy copy of the version's
weights, laid out per layer once when the version is published, and runs the same arithmetic with numpy.
tests/test_server_predictor.py holds it to the engine's torch forward with allclose.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]  # (B, F) float32 -> (B, C) float32 probabilities


def predictor_for(snapshot: Any) -> Predict:
    """The function that answers Predict for this snapshot: numpy on CPU, the snapshot itself elsewhere."""
    if str(snapshot.device) != "cpu":
        return snapshot.predict_proba
    return CpuPredictor(snapshot).predict_proba


class CpuPredictor:
    """One model version as per-layer numpy arrays; immutable once built, so calls need no lock."""

    def __init__(self, snapshot: Any) -> None:
        shape = snapshot.shape
        self.num_features = int(shape.num_features)
        self.num_classes = int(shape.num_classes)
        self.vote = snapshot.aggregation == "vote"
        # The engine's flat layout (server/model.py): per layer, weight (out, in) row-major, then bias (out,).
        self.shards: list[list[tuple[np.ndarray, np.ndarray]]] = []
        for flat in snapshot._params:  # the snapshot's private (P,) tensors: read once, copied here
            p = flat.detach().cpu().numpy().astype(np.float32, copy=False)
            layers, offset = [], 0
            for fan_in, fan_out in shape.layers:
                w = p[offset : offset + fan_out * fan_in].reshape(fan_out, fan_in)
                offset += fan_out * fan_in
                b = p[offset : offset + fan_out]
                offset += fan_out
                layers.append((np.ascontiguousarray(w.T), b.copy()))  # (in, out) so that x @ w is (B, out)
            self.shards.append(layers)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (B, C) float32 for rows x (B, F), aggregated over shards like the engine."""
        out: np.ndarray | None = None
        last = len(self.shards[0]) - 1
        for layers in self.shards:
            h = x
            for i, (w, b) in enumerate(layers):
                h = h @ w + b  # (B, out)
                if i < last:
                    np.maximum(h, 0.0, out=h)
            if self.vote:
                part = np.zeros((h.shape[0], self.num_classes), np.float32)
                part[np.arange(h.shape[0]), h.argmax(axis=1)] = 1.0
            else:
                h = h - h.max(axis=1, keepdims=True)  # softmax, shifted for stability
                np.exp(h, out=h)
                part = h / h.sum(axis=1, keepdims=True)
            out = part if out is None else out + part
        assert out is not None
        if len(self.shards) > 1:
            out /= len(self.shards)
        return out.astype(np.float32, copy=False)
