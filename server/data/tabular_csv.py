"""A CSV file with a header row: one column of sample ids, one of labels, every other column a feature.

(Named tabular_csv, not csv, so that nothing here can be mistaken for the standard library's csv module.)
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from forgetd.server.data.dataset import Dataset, encoded_dataset, no_options, split_is_test
from forgetd.server.data.encoder import Column
from forgetd.server.errors import DataError

__all__ = ["load_csv"]


def load_csv(
    path: str | Path | None,
    *,
    id_column: str | None = None,
    label_column: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    categorical_columns: Sequence[str] = (),
    unknown_category: str = "error",
    **options: object,
) -> Dataset:
    """A CSV file with a header row. Every column other than the id and the label is a feature: numeric when
    every value parses as a number (standardised), categorical when none does or when listed in
    `categorical_columns` (one-hot). A column that mixes numbers and text is an error, because a typo in a
    numeric column would otherwise silently turn it into categories. Labels map to 0..C-1 in sorted order
    (numeric order when every label is a number). The test split is a keyed hash of each id. The encoding
    is a FeatureEncoder fitted on the train split; `unknown_category` is what the served model does with a
    category the train split does not hold: "error" (refuse the row) or "zeros"."""
    if path is None:
        raise DataError("csv: pass the file, e.g. load_dataset('csv', PATH, id_column=..., label_column=...)")
    no_options("csv", options)
    if id_column is None or label_column is None:
        raise DataError("csv: name the id column and the label column: id_column=..., label_column=...")
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"csv: test_fraction is {test_fraction}; choose a value in [0, 1)")
    path = Path(path)
    header, lines, records = _read(path, id_column, label_column, categorical_columns)
    id_j, label_j = header.index(id_column), header.index(label_column)
    feature_js = [j for j in range(len(header)) if j not in (id_j, label_j)]
    _check_ids(path, id_column, lines, [rec[id_j] for rec in records])
    columns = [
        Column(header[j], header[j] not in categorical_columns
               and _column_is_numeric(path, header[j], [(ln, r[j]) for ln, r in zip(lines, records)]))
        for j in feature_js
    ]
    y, num_classes = _labels(path, label_column, lines, [rec[label_j] for rec in records])
    is_test = [split_is_test(rec[id_j], test_fraction, seed) for rec in records]
    train = [i for i, t in enumerate(is_test) if not t]
    test = [i for i, t in enumerate(is_test) if t]
    if not train:
        raise DataError(f"{path}: every row fell in the test split; lower test_fraction ({test_fraction})")
    feats = [[rec[j] for j in feature_js] for rec in records]
    return encoded_dataset(path.name, columns, ([records[i][id_j] for i in train], [feats[i] for i in train], y[train]),
                           ([records[i][id_j] for i in test], [feats[i] for i in test], y[test]),
                           num_classes=num_classes, unknown_category=unknown_category)


def _read(path: Path, id_column: str, label_column: str,
          categorical_columns: Sequence[str]) -> tuple[list[str], list[int], list[list[str]]]:
    """(header, line number of each record, records) with every cell stripped; blank lines skipped."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, strict=True)
        header = _header(path, reader)
        _check_header(path, header, id_column, label_column, categorical_columns)
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
    return header, lines, records


def _header(path: Path, reader: Iterator[list[str]]) -> list[str]:
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
    return header


def _check_header(path: Path, header: list[str], id_column: str, label_column: str,
                  categorical_columns: Sequence[str]) -> None:
    """DataError unless the header names the id, the label and every categorical column, id and label apart."""
    for role, name in (("id_column", id_column), ("label_column", label_column)):
        if name not in header:
            raise DataError(f"{path}: row 1: missing column {name!r} ({role}); the header has {header}")
    if id_column == label_column:
        raise DataError(f"csv: id_column and label_column are both {id_column!r}; they must differ")
    unknown = [c for c in categorical_columns if c not in header]
    if unknown:
        raise DataError(f"{path}: row 1: missing column {unknown[0]!r} (categorical_columns)")


def _check_ids(path: Path, id_column: str, lines: list[int], ids: list[str]) -> None:
    first_row: dict[str, int] = {}
    for line, sid in zip(lines, ids):
        if not sid:
            raise DataError(f"{path}: row {line}, column {id_column!r}: empty sample id")
        if sid in first_row:
            raise DataError(
                f"{path}: row {line}, column {id_column!r}: duplicate id {sid!r} (first seen in row {first_row[sid]})"
            )
        first_row[sid] = line


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


def _labels(path: Path, label_column: str, lines: list[int], raw: list[str]) -> tuple[np.ndarray, int]:
    """(y, number of classes): each label's index among the sorted distinct labels."""
    for line, lab in zip(lines, raw):
        if not lab:
            raise DataError(f"{path}: row {line}, column {label_column!r}: empty label")
    classes = _sorted_labels(set(raw))
    if len(classes) < 2:
        raise DataError(f"{path}: column {label_column!r} holds a single label {classes[0]!r}; need at least 2 classes")
    index = {c: k for k, c in enumerate(classes)}
    return np.array([index[lab] for lab in raw], dtype=np.int64), len(classes)


def _sorted_labels(labels: set[str]) -> list[str]:
    try:
        return sorted(labels, key=lambda s: (float(s), s))
    except ValueError:
        return sorted(labels)
