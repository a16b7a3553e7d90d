"""A NumPy .npz file of ready-made features: arrays `ids`, `X`, `y` and, optionally, `test_ids`, `X_test`, `y_test`."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from forgetd.server.data.dataset import Dataset, no_options, split_is_test
from forgetd.server.errors import DataError

__all__ = ["load_npz", "npz_arrays"]

_TEST_KEYS = ("test_ids", "X_test", "y_test")


def load_npz(
    path: str | Path | None, *, test_fraction: float = 0.2, seed: int = 0, num_classes: int | None = None,
    **options: object,
) -> Dataset:
    """Arrays `ids` (strings), `X` (rows, features) and `y` (non-negative integer labels); optionally
    `test_ids`, `X_test`, `y_test`, otherwise a keyed-hash split of `ids`. Features are used as given."""
    if path is None:
        raise DataError("npz: pass the file, e.g. load_dataset('npz', PATH)")
    no_options("npz", options)
    path = Path(path)
    arrays = _read(path)
    ids, X, y = _split(path, arrays, "ids", "X", "y")
    if "test_ids" in arrays:  # and so X_test and y_test: _read checked all three or none
        train_ids = ids
        test_ids, X_test, y_test = _split(path, arrays, *_TEST_KEYS)
        if X_test.shape[1] != X.shape[1]:
            raise DataError(f"{path}: 'X_test' has {X_test.shape[1]} columns, 'X' has {X.shape[1]}; they must agree")
        clash = set(ids) & set(test_ids)
        if clash:
            raise DataError(f"{path}: id {sorted(clash)[0]!r} is in both 'ids' and 'test_ids'")
    else:
        mask = np.array([split_is_test(s, test_fraction, seed) for s in ids], dtype=bool)
        train_ids = [s for s, t in zip(ids, mask) if not t]
        test_ids = [s for s, t in zip(ids, mask) if t]
        X, X_test, y, y_test = X[~mask], X[mask], y[~mask], y[mask]
    top = max(int(y.max()) if len(y) else 0, int(y_test.max()) if len(y_test) else 0)
    classes = max(top + 1, 2) if num_classes is None else num_classes
    if top >= classes:
        raise DataError(f"{path}: label {top} does not fit num_classes={classes}; raise num_classes")
    return Dataset(
        name=path.name,
        feature_names=tuple(f"x{j}" for j in range(X.shape[1])),
        train_ids=tuple(train_ids),
        X_train=X,
        y_train=y,
        test_ids=tuple(test_ids),
        X_test=X_test,
        y_test=y_test,
        num_classes=classes,
    )


def _read(path: Path) -> dict[str, np.ndarray]:
    """Every array of the file; DataError unless `ids`, `X`, `y` are there and the test arrays all or none."""
    arrays = npz_arrays(path)
    for key in ("ids", "X", "y"):
        if key not in arrays:
            raise DataError(f"{path}: missing array {key!r}; the file has {sorted(arrays)}")
    given_test = [k for k in _TEST_KEYS if k in arrays]
    if given_test and len(given_test) != 3:
        raise DataError(f"{path}: has {given_test} but not all of test_ids, X_test, y_test; give all three or none")
    return arrays


def _split(path: Path, arrays: dict[str, np.ndarray], ids_key: str, X_key: str,
           y_key: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """One split's (ids, X float32, y int64), each array checked for shape, type, finiteness and unique ids."""
    ids_a, X, y = arrays[ids_key], arrays[X_key], arrays[y_key]
    if ids_a.ndim != 1 or ids_a.dtype.kind not in "US":
        raise DataError(f"{path}: array {ids_key!r} has dtype {ids_a.dtype} shape {ids_a.shape}; expected 1-D strings")
    ids: list[str] = []
    for i, v in enumerate(ids_a.tolist()):
        try:
            ids.append(v.decode("utf-8") if isinstance(v, bytes) else str(v))
        except UnicodeDecodeError:
            raise DataError(f"{path}: array {ids_key!r} row {i}: id {v!r} is not UTF-8") from None
    if X.ndim != 2 or X.dtype.kind not in "fiub":
        raise DataError(f"{path}: array {X_key!r} has dtype {X.dtype} shape {X.shape}; expected 2-D numbers")
    if y.ndim != 1 or y.dtype.kind not in "iub":
        raise DataError(f"{path}: array {y_key!r} has dtype {y.dtype} shape {y.shape}; expected 1-D integers")
    if not len(ids) == len(X) == len(y):
        raise DataError(f"{path}: {ids_key!r}, {X_key!r}, {y_key!r} have {len(ids)}, {len(X)}, {len(y)} rows; they must agree")
    bad = ~np.isfinite(X.astype(np.float64))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"{path}: array {X_key!r} row {row} ({ids[row]!r}), column {col}: {X[row, col]} is not finite")
    if len(y) and y.min() < 0:
        row = int(np.argmin(y))
        raise DataError(f"{path}: array {y_key!r} row {row} ({ids[row]!r}): label {y[row]} is negative")
    _check_unique(path, ids_key, ids)
    return ids, X.astype(np.float32), y.astype(np.int64)


def _check_unique(path: Path, key: str, ids: list[str]) -> None:
    first: dict[str, int] = {}
    for i, s in enumerate(ids):
        if not s:
            raise DataError(f"{path}: array {key!r} row {i}: empty sample id")
        if s in first:
            raise DataError(f"{path}: array {key!r} row {i}: duplicate id {s!r} (first seen in row {first[s]})")
        first[s] = i


def npz_arrays(path: Path, expected: str = "") -> dict[str, np.ndarray]:
    """Every array of an .npz file; DataError when it is missing (`expected` says what the loader wants) or
    not a zip of plain arrays. No pickles: an .npz of plain arrays is all a data file needs, and a pickle can
    run code."""
    if not path.is_file():
        raise DataError(f"{path}: no such file{'; ' + expected if expected else ''}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz file of plain arrays ({e})") from None
