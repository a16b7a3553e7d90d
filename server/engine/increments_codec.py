"""How a step's recorded increments are laid out in their file: as a plain .npy array (codec "none"), or as one
zstd frame per row (codec "zstd", EngineConfig.increments_codec).

A compressed file, all integers little-endian:

    header   magic "FGDINCZ\\0", format version (u32), precision (8 bytes, the vocabulary's word, NUL-padded),
             codec (8 bytes, likewise), zstd level (i32), P (u64), rows (u64)                       48 bytes
    offsets  rows + 1 u64: row r is the bytes offsets[r]..offsets[r+1]; offsets[rows] is the file's size
    frames   row r as one zstd frame (content size and checksum in it) of exactly the bytes the .npy file
             of the same precision holds as its row r: P float32 or float16, or one int8 record (quantised.py)

One frame per row because DPUS, HS and OHS read a few arbitrary rows of a step (ShardIncrements.row). The
recorder appends frames as its chunks of rows arrive, so nothing but the frames is held in memory; the table
is written last and the file fsynced: a file whose table is unwritten (a crash, a failed training) has
offsets that do not end at its size and reads as damaged, never as whole. A frame decodes to the stored
bytes exactly, so DPUS subtracts the same values under either codec and the model digests do not depend on
it. zstd may encode the same bytes differently in another library version: compare these files by
`content_sha256`, which hashes the decoded rows, never by their bytes.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import zstandard

from forgetd.server.engine.quantised import int8_rows
from forgetd.server.errors import StoreError
from forgetd.server.store.space import full_as_no_space
from forgetd.server.vocabulary import (
    FLOAT16_INCREMENTS,
    FLOAT32_INCREMENTS,
    INCREMENT_PRECISIONS,
    INT8_INCREMENTS,
    ZSTD_INCREMENTS,
)

__all__ = ["MAGIC", "FORMAT_VERSION", "ZSTD_LEVEL", "stored_dtype", "row_dtype", "is_compressed", "CompressedWriter",
           "CompressedIncrements", "IncrementRows", "RowWriter", "row_writer", "content_sha256"]

MAGIC = b"FGDINCZ\0"
FORMAT_VERSION = 1
# Level 1: on Purchase-shaped int8 increments it keeps 0.58 of the bytes at ~400 MB/s, next to a training step
# that takes ~15 ms per 100 kB row; higher levels gain a few percent for several times the time.
ZSTD_LEVEL = 1
_HEADER = struct.Struct("<8sI8s8siQQ")

# The numpy dtype each stored precision is written in; float16 rounds to nearest, ties to even (IEEE 754).
_DTYPES: dict[str, np.dtype] = {FLOAT32_INCREMENTS: np.dtype("<f4"), FLOAT16_INCREMENTS: np.dtype("<f2")}


def stored_dtype(precision: str, num_params: int) -> np.dtype:
    """The dtype of increments of `num_params` parameters stored in `precision` (vocabulary.INCREMENT_PRECISIONS):
    one entry of a (rows, P) file for float32 and float16, one row's record of a (rows,) file for int8."""
    if precision == INT8_INCREMENTS:
        return int8_rows(num_params)
    try:
        return _DTYPES[precision]
    except KeyError:
        raise ValueError(f"increments precision {precision!r}; one of {', '.join(INCREMENT_PRECISIONS)}") from None


def row_dtype(precision: str, num_params: int) -> tuple[np.dtype, tuple[int, ...]]:
    """(dtype, shape) of one stored row: (P,) float32 or float16, or () of an int8 record."""
    dtype = stored_dtype(precision, num_params)
    return dtype, (() if precision == INT8_INCREMENTS else (num_params,))


