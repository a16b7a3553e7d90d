"""Predict refuses every row for which some layer's float32 output is not finite, even when a ReLU would hide
it (-inf becomes 0 and the logits come out finite), on every forward: one row, a batch, several shards, torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from forgetd.server.engine.engine import Engine
from forgetd.server.engine.model import MLPShape, ModelSnapshot
from forgetd.server.errors import InvalidRequest
from forgetd.server.runtime.predictor import SAFE_LIMIT, Predictor, _NotFinite, _safe_norm_sq, predictor_for

FLT_MAX = float(np.finfo(np.float32).max)


def hiding_snapshot(shards: int = 1) -> ModelSnapshot:
    """Two features, one hidden layer of two units, two classes. Hidden unit 0 is -10 * x0: for x0 = 3.4e38 it
    is -inf, which the ReLU turns into 0, so the logits are the biases, perfectly finite."""
    shape = MLPShape(2, (2,), 2)
    w1, b1 = [[-10.0, 0.0], [0.0, 1.0]], [0.0, 0.0]
    w2, b2 = [[1.0, 0.0], [0.0, 1.0]], [0.5, -0.5]
    flat = torch.tensor([v for m in (w1, b1, w2, b2) for v in np.ravel(m)], dtype=torch.float32)
    return ModelSnapshot(0, "", (), shape, (flat,) * shards, "mean", "cpu")


def wire(x: np.ndarray) -> tuple[bytes, int]:
    return np.ascontiguousarray(x, dtype="<f4").tobytes(), len(x)


@pytest.mark.parametrize("rows", [1, 40])  # 1: the small-answer path; 40 rows x 2 classes > SMALL_ANSWER
@pytest.mark.parametrize("shards", [1, 2])
def test_an_overflow_a_relu_hides_is_refused_naming_its_row(rows: int, shards: int) -> None:
    x = np.zeros((rows, 2), np.float32)
    x[rows - 1, 0] = 3.4e38
    predict = predictor_for(hiding_snapshot(shards))
    with pytest.raises(InvalidRequest, match=f"features row {rows - 1} overflow the model"):
        predict(*wire(x))
    x[rows - 1, 0] = 1e30  # large, but -1e31 is finite: answered
    probabilities, labels = predict(*wire(x))
    assert len(labels) == rows and np.isfinite(probabilities).all()


def test_the_torch_forward_checks_every_layer_too() -> None:
    predictor = Predictor(hiding_snapshot())
    x = np.array([[3.4e38, 0.0]], np.float32)
    with pytest.raises(_NotFinite):
        predictor.predict_proba(*wire(x))


def test_the_documented_bound_holds_for_every_partial_sum() -> None:
    # At the safe norm, in the direction that makes the largest column's sum grow fastest, nothing overflows.
    predictor = Predictor(hiding_snapshot())
    [layers] = predictor.arrays
    safe = float(np.sqrt(_safe_norm_sq(layers)))
    x1 = np.array([-safe * 0.999, 0.0, 0.0], np.float32)  # the trailing 1 is negligible at this scale
    h = x1
    for i, a in enumerate(layers):
        h = np.dot(h, a)
        assert np.abs(h).max() <= SAFE_LIMIT
        if i < len(layers) - 1:
            np.maximum(h, 0.0, out=h)


def reference_peaks(predictor: Predictor, x: np.ndarray) -> tuple[float, float]:
    """In float64, over every layer: (the largest |output|, the largest sum of |terms| of one output), the
    second bounding every partial sum whatever order a float32 product adds them in."""
    h = x[None].astype(np.float64)
    exact = bound = 0.0
    layers = predictor.shards[0]
    for i, (w, b) in enumerate(layers):
        w64, b64 = w.numpy().astype(np.float64), b.numpy().astype(np.float64)
        bound = max(bound, float((np.abs(h) @ np.abs(w64).T + np.abs(b64)).max()))
        h = h @ w64.T + b64
        exact = max(exact, float(np.abs(h).max()))
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
    return exact, bound


def test_no_extreme_single_feature_row_that_overflows_inside_the_forward_is_answered(trained_store: Path) -> None:
    with Engine.open(trained_store, device="cpu") as engine:
        snap = engine.snapshot()
    # The small store's weights are too small to overflow at all; scaled by 4, about a sixth of these rows do.
    scaled = ModelSnapshot(0, "", (), snap.shape, tuple(p * 4 for p in snap.params), snap.aggregation, "cpu")
    predictor = Predictor(scaled)
    rng = np.random.default_rng(0)
    features = scaled.shape.layers[0][0]
    x = np.zeros((2000, features), np.float32)
    x[np.arange(2000), rng.integers(0, features, 2000)] = (
        10 ** rng.uniform(36, np.log10(3.4e38), 2000) * rng.choice([-1, 1], 2000))
    overflowing = 0
    for row in x:
        exact, bound = reference_peaks(predictor, row)
        try:
            predictor.answer(*wire(row[None]))
            refused = False
        except InvalidRequest:
            refused = True
        if exact > FLT_MAX * 1.001:  # some layer's true output is beyond float32: it cannot be answered
            overflowing += 1
            assert refused, (row, exact)
        elif bound < FLT_MAX / 2:  # no partial sum comes near the edge: it must be answered
            assert not refused, (row, bound)
    assert overflowing > 100
