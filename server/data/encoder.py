"""The feature encoder: how a raw row (named columns holding numbers or categories) becomes the model's
float32 features, fitted once on the training split and kept in the store beside the model.

Training and serving call the same `encode`, so a raw record sent to Predict is encoded bitwise as its
row was when the model trained on it. The rules:

- a **numeric** column is one feature, `float32((x - mean) / scale)` computed in float64, where `mean` and
  `scale` are the training split's mean and (population) standard deviation, `scale` 1.0 for a constant
  column. A value is a number, or its decimal text, read as training read the file (`float(text)`).
- a **categorical** column is one feature per category the training split holds, in sorted order (one-hot).
  A category the training split did not hold is refused (`unknown_category="error"`, the default) or
  encoded as all zeros (`"zeros"`, chosen at training time). The test split, which only measures
  accuracy, always encodes an unseen category as zeros.
- cells are stripped of surrounding white space, as the loaders strip them.

The loaders without a raw form (synthetic, npz) get `FeatureEncoder.identity`: every feature a numeric
column with mean 0 and scale 1, so every store has a schema and a record of it encodes to its own values.

The artifact is one canonical JSON file (`to_bytes`: sorted keys, no white space, UTF-8, floats in their
shortest round-trip form), written at training and committed by digest in the ledger's genesis:

    {"columns": [{"kind": "numeric", "mean": 38.58..., "name": "age", "scale": 13.64...},
                 {"categories": ["?", "Federal-gov", ...], "kind": "categorical", "name": "workclass"}, ...],
     "format": "forgetd.encoder.v1", "num_features": 108, "unknown_category": "error"}

The features are the columns' encodings concatenated in column order; feature names are the column's name
(numeric) or `column=category` (categorical).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from forgetd.server.errors import DataError, InvalidRequest, StoreError

__all__ = ["ENCODER_FORMAT", "NUMERIC", "CATEGORICAL", "ERROR", "ZEROS", "UNKNOWN_CATEGORY_POLICIES", "Cell",
           "Column", "EncodedColumn", "FeatureEncoder"]

ENCODER_FORMAT = "forgetd.encoder.v1"
NUMERIC = "numeric"
CATEGORICAL = "categorical"
ERROR = "error"
ZEROS = "zeros"
UNKNOWN_CATEGORY_POLICIES = (ERROR, ZEROS)

Cell = str | float | int  # what a raw row holds: text (as in the file), or a number for a numeric column


@dataclass(frozen=True)
class Column:
    """A column as a loader declares it, before fitting."""

    name: str
    numeric: bool


@dataclass(frozen=True)
class EncodedColumn:
    """One fitted column: its kind and what encoding it needs."""

    name: str
    kind: str  # NUMERIC | CATEGORICAL
    mean: float = 0.0  # numeric only
    scale: float = 1.0  # numeric only; > 0
    categories: tuple[str, ...] = ()  # categorical only, in output order
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index.update((c, k) for k, c in enumerate(self.categories))

    @property
    def width(self) -> int:
        return 1 if self.kind == NUMERIC else len(self.categories)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return (self.name,) if self.kind == NUMERIC else tuple(f"{self.name}={c}" for c in self.categories)

    def to_json(self) -> dict[str, object]:
        if self.kind == NUMERIC:
            return {"kind": NUMERIC, "mean": self.mean, "name": self.name, "scale": self.scale}
        return {"categories": list(self.categories), "kind": CATEGORICAL, "name": self.name}

    def category_index(self, value: str) -> int | None:
        return self._index.get(value)


@dataclass(frozen=True)
class FeatureEncoder:
    """Raw rows -> features, as fitted on a training split (module docstring). Immutable."""

    columns: tuple[EncodedColumn, ...]
    unknown_category: str = ERROR

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        if self.unknown_category not in UNKNOWN_CATEGORY_POLICIES:
            raise DataError(f"unknown_category is {self.unknown_category!r}; choose "
                            f"{' or '.join(UNKNOWN_CATEGORY_POLICIES)}")
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise DataError(f"the encoder's columns {names} name a column twice")

    # -- construction -------------------------------------------------------------------------------------

    @classmethod
    def fit(cls, columns: Sequence[Column], rows: Sequence[Sequence[str]], *,
            unknown_category: str = ERROR) -> FeatureEncoder:
        """Fit on the training split's cells (one list per row, in the order of `columns`; numeric cells
        already checked to be finite numbers)."""
        fitted: list[EncodedColumn] = []
        for j, col in enumerate(columns):
            cells = [r[j] for r in rows]
            if not col.numeric:
                categories = tuple(sorted({v.strip() for v in cells}))
                fitted.append(EncodedColumn(col.name, CATEGORICAL, categories=categories))
                continue
            a = np.array([float(v) for v in cells], dtype=np.float64)
            mean = float(a.mean()) if len(a) else 0.0
            std = float(a.std()) if len(a) else 0.0
            if not (math.isfinite(mean) and math.isfinite(std)):
                raise DataError(f"column {col.name!r}: its values are too large to standardise in float64")
            # A constant column stays at zero rather than dividing by zero.
            fitted.append(EncodedColumn(col.name, NUMERIC, mean=mean, scale=std if std > 0 else 1.0))
        return cls(tuple(fitted), unknown_category)

    @classmethod
    def identity(cls, feature_names: Sequence[str]) -> FeatureEncoder:
        """Every feature its own numeric column, passed through unchanged (the loaders with no raw form)."""
        return cls(tuple(EncodedColumn(str(n), NUMERIC) for n in feature_names))

    def with_unknown_category(self, policy: str) -> FeatureEncoder:
        return FeatureEncoder(self.columns, policy)

    # -- what it describes --------------------------------------------------------------------------------

    @property
    def num_features(self) -> int:
        return sum(c.width for c in self.columns)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(n for c in self.columns for n in c.feature_names)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def offsets(self) -> list[int]:
        """The first feature of each column, in column order."""
        out, at = [], 0
        for c in self.columns:
            out.append(at)
            at += c.width
        return out

    def categorical_features(self) -> dict[int, tuple[str, str]]:
        """Feature index -> (column, category) of every one-hot feature."""
        return {at + k: (c.name, cat) for c, at in zip(self.columns, self.offsets()) if c.kind == CATEGORICAL
                for k, cat in enumerate(c.categories)}

    # -- encoding -----------------------------------------------------------------------------------------

    def encode(self, rows: Sequence[Sequence[Cell]], *, unknown_category: str | None = None) -> np.ndarray:
        """(len(rows), num_features) float32 of rows of cells in column order. InvalidRequest names the row,
        the column and the value of the first cell that cannot be encoded."""
        width = len(self.columns)
        for i, row in enumerate(rows):
            if len(row) != width:
                raise InvalidRequest(f"row {i} has {len(row)} values; the model's {width} columns are "
                                     f"{listing(self.column_names)}")
        return self.encode_columns([[r[j] for r in rows] for j in range(width)], len(rows),
                                   unknown_category=unknown_category)

    def encode_records(self, records: Sequence[Mapping[str, Cell]]) -> np.ndarray:
        """Records (column name -> cell) encoded; a missing or unknown column is refused, naming it."""
        known = set(self.column_names)
        for i, rec in enumerate(records):
            stray = [k for k in rec if k not in known]
            if stray:
                raise InvalidRequest(f"row {i}: unknown column {stray[0]!r}; the model's columns are "
                                     f"{listing(self.column_names)}")
            missing = [c for c in self.column_names if c not in rec]
            if missing:
                raise InvalidRequest(f"row {i}: column {missing[0]!r} is missing; every row needs all "
                                     f"{len(known)} of the model's columns ({listing(self.column_names)})")
        return self.encode_columns([[rec[c] for rec in records] for c in self.column_names], len(records))

    def encode_columns(self, cells: Sequence[Sequence[Cell]], rows: int, *,
                       unknown_category: str | None = None) -> np.ndarray:
        """Features of `rows` rows given column by column (cells[j] holds column j's `rows` values)."""
        policy = unknown_category or self.unknown_category
        out = np.zeros((rows, self.num_features), dtype=np.float32)
        for col, at, values in zip(self.columns, self.offsets(), cells):
            if len(values) != rows:
                raise InvalidRequest(f"column {col.name!r} has {len(values)} values for {rows} rows; give "
                                     "every column one value per row")
            if col.kind == NUMERIC:
                x = np.array([_number(col.name, i, v) for i, v in enumerate(values)], dtype=np.float64)
                out[:, at] = (x - col.mean) / col.scale  # rounded to float32 once, as training rounded it
                continue
            codes = np.array([_code(col, i, v, policy) for i, v in enumerate(values)], dtype=np.int64)
            known = np.flatnonzero(codes >= 0)
            out[known, at + codes[known]] = 1.0
        return out

    # -- the artifact -------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, object]:
        return {"columns": [c.to_json() for c in self.columns], "format": ENCODER_FORMAT,
                "num_features": self.num_features, "unknown_category": self.unknown_category}

    def to_bytes(self) -> bytes:
        """The canonical JSON the store keeps (its SHA-256 is what genesis commits)."""
        return _canonical(self.to_json())

    def digest(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "encoder.json") -> FeatureEncoder:
        """The encoder an artifact holds; StoreError naming what is wrong when it is not one this forgetd
        wrote (malformed, inconsistent, or not in canonical form)."""
        try:
            doc = json.loads(data.decode("utf-8"))
            if not isinstance(doc, dict) or doc.get("format") != ENCODER_FORMAT:
                raise ValueError(f"format is not {ENCODER_FORMAT!r}")
            encoder = cls(tuple(_column_from_json(c) for c in doc["columns"]), doc["unknown_category"])
            if doc["num_features"] != encoder.num_features:
                raise ValueError(f"num_features is {doc['num_features']!r} but the columns give "
                                 f"{encoder.num_features} features")
        except (ValueError, KeyError, TypeError, DataError) as exc:
            raise StoreError(f"{where}: not a feature encoder ({exc})") from None
        if encoder.to_bytes() != data:
            raise StoreError(f"{where}: not in the canonical form forgetd writes (edited by hand?)")
        return encoder


def _column_from_json(c: object) -> EncodedColumn:
    if not isinstance(c, dict) or not isinstance(c.get("name"), str):
        raise ValueError(f"column {c!r} has no name")
    if c.get("kind") == NUMERIC:
        mean, scale = c["mean"], c["scale"]
        finite = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (mean, scale))
        if not finite or scale <= 0:
            raise ValueError(f"column {c['name']!r}: mean and scale must be finite numbers, scale > 0")
        return EncodedColumn(c["name"], NUMERIC, mean=float(mean), scale=float(scale))
    if c.get("kind") == CATEGORICAL:
        cats = c["categories"]
        if not isinstance(cats, list) or not all(isinstance(v, str) for v in cats) or cats != sorted(set(cats)):
            raise ValueError(f"column {c['name']!r}: categories must be distinct strings in sorted order")
        return EncodedColumn(c["name"], CATEGORICAL, categories=tuple(cats))
    raise ValueError(f"column {c['name']!r} has kind {c.get('kind')!r}; expected numeric or categorical")