def is_compressed(path: Path) -> bool:
    """Whether `path` starts as a compressed increments file does (OSError when it cannot be read)."""
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def _word(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("ascii", "replace")


class CompressedWriter:
    """A new compressed increments file of `rows` rows, written in row order by `write` and made whole by
    `finish`. NoSpace (and the file removed) when the file system is full."""

    def __init__(self, path: Path, rows: int, num_params: int, precision: str, level: int = ZSTD_LEVEL) -> None:
        self.path, self.rows, self.num_params, self.precision = path, rows, num_params, precision
        self.dtype, self._shape = row_dtype(precision, num_params)
        self._row_bytes = self.dtype.itemsize * (num_params if self._shape else 1)
        self._cctx = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)
        self._offsets = np.zeros(rows + 1, "<u8")
        self._next = 0
        self._table_at = _HEADER.size
        self._at = self._table_at + self._offsets.nbytes
        self._offsets[0] = self._at
        header = _HEADER.pack(MAGIC, FORMAT_VERSION, precision.encode(), ZSTD_INCREMENTS.encode(), level,
                              num_params, rows)
        self._fd = -1
        self._guard(lambda: self._open(header))
        self._closer = weakref.finalize(self, os.close, self._fd)  # a training that failed mid-step

    def _open(self, header: bytes) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._pwrite(header, 0)

    def _guard(self, work: Callable[[], None]) -> None:
        """Run `work` (a callable); on any failure the file is closed and removed, a full disk is NoSpace."""
        try:
            with full_as_no_space(self.path.parent, f"writing the increments {self.path.name}"):
                work()
        except BaseException:
            if self._fd >= 0:
                os.close(self._fd)
                if hasattr(self, "_closer"):
                    self._closer.detach()
            self._fd = -1
            self.path.unlink(missing_ok=True)
            raise

    def _pwrite(self, data: bytes | memoryview, at: int) -> None:
        view = memoryview(data)
        while len(view):
            done = os.pwrite(self._fd, view, at)
            view, at = view[done:], at + done

    def write(self, base: int, src: np.ndarray) -> None:
        """Rows base..base+len(src), the next ones of the file, as the stored dtype."""
        if base != self._next or base + len(src) > self.rows or src.dtype != self.dtype:
            raise ValueError(f"{self.path.name}: rows {base}..{base + len(src)} of {src.dtype} after row {self._next} "
                             f"of {self.rows} of {self.dtype}")
        frames = [self._cctx.compress(np.ascontiguousarray(row).tobytes()) for row in src]

        def append() -> None:
            self._pwrite(b"".join(frames), self._at)

        self._guard(append)
        for i, frame in enumerate(frames):
            self._at += len(frame)
            self._offsets[base + i + 1] = self._at
        self._next += len(src)

    def finish(self) -> None:
        """Write the offsets table and fsync: from now on the file reads as whole."""
        if self._next != self.rows:
            raise ValueError(f"{self.path.name}: {self._next} of {self.rows} rows written")

        def seal() -> None:
            self._pwrite(self._offsets.tobytes(), self._table_at)
            os.fsync(self._fd)

        self._guard(seal)
        self._closer()


