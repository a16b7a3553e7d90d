"""Training data: the `Dataset` type and its loaders (UCI Adult, CSV, NPZ, and a synthetic demo set).

Every sample carries a stable string id, because forget requests name samples by id. Loaders are strict:
a malformed file is a `DataError` that names the file, the row and the column, and nothing is returned.

    from forgetd.server.data.loaders import load_dataset
    ds = load_dataset("adult", "../shared/datasets/adult")
    ds = load_dataset("csv", "people.csv", id_column="user", label_column="churned")
    ds = load_dataset("synthetic", n=2000, seed=0)
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import math
import struct
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from forgetd.server.errors import DataError

__all__ = ["Dataset", "load_dataset", "split_is_test", "hash_rows", "KINDS"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Features and labels of a train and a test split, each row named by a sample id.

    Arrays are stored C-contiguous and read-only (X float32, y int64); ids are unique across both splits.
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

    def __post_init__(self) -> None:
        for field in ("feature_names", "train_ids", "test_ids"):
            object.__setattr__(self, field, tuple(getattr(self, field)))
        n_features = len(self.feature_names)
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
        )


def _frozen(a: np.ndarray, dtype: type) -> np.ndarray:
    out = np.array(a, dtype=dtype, order="C", copy=True)  # a copy: never freeze the caller's own array
    out.flags.writeable = False
    return out


def hash_rows(h: Any, ids: Sequence[str], X: np.ndarray, y: np.ndarray) -> None:
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


# ----------------------------------------------------------------------------------------------------
# Tabular encoding shared by the Adult and CSV loaders: numeric columns standardised with the train
# split's mean and std, categorical columns one-hot over the categories seen in the train split.


@dataclass(frozen=True)
class _Column:
    name: str
    numeric: bool


def _encode(
    columns: Sequence[_Column], train: list[list[str]], test: list[list[str]]
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    names: list[str] = []
    train_blocks: list[np.ndarray] = []
    test_blocks: list[np.ndarray] = []
    for j, col in enumerate(columns):
        tr = [r[j] for r in train]
        te = [r[j] for r in test]
        if col.numeric:
            a = np.array([float(v) for v in tr], dtype=np.float64)
            b = np.array([float(v) for v in te], dtype=np.float64)
            mean = float(a.mean()) if len(a) else 0.0
            std = float(a.std()) if len(a) else 0.0
            std = std if std > 0 else 1.0  # a constant column stays at zero rather than dividing by zero
            names.append(col.name)
            train_blocks.append(((a - mean) / std)[:, None])
            test_blocks.append(((b - mean) / std)[:, None])
        else:
            cats = sorted(set(tr))
            index = {c: k for k, c in enumerate(cats)}
            names.extend(f"{col.name}={c}" for c in cats)
            train_blocks.append(_one_hot(tr, index))
            test_blocks.append(_one_hot(te, index))  # categories unseen in training encode as all zeros

    def stack(blocks: list[np.ndarray], n: int) -> np.ndarray:
        return np.hstack(blocks).astype(np.float32) if blocks else np.zeros((n, 0), np.float32)

    return tuple(names), stack(train_blocks, len(train)), stack(test_blocks, len(test))


def _one_hot(values: list[str], index: dict[str, int]) -> np.ndarray:
    codes = np.fromiter((index.get(v, -1) for v in values), dtype=np.int64, count=len(values))
    out = np.zeros((len(values), len(index)), dtype=np.float64)
    known = codes >= 0
    out[np.flatnonzero(known), codes[known]] = 1.0
    return out


def _parse_number(path: Path, line: int, column: str, value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise DataError(f"{path}: row {line}, column {column!r}: {value!r} is not a number") from None
    if not math.isfinite(x):
        raise DataError(f"{path}: row {line}, column {column!r}: {value!r} is not a finite number")
    return x


# ----------------------------------------------------------------------------------------------------
# UCI Adult


_ADULT_COLUMNS = (
    _Column("age", True),
    _Column("workclass", False),
    _Column("fnlwgt", True),
    _Column("education", False),
    _Column("education-num", True),
    _Column("marital-status", False),
    _Column("occupation", False),
    _Column("relationship", False),
    _Column("race", False),
    _Column("sex", False),
    _Column("capital-gain", True),
    _Column("capital-loss", True),
    _Column("hours-per-week", True),
    _Column("native-country", False),
)
_ADULT_LABELS = {"<=50K": 0, ">50K": 1}


def _read_adult(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """Rows of one Adult file; a row's id is `<file name>:<1-based line number>`."""
    if not path.is_file():
        raise DataError(f"{path}: no such file; the adult loader expects adult.data and adult.test in the folder")
    ids: list[str] = []
    rows: list[list[str]] = []
    labels: list[int] = []
    n_fields = len(_ADULT_COLUMNS) + 1
    with path.open(encoding="utf-8", newline="") as f:
        for line_no, line in enumerate(f, start=1):
            text = line.strip()
            # The original adult.test opens with a `|1x3 Cross validator` comment line.
            if not text or text.startswith("|"):
                continue
            fields = [v.strip() for v in text.split(",")]
            if len(fields) != n_fields:
                raise DataError(f"{path}: row {line_no}: {len(fields)} fields, expected {n_fields} (comma separated)")
            for j, (col, value) in enumerate(zip(_ADULT_COLUMNS, fields)):
                if col.numeric:
                    fields[j] = _parse_number(path, line_no, col.name, value)  # type: ignore[call-overload]
                elif not value:
                    raise DataError(f"{path}: row {line_no}, column {col.name!r}: empty value (missing is '?')")
            label = str(fields[-1]).rstrip(".")  # the original adult.test writes `<=50K.`
            if label not in _ADULT_LABELS:
                raise DataError(f"{path}: row {line_no}, column 'income': {fields[-1]!r} is neither <=50K nor >50K")
            ids.append(f"{path.name}:{line_no}")
            rows.append(fields[:-1])
            labels.append(_ADULT_LABELS[label])
    if not rows:
        raise DataError(f"{path}: no data rows")
    return ids, rows, labels