def _canonical(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _number(column: str, row: int, value: Cell) -> float:
    if isinstance(value, str):
        try:
            x = float(value.strip())
        except ValueError:
            raise InvalidRequest(f"row {row}, column {column!r}: {value!r} is not a number (the column is "
                                 "numeric)") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        x = float(value)
    else:
        raise InvalidRequest(f"row {row}, column {column!r}: {value!r} is not a number (the column is numeric)")
    if not math.isfinite(x):
        raise InvalidRequest(f"row {row}, column {column!r}: {value!r} is not a finite number")
    return x


def _code(col: EncodedColumn, row: int, value: Cell, policy: str) -> int:
    """The category's index in the column, -1 for an unknown one the policy encodes as zeros."""
    if not isinstance(value, str):
        raise InvalidRequest(f"row {row}, column {col.name!r}: {value!r} is a number, but the column is "
                             "categorical; send its category as a string")
    k = col.category_index(value.strip())
    if k is None:
        if policy == ERROR:
            raise InvalidRequest(_unknown_category(col, row, value))
        return -1
    return k


def _unknown_category(col: EncodedColumn, row: int, value: Cell) -> str:
    return (f"row {row}, column {col.name!r}: unknown category {str(value).strip()!r}; the training data held "
            f"{len(col.categories)} ({listing(col.categories)}), and this store was trained to refuse others "
            "(forgetd train --unknown-category zeros encodes them as zeros)")


def listing(names: Sequence[str], most: int = 8) -> str:
    """The first `most` names quoted, and how many more there are."""
    shown = ", ".join(repr(n) for n in names[:most])
    return shown + (f", ... ({len(names) - most} more)" if len(names) > most else "")
