"""The `Dataset` type every loader returns, its digest encoding and the keyed train/test split. How raw
rows become features (the encoding the Adult and CSV loaders fit, and serving repeats) is encoder.py's.

Every sample carries a stable string id, because forget requests name samples by id. A `Dataset` checks
itself when built: shapes agree, values are finite, labels are in range and ids are unique across splits.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from forgetd.server.data.encoder import Column, FeatureEncoder
from forgetd.server.errors import DataError

__all__ = ["Dataset", "Hasher", "hash_rows", "split_is_test", "parse_number", "no_options"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Features and labels of a train and a test split, each row named by a sample id.

    Arrays are stored C-contiguous and read-only (X float32, y int64); ids are unique across both splits.
    `encoder` turns a raw row into these features (identity over `feature_names` when a loader has no raw
    form); the store keeps it so that Predict can take raw records.
    """

    name: str
    feature_names: tuple[str, ...]
    train_ids: tuple[str, ...]
    X_train: np.ndarray  # (N, F) float32
    y_train: np.ndarray  # (N,) int64, 0..num_classes-1
    test_ids: tuple[str, ...]
    X_test: np.ndarray  # (M, F) float32
    y_test: np.ndarray  # (M,) int64
    num_classes: int
    encoder: FeatureEncoder | None = None  # None: FeatureEncoder.identity(feature_names)

    def __post_init__(self) -> None:
        for field in ("feature_names", "train_ids", "test_ids"):
            object.__setattr__(self, field, tuple(getattr(self, field)))
        n_features = len(self.feature_names)
        if self.encoder is None:
            object.__setattr__(self, "encoder", FeatureEncoder.identity(self.feature_names))
        elif self.encoder.feature_names != self.feature_names:
            raise DataError(f"dataset {self.name!r}: the encoder makes {self.encoder.num_features} features "
                            f"that are not the {n_features} feature names given")
        if self.num_classes < 2:
            raise DataError(f"dataset {self.name!r}: num_classes is {self.num_classes}; a classifier needs at least 2")
        for split, ids in (("train", self.train_ids), ("test", self.test_ids)):
            X = _frozen(np.asarray(getattr(self, f"X_{split}")), np.float32)
            y = _frozen(np.asarray(getattr(self, f"y_{split}")), np.int64)
            if X.ndim != 2 or X.shape[1] != n_features:
                raise DataError(
                    f"dataset {self.name!r}: X_{split} has shape {X.shape}; expected (rows, {n_features}) "
                    f"to match the {n_features} feature names"
                )
            if y.shape != (len(ids),) or X.shape[0] != len(ids):
                raise DataError(
                    f"dataset {self.name!r}: {split} split has {len(ids)} ids, X_{split} {X.shape[0]} rows "
                    f"and y_{split} shape {y.shape}; all three must agree"
                )
            if not np.isfinite(X).all():
                row, col = np.argwhere(~np.isfinite(X))[0]
                raise DataError(
                    f"dataset {self.name!r}: X_{split} row {row} ({ids[row]!r}) column {col} "
                    f"({self.feature_names[col]!r}) is not finite"
                )
            if len(y) and (y.min() < 0 or y.max() >= self.num_classes):
                row = int(np.argmax((y < 0) | (y >= self.num_classes)))
                raise DataError(
                    f"dataset {self.name!r}: y_{split} row {row} ({ids[row]!r}) is {y[row]}; labels must be "
                    f"in 0..{self.num_classes - 1}"
                )
            object.__setattr__(self, f"X_{split}", X)
            object.__setattr__(self, f"y_{split}", y)
        if len(self.train_ids) == 0:
            raise DataError(f"dataset {self.name!r}: the train split is empty")
        seen: set[str] = set()
        for split, ids in (("train", self.train_ids), ("test", self.test_ids)):
            for i, sid in enumerate(ids):
                if not isinstance(sid, str) or not sid:
                    raise DataError(f"dataset {self.name!r}: {split} row {i} has id {sid!r}; ids are non-empty strings")
                if sid in seen:
                    raise DataError(f"dataset {self.name!r}: {split} row {i}: duplicate sample id {sid!r}")
                seen.add(sid)

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    def digest(self) -> str:
        """Hex SHA-256 of the data, stable across machines and numpy versions.

        Encoding: b"forgetd.dataset.v1\\0", num_classes and the feature count as u64 big-endian, then for the
        train split and then the test split: the row count as u64 BE, each id as its UTF-8 length (u32 BE)
        and bytes, X as little-endian float32 row-major, y as little-endian int64. Names are not included:
        renaming a data set or its features does not change what a model learned from it.
        """
        h = hashlib.sha256(b"forgetd.dataset.v1\0")
        h.update(struct.pack(">QQ", self.num_classes, self.num_features))
        for ids, X, y in ((self.train_ids, self.X_train, self.y_train), (self.test_ids, self.X_test, self.y_test)):
            hash_rows(h, ids, X, y)
        return h.hexdigest()

    def subset(self, n_train: int, n_test: int | None = None) -> Dataset:
        """The first `n_train` training rows and the first `n_test` test rows (all of them when None)."""
        n_test = len(self.test_ids) if n_test is None else n_test
        if not 1 <= n_train <= len(self.train_ids):
            raise DataError(f"subset: n_train is {n_train}; choose 1..{len(self.train_ids)}")
        if not 0 <= n_test <= len(self.test_ids):
            raise DataError(f"subset: n_test is {n_test}; choose 0..{len(self.test_ids)}")
        return Dataset(
            name=f"{self.name}[:{n_train},:{n_test}]",
            feature_names=self.feature_names,
            train_ids=self.train_ids[:n_train],
            X_train=self.X_train[:n_train],
            y_train=self.y_train[:n_train],
            test_ids=self.test_ids[:n_test],
            X_test=self.X_test[:n_test],
            y_test=self.y_test[:n_test],
            num_classes=self.num_classes,
            encoder=self.encoder,  # fitted on the whole split, and the subset's features are its encodings
        )