def _load_adult(path: str | Path | None, **options: Any) -> Dataset:
    if path is None:
        raise DataError("adult: pass the folder holding adult.data and adult.test, e.g. load_dataset('adult', DIR)")
    _no_options("adult", options)
    folder = Path(path)
    train_ids, train_rows, train_y = _read_adult(folder / "adult.data")
    test_ids, test_rows, test_y = _read_adult(folder / "adult.test")
    names, X_train, X_test = _encode(_ADULT_COLUMNS, train_rows, test_rows)
    return Dataset(
        name="adult",
        feature_names=names,
        train_ids=tuple(train_ids),
        X_train=X_train,
        y_train=np.array(train_y, dtype=np.int64),
        test_ids=tuple(test_ids),
        X_test=X_test,
        y_test=np.array(test_y, dtype=np.int64),
        num_classes=2,
    )


# ----------------------------------------------------------------------------------------------------
# CSV


def _load_csv(
    path: str | Path | None,
    *,
    id_column: str | None = None,
    label_column: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    categorical_columns: Sequence[str] = (),
    **options: Any,
) -> Dataset:
    """A CSV file with a header row. Every column other than the id and the label is a feature: numeric when
    every value parses as a number (standardised), categorical when none does or when listed in
    `categorical_columns` (one-hot). A column that mixes numbers and text is an error, because a typo in a
    numeric column would otherwise silently turn it into categories. Labels map to 0..C-1 in sorted order
    (numeric order when every label is a number)."""
    if path is None:
        raise DataError("csv: pass the file, e.g. load_dataset('csv', PATH, id_column=..., label_column=...)")
    _no_options("csv", options)
    if id_column is None or label_column is None:
        raise DataError("csv: name the id column and the label column: id_column=..., label_column=...")
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"csv: test_fraction is {test_fraction}; choose a value in [0, 1)")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path}: empty file; a header row is required") from None
        except csv.Error as e:
            raise DataError(f"{path}: row 1: malformed CSV ({e})") from None
        header = [h.strip() for h in header]
        for i, h in enumerate(header):
            if not h:
                raise DataError(f"{path}: row 1, column {i + 1}: empty column name in the header")
            if h in header[:i]:
                raise DataError(f"{path}: row 1, column {i + 1}: duplicate column name {h!r}")
        for role, name in (("id_column", id_column), ("label_column", label_column)):
            if name not in header:
                raise DataError(f"{path}: row 1: missing column {name!r} ({role}); the header has {header}")
        if id_column == label_column:
            raise DataError(f"csv: id_column and label_column are both {id_column!r}; they must differ")
        unknown = [c for c in categorical_columns if c not in header]
        if unknown:
            raise DataError(f"{path}: row 1: missing column {unknown[0]!r} (categorical_columns)")
        id_j, label_j = header.index(id_column), header.index(label_column)
        feature_js = [j for j in range(len(header)) if j not in (id_j, label_j)]
        lines: list[int] = []
        records: list[list[str]] = []
        try:
            for rec in reader:
                if not rec or all(not v.strip() for v in rec):
                    continue  # blank line
                if len(rec) != len(header):
                    raise DataError(
                        f"{path}: row {reader.line_num}: {len(rec)} fields, expected {len(header)} as in the header"
                    )
                lines.append(reader.line_num)
                records.append([v.strip() for v in rec])
        except csv.Error as e:
            raise DataError(f"{path}: row {reader.line_num}: malformed CSV ({e})") from None
    if not records:
        raise DataError(f"{path}: no data rows after the header")

    first_row: dict[str, int] = {}
    for line, rec in zip(lines, records):
        sid = rec[id_j]
        if not sid:
            raise DataError(f"{path}: row {line}, column {id_column!r}: empty sample id")
        if sid in first_row:
            raise DataError(
                f"{path}: row {line}, column {id_column!r}: duplicate id {sid!r} (first seen in row {first_row[sid]})"
            )
        first_row[sid] = line

    columns: list[_Column] = []
    for j in feature_js:
        name = header[j]
        numeric = name not in categorical_columns and _column_is_numeric(path, name, [(ln, r[j]) for ln, r in zip(lines, records)])
        columns.append(_Column(name, numeric))

    raw_labels = [rec[label_j] for rec in records]
    for line, lab in zip(lines, raw_labels):
        if not lab:
            raise DataError(f"{path}: row {line}, column {label_column!r}: empty label")
    classes = _sorted_labels(set(raw_labels))
    if len(classes) < 2:
        raise DataError(f"{path}: column {label_column!r} holds a single label {classes[0]!r}; need at least 2 classes")
    label_index = {c: k for k, c in enumerate(classes)}

    is_test = [split_is_test(rec[id_j], test_fraction, seed) for rec in records]
    train = [i for i, t in enumerate(is_test) if not t]
    test = [i for i, t in enumerate(is_test) if t]
    if not train:
        raise DataError(f"{path}: every row fell in the test split; lower test_fraction ({test_fraction})")
    feats = [[rec[j] for j in feature_js] for rec in records]
    names, X_train, X_test = _encode(columns, [feats[i] for i in train], [feats[i] for i in test])
    y = np.array([label_index[lab] for lab in raw_labels], dtype=np.int64)
    return Dataset(
        name=path.name,
        feature_names=names,
        train_ids=tuple(records[i][id_j] for i in train),
        X_train=X_train,
        y_train=y[train],
        test_ids=tuple(records[i][id_j] for i in test),
        X_test=X_test,
        y_test=y[test],
        num_classes=len(classes),
    )


