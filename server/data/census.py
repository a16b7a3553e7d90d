"""The UCI Census-Income (KDD) data set: a folder holding census-income.data (the train split, 199,523 rows)
and census-income.test (the test split, 99,762 rows), the split the data set is published with.

Each line is comma separated, without a header: the 40 attributes, the instance weight and the label
(`- 50000.` or `50000+.`), 42 fields; a copy with the weight column already removed (41 fields) is read too.
The columns, in file order, are those census-income.names lists; `True` marks the 7 it calls continuous,
which are standardised (FeatureEncoder, fitted on census-income.data, as the Adult loader does); the 33
nominal ones are one-hot, including the industry, occupation, ownership, veterans-benefits and year columns
whose categories are written as numbers (they are codes, not quantities). Missing values are written `?`
and `Not in universe` by the files themselves and stay categories of their own.

The instance weight is dropped: it is the number of people in the population each record stands for
under the survey's stratified sampling, a property of how the sample was drawn and not of the person, and
census-income.names says it must not be used by classifiers (it is for weighting population estimates).

A row's id is `<file name>:<1-based line number>`, so ids stay stable however the files are read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from forgetd.server.data.dataset import Dataset, encoded_dataset, no_options, parse_number, read_comma_rows
from forgetd.server.data.encoder import Column
from forgetd.server.errors import DataError

__all__ = ["load_census", "CENSUS_COLUMNS"]

_ATTRIBUTES = (
    ("age", True),
    ("class of worker", False),
    ("detailed industry recode", False),
    ("detailed occupation recode", False),
    ("education", False),
    ("wage per hour", True),
    ("enroll in edu inst last wk", False),
    ("marital stat", False),
    ("major industry code", False),
    ("major occupation code", False),
    ("race", False),
    ("hispanic origin", False),
    ("sex", False),
    ("member of a labor union", False),
    ("reason for unemployment", False),
    ("full or part time employment stat", False),
    ("capital gains", True),
    ("capital losses", True),
    ("dividends from stocks", True),
    ("tax filer stat", False),
    ("region of previous residence", False),
    ("state of previous residence", False),
    ("detailed household and family stat", False),
    ("detailed household summary in household", False),
    # field 25 of the file, the instance weight, comes here (dropped: module docstring)
    ("migration code-change in msa", False),
    ("migration code-change in reg", False),
    ("migration code-move within reg", False),
    ("live in this house 1 year ago", False),
    ("migration prev res in sunbelt", False),
    ("num persons worked for employer", True),
    ("family members under 18", False),
    ("country of birth father", False),
    ("country of birth mother", False),
    ("country of birth self", False),
    ("citizenship", False),
    ("own business or self employed", False),
    ("fill inc questionnaire for veteran's admin", False),
    ("veterans benefits", False),
    ("weeks worked in year", True),
    ("year", False),
)
CENSUS_COLUMNS = tuple(Column(name, numeric) for name, numeric in _ATTRIBUTES)
_WEIGHT_FIELD = 24  # 0-based position of the instance weight in a 42-field line
_LABELS = {"- 50000": 0, "50000+": 1}


def load_census(path: str | Path | None, *, unknown_category: str = "error", **options: object) -> Dataset:
    """The folder's census-income.data and census-income.test, continuous columns standardised and nominal
    ones one-hot (FeatureEncoder, fitted on census-income.data); the instance weight dropped. `unknown_category`
    is what the served model does with a category census-income.data does not hold: "error" or "zeros"; the
    test split always encodes one as zeros."""
    if path is None:
        raise DataError("census: pass the folder holding census-income.data and census-income.test, "
                        "e.g. load_dataset('census', DIR)")
    no_options("census", options)
    folder = Path(path)
    train_ids, train_rows, train_y = _read(folder / "census-income.data")
    test_ids, test_rows, test_y = _read(folder / "census-income.test")
    return encoded_dataset("census-income", CENSUS_COLUMNS, (train_ids, train_rows, np.array(train_y)),
                           (test_ids, test_rows, np.array(test_y)), num_classes=2, unknown_category=unknown_category)


def _read(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """(ids, feature cells, labels) of one Census-Income file."""
    if not path.is_file():
        raise DataError(f"{path}: no such file; the census loader expects census-income.data and "
                        "census-income.test in the folder")
    return read_comma_rows(path, _parse_row)


def _parse_row(path: Path, line_no: int, text: str) -> tuple[list[str], int]:
    """The 40 attribute cells (numbers checked finite, nothing empty) and the label of one line."""
    fields = [v.strip() for v in text.split(",")]
    n = len(_ATTRIBUTES)
    if len(fields) == n + 2:
        parse_number(path, line_no, "instance weight", fields[_WEIGHT_FIELD])  # a shifted line fails here
        del fields[_WEIGHT_FIELD]
    elif len(fields) != n + 1:
        raise DataError(f"{path}: row {line_no}: {len(fields)} fields, expected {n + 2} (40 attributes, the "
                        f"instance weight and the label, comma separated) or {n + 1} (without the weight)")
    for (name, numeric), value in zip(_ATTRIBUTES, fields):
        if numeric:
            parse_number(path, line_no, name, value)  # the encoder reads the same float from the text
        elif not value:
            raise DataError(f"{path}: row {line_no}, column {name!r}: empty value (missing is '?')")
    label = fields[-1].rstrip(".").strip()
    if label not in _LABELS:
        raise DataError(f"{path}: row {line_no}, last column (the label): {fields[-1]!r} is neither "
                        "'- 50000.' nor '50000+.'")
    return fields[:-1], _LABELS[label]