def _frozen(a: np.ndarray, dtype: type) -> np.ndarray:
    out: np.ndarray = np.array(a, dtype=dtype, order="C", copy=True)  # a copy: never freeze the caller's own array
    out.flags.writeable = False
    return out


class Hasher(Protocol):
    """What `hash_rows` feeds: any hashlib object (or anything else that takes bytes)."""

    def update(self, data: bytes, /) -> None: ...


def hash_rows(h: Hasher, ids: Sequence[str], X: np.ndarray, y: np.ndarray) -> None:
    """Feed rows into hashlib object `h`: the row count (u64 BE), each id as its UTF-8 length (u32 BE) and
    bytes, X as little-endian float32 row-major, y as little-endian int64 (the encoding `digest` documents)."""
    h.update(struct.pack(">Q", len(ids)))
    for sid in ids:
        b = sid.encode("utf-8")
        h.update(struct.pack(">I", len(b)))
        h.update(b)
    h.update(np.ascontiguousarray(X, dtype="<f4").tobytes())
    h.update(np.ascontiguousarray(y, dtype="<i8").tobytes())


def split_is_test(sample_id: str, test_fraction: float, seed: int) -> bool:
    """Whether `sample_id` falls in the test split: a keyed hash of the id, the same on every machine."""
    key = f"forgetd.split.v1:{seed}".encode()
    u = int.from_bytes(hmac.new(key, sample_id.encode("utf-8"), hashlib.sha256).digest()[:8], "big")
    return u < test_fraction * 2.0**64


def no_options(kind: str, options: Mapping[str, object]) -> None:
    """DataError naming the options a loader does not take (a typo must not be ignored silently)."""
    if options:
        raise DataError(f"{kind}: unknown option(s) {sorted(options)}; see load_dataset's documentation")


def parse_number(path: Path, line: int, column: str, value: str) -> float:
    """`value` as a finite float; DataError naming the file, row and column otherwise."""
    try:
        x = float(value)
    except ValueError:
        raise DataError(f"{path}: row {line}, column {column!r}: {value!r} is not a number") from None
    if not math.isfinite(x):
        raise DataError(f"{path}: row {line}, column {column!r}: {value!r} is not a finite number")
    return x


def read_comma_rows(path: Path, parse_row: Callable[[Path, int, str], tuple[list[str], int]], *,
                    skip_prefix: str | None = None) -> tuple[list[str], list[list[str]], list[int]]:
    """(ids, feature cells, labels) of a UCI-style comma-separated file: each non-blank line (and not one that
    starts with `skip_prefix`) through `parse_row(path, line_no, text)`; a row's id is `<file name>:<line>`,
    its 1-based line number. DataError when the file holds no data row."""
    ids: list[str] = []
    rows: list[list[str]] = []
    labels: list[int] = []
    with path.open(encoding="utf-8", newline="") as f:
        for line_no, line in enumerate(f, start=1):
            text = line.strip()
            if not text or (skip_prefix is not None and text.startswith(skip_prefix)):
                continue
            fields, label = parse_row(path, line_no, text)
            ids.append(f"{path.name}:{line_no}")
            rows.append(fields)
            labels.append(label)
    if not rows:
        raise DataError(f"{path}: no data rows")
    return ids, rows, labels


def encoded_dataset(name: str, columns: Sequence[Column], train: tuple[Sequence[str], list[list[str]], np.ndarray],
                    test: tuple[Sequence[str], list[list[str]], np.ndarray], *, num_classes: int,
                    unknown_category: str) -> Dataset:
    """A Dataset of tabular cells, each split as (ids, cells, labels): the encoder is fitted on the training cells,
    `unknown_category` is what the served model does with a category they lack ("error" or "zeros"), and the test
    split always encodes one as zeros (it must load, whatever categories the training split happened to hold)."""
    encoder = FeatureEncoder.fit(columns, train[1], unknown_category=unknown_category)
    return Dataset(
        name=name,
        feature_names=encoder.feature_names,
        train_ids=tuple(train[0]),
        X_train=encoder.encode(train[1]),
        y_train=np.asarray(train[2], dtype=np.int64),
        test_ids=tuple(test[0]),
        X_test=encoder.encode(test[1], unknown_category="zeros"),
        y_test=np.asarray(test[2], dtype=np.int64),
        num_classes=num_classes,
        encoder=encoder,
    )