def _column_is_numeric(path: Path, name: str, cells: list[tuple[int, str]]) -> bool:
    numeric_rows: list[int] = []
    text_row: int | None = None
    for line, value in cells:
        try:
            x = float(value)
        except ValueError:
            if text_row is None:
                text_row = line
            continue
        if not math.isfinite(x):
            raise DataError(f"{path}: row {line}, column {name!r}: {value!r} is not a finite number")
        numeric_rows.append(line)
    if text_row is None:
        return True
    if not numeric_rows:
        return False
    value = next(v for ln, v in cells if ln == text_row)
    raise DataError(
        f"{path}: row {text_row}, column {name!r}: {value!r} is not a number, but row {numeric_rows[0]} of the "
        f"same column is; fix the value, or pass categorical_columns=[{name!r}] to one-hot encode the column"
    )


def _sorted_labels(labels: set[str]) -> list[str]:
    try:
        return sorted(labels, key=lambda s: (float(s), s))
    except ValueError:
        return sorted(labels)


# ----------------------------------------------------------------------------------------------------
# NPZ


def _load_npz(
    path: str | Path | None, *, test_fraction: float = 0.2, seed: int = 0, num_classes: int | None = None, **options: Any
) -> Dataset:
    """Arrays `ids` (strings), `X` (rows, features) and `y` (non-negative integer labels); optionally
    `test_ids`, `X_test`, `y_test`, otherwise a keyed-hash split of `ids`. Features are used as given."""
    if path is None:
        raise DataError("npz: pass the file, e.g. load_dataset('npz', PATH)")
    _no_options("npz", options)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    for key in ("ids", "X", "y"):
        if key not in arrays:
            raise DataError(f"{path}: missing array {key!r}; the file has {sorted(arrays)}")
    given_test = [k for k in ("test_ids", "X_test", "y_test") if k in arrays]
    if given_test and len(given_test) != 3:
        raise DataError(f"{path}: has {given_test} but not all of test_ids, X_test, y_test; give all three or none")

    def split(ids_key: str, X_key: str, y_key: str) -> tuple[list[str], np.ndarray, np.ndarray]:
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

    ids, X, y = split("ids", "X", "y")
    if given_test:
        test_ids, X_test, y_test = split("test_ids", "X_test", "y_test")
        if X_test.shape[1] != X.shape[1]:
            raise DataError(f"{path}: 'X_test' has {X_test.shape[1]} columns, 'X' has {X.shape[1]}; they must agree")
        clash = set(ids) & set(test_ids)
        if clash:
            raise DataError(f"{path}: id {sorted(clash)[0]!r} is in both 'ids' and 'test_ids'")
        train_ids = ids
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


