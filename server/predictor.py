"""Serving-side inference: how a live model version answers Predict.

The engine's snapshot forward slices its flat parameter vector into layers and allocates an accumulator on
every call; for a one-row batch that bookkeeping costs more than the arithmetic. The daemon therefore cuts
each published version into per-layer views once (no copy: the views share the snapshot's tensors, on the
snapshot's device, so on CUDA the parameters stay in GPU memory and the forward runs there) and runs a
lean forward. The arithmetic is the engine's (tests/test_server_predictor.py holds it
to the engine's forward with allclose).

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
import torch.nn.functional as F

Predict = Callable[[np.ndarray], np.ndarray]  # (B, F) float32 -> (B, C) float32 probabilities


def predictor_for(snapshot: Any) -> Predict:
    """The function that answers Predict for this snapshot."""
    return Predictor(snapshot).predict_proba


@contextlib.contextmanager
def serving_threads() -> Iterator[None]:
    """One torch intra-op thread for the duration (restored after): parallelism comes from the requests."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Predictor:
    """One model version as per-layer views of its parameters; immutable, so concurrent calls need no lock."""

    def __init__(self, snapshot: Any) -> None:
        shape = snapshot.shape
        self.device = torch.device(snapshot.device)
        self.on_gpu = self.device.type != "cpu"
        self.num_classes = int(shape.num_classes)
        self.vote = snapshot.aggregation == "vote"
        # The engine's flat layout (server/model.py): per layer, weight (out, in) row-major, then bias (out,).
        self.shards: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        for flat in snapshot._params:  # the snapshot's private (P,) tensors, never modified after publication
            if flat.requires_grad:
                raise ValueError("a published snapshot's parameters must not require grad")
            layers, offset = [], 0
            for fan_in, fan_out in shape.layers:
                w = flat[offset : offset + fan_out * fan_in].view(fan_out, fan_in)
                offset += fan_out * fan_in
                layers.append((w, flat[offset : offset + fan_out]))
                offset += fan_out
            self.shards.append(layers)

    # No inference_mode/no_grad: nothing here requires grad (the snapshot's tensors are plain), so autograd
    # records nothing anyway, and entering the mode costs more than the forward on a one-row batch.
    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (B, C) float32 for rows x (B, F), aggregated over shards like the engine."""
        rows = torch.from_numpy(np.array(x, dtype=np.float32, order="C"))  # (B, F), a copy we own
        if self.on_gpu:  # .to() costs tens of microseconds even when it has nothing to move
            rows = rows.to(self.device)
        out: torch.Tensor | None = None
        for layers in self.shards:
            h = rows
            for i, (w, b) in enumerate(layers):
                h = F.linear(h, w, b)  # (B, out)
                if i < len(layers) - 1:
                    h.relu_()  # h is this call's own tensor
            if self.vote:
                part = F.one_hot(h.argmax(dim=1), self.num_classes).float()
            else:
                part = torch.softmax(h, dim=1)
            out = part if out is None else out.add_(part)
        assert out is not None
        if len(self.shards) > 1:
            out.div_(len(self.shards))
        return out.cpu().numpy()
