"""The synthetic data set: the daemon's built-in demo, so `forgetd serve` runs with no data at hand.

Bitwise the same on every machine: the random numbers are the raw integer stream of numpy's PCG64 (whose
output is fixed by its specification, unlike Generator methods), turned into floats only with correctly
rounded IEEE operations (+, *, /, sqrt), and sums run in a fixed order rather than through BLAS.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from forgetd.server.data.dataset import Dataset, no_options
from forgetd.server.errors import DataError

__all__ = ["load_synthetic"]


def load_synthetic(
    path: str | Path | None = None,
    *,
    n: int = 2000,
    seed: int = 0,
    features: int = 16,
    classes: int = 2,
    test_fraction: float = 0.2,
    noise: float = 0.5,
    **options: object,
) -> Dataset:
    """`n` training rows plus `round(n * test_fraction)` test rows of `features` features.

    Features are approximately normal (Irwin-Hall with 4 terms); class c scores a linear term, a product of
    two features and a square, plus noise; the label is the best-scoring class.
    """
    if path is not None:
        raise DataError("synthetic: takes no path; pass n=..., seed=..., features=..., classes=...")
    no_options("synthetic", options)
    _check(n, features, classes, test_fraction, noise)
    rows = n + round(n * test_fraction)
    X, y = _draw(np.random.PCG64(seed), rows, features, classes, noise)
    X32 = X.astype(np.float32)
    ids = [f"synthetic:{i}" for i in range(rows)]
    return Dataset(
        name=f"synthetic(n={n},seed={seed},features={features},classes={classes})",
        feature_names=tuple(f"x{j}" for j in range(features)),
        train_ids=tuple(ids[:n]),
        X_train=X32[:n],
        y_train=y[:n],
        test_ids=tuple(ids[n:]),
        X_test=X32[n:],
        y_test=y[n:],
        num_classes=classes,
    )


def _check(n: int, features: int, classes: int, test_fraction: float, noise: float) -> None:
    if n < 1:
        raise DataError(f"synthetic: n is {n}; choose at least 1 training row")
    if features < 2:
        raise DataError(f"synthetic: features is {features}; choose at least 2")
    if classes < 2:
        raise DataError(f"synthetic: classes is {classes}; choose at least 2")
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"synthetic: test_fraction is {test_fraction}; choose a value in [0, 1)")
    if not (noise >= 0.0 and math.isfinite(noise)):
        raise DataError(f"synthetic: noise is {noise}; choose a finite value >= 0")


def _draw(bits: np.random.PCG64, rows: int, features: int, classes: int,
          noise: float) -> tuple[np.ndarray, np.ndarray]:
    """(X float64 (rows, features), y int64 (rows,)), drawn in a fixed order from the raw stream `bits`."""

    def uniform(*shape: int) -> np.ndarray:
        raw = bits.random_raw(int(np.prod(shape)))
        return ((raw >> np.uint64(11)).astype(np.float64) * 2.0**-53).reshape(shape)  # exact: 53-bit integers

    def normal(*shape: int) -> np.ndarray:
        u = uniform(4, *shape)
        return ((u[0] + u[1]) + (u[2] + u[3]) - 2.0) * math.sqrt(3.0)  # mean 0, variance 1

    X = normal(rows, features)
    W = normal(classes, features)
    pairs = (bits.random_raw(classes * 3) % np.uint64(features)).astype(np.int64).reshape(classes, 3)
    eps = normal(rows, classes)
    scores = np.empty((rows, classes), dtype=np.float64)
    for c in range(classes):
        s = np.zeros(rows, dtype=np.float64)
        for j in range(features):  # fixed summation order, no BLAS
            s = s + W[c, j] * X[:, j]
        a, b, q = pairs[c]
        s = s / math.sqrt(features) + X[:, a] * X[:, b] - 0.5 * X[:, q] * X[:, q]
        scores[:, c] = s + noise * eps[:, c]
    return X, np.argmax(scores, axis=1).astype(np.int64)
