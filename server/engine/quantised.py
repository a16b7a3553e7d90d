"""int8 increments: each recorded row (one optimizer step's delta, P values) as P int8 levels and one float32 scale.

    scale = fl32(max|delta| / 127)            (0 for a row of zeros)
    q     = clip(rint(fl32(delta / scale)), -127, 127)   rint: to nearest, ties to even; q = 0 where scale is 0
    value = float64(q) * float64(scale)       exact: an 8-bit integer times a 24-bit significand fits float64's 53

A stored row is one record of `int8_rows(P)`: the scale, then the levels, so a chunk of rows is one contiguous
run of bytes (the recorder writes it with one pwrite) and the scale of a row can never be separated from it.
The quantiser runs on the host in numpy, whose float32 division and rint are IEEE 754 on every machine, so a
replay on another device stores the same bytes from the same float32 deltas.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LEVELS", "dequantise", "int8_rows", "is_int8_rows", "quantise"]

LEVELS = 127  # symmetric: -128 is never used, so q and -q are both representable
_FIELDS = ("scale", "q")


def int8_rows(num_params: int) -> np.dtype:
    """The record one stored int8 row is: float32 scale, then `num_params` int8 levels (packed, 4 + P bytes)."""
    return np.dtype([("scale", "<f4"), ("q", "i1", (num_params,))])


def is_int8_rows(dtype: np.dtype) -> bool:
    """Whether `dtype` is `int8_rows(P)` for some P."""
    if dtype.names != _FIELDS or dtype.fields is None:
        return False
    scale, q = dtype.fields["scale"][0], dtype.fields["q"][0]
    return (scale == np.dtype("<f4") and q.subdtype is not None and q.subdtype[0] == np.dtype("i1")
            and len(q.subdtype[1]) == 1 and dtype == int8_rows(q.subdtype[1][0]))


def quantise(delta: np.ndarray) -> np.ndarray:
    """(n, P) float32 deltas -> (n,) records of int8_rows(P), by the rule in the module's docstring."""
    delta = np.asarray(delta, dtype=np.float32)
    out = np.empty(len(delta), int8_rows(delta.shape[1]))
    scale = (np.abs(delta).max(axis=1, initial=np.float32(0)) / np.float32(LEVELS)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # scale 0 (a zero row, or one whose largest entry is below 127 float32 subnormals): every level 0; a
        # non-finite delta (a diverged step) gives NaN ratios, stored as 0 rather than as whatever a cast makes
        ratio = np.where(scale[:, None] > 0, delta / scale[:, None], np.float32(0))
    out["scale"] = scale
    out["q"] = np.clip(np.rint(np.nan_to_num(ratio, nan=0.0)), -LEVELS, LEVELS).astype(np.int8)
    return out


def dequantise(record: np.ndarray) -> np.ndarray:
    """One stored record (or an (n,) array of them) -> its float64 values, q * scale, exactly."""
    scale = np.asarray(record["scale"], dtype=np.float64)
    return record["q"].astype(np.float64) * scale[..., None]
