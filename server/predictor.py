"""Serving-side inference: how a live model version answers Predict.

The engine's snapshot forward slices its flat parameter vector into layers and allocates an accumulator on
every call; for a one-row batch that bookkeeping costs more than the arithmetic. The daemon therefore cuts
each published version into per-layer views once (no copy: the views share the snapshot's tensors) and runs a
lean forward. The arithmetic is the engine's (tests/test_server_predictor.py holds it to the engine's forward
with allclose).

Where the forward runs:
- CUDA: torch on the snapshot's device, so the live parameters stay in GPU memory and Predict runs there.
- CPU: numpy on the same memory (`Tensor.numpy()` shares it). A Predict is a handful of small matrix
  products; torch's dispatcher costs more per op than numpy's, and on a 2-core machine, where the handler
  thread wakes with cold caches for every call, the daemon spent ~90 us in torch against ~35 us in numpy
  for a one-row forward. A one-shard model with a small answer finishes the softmax in Python floats (see
  SMALL_ANSWER). `forgetd bench serving` measured the one-row Predict at 0.67 ms before and 0.58 ms after,
  against a bare echo at ~0.42 ms.

Threads: the daemon serves Predicts concurrently on its gRPC threads; intra-op worker threads would only
spin against them on a small machine (numpy's OpenBLAS made a 1024-row Predict 40x slower that way), so
`serving_threads` pins torch and the BLAS libraries to one thread while a daemon runs. The engine's training
sets its own torch thread count for the duration of a forget.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits

# What Predict answers, already in the response's shapes: probabilities row-major (B * C), labels (B,).
Answer = tuple[list[float], list[int]]
Predict = Callable[[np.ndarray], Answer]  # rows (B, F) float32 -> Answer

# Up to this many output values a one-shard model finishes its softmax in Python floats: nine numpy calls
# (softmax, argmax, two tolist) cost more than the loop for a handful of values, and they run cold.
SMALL_ANSWER = 64


def predictor_for(snapshot: Any) -> Predict:
    """The function that answers Predict for this snapshot."""
    return Predictor(snapshot).answer


@contextlib.contextmanager
def serving_threads() -> Iterator[None]:
    """One torch intra-op thread and one BLAS thread for the duration (restored after): parallelism comes from
    the requests."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
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
        for flat in snapshot.params:  # shared, never modified after publication
            if flat.requires_grad:
                raise ValueError("a published snapshot's parameters must not require grad")
            layers, offset = [], 0
            for fan_in, fan_out in shape.layers:
                w = flat[offset : offset + fan_out * fan_in].view(fan_out, fan_in)
                offset += fan_out * fan_in
                layers.append((w, flat[offset : offset + fan_out]))
                offset += fan_out
            self.shards.append(layers)
        # The same memory seen by numpy, weights transposed to (in, out): a view, BLAS reads it transposed.
        self.arrays: list[list[tuple[np.ndarray, np.ndarray]]] = (
            [] if self.on_gpu else [[(w.numpy().T, b.numpy()) for w, b in layers] for layers in self.shards]
        )

    def answer(self, x: np.ndarray) -> Answer:
        """Probabilities and labels for rows x (B, F), as PredictResponse carries them."""
        if self.on_gpu:
            proba = self.predict_proba(x)
        elif len(self.arrays) == 1 and not self.vote and x.shape[0] * self.num_classes <= SMALL_ANSWER:
            return _softmax_lists(self._logits_numpy(self.arrays[0], np.asarray(x, dtype=np.float32)))
        else:
            proba = self.predict_proba_numpy(x)
        return proba.ravel().tolist(), proba.argmax(axis=1).tolist()  # argmax: the first maximum, as documented

    # No inference_mode/no_grad: nothing here requires grad (the snapshot's tensors are plain), so autograd
    # records nothing anyway, and entering the mode costs more than the forward on a one-row batch.
    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (B, C) float32 for rows x (B, F), aggregated over shards like the engine (torch)."""
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

    def predict_proba_numpy(self, x: np.ndarray) -> np.ndarray:
        """The same on the CPU with numpy (the snapshot must live on the CPU)."""
        if self.on_gpu:
            raise ValueError("predict_proba_numpy needs a CPU snapshot; this one lives on " + str(self.device))
        rows = np.asarray(x, dtype=np.float32)  # (B, F); never written to
        out: np.ndarray | None = None
        for layers in self.arrays:
            h = self._logits_numpy(layers, rows)
            if self.vote:
                part = np.zeros_like(h)
                part[np.arange(h.shape[0]), h.argmax(axis=1)] = 1.0
            else:
                h -= h.max(axis=1, keepdims=True)  # softmax without overflow, as torch computes it
                np.exp(h, out=h)
                h /= h.sum(axis=1, keepdims=True)
                part = h
            out = part if out is None else np.add(out, part, out=out)
        assert out is not None
        if len(self.arrays) > 1:
            out /= np.float32(len(self.arrays))
        return out

    @staticmethod
    def _logits_numpy(layers: list[tuple[np.ndarray, np.ndarray]], rows: np.ndarray) -> np.ndarray:
        """One shard's logits (B, C) float32; a fresh array, rows untouched."""
        # One row goes through as a vector: np.dot then runs BLAS's gemv and the bias add and ReLU take numpy's
        # contiguous fast path, where a (1, n) array goes through the broadcasting iterator: 5.1 us against
        # 6.2 us for this forward on a warm thread, ~9 against ~10.5 us on one that slept between calls (the
        # daemon's case). For a matrix np.dot is BLAS's gemm, as `@` is.
        h = rows[0] if rows.shape[0] == 1 else rows
        last = len(layers) - 1
        for i, (w, b) in enumerate(layers):
            h = np.dot(h, w)  # a new array: the in-place ops below touch only this call's memory
            h += b
            if i < last:
                np.maximum(h, 0.0, out=h)
        return h[None, :] if h.ndim == 1 else h


def _softmax_lists(logits: np.ndarray) -> Answer:
    """Softmax of each row in Python floats (max subtracted, as torch does); label = the first largest logit."""
    probabilities: list[float] = []
    labels: list[int] = []
    exp = math.exp
    for row in logits.tolist():
        top = max(row)
        e = [exp(v - top) for v in row]
        total = sum(e)
        probabilities.extend(v / total for v in e)
        labels.append(row.index(top))  # exp is strictly increasing: the same class as argmax of probabilities
    return probabilities, labels
