"""The UCI Adult data set: a folder holding adult.data (the train split) and adult.test (the test split).

A row's id is `<file name>:<1-based line number>`, so ids stay stable however the files are read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from forgetd.server.data.dataset import Dataset, encoded_dataset, no_options, parse_number, read_comma_rows
from forgetd.server.data.encoder import Column
from forgetd.server.errors import DataError

__all__ = ["load_adult"]

_COLUMNS = (
    Column("age", True),
    Column("workclass", False),
    Column("fnlwgt", True),
    Column("education", False),
    Column("education-num", True),
    Column("marital-status", False),
    Column("occupation", False),
    Column("relationship", False),
    Column("race", False),
    Column("sex", False),
    Column("capital-gain", True),
    Column("capital-loss", True),
    Column("hours-per-week", True),
    Column("native-country", False),
)
_LABELS = {"<=50K": 0, ">50K": 1}


def load_adult(path: str | Path | None, *, unknown_category: str = "error", **options: object) -> Dataset:
    """The folder's adult.data and adult.test, numeric columns standardised and categorical ones one-hot
    (FeatureEncoder, fitted on adult.data). `unknown_category` is what the served model does with a category
    adult.data does not hold: "error" (refuse the row) or "zeros"."""
    if path is None:
        raise DataError("adult: pass the folder holding adult.data and adult.test, e.g. load_dataset('adult', DIR)")
    no_options("adult", options)
    folder = Path(path)
    train_ids, train_rows, train_y = _read(folder / "adult.data")
    test_ids, test_rows, test_y = _read(folder / "adult.test")
    return encoded_dataset("adult", _COLUMNS, (train_ids, train_rows, np.array(train_y)),
                           (test_ids, test_rows, np.array(test_y)), num_classes=2, unknown_category=unknown_category)


def _read(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """(ids, feature cells, labels) of one Adult file."""
    if not path.is_file():
        raise DataError(f"{path}: no such file; the adult loader expects adult.data and adult.test in the folder")
    # The original adult.test opens with a `|1x3 Cross validator` comment line.
    return read_comma_rows(path, _parse_row, skip_prefix="|")


def _parse_row(path: Path, line_no: int, text: str) -> tuple[list[str], int]:
    """The feature cells (checked: numbers are finite, nothing is empty) and the label of one row."""
    fields = [v.strip() for v in text.split(",")]
    n_fields = len(_COLUMNS) + 1
    if len(fields) != n_fields:
        raise DataError(f"{path}: row {line_no}: {len(fields)} fields, expected {n_fields} (comma separated)")
    for col, value in zip(_COLUMNS, fields):
        if col.numeric:
            parse_number(path, line_no, col.name, value)  # the encoder reads the same float from the text
        elif not value:
            raise DataError(f"{path}: row {line_no}, column {col.name!r}: empty value (missing is '?')")
    label = fields[-1].rstrip(".")  # the original adult.test writes `<=50K.`
    if label not in _LABELS:
        raise DataError(f"{path}: row {line_no}, column 'income': {fields[-1]!r} is neither <=50K nor >50K")
    return fields[:-1], _LABELS[label]
