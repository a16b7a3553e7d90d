"""Serving-side inference: how a live model version answers Predict.

The engine's snapshot forward slices its flat parameter vector into layers and allocates an accumulator on
every call; for a one-row batch that bookkeeping costs more than the arithmetic. The daemon therefore prepares
each published version once, when it is published, and runs a lean forward. The arithmetic is the engine's
(tests/test_server_runtime_predictor.py holds it to the engine's forward with allclose).

Where the forward runs:
- CUDA: torch on the snapshot's device, with per-layer views of the live parameters (no copy), so they stay
  in GPU memory and Predict runs there.
- CPU: numpy. A Predict is a handful of small matrix products, and on a 2-core machine the handler thread
  wakes with cold caches for every call, so what counts is the number of numpy calls, ~10 us each when cold:
  the daemon spent ~90 us per one-row Predict in torch, ~100 us in numpy with a separate finiteness check
  and bias adds, and ~60 us in the form below (measured inside the handler during `forgetd bench serving`).
  Each layer is one augmented matrix [[W^T, 0], [b, 1]] and the input gets a trailing 1, so a layer is one
  np.dot (the bias rides in the product) and one in-place ReLU, and the extra column carries the 1 on to
  the next layer. That column is 0 * x + 1, which IEEE arithmetic makes NaN when any x is NaN or infinite,
  and NaN survives the ReLU (np.maximum propagates it) into NaN logits.

Overflow: a finite feature so large that some layer's float32 output overflows must be refused too, and the
ReLU can hide it (an output of -inf becomes 0, and the logits come out finite). The rule: a row is refused
when any layer's output, as computed, is not finite. Checking every layer costs numpy calls, so the check is
done only when it can matter: at publication each version gets a bound T from its weights (SAFE_LIMIT over
the products of the layers' Frobenius norms, see `_safe_norm_sq`) such that no partial sum of any layer can
overflow for an input [x, 1] of Euclidean norm <= T (Cauchy-Schwarz, layer by layer; the limit leaves room
for float32 rounding). A Predict takes one np.vdot, the squared norm of all its rows at once: within T^2,
nothing can overflow and the lean forward runs unchecked; past it (or NaN, which fails every comparison)
every layer's output is checked (`_logits_checked`). The measured cost is in the README.
Threads: the daemon serves Predicts concurrently on its gRPC threads; intra-op worker threads would only
spin against them on a small machine (numpy's OpenBLAS made a 1024-row Predict 40x slower that way), so
`serving_threads` pins torch and the BLAS libraries to one thread while a daemon runs. The engine's training
sets its own torch thread count for the duration of a forget.

Warnings: a non-finite feature is answered with INVALID_ARGUMENT naming it; numpy's RuntimeWarning about the
NaN it made on the way (0 * inf in a product) would only repeat that in the server's log, once per call site.
`serving_threads` ignores those of this module while a daemon runs: a filter in the call costs ~4 us
(np.errstate), more than the cold forward's own numpy calls, and one set at import would reach every user.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits

from forgetd.server.engine.model import ModelSnapshot
from forgetd.server.errors import InvalidRequest

# What Predict answers, already in the response's shapes: probabilities row-major (B * C), labels (B,).
Answer = tuple[list[float], list[int]]
# (features, rows) -> Answer, where features are rows x F little-endian float32, row-major, as PredictRequest
# carries them (the length already checked); InvalidRequest for a non-finite feature or output.
Predict = Callable[[bytes, int], Answer]

# Up to this many output values a one-shard model finishes its softmax in Python floats: nine numpy calls
# (softmax, argmax, two tolist) cost more than the loop for a handful of values, and they run cold.
SMALL_ANSWER = 64

ONE = np.float32(1.0).tobytes()  # the trailing 1 of an input row: the bias's input in the augmented product

# No partial sum of a layer may exceed this for an input within the safe norm: float32's largest finite value is
# 3.4e38, and rounding (a relative 1e-5 for a few hundred terms) could never close the gap of a factor 2**10.
SAFE_LIMIT = float(np.finfo(np.float32).max) / 2**10
# The safe norm is capped so that its square, compared in float32, is finite.
MAX_SAFE_NORM = 1e18


class _NotFinite(Exception):
    """A logit came out NaN or infinite (see the module's docstring); row: the first such row."""

    def __init__(self, row: int) -> None:
        super().__init__(row)
        self.row = row


def predictor_for(snapshot: ModelSnapshot) -> Predict:
    """The function that answers Predict for this snapshot."""
    return Predictor(snapshot).answer


@contextlib.contextmanager
def serving_threads() -> Iterator[None]:
    """One torch intra-op thread and one BLAS thread for the duration (restored after): parallelism comes from
    the requests. numpy's RuntimeWarnings from the forwards below are ignored meanwhile (module docstring)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning, module=re.escape(__name__))
            yield
    finally:
        torch.set_num_threads(before)


class Predictor:
    """One model version, prepared for serving; immutable, so concurrent calls need no lock."""

    def __init__(self, snapshot: ModelSnapshot) -> None:
        shape = snapshot.shape
        self.device = torch.device(snapshot.device)
        self.on_gpu = self.device.type != "cpu"
        self.num_features = int(shape.layers[0][0])
        self.num_classes = int(shape.num_classes)
        self.vote = snapshot.aggregation == "vote"
        # The engine's flat layout (server/engine/model.py): per layer, weight (out, in) row-major, then bias (out,).
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
        # CPU: per shard, the augmented matrices (a copy, the size of the model again).
        self.arrays: list[list[np.ndarray]] = [] if self.on_gpu else [_augmented(layers) for layers in self.shards]
        # Rows whose squared norms sum to at most this cannot overflow any layer of any shard (module docstring).
        self.safe_sq = np.float32(min((_safe_norm_sq(a) for a in self.arrays), default=0.0))

    def answer(self, features: bytes, rows: int) -> Answer:
        """Probabilities and labels for `rows` rows of float32 `features` (see Predict), as PredictResponse
        carries them; InvalidRequest names a non-finite feature, or the row whose output overflowed."""
        try:
            if self.on_gpu:
                proba = self.predict_proba(features, rows)
            elif len(self.arrays) == 1 and not self.vote and rows * self.num_classes <= SMALL_ANSWER:
                x1 = self._augmented_rows(features, rows)
                squares = x1.dot(x1) if rows == 1 else np.vdot(x1, x1)  # a method call: the cheapest form for one row
                if squares <= self.safe_sq:  # False for NaN too: then every layer is checked
                    return _softmax_lists(_logits_numpy(self.arrays[0], x1))
                return _softmax_lists(_logits_checked(self.arrays[0], x1))
            else:
                proba = self.predict_proba_numpy(features, rows)
        except _NotFinite as bad:
            raise _refusal(self._rows(features, rows), bad.row) from None
        return proba.ravel().tolist(), proba.argmax(axis=1).tolist()  # argmax: the first maximum, as documented

    # No inference_mode/no_grad: nothing here requires grad (the snapshot's tensors are plain), so autograd
    # records nothing anyway, and entering the mode costs more than the forward on a one-row batch.
    def predict_proba(self, features: bytes, rows: int) -> np.ndarray:
        """Class probabilities (B, C) float32, aggregated over shards like the engine (torch, where CUDA runs it);
        raises _NotFinite."""
        x = self._rows(features, rows)
        finite = np.isfinite(x)  # checked first: an infinite feature can vanish in a ReLU on this path
        if not finite.all():
            raise _NotFinite(int(np.argwhere(~finite)[0, 0]))
        h0 = torch.from_numpy(x.copy())  # (B, F), a writable copy we own
        if self.on_gpu:  # .to() costs tens of microseconds even when it has nothing to move
            h0 = h0.to(self.device)
        out: torch.Tensor | None = None
        ok: torch.Tensor | None = None  # per row: every shard's logits finite
        for layers in self.shards:
            h = h0
            for i, (w, b) in enumerate(layers):
                h = F.linear(h, w, b)  # (B, out)
                finite_rows = torch.isfinite(h).all(dim=1)  # every layer's output: a ReLU would hide -inf
                ok = finite_rows if ok is None else ok.logical_and_(finite_rows)
                if i < len(layers) - 1:
                    h.relu_()  # h is this call's own tensor
            part = F.one_hot(h.argmax(dim=1), self.num_classes).float() if self.vote else torch.softmax(h, dim=1)
            out = part if out is None else out.add_(part)
        assert out is not None and ok is not None
        if len(self.shards) > 1:
            out.div_(len(self.shards))
        # One device-to-host copy, not two: each is a sync on CUDA. The last column is the finiteness flag.
        both = torch.cat((out, ok.unsqueeze(1).to(out.dtype)), dim=1).cpu().numpy()
        good = both[:, -1]
        if not good.all():
            raise _NotFinite(int(np.argmin(good)))
        return both[:, :-1]

    def predict_proba_numpy(self, features: bytes, rows: int) -> np.ndarray:
        """The same on the CPU with numpy and the augmented matrices (the snapshot must live on the CPU)."""
        if self.on_gpu:
            raise ValueError("predict_proba_numpy needs a CPU snapshot; this one lives on " + str(self.device))
        x1 = self._augmented_rows(features, rows)
        forward = _logits_numpy if np.vdot(x1, x1) <= self.safe_sq else _logits_checked  # module docstring
        out: np.ndarray | None = None
        for layers in self.arrays:
            h = forward(layers, x1)
            finite = np.isfinite(h).all(axis=1)
            if not finite.all():
                raise _NotFinite(int(np.argmin(finite)))
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

    def _rows(self, features: bytes, rows: int) -> np.ndarray:
        """The features as a read-only (B, F) view."""
        return np.ndarray((rows, self.num_features), dtype="<f4", buffer=features)

    def _augmented_rows(self, features: bytes, rows: int) -> np.ndarray:
        """The rows with a trailing 1 each: one row as a vector (F + 1,), made in one numpy call, so that np.dot
        runs BLAS's gemv and the ReLU takes numpy's contiguous fast path; a batch as a matrix (B, F + 1)."""
        if rows == 1:
            return np.frombuffer(features + ONE, dtype="<f4")
        x1 = np.ones((rows, self.num_features + 1), dtype=np.float32)
        x1[:, :-1] = self._rows(features, rows)
        return x1


def _augmented(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> list[np.ndarray]:
    """Per layer the matrix that maps [x, 1] to [x W^T + b, 1] in one product; the last layer drops the extra
    column (nothing follows it). Copies, in float32, laid out (in + 1, out [+ 1]) for x @ A."""
    out = []
    for i, (w, b) in enumerate(layers):
        fan_out, fan_in = w.shape
        last = i == len(layers) - 1
        a = np.zeros((fan_in + 1, fan_out + (0 if last else 1)), dtype=np.float32)
        a[:fan_in, :fan_out] = w.numpy().T
        a[fan_in, :fan_out] = b.numpy()
        if not last:
            a[fan_in, fan_out] = 1.0  # the 1 carried on, NaN when any input is not finite (module docstring)
        out.append(a)
    return out


def _logits_numpy(layers: list[np.ndarray], x1: np.ndarray) -> np.ndarray:
    """One shard's logits (B, C) float32 for augmented rows x1 (a vector for one row); a fresh array."""
    h = x1
    last = len(layers) - 1
    for i, a in enumerate(layers):
        h = np.dot(h, a)  # a new array: the ReLU below touches only this call's memory
        if i < last:
            np.maximum(h, 0.0, out=h)  # the extra column is 1 or NaN, and stays so
    return h[None, :] if h.ndim == 1 else h


def _logits_checked(layers: list[np.ndarray], x1: np.ndarray) -> np.ndarray:
    """_logits_numpy with every layer's output checked before its ReLU: _NotFinite names the first row where
    one is NaN or infinite. For rows past the safe norm, where a ReLU could hide an overflow."""
    h = x1[None, :] if x1.ndim == 1 else x1
    last = len(layers) - 1
    for i, a in enumerate(layers):
        h = np.dot(h, a)  # (B, out [+ 1])
        finite = np.isfinite(h).all(axis=1)
        if not finite.all():
            raise _NotFinite(int(np.argmin(finite)))
        if i < last:
            np.maximum(h, 0.0, out=h)
    return h


def _safe_norm_sq(layers: list[np.ndarray]) -> float:
    """T^2 for one shard's augmented matrices: for an input u = [x, 1] with |u| <= T, every partial sum of every
    layer stays within SAFE_LIMIT, so no layer can overflow float32 (and no NaN can arise from a finite x).

    Column k of layer i is bounded by |A_i[:, k]| * |u_i| (Cauchy-Schwarz, any subset of its terms too), and
    the layer's output, after the ReLU or not, by |A_i|_F * |u_i|; so |u_i| <= T * prod_{l<i} |A_l|_F."""
    gain = 1.0  # bound on |u_i| / |u|
    safe = MAX_SAFE_NORM
    for a in layers:
        a64 = a.astype(np.float64)
        column = float(np.sqrt((a64 * a64).sum(axis=0)).max()) if a64.size else 0.0
        if column * gain > 0:
            safe = min(safe, SAFE_LIMIT / (column * gain))
        gain *= float(np.sqrt((a64 * a64).sum()))
    return safe * safe * (1 - 1e-3)  # the margin covers the rounding of the float32 norm it is compared with


def _softmax_lists(logits: np.ndarray) -> Answer:
    """Softmax of each row in Python floats (max subtracted, as torch does); label = the first largest logit.
    Raises _NotFinite for a row with a NaN or infinite logit."""
    probabilities: list[float] = []
    labels: list[int] = []
    exp, isfinite = math.exp, math.isfinite
    for r, row in enumerate(logits.tolist()):
        if not all(map(isfinite, row)):
            raise _NotFinite(r)
        top = max(row)
        e = [exp(v - top) for v in row]
        total = sum(e)
        probabilities.extend(v / total for v in e)
        labels.append(row.index(top))  # exp is strictly increasing: the same class as argmax of probabilities
    return probabilities, labels


def _refusal(x: np.ndarray, row: int) -> InvalidRequest:
    """What to tell the caller when row's output was not finite: the first non-finite feature in row-major
    order if there is one (whichever row it is in), else that the row's values overflowed the model."""
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        return InvalidRequest(f"features row {r} column {c} is {float(x[r, c])!r}: NaN and infinity are not accepted")
    return InvalidRequest(f"features row {row} overflow the model: its float32 output is not finite; send features "
                          "on the scale the model was trained on")
