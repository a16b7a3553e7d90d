"""Purchase-100 as its public copies distribute it: one NumPy .npz file (usually `purchase100.npz`).

The file holds the features, an (N, 600) array of 0/1 purchase indicators, and the labels, N class
indices or an (N, C) one-hot array. Public copies differ in two ways, both read here:

- the array names: `features` and `labels` (the common copy), or `X` and `y`;
- the labels: one-hot rows (the common copy; the class is the row's one 1, C = the row width) or class
  indices 0..C-1 (C = the largest index + 1, at least 2).

A sample's id is `purchase:<row>`, the row's 0-based position in the arrays, so ids stay stable however the
file is read. The features are used as given (0.0 or 1.0, no standardisation: every feature is already on
the same scale). The hybrid-unlearning paper states no train/test split, so the split is the keyed hash of
the id the csv and npz loaders use: about `test_fraction` of the rows are the test split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from forgetd.server.data.dataset import Dataset, no_options, split_is_test
from forgetd.server.data.npz import npz_arrays
from forgetd.server.errors import DataError

__all__ = ["load_purchase", "PURCHASE_FEATURES"]

PURCHASE_FEATURES = 600
_KEY_PAIRS = (("features", "labels"), ("X", "y"))


def load_purchase(path: str | Path | None, *, test_fraction: float = 0.2, seed: int = 0,
                  **options: object) -> Dataset:
    """The file's rows, split by a keyed hash of each id (`test_fraction`, `seed`). DataError naming the file,
    the array and the row when the file is not Purchase-shaped (600 features of 0 or 1, one label a row)."""
    if path is None:
        raise DataError("purchase: pass the .npz file, e.g. load_dataset('purchase', 'purchase100.npz')")
    no_options("purchase", options)
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"purchase: test_fraction is {test_fraction}; choose a value in [0, 1)")
    path = Path(path)
    arrays = npz_arrays(path, "the purchase loader expects an .npz file such as purchase100.npz")
    x_key, y_key = _keys(path, arrays)
    X = _features(path, x_key, arrays[x_key])
    y, num_classes = _labels(path, y_key, arrays[y_key], len(X))
    ids = [f"purchase:{i}" for i in range(len(X))]
    is_test = np.array([split_is_test(s, test_fraction, seed) for s in ids], dtype=bool)
    if is_test.all():
        raise DataError(f"{path}: every row fell in the test split; lower test_fraction ({test_fraction})")
    return Dataset(
        name=path.name,
        feature_names=tuple(f"item{j}" for j in range(PURCHASE_FEATURES)),
        train_ids=tuple(s for s, t in zip(ids, is_test) if not t),
        X_train=X[~is_test],
        y_train=y[~is_test],
        test_ids=tuple(s for s, t in zip(ids, is_test) if t),
        X_test=X[is_test],
        y_test=y[is_test],
        num_classes=num_classes,
    )


def _keys(path: Path, arrays: dict[str, np.ndarray]) -> tuple[str, str]:
    for x_key, y_key in _KEY_PAIRS:
        if x_key in arrays and y_key in arrays:
            return x_key, y_key
    raise DataError(f"{path}: the file has arrays {sorted(arrays)}; expected 'features' and 'labels' "
                    "(or 'X' and 'y')")


def _features(path: Path, key: str, X: np.ndarray) -> np.ndarray:
    if X.ndim != 2 or X.shape[1] != PURCHASE_FEATURES or X.dtype.kind not in "fiub":
        raise DataError(f"{path}: array {key!r} has dtype {X.dtype} shape {X.shape}; expected (rows, "
                        f"{PURCHASE_FEATURES}) numbers, Purchase's 600 binary features")
    if len(X) == 0:
        raise DataError(f"{path}: array {key!r} has no rows")
    bad = (X != 0) & (X != 1)  # NaN is neither, so it is caught here too
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"{path}: array {key!r} row {row}, column {col}: {X[row, col].item()!r}; Purchase features are 0 or 1")
    return X.astype(np.float32)


def _labels(path: Path, key: str, y: np.ndarray, rows: int) -> tuple[np.ndarray, int]:
    """(class indices, number of classes) from one-hot rows or from indices."""
    if len(y) != rows:
        raise DataError(f"{path}: array {key!r} has {len(y)} rows and the features {rows}; they must agree")
    if y.ndim == 2:
        if y.dtype.kind not in "fiub" or y.shape[1] < 2:
            raise DataError(f"{path}: array {key!r} has dtype {y.dtype} shape {y.shape}; one-hot labels need a "
                            "column per class (at least 2)")
        ones = (y == 1).sum(axis=1)
        not_one_hot = (ones != 1) | ((y != 0) & (y != 1)).any(axis=1)
        if not_one_hot.any():
            row = int(np.argmax(not_one_hot))
            raise DataError(f"{path}: array {key!r} row {row} is not one-hot (it needs exactly one 1, the rest 0)")
        return np.argmax(y, axis=1).astype(np.int64), int(y.shape[1])
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(f"{path}: array {key!r} has dtype {y.dtype} shape {y.shape}; expected 1-D integer class "
                        "indices or 2-D one-hot rows")
    if y.min() < 0:
        row = int(np.argmin(y))
        raise DataError(f"{path}: array {key!r} row {row}: label {y[row].item()} is negative; classes are 0..C-1")
    return y.astype(np.int64), max(int(y.max()) + 1, 2)
