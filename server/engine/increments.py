"""Recorded parameter increments Delta_t of the update region, and the index from samples to optimizer steps.

Per shard, step s in 1..S-m has one .npy file of shape (E_s * batches(s), P), row = optimizer step t minus
the step's first t; it is opened memory-mapped (the files are the largest thing in the store and nothing but
DPUS reads them). Its dtype is the store's stored precision (EngineConfig.increments): float32, each step's
delta exactly; float16, that delta rounded to nearest, ties to even (half the bytes); or int8, a file of shape
(rows,) whose records are a float32 scale and P int8 levels (a quarter of the bytes, engine/quantised.py).
With the store's codec "zstd" (EngineConfig.increments_codec) the file holds the same rows as one zstd frame
each instead (engine/increments_codec.py), decoded when read; the old .npy files stay readable either way.
Whichever it is, DPUS subtracts exactly the stored (decoded) values (for int8, the levels times the scale, exact in
float64), so a replay that records the same steps subtracts the same bits.

The index (CSR, immutable) lists for each member the optimizer steps of *all* steps whose planned batch held
it: t < recorded_end are recorded, the others are the residue a DPUS leaves behind.

Sums run in float64, sequentially in ascending t, and are applied as (theta.f64 - sum).f32: one documented
order, so the audit's replay and the tests get the same bits.

New files are made by `create_increments`, which reserves every byte before mapping them (store/space.py):
a full disk is then a NoSpace error, never a SIGBUS.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from forgetd.server.errors import StoreError
from forgetd.server.engine.increments_codec import (
    CompressedIncrements,
    CompressedWriter,
    IncrementRows,
    is_compressed,
    stored_dtype,
)
from forgetd.server.engine.quantised import dequantise, is_int8_rows
from forgetd.server.engine.training import Epochs, ShardLayout, build_index, step_offsets
from forgetd.server.store.space import full_as_no_space, reserve
from forgetd.server.vocabulary import (
    FLOAT32_INCREMENTS,
    INCREMENTS_CODECS,
    INT8_INCREMENTS,
    NO_INCREMENTS_CODEC,
    ZSTD_INCREMENTS,
)

__all__ = ["ShardIndex", "ShardIncrements", "create_increments", "stored_dtype", "subtract"]

_NPY_DTYPES = (np.dtype("<f4"), np.dtype("<f2"))  # float32 and float16 files; int8 ones hold records


def create_increments(path: Path, rows: int, num_params: int, precision: str = FLOAT32_INCREMENTS,
                      codec: str = NO_INCREMENTS_CODEC) -> IncrementRows:
    """A new increments file of `rows` rows of `num_params` in `precision` at `path`, for the recorder to write.
    Codec "none": an .npy file of zero rows, its space reserved, mapped writable: shape (rows, num_params), or
    (rows,) records for int8. Codec "zstd": a compressed file's writer (engine/increments_codec.py).

    NoSpace (and no file left behind) when the file system cannot hold it."""
    if codec == ZSTD_INCREMENTS:
        return CompressedWriter(path, rows, num_params, precision)
    if codec != NO_INCREMENTS_CODEC:
        raise ValueError(f"increments codec {codec!r}; one of {', '.join(INCREMENTS_CODECS)}")
    dtype = stored_dtype(precision, num_params)
    shape = (rows,) if precision == INT8_INCREMENTS else (rows, num_params)
    size = int(np.prod(shape)) * dtype.itemsize
    try:
        with full_as_no_space(path.parent, f"reserving {size / 2**20:.1f} MiB for {path.name}"):
            # open_memmap leaves the data region a hole; nothing has touched a page of the mapping yet.
            array = np.lib.format.open_memmap(path, "w+", dtype, shape)
            fd = os.open(path, os.O_RDWR)
            try:
                reserve(fd, array.offset, size)
            finally:
                os.close(fd)
        return array
    except BaseException:
        path.unlink(missing_ok=True)
        raise


class ShardIndex:
    """member (local index) -> ascending optimizer steps whose planned batch held it."""

    def __init__(self, indptr: np.ndarray, steps: np.ndarray) -> None:
        self.indptr = indptr
        self.steps = steps

    @classmethod
    def build(cls, layout: ShardLayout, seed: int, shard: int, epochs: Epochs, batch_size: int) -> ShardIndex:
        return cls(*build_index(layout, seed, shard, epochs, batch_size))

    def save(self, path: Path) -> None:
        with open(path, "xb") as f:
            np.savez(f, indptr=self.indptr, steps=self.steps)
            f.flush()
            os.fsync(f.fileno())

    @classmethod
    def load(cls, path: Path) -> ShardIndex:
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(z["indptr"], z["steps"])
        except (OSError, KeyError, ValueError) as exc:
            raise StoreError(f"{path}: unreadable index ({exc}); the store is damaged") from None

    def steps_of(self, members: Iterable[int]) -> np.ndarray:
        """Union of the optimizer steps that held any of `members`, ascending, each once."""
        parts = [self.steps[self.indptr[j] : self.indptr[j + 1]] for j in members]
        if not parts:
            return np.zeros(0, np.int64)
        return np.unique(np.concatenate(parts)).astype(np.int64)


class ShardIncrements:
    """The recorded increments of one shard: steps 1..record_upto, memory-mapped on demand."""

    def __init__(self, layout: ShardLayout, epochs: Epochs, batch_size: int, record_upto: int) -> None:
        self.offsets = step_offsets(layout, epochs, batch_size)  # (S+2,)
        self.record_upto = record_upto
        self.recorded_end = int(self.offsets[record_upto + 1])  # t < recorded_end was recorded
        self._maps: dict[int, np.ndarray | CompressedIncrements] = {}

    def attach(self, s: int, path: Path) -> None:
        """Use `path` (an .npy file or a compressed one) as step s's increments from now on."""
        rows = int(self.offsets[s + 1] - self.offsets[s])
        try:
            compressed = is_compressed(path)
            mm = CompressedIncrements(path) if compressed else np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise StoreError(f"{path}: unreadable increments ({exc}); the store is damaged") from None
        quantised = is_int8_rows(mm.dtype)
        if mm.dtype not in _NPY_DTYPES and not quantised:
            raise StoreError(
                f"{path}: increments of dtype {mm.dtype}, not float32, float16 or int8 records; the store is damaged"
            )
        if len(mm.shape) != (1 if quantised else 2) or mm.shape[0] != rows:
            raise StoreError(f"{path}: increments of shape {mm.shape}, expected {rows} rows; the store is damaged")
        self._maps[s] = mm

    def step_of(self, t: int) -> int:
        """The step s (1-based) that optimizer step t belongs to."""
        return int(np.searchsorted(self.offsets, t, side="right")) - 1

    def row(self, t: int) -> np.ndarray:
        """Delta_t as stored: a float32 or float16 row, or an int8 row's float64 values q * scale."""
        s = self.step_of(t)
        row = self._maps[s][t - int(self.offsets[s])]
        return row if row.dtype.names is None else dequantise(row)

    def cumulative(self, ts: np.ndarray, num_params: int) -> dict[int, np.ndarray]:
        """For recorded steps `ts` (ascending, each once): s -> sum of Delta_t over ts with t in steps <= s
        (float64: a float16 or float32 row converts exactly, an int8 row's q * scale is exact), for every s
        from the first affected step to S. Steps past S-m repeat the total."""
        out: dict[int, np.ndarray] = {}
        if len(ts) == 0:
            return out
        acc = np.zeros(num_params, dtype=np.float64)
        first = self.step_of(int(ts[0]))
        slices = len(self.offsets) - 2
        i = 0
        for s in range(first, slices + 1):
            end = int(self.offsets[s + 1])
            while i < len(ts) and ts[i] < end:
                acc += self.row(int(ts[i]))
                i += 1
            out[s] = acc.copy()
        return out

    def release(self) -> None:
        self._maps.clear()


def subtract(theta: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """(theta.f64 - delta).f32: the one rounding rule every DPUS subtraction uses."""
    return (theta.astype(np.float64) - delta).astype(np.float32)