class CompressedIncrements:
    """A compressed increments file opened for reading: `len`, `shape`, `dtype` and `[r]` (row r decoded, the
    .npy file's row r exactly). StoreError naming the file when it is not whole."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            size = path.stat().st_size
            with open(path, "rb") as f:
                head = f.read(_HEADER.size)
            if len(head) < _HEADER.size:
                raise self._damaged(f"{size} bytes, shorter than its header")
            magic, version, precision, codec, self.level, self.num_params, self.rows = _HEADER.unpack(head)
            self.precision, self.codec = _word(precision), _word(codec)
            if magic != MAGIC or version != FORMAT_VERSION:
                raise StoreError(f"{path}: not a compressed increments file of format {FORMAT_VERSION} (magic "
                                 f"{magic!r}, version {version}); a newer forgetd wrote it, or the store is damaged")
            if self.precision not in INCREMENT_PRECISIONS or self.codec != ZSTD_INCREMENTS:
                raise self._damaged(f"precision {self.precision!r}, codec {self.codec!r}")
            self.dtype, row_shape = row_dtype(self.precision, self.num_params)
            self.shape = (self.rows, *row_shape)
            self._row_bytes = self.dtype.itemsize * (self.num_params if row_shape else 1)
            table_end = _HEADER.size + 8 * (self.rows + 1)
            if size < table_end:
                raise self._damaged(f"{size} bytes, shorter than its offsets table")
            self._data = np.memmap(path, np.uint8, "r")
            self.offsets = np.frombuffer(self._data[_HEADER.size : table_end], "<u8").astype(np.int64)
        except OSError as exc:
            raise StoreError(f"{path}: unreadable increments ({exc}); the store is damaged") from None
        if self.offsets[0] != table_end or self.offsets[-1] != size or np.any(np.diff(self.offsets) <= 0):
            raise self._damaged("its offsets table does not cover the file (a file never finished, or truncated)")
        self._lock = threading.Lock()
        self._dctx = zstandard.ZstdDecompressor()

    def _damaged(self, why: str) -> StoreError:
        return StoreError(f"{self.path}: damaged compressed increments ({why}); the store is damaged: restore it "
                          "from the audit vault or a backup, or retrain")

    def __len__(self) -> int:
        return self.rows

    def raw(self, r: int) -> bytes:
        """Row r's stored bytes, decoded."""
        if not 0 <= r < self.rows:
            raise IndexError(f"row {r} of {self.rows}")
        frame = self._data[int(self.offsets[r]) : int(self.offsets[r + 1])].data  # no copy
        try:
            with self._lock:
                data = self._dctx.decompress(frame)
        except zstandard.ZstdError as exc:
            raise self._damaged(f"row {r}: {exc}") from None
        if len(data) != self._row_bytes:
            raise self._damaged(f"row {r} decodes to {len(data)} bytes, not {self._row_bytes}")
        return data

    def __getitem__(self, r: int) -> np.ndarray:
        return np.frombuffer(self.raw(r), self.dtype).reshape(self.shape[1:])


# What an IncrementSink returns for the recorder to write a step into: a (rows, P) or (rows,) array (usually
# the memmap of a .npy file), or a compressed file's writer.
IncrementRows = np.ndarray | CompressedWriter


class RowWriter(Protocol):
    """Where the recorder (training.run_steps) writes a step's rows, in order, then says it is done."""

    @property
    def dtype(self) -> np.dtype: ...

    def write(self, base: int, src: np.ndarray) -> None: ...

    def finish(self) -> None: ...


class _ArrayRows:
    """Rows into an array. A memory-mapped .npy file is written with pwrite, one sequential write per chunk,
    never through its mapping: each first store into a fresh mapping is a page fault of its own. Its callers
    fsync the file once their training is done."""

    def __init__(self, dst: np.ndarray) -> None:
        self.dst, self.dtype = dst, dst.dtype
        self.file: str | None = None
        self.offset = 0
        if isinstance(dst, np.memmap) and dst.filename is not None:
            self.file, self.offset = str(dst.filename), int(dst.offset)

    def write(self, base: int, src: np.ndarray) -> None:
        if self.file is None or src.dtype != self.dtype:  # an array in RAM, or one numpy must convert into
            self.dst[base : base + len(src)] = src
            return
        data, at = np.ascontiguousarray(src).data.cast("B"), self.offset + base * src.strides[0]
        fd = os.open(self.file, os.O_WRONLY)
        try:
            while len(data):
                done = os.pwrite(fd, data, at)
                data, at = data[done:], at + done
        finally:
            os.close(fd)

    def finish(self) -> None:
        pass


def row_writer(dst: IncrementRows) -> RowWriter:
    """The writer of `dst`, whichever kind of file it is."""
    return dst if isinstance(dst, CompressedWriter) else _ArrayRows(dst)


def content_sha256(path: Path) -> str:
    """Hex SHA-256 of what an artifact file holds: of its bytes, except for a compressed increments file, whose
    digest covers its precision, P, rows and decoded rows (the same whatever zstd's version or level encoded
    them). StoreError when a compressed file is damaged."""
    h = hashlib.sha256()
    if not is_compressed(path):
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    inc = CompressedIncrements(path)
    h.update(f"forgetd.increments-content.v{FORMAT_VERSION}:{inc.precision}:{inc.num_params}:{inc.rows}\n".encode())
    for r in range(inc.rows):
        h.update(inc.raw(r))
    return h.hexdigest()

