"""Kaggle's "120 years of Olympic history" athlete_events.csv: one row per athlete per event per Games.

The header names the 15 columns ID, Name, Sex, Age, Height, Weight, Team, NOC, Games, Year, Season, City,
Sport, Event, Medal (fields quoted as the file quotes them; missing values are written `NA`).

- **Label**: whether the athlete won a medal in that event (Medal is Gold, Silver or Bronze: 1; NA: 0). The
  hybrid-unlearning paper trains a binary classifier on every data set and names no label for this one;
  medal or not is the file's one binary outcome.
- **Features**: Age, Height, Weight and Year, standardised; Sex, NOC, Season, City, Sport and Event, one-hot
  (FeatureEncoder, fitted on the train split, as the Adult loader does). ID and Name identify the athlete
  and are not features; Team is left out because NOC already says which country entered the athlete
  (Team adds ~1,200 club and crew names such as "Denmark/Sweden"), and Games because it is Year and Season
  written together.
- **Missing values**: Age, Height and Weight are NA on many rows (Height and Weight on about a fifth).
  `missing="drop"` (the default) leaves those rows out: they get no id and are in neither split.
  `missing="mean"` fills an NA with the train split's mean of that column instead (so it standardises to
  0). A categorical NA would stay a category of its own (the file has none).
- **Split**: the paper states none, so the split is the keyed hash of the id the csv loader uses
  (`test_fraction`, `seed`).

A sample's id is `<ID>:<Games>:<Event>` (e.g. `1:1992 Summer:Basketball Men's Basketball`): athletes repeat
across events and Games, and this triple names one entry. The file repeats a few triples (the same entry
listed twice, mostly in the art competitions); the k-th repeat in file order is `<ID>:<Games>:<Event>#k`
(k >= 2), so every row keeps a stable, distinct id.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from forgetd.server.data.dataset import Dataset, encoded_dataset, no_options, parse_number, split_is_test
from forgetd.server.data.encoder import Column
from forgetd.server.errors import DataError

__all__ = ["load_olympics", "OLYMPICS_HEADER", "OLYMPICS_COLUMNS"]

OLYMPICS_HEADER = ("ID", "Name", "Sex", "Age", "Height", "Weight", "Team", "NOC", "Games", "Year", "Season",
                   "City", "Sport", "Event", "Medal")
OLYMPICS_COLUMNS = (
    Column("Sex", False), Column("Age", True), Column("Height", True), Column("Weight", True),
    Column("NOC", False), Column("Year", True), Column("Season", False), Column("City", False),
    Column("Sport", False), Column("Event", False),
)
_NA = "NA"
_MEDALS = {"Gold": 1, "Silver": 1, "Bronze": 1, _NA: 0}
MISSING_POLICIES = ("drop", "mean")


def load_olympics(path: str | Path | None, *, missing: str = "drop", test_fraction: float = 0.2, seed: int = 0,
                  unknown_category: str = "error", **options: object) -> Dataset:
    """athlete_events.csv as the module docstring describes. `unknown_category` is what the served model
    does with a category the train split lacks: "error" (refuse the row) or "zeros"."""
    if path is None:
        raise DataError("olympics: pass athlete_events.csv, e.g. load_dataset('olympics', PATH)")
    no_options("olympics", options)
    if missing not in MISSING_POLICIES:
        raise DataError(f"olympics: missing is {missing!r}; choose {' or '.join(MISSING_POLICIES)}")
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"olympics: test_fraction is {test_fraction}; choose a value in [0, 1)")
    path = Path(path)
    ids, rows, labels = _read(path, drop_missing=missing == "drop")
    is_test = [split_is_test(s, test_fraction, seed) for s in ids]
    train = [i for i, t in enumerate(is_test) if not t]
    test = [i for i, t in enumerate(is_test) if t]
    if not train:
        raise DataError(f"{path}: every row fell in the test split; lower test_fraction ({test_fraction})")
    if missing == "mean":
        _fill_means(path, rows, train)
    y = np.array(labels, dtype=np.int64)
    return encoded_dataset(path.name, OLYMPICS_COLUMNS, ([ids[i] for i in train], [rows[i] for i in train], y[train]),
                           ([ids[i] for i in test], [rows[i] for i in test], y[test]), num_classes=2,
                           unknown_category=unknown_category)


def _read(path: Path, *, drop_missing: bool) -> tuple[list[str], list[list[str]], list[int]]:
    """(ids, feature cells in OLYMPICS_COLUMNS order, labels); numeric NA cells kept as NA unless dropped."""
    if not path.is_file():
        raise DataError(f"{path}: no such file; the olympics loader expects Kaggle's athlete_events.csv")
    ids: list[str] = []
    rows: list[list[str]] = []
    labels: list[int] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = tuple(h.strip() for h in next(reader, ()))
        if header != OLYMPICS_HEADER:
            raise DataError(f"{path}: row 1: header is {list(header)}; expected athlete_events.csv's "
                            f"{list(OLYMPICS_HEADER)}")
        at = {name: j for j, name in enumerate(OLYMPICS_HEADER)}
        for record in reader:
            if not record:
                continue
            cells, label = _parse_row(path, reader.line_num, [v.strip() for v in record], at)
            key = f"{record[at['ID']].strip()}:{record[at['Games']].strip()}:{record[at['Event']].strip()}"
            seen[key] = seen.get(key, 0) + 1  # counted before dropping, so a row's id does not depend on `missing`
            if drop_missing and _NA in (cells[1], cells[2], cells[3]):
                continue
            ids.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
            rows.append(cells)
            labels.append(label)
    if not rows:
        raise DataError(f"{path}: no data rows" + (" with Age, Height and Weight all given (missing='mean' "
                                                    "keeps the others)" if drop_missing else ""))
    return ids, rows, labels


def _parse_row(path: Path, line: int, record: list[str], at: dict[str, int]) -> tuple[list[str], int]:
    if len(record) != len(OLYMPICS_HEADER):
        raise DataError(f"{path}: row {line}: {len(record)} fields, expected {len(OLYMPICS_HEADER)} "
                        "(comma separated, quoted where a value holds a comma)")
    if not record[at["ID"]] or not record[at["Games"]] or not record[at["Event"]]:
        raise DataError(f"{path}: row {line}: ID, Games and Event name the entry and must not be empty")
    cells = []
    for col in OLYMPICS_COLUMNS:
        value = record[at[col.name]]
        if col.numeric and value != _NA:
            parse_number(path, line, col.name, value)  # the encoder reads the same float from the text
        elif col.numeric and col.name == "Year":
            raise DataError(f"{path}: row {line}, column 'Year': NA; every entry has a year")
        elif not value:
            raise DataError(f"{path}: row {line}, column {col.name!r}: empty value (missing is NA)")
        cells.append(value)
    medal = record[at["Medal"]]
    if medal not in _MEDALS:
        raise DataError(f"{path}: row {line}, column 'Medal': {medal!r} is none of Gold, Silver, Bronze, NA")
    return cells, _MEDALS[medal]


def _fill_means(path: Path, rows: list[list[str]], train: list[int]) -> None:
    """Each numeric NA replaced by the train split's mean of its column, written as the text float() reads."""
    for j, col in enumerate(OLYMPICS_COLUMNS):
        if not col.numeric:
            continue
        present = [float(rows[i][j]) for i in train if rows[i][j] != _NA]
        if not present:
            raise DataError(f"{path}: column {col.name!r} is NA on every training row; nothing to fill it with")
        mean = repr(float(np.mean(present)))
        for r in rows:
            if r[j] == _NA:
                r[j] = mean