def _check_unique(path: Path, key: str, ids: list[str]) -> None:
    first: dict[str, int] = {}
    for i, s in enumerate(ids):
        if not s:
            raise DataError(f"{path}: array {key!r} row {i}: empty sample id")
        if s in first:
            raise DataError(f"{path}: array {key!r} row {i}: duplicate id {s!r} (first seen in row {first[s]})")
        first[s] = i


# ----------------------------------------------------------------------------------------------------
# Synthetic: the daemon's built-in demo, so `forgetd serve` runs with no data at hand.


def _load_synthetic(
    path: str | Path | None = None,
    *,
    n: int = 2000,
    seed: int = 0,
    features: int = 16,
    classes: int = 2,
    test_fraction: float = 0.2,
    noise: float = 0.5,
    **options: Any,
) -> Dataset:
    """`n` training rows plus `round(n * test_fraction)` test rows of `features` features.

    Bitwise the same on every machine: the random numbers are the raw integer stream of numpy's PCG64
    (whose output is fixed by its specification, unlike Generator methods), turned into floats only with
    correctly rounded IEEE operations (+, *, /, sqrt), and sums run in a fixed order rather than through
    BLAS. Features are approximately normal (Irwin-Hall with 4 terms); class c scores a linear term, a
    product of two features and a square, plus noise; the label is the best-scoring class.
    """
    if path is not None:
        raise DataError("synthetic: takes no path; pass n=..., seed=..., features=..., classes=...")
    _no_options("synthetic", options)
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
    n_test = int(round(n * test_fraction))
    rows = n + n_test
    bits = np.random.PCG64(seed)

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
    y = np.argmax(scores, axis=1).astype(np.int64)
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


# ----------------------------------------------------------------------------------------------------

KINDS: dict[str, Callable[..., Dataset]] = {
    "adult": _load_adult,
    "csv": _load_csv,
    "npz": _load_npz,
    "synthetic": _load_synthetic,
}


def _no_options(kind: str, options: dict[str, Any]) -> None:
    if options:
        raise DataError(f"{kind}: unknown option(s) {sorted(options)}; see load_dataset's documentation")


def load_dataset(kind: str, path: str | Path | None = None, **options: Any) -> Dataset:
    """Load a data set of the given kind: "adult" (a folder), "csv" or "npz" (a file), or "synthetic" (no path).

    Options: csv takes id_column, label_column, test_fraction=0.2, seed=0, categorical_columns=();
    npz takes test_fraction=0.2, seed=0 (used only without test arrays), num_classes=None;
    synthetic takes n=2000, seed=0, features=16, classes=2, test_fraction=0.2, noise=0.5.
    """
    loader = KINDS.get(kind)
    if loader is None:
        raise DataError(f"unknown data kind {kind!r}; choose one of {', '.join(sorted(KINDS))}")
    return loader(path, **options)
