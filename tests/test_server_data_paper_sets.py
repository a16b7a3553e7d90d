"""The hybrid paper's other data sets (Purchase-100, Census-Income (KDD), Olympics): each loader on a small
file of the published format written here, edge cases included, and one trained end to end."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from forgetd.client.cli.main import main
from forgetd.server.data import load_dataset, parse_data_spec
from forgetd.server.data.census import CENSUS_COLUMNS
from forgetd.server.data.olympics import OLYMPICS_HEADER
from forgetd.server.bench.paper_shapes import PAPER_SHAPES, shaped_dataset, store_bytes
from forgetd.server.engine.engine import Engine
from forgetd.server.errors import DataError

# -- Purchase-100 ---------------------------------------------------------------------------------------------


def purchase_arrays(rows: int = 48, classes: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = (rng.random((rows, 600)) < 0.1).astype(np.float64)  # the common copy stores 0.0/1.0 floats
    y = rng.integers(0, classes, size=rows)
    return X, y


def test_purchase_one_hot_labels(tmp_path: Path) -> None:
    X, y = purchase_arrays()
    path = tmp_path / "purchase100.npz"
    np.savez(path, features=X, labels=np.eye(100, dtype=np.uint8)[y])
    ds = load_dataset("purchase", path)
    assert ds.num_classes == 100 and ds.num_features == 600
    assert len(ds.train_ids) + len(ds.test_ids) == 48 and len(ds.test_ids) > 0
    rows = [int(s.split(":")[1]) for s in ds.train_ids]
    assert ds.train_ids[0] == f"purchase:{rows[0]}" and rows == sorted(rows)
    np.testing.assert_array_equal(ds.X_train, X[rows].astype(np.float32))
    np.testing.assert_array_equal(ds.y_train, y[rows])


def test_purchase_index_labels_and_x_y_keys_give_the_same_set(tmp_path: Path) -> None:
    X, y = purchase_arrays()
    np.savez(tmp_path / "a.npz", features=X, labels=np.eye(100)[y])
    np.savez(tmp_path / "b.npz", X=X.astype(np.uint8), y=y.astype(np.int32))
    a, b = load_dataset("purchase", tmp_path / "a.npz"), load_dataset("purchase", tmp_path / "b.npz")
    # b's classes are its largest index + 1, and the digest covers the class count: compare the arrays
    assert a.train_ids == b.train_ids and a.test_ids == b.test_ids
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert b.num_classes == int(y.max()) + 1


@pytest.mark.parametrize("arrays, message", [
    (dict(features=np.zeros((10, 599)), labels=np.zeros(10, dtype=int)), "shape (10, 599); expected (rows, 600)"),
    (dict(data=np.zeros((10, 600)), labels=np.zeros(10, dtype=int)), "expected 'features' and 'labels'"),
    (dict(features=np.full((10, 600), 0.5), labels=np.zeros(10, dtype=int)), "row 0, column 0: 0.5; Purchase features are 0 or 1"),
    (dict(features=np.zeros((10, 600)), labels=np.zeros((10, 100))), "row 0 is not one-hot"),
    (dict(features=np.zeros((10, 600)), labels=np.zeros(9, dtype=int)), "9 rows and the features 10"),
    (dict(features=np.zeros((10, 600)), labels=np.full(10, -1)), "row 0: label -1 is negative"),
    (dict(features=np.zeros((10, 600)), labels=np.zeros(10)), "expected 1-D integer class indices"),
])
def test_purchase_refuses_a_file_of_the_wrong_shape(tmp_path: Path, arrays: dict, message: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as err:
        load_dataset("purchase", path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_purchase_not_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "purchase100.npz"
    path.write_text("1,0,1\n")
    with pytest.raises(DataError, match="not a readable .npz file"):
        load_dataset("purchase", path)
    with pytest.raises(DataError, match="no such file"):
        load_dataset("purchase", tmp_path / "absent.npz")


# -- Census-Income (KDD) --------------------------------------------------------------------------------------

_NUMERIC_VALUES = {"age": "{i}", "wage per hour": "0", "capital gains": "{g}", "capital losses": "0",
                   "dividends from stocks": "{d}", "num persons worked for employer": "{p}",
                   "weeks worked in year": "52"}


def census_line(i: int, *, weight: str | None = "1700.09", label: str = "- 50000.", country: str = "United-States") -> str:
    cells = []
    for col in CENSUS_COLUMNS:
        if col.numeric:
            cells.append(_NUMERIC_VALUES[col.name].format(i=20 + i % 50, g=(i * 37) % 900, d=i % 3, p=i % 7))
        elif col.name == "country of birth self":
            cells.append(country)
        elif col.name == "class of worker":
            cells.append("Not in universe" if i % 3 == 0 else ("Private" if i % 3 == 1 else "?"))
        else:
            cells.append(str(i % 2))  # codes written as numbers are categories too
    if weight is not None:
        cells.insert(24, weight)
    return ", ".join(cells + [label])  # the files put a space after every comma


def write_census(folder: Path, train: list[str], test: list[str]) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "census-income.data").write_text("\n".join(train) + "\n")
    (folder / "census-income.test").write_text("\n".join(test) + "\n")
    return folder


def test_census_encodes_the_columns_and_drops_the_weight(tmp_path: Path) -> None:
    labels = ["- 50000.", "50000+."]
    train = [census_line(i, weight=f"{100 + i}.5", label=labels[i % 4 == 0]) for i in range(36)]
    test = [census_line(i, label=labels[i % 2]) for i in range(36, 44)] + [census_line(44, country="Atlantis")]
    ds = load_dataset("census", write_census(tmp_path / "c", train, test))
    assert ds.num_classes == 2 and len(ds.train_ids) == 36 and len(ds.test_ids) == 9
    assert ds.train_ids[0] == "census-income.data:1" and ds.test_ids[0] == "census-income.test:1"
    assert list(ds.y_train[:5]) == [1, 0, 0, 0, 1] and ds.y_test[-1] == 0
    names = ds.feature_names
    assert not any("weight" in n for n in names)
    assert {"age", "weeks worked in year", "class of worker=?", "class of worker=Not in universe", "year=0",
            "year=1"} <= set(names)
    numeric = [c.name for c in CENSUS_COLUMNS if c.numeric]
    assert len(numeric) == 7 and all(n in names for n in numeric)
    age = np.asarray(ds.X_train[:, names.index("age")], dtype=np.float64)
    assert abs(age.mean()) < 1e-6 and abs(age.std() - 1) < 1e-5  # standardised on the train split
    # a country the train split lacks: all zeros in the test split
    country = [j for j, n in enumerate(names) if n.startswith("country of birth self=")]
    assert ds.X_test[-1, country].sum() == 0 and ds.X_test[0, country].sum() == 1


def test_census_without_the_weight_column_is_the_same_set(tmp_path: Path) -> None:
    train = [census_line(i, label="50000+." if i % 5 == 0 else "- 50000.") for i in range(30)]
    test = [census_line(i) for i in range(30, 36)]
    with_weight = load_dataset("census", write_census(tmp_path / "a", train, test))
    other_weights = [census_line(i, weight="9.25", label="50000+." if i % 5 == 0 else "- 50000.") for i in range(30)]
    no_weight = [census_line(i, weight=None, label="50000+." if i % 5 == 0 else "- 50000.") for i in range(30)]
    assert load_dataset("census", write_census(tmp_path / "b", other_weights, test)).digest() == with_weight.digest()
    assert load_dataset("census", write_census(tmp_path / "c", no_weight, test)).digest() == with_weight.digest()


@pytest.mark.parametrize("bad, message", [
    ("1, 2, 3", "row 3: 3 fields, expected 42"),
    (census_line(0, label="50000"), "row 3, last column (the label): '50000' is neither"),
    (census_line(0).replace(", 1700.09,", ", heavy,", 1), "row 3, column 'instance weight': 'heavy' is not a number"),
    (census_line(0).replace("20, ", "twenty, ", 1), "row 3, column 'age': 'twenty' is not a number"),
])
def test_census_refuses_a_malformed_line(tmp_path: Path, bad: str, message: str) -> None:
    folder = write_census(tmp_path / "c", [census_line(1), census_line(2), bad], [census_line(3)])
    with pytest.raises(DataError) as err:
        load_dataset("census", folder)
    assert "census-income.data" in str(err.value) and message in str(err.value)


def test_census_needs_both_files(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "census-income.data").write_text(census_line(0) + "\n")
    with pytest.raises(DataError, match="census-income.test: no such file"):
        load_dataset("census", folder)


# -- Olympics -------------------------------------------------------------------------------------------------


def olympics_rows() -> list[list[str]]:
    sports = [("Basketball", "Basketball Men's Basketball"), ("Judo", "Judo Men's Extra-Lightweight"),
              ("Rowing", "Rowing Women's Coxed Eights")]
    rows = []
    for i in range(40):
        sport, event = sports[i % 3]
        games = ("1992 Summer", "1992", "Summer", "Barcelona") if i % 2 else ("1994 Winter", "1994", "Winter", "Lillehammer")
        height = "NA" if i % 7 == 3 else str(160 + i)
        age = "NA" if i == 5 else str(18 + i % 15)
        medal = ("Gold", "Silver", "Bronze", "NA", "NA")[i % 5]
        rows.append([str(i // 2 + 1), f"Athlete {i}, Jr.", "MF"[i % 2], age, height, str(50 + i), "Denmark/Sweden",
                     ("DEN", "SWE", "CHN")[i % 3], games[0], games[1], games[2], games[3], sport, event, medal])
    rows.append(list(rows[0]))  # the file lists some entries twice
    return rows


def write_olympics(path: Path, rows: list[list[str]], header: tuple[str, ...] = OLYMPICS_HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, quoting=csv.QUOTE_NONNUMERIC)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_olympics_label_features_ids_and_dropped_rows(tmp_path: Path) -> None:
    rows = olympics_rows()
    ds = load_dataset("olympics", write_olympics(tmp_path / "athlete_events.csv", rows))
    kept = [r for r in rows if "NA" not in (r[3], r[4], r[5])]
    ids = set(ds.train_ids) | set(ds.test_ids)
    assert len(ids) == len(kept) == 41 - 6 - 1  # 6 heights NA, 1 age NA
    assert "1:1994 Winter:Basketball Men's Basketball" in ids and "1:1994 Winter:Basketball Men's Basketball#2" in ids
    names = ds.feature_names
    assert {"Age", "Height", "Weight", "Year", "Sex=M", "NOC=CHN", "Season=Winter", "City=Barcelona",
            "Sport=Judo", "Event=Judo Men's Extra-Lightweight"} <= set(names)
    assert not any(n.split("=")[0] in ("ID", "Name", "Team", "Games", "Medal") for n in names)
    medal = {f"{r[0]}:{r[8]}:{r[13]}": int(r[14] != "NA") for r in kept}
    got = dict(zip(ds.train_ids + ds.test_ids, list(ds.y_train) + list(ds.y_test)))
    assert all(got[k] == v for k, v in medal.items())


def test_olympics_mean_keeps_every_row_and_ids_do_not_move(tmp_path: Path) -> None:
    path = write_olympics(tmp_path / "athlete_events.csv", olympics_rows())
    dropped, filled = load_dataset("olympics", path), load_dataset("olympics", path, missing="mean")
    assert len(filled.train_ids) + len(filled.test_ids) == 41
    assert set(dropped.train_ids) <= set(filled.train_ids)
    ids, X = filled.train_ids + filled.test_ids, np.concatenate([filled.X_train, filled.X_test])
    k = ids.index("3:1992 Summer:Rowing Women's Coxed Eights")  # row 5: Age NA, filled with the train mean
    assert X[k, filled.feature_names.index("Age")] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("edit, message", [
    (lambda rows: rows[2].__setitem__(14, "Tin"), "row 4, column 'Medal': 'Tin' is none of"),
    (lambda rows: rows[1].__setitem__(5, "heavy"), "row 3, column 'Weight': 'heavy' is not a number"),
    (lambda rows: rows[1].pop(), "row 3: 14 fields, expected 15"),
    (lambda rows: rows[0].__setitem__(9, "NA"), "row 2, column 'Year': NA"),
])
def test_olympics_refuses_a_malformed_row(tmp_path: Path, edit, message: str) -> None:
    rows = olympics_rows()
    edit(rows)
    path = write_olympics(tmp_path / "athlete_events.csv", rows)
    with pytest.raises(DataError) as err:
        load_dataset("olympics", path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_olympics_refuses_another_header_and_bad_options(tmp_path: Path) -> None:
    path = write_olympics(tmp_path / "a.csv", olympics_rows(), header=OLYMPICS_HEADER[:-1] + ("Result",))
    with pytest.raises(DataError, match="row 1: header is .*expected athlete_events.csv's"):
        load_dataset("olympics", path)
    with pytest.raises(DataError, match="missing is 'zero'; choose drop or mean"):
        load_dataset("olympics", path, missing="zero")


# -- the data spec and one store end to end -------------------------------------------------------------------


def test_the_data_specs_name_the_new_kinds() -> None:
    assert parse_data_spec("purchase:/d/purchase100.npz") == ("purchase", "/d/purchase100.npz")
    assert parse_data_spec("census:/d/census") == ("census", "/d/census")
    assert parse_data_spec("olympics:athlete_events.csv") == ("olympics", "athlete_events.csv")
    with pytest.raises(DataError):
        parse_data_spec("purchase")


def test_forgetd_train_on_purchase_then_forget(tmp_path: Path) -> None:
    X, y = purchase_arrays(rows=120, classes=100)
    path = tmp_path / "purchase100.npz"
    np.savez(path, features=X, labels=np.eye(100)[y])
    store = tmp_path / "store"
    result = CliRunner().invoke(main, ["train", "--data", f"purchase:{path}", "--store", str(store), "--slices", "3",
                                       "--epochs", "1", "--epoch-schedule", "per-step", "--hidden", "8", "--batch-size", "16",
                                       "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "purchase100.npz:" in result.output and " train, " in result.output
    train_ids = load_dataset("purchase", path).train_ids
    with Engine.open(store, device="cpu") as engine:
        sid = train_ids[0]
        report = engine.forget([sid], "hs")
        assert report.samples and report.samples[0].sample_id == sid
    parts = store_bytes(store)  # what `forgetd bench paper-shapes` reports per store
    assert parts["total"] == parts["rows"] + parts["increments"] + parts["checkpoints"] + parts["other"]
    assert parts["rows"] > len(train_ids) * 600 * 4 and parts["increments"] > 0 and parts["checkpoints"] > 0


def test_the_shape_matched_synthetic_sets_have_the_papers_widths() -> None:
    shapes = {s.name: s for s in PAPER_SHAPES}
    assert (shapes["purchase"].rows, shapes["census"].rows, shapes["olympics"].rows) == (311_519, 299_285, 206_165)
    ds = shaped_dataset(shapes["purchase"], 200)
    assert ds.num_features == 600 and ds.num_classes == 100 and len(ds.train_ids) == 160
    assert set(np.unique(ds.X_train)) == {0.0, 1.0}
    ds = shaped_dataset(shapes["olympics"], 50)
    assert ds.num_features == 1016 and ds.num_classes == 2 and set(np.unique(ds.y_train)) == {0, 1}
