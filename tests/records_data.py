"""Adult-format data made in the tests: folders of adult.data / adult.test rows (no header, a trailing label),
with a category that only one training row holds, so a forget can leave it without any row."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Adult's columns as the loader declares them: (name, numeric).
ADULT_COLUMNS = [
    ("age", True), ("workclass", False), ("fnlwgt", True), ("education", False), ("education-num", True),
    ("marital-status", False), ("occupation", False), ("relationship", False), ("race", False), ("sex", False),
    ("capital-gain", True), ("capital-loss", True), ("hours-per-week", True), ("native-country", False),
]
_CATEGORIES = {
    "workclass": ["Federal-gov", "Local-gov", "Private", "Self-emp-inc", "State-gov"],
    "education": ["Bachelors", "HS-grad", "Masters", "Some-college"],
    "marital-status": ["Divorced", "Married-civ-spouse", "Never-married"],
    "occupation": ["Adm-clerical", "Craft-repair", "Exec-managerial", "Sales"],
    "relationship": ["Husband", "Not-in-family", "Own-child", "Wife"],
    "race": ["Black", "White"],
    "sex": ["Female", "Male"],
    "native-country": ["Canada", "Mexico", "United-States"],
}
RARE_COUNTRY = "Holand-Netherlands"  # held by exactly one training row: RARE_LINE of adult.data
RARE_LINE = 7


def adult_line(rng: np.random.Generator, label: str, country: str | None = None) -> str:
    """One row as adult.data writes it: ', '-separated, the income label last."""
    cells = []
    for name, numeric in ADULT_COLUMNS:
        if numeric:
            top = {"age": 90, "fnlwgt": 500_000, "education-num": 16, "capital-gain": 20_000,
                   "capital-loss": 2_000, "hours-per-week": 80}[name]
            cells.append(str(int(rng.integers(1, top))))
        else:
            cells.append(str(rng.choice(_CATEGORIES[name])))
    if country is not None:
        cells[-1] = country
    return ", ".join(cells + [label])


def write_adult_folder(folder: Path, rows: int = 200, test_rows: int = 40, seed: int = 0) -> Path:
    """adult.data (`rows` rows, line RARE_LINE the only one from RARE_COUNTRY) and adult.test (opening with
    the original's `|1x3 Cross validator` line, labels ending in '.') in `folder`."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    data = [adult_line(rng, ">50K" if i % 3 == 0 else "<=50K", RARE_COUNTRY if i + 1 == RARE_LINE else None)
            for i in range(rows)]
    test = [adult_line(rng, ">50K." if i % 3 == 0 else "<=50K.") for i in range(test_rows)]
    (folder / "adult.data").write_text("\n".join(data) + "\n")
    (folder / "adult.test").write_text("|1x3 Cross validator\n" + "\n".join(test) + "\n")
    return folder


def cells_of(line: str) -> list[str]:
    """The feature cells of one Adult row (label dropped), stripped as the loader strips them."""
    return [v.strip() for v in line.split(",")][: len(ADULT_COLUMNS)]


def record_of(line: str) -> dict[str, float | str]:
    """One Adult row as a raw record: numbers as numbers, categories as text."""
    return {name: float(v) if numeric else v for (name, numeric), v in zip(ADULT_COLUMNS, cells_of(line))}
