"""The data layer: loaders on small files written here, the real Adult files, determinism, every error."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from forgetd.server.data import Dataset, load_dataset, split_is_test
from forgetd.server.errors import DataError

ADULT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "adult"
needs_adult = pytest.mark.skipif(
    not (ADULT / "adult.data").is_file(), reason=f"UCI Adult files not found at {ADULT} (the CI copy sits beside the repo)"
)

ADULT_ROW = "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K"
ADULT_ROW2 = "50, ?, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, 13, United-States, >50K"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- synthetic ------------------------------------------------------------------------------------


def test_synthetic_is_deterministic_and_shaped():
    a = load_dataset("synthetic", n=300, seed=7, features=5)
    b = load_dataset("synthetic", n=300, seed=7, features=5)
    assert a.X_train.shape == (300, 5) and a.X_test.shape == (60, 5)
    assert a.X_train.dtype == np.float32 and a.y_train.dtype == np.int64 and a.X_train.flags.c_contiguous
    assert a.X_train.tobytes() == b.X_train.tobytes() and a.y_test.tobytes() == b.y_test.tobytes()
    assert a.digest() == b.digest()
    assert a.train_ids[0] == "synthetic:0" and a.test_ids[0] == "synthetic:300"
    assert load_dataset("synthetic", n=300, seed=8, features=5).digest() != a.digest()


def test_synthetic_known_digest():
    # Pinned so a change to the generator (or to the machine's arithmetic) is caught: the demo data set's
    # digest goes into the ledger's genesis event, so it must be the same everywhere.
    ds = load_dataset("synthetic", n=50, seed=0, features=4)
    assert ds.digest() == SYNTHETIC_50_DIGEST


SYNTHETIC_50_DIGEST = "1a8fba3ada6e796686a87cb917973cec916f6a5a78cd949e97ea7b5e1b95800d"


def test_synthetic_is_learnable_and_balanced():
    ds = load_dataset("synthetic", n=2000, seed=0)
    counts = np.bincount(ds.y_train, minlength=2)
    assert counts.min() > 0.3 * len(ds.y_train)
    # A 5-nearest-neighbour vote on the training rows: a model-free check that labels follow the features.
    d = ((ds.X_test[:, None, :] - ds.X_train[None, :, :]) ** 2).sum(-1)
    nn = np.argsort(d, axis=1)[:, :5]
    pred = (ds.y_train[nn].mean(1) > 0.5).astype(np.int64)
    assert (pred == ds.y_test).mean() > 0.7


def test_synthetic_multiclass():
    ds = load_dataset("synthetic", n=600, seed=1, classes=3)
    assert ds.num_classes == 3 and set(np.unique(ds.y_train)) == {0, 1, 2}


@pytest.mark.parametrize(
    "options, message",
    [
        ({"n": 0}, "n is 0"),
        ({"features": 1}, "features is 1"),
        ({"classes": 1}, "classes is 1"),
        ({"test_fraction": 1.0}, "test_fraction is 1.0"),
        ({"colour": "red"}, "unknown option(s) ['colour']"),
    ],
)
def test_synthetic_bad_options(options, message):
    with pytest.raises(DataError, match=f"^synthetic: .*{re.escape(message)}"):
        load_dataset("synthetic", **options)


def test_unknown_kind():
    with pytest.raises(DataError, match=r"unknown data kind 'parquet'; choose one of adult, census, csv, npz, olympics, purchase, synthetic"):
        load_dataset("parquet", "x.parquet")


# --- Dataset --------------------------------------------------------------------------------------


def small_dataset(**changes) -> Dataset:
    fields = dict(
        name="t",
        feature_names=("a", "b"),
        train_ids=("r1", "r2", "r3"),
        X_train=np.arange(6, dtype=np.float64).reshape(3, 2),
        y_train=np.array([0, 1, 0]),
        test_ids=("t1",),
        X_test=np.ones((1, 2)),
        y_test=np.array([1]),
        num_classes=2,
    )
    fields.update(changes)
    return Dataset(**fields)


def test_digest_follows_the_documented_encoding():
    ds = small_dataset()
    h = hashlib.sha256(b"forgetd.dataset.v1\0")
    h.update((2).to_bytes(8, "big") + (2).to_bytes(8, "big"))
    for ids, X, y in ((ds.train_ids, ds.X_train, ds.y_train), (ds.test_ids, ds.X_test, ds.y_test)):
        h.update(len(ids).to_bytes(8, "big"))
        for i in ids:
            h.update(len(i.encode()).to_bytes(4, "big") + i.encode())
        h.update(X.astype("<f4").tobytes() + y.astype("<i8").tobytes())
    assert ds.digest() == h.hexdigest()
    # Every part matters: an id, a feature value, a label.
    assert small_dataset(train_ids=("r1", "r2", "r4")).digest() != ds.digest()
    assert small_dataset(X_test=np.zeros((1, 2))).digest() != ds.digest()
    assert small_dataset(y_train=np.array([0, 1, 1])).digest() != ds.digest()


def test_dataset_copies_and_freezes_arrays():
    X = np.zeros((3, 2), dtype=np.float32)
    ds = small_dataset(X_train=X)
    X[0, 0] = 5.0
    assert ds.X_train[0, 0] == 0.0
    with pytest.raises(ValueError):
        ds.X_train[0, 0] = 1.0


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"train_ids": ("r1", "r2", "r1")}, "train row 2: duplicate sample id 'r1'"),
        ({"test_ids": ("r2",)}, "test row 0: duplicate sample id 'r2'"),
        ({"X_train": np.array([[0, 1], [np.nan, 2], [3, 4]])}, r"X_train row 1 \('r2'\) column 0 \('a'\) is not finite"),
        ({"y_train": np.array([0, 2, 0])}, r"y_train row 1 \('r2'\) is 2; labels must be in 0..1"),
        ({"X_train": np.zeros((3, 3))}, r"X_train has shape \(3, 3\); expected \(rows, 2\)"),
        ({"y_train": np.array([0, 1])}, "train split has 3 ids, X_train 3 rows"),
        ({"num_classes": 1}, "num_classes is 1"),
    ],
)
def test_dataset_validation(changes, message):
    with pytest.raises(DataError, match=message):
        small_dataset(**changes)


def test_subset_takes_first_rows():
    ds = load_dataset("synthetic", n=100, seed=0)
    sub = ds.subset(10, 5)
    assert sub.train_ids == ds.train_ids[:10] and sub.test_ids == ds.test_ids[:5]
    assert np.array_equal(sub.X_train, ds.X_train[:10]) and np.array_equal(sub.y_test, ds.y_test[:5])
    assert ds.subset(10).test_ids == ds.test_ids
    with pytest.raises(DataError, match=r"n_train is 101; choose 1..100"):
        ds.subset(101)


# --- CSV ------------------------------------------------------------------------------------------

CSV = """user,age,city,churned
u1,30,paris,yes
u2,40,rome,no

u3,50,paris,no
u4,20,oslo,yes
u5,35,rome,yes
u6,45,paris,no
"""


def test_csv_encodes_numeric_and_categorical(tmp_path):
    path = write(tmp_path / "people.csv", CSV)
    ds = load_dataset("csv", path, id_column="user", label_column="churned", test_fraction=0.0)
    assert ds.train_ids == ("u1", "u2", "u3", "u4", "u5", "u6") and ds.test_ids == ()
    assert ds.feature_names == ("age", "city=oslo", "city=paris", "city=rome")
    age = np.array([30, 40, 50, 20, 35, 45], dtype=np.float64)
    assert np.allclose(ds.X_train[:, 0], (age - age.mean()) / age.std(), atol=1e-6)
    assert ds.X_train[:, 1:].tolist() == [[0, 1, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0]]
    assert ds.y_train.tolist() == [1, 0, 0, 1, 1, 0]  # sorted: no -> 0, yes -> 1
    assert ds.num_classes == 2


def test_csv_split_is_a_keyed_hash_of_the_id(tmp_path):
    lines = ["id,x,y"] + [f"row{i},{i},{i % 3}" for i in range(400)]
    path = write(tmp_path / "d.csv", "\n".join(lines) + "\n")
    ds = load_dataset("csv", path, id_column="id", label_column="y", test_fraction=0.25, seed=3)
    expected_test = [f"row{i}" for i in range(400) if split_is_test(f"row{i}", 0.25, 3)]
    assert list(ds.test_ids) == expected_test
    assert 60 < len(ds.test_ids) < 140
    # The split depends on the id, not the position: shuffling the file moves no row across splits.
    shuffled = write(tmp_path / "s.csv", "\n".join([lines[0]] + lines[:0:-1]) + "\n")
    ds2 = load_dataset("csv", shuffled, id_column="id", label_column="y", test_fraction=0.25, seed=3)
    assert set(ds2.test_ids) == set(ds.test_ids)
    other_seed = load_dataset("csv", path, id_column="id", label_column="y", test_fraction=0.25, seed=4)
    assert set(other_seed.test_ids) != set(ds.test_ids)
    # Test rows use the train split's statistics and categories.
    assert ds.num_classes == 3


def test_csv_numeric_labels_sort_numerically(tmp_path):
    path = write(tmp_path / "d.csv", "id,x,y\na,1,10\nb,2,9\nc,3,10\n")
    ds = load_dataset("csv", path, id_column="id", label_column="y", test_fraction=0.0)
    assert ds.y_train.tolist() == [1, 0, 1]


def test_csv_test_only_category_is_all_zeros(tmp_path):
    rows = ["id,c,y"] + [f"r{i},{'a' if i % 2 else 'b'},{i % 2}" for i in range(200)]
    # Give one test-split id a category no training row has.
    test_id = next(f"r{i}" for i in range(200) if split_is_test(f"r{i}", 0.2, 0))
    rows = [r if not r.startswith(test_id + ",") else f"{test_id},zzz,1" for r in rows]
    ds = load_dataset("csv", write(tmp_path / "d.csv", "\n".join(rows)), id_column="id", label_column="y")
    assert ds.feature_names == ("c=a", "c=b")
    assert ds.X_test[ds.test_ids.index(test_id)].tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    "text, options, message",
    [
        ("", {}, r"d.csv: empty file; a header row is required"),
        ("id,x,y\na,1,0\nb,2\n", {}, r"d.csv: row 3: 2 fields, expected 3"),
        ("id,x,y\na,1,0\na,2,1\n", {}, r"d.csv: row 3, column 'id': duplicate id 'a' \(first seen in row 2\)"),
        ("id,x,z\na,1,0\n", {}, r"d.csv: row 1: missing column 'y' \(label_column\)"),
        ("user,x,y\na,1,0\n", {}, r"d.csv: row 1: missing column 'id' \(id_column\)"),
        ("id,x,y\na,1,0\nb,two,1\nc,3,0\n", {}, r"d.csv: row 3, column 'x': 'two' is not a number, but row 2 .*categorical_columns=\['x'\]"),
        ("id,x,y\na,1,0\nb,inf,1\n", {}, r"d.csv: row 3, column 'x': 'inf' is not a finite number"),
        ("id,x,y\na,1,0\nb,nan,1\n", {}, r"d.csv: row 3, column 'x': 'nan' is not a finite number"),
        ("id,x,y\na,1,0\nb,2,0\n", {}, r"column 'y' holds a single label '0'"),
        ("id,x,y\na,1,0\n,2,1\n", {}, r"d.csv: row 3, column 'id': empty sample id"),
        ('id,x,y\na,"1,0\n', {}, r"d.csv: row \d+: malformed CSV"),
        ("id,x,x\na,1,0\n", {}, r"d.csv: row 1, column 3: duplicate column name 'x'"),
        ("id,x,y\n", {}, r"d.csv: no data rows after the header"),
    ],
)
def test_csv_errors(tmp_path, text, options, message):
    path = write(tmp_path / "d.csv", text)
    opts = {"id_column": "id", "label_column": "y", "test_fraction": 0.0, **options}
    with pytest.raises(DataError, match=message):
        load_dataset("csv", path, **opts)


def test_csv_declared_categorical_column(tmp_path):
    path = write(tmp_path / "d.csv", "id,zip,y\na,75001,0\nb,00100,1\n")
    ds = load_dataset("csv", path, id_column="id", label_column="y", test_fraction=0.0, categorical_columns=["zip"])
    assert ds.feature_names == ("zip=00100", "zip=75001")


def test_csv_needs_column_names_and_a_file(tmp_path):
    with pytest.raises(DataError, match="name the id column and the label column"):
        load_dataset("csv", write(tmp_path / "d.csv", CSV))
    with pytest.raises(DataError, match="nope.csv: no such file"):
        load_dataset("csv", tmp_path / "nope.csv", id_column="user", label_column="churned")


# --- NPZ ------------------------------------------------------------------------------------------


def test_npz_with_and_without_test_arrays(tmp_path):
    ids = np.array([f"s{i}" for i in range(50)])
    X = np.arange(100, dtype=np.float64).reshape(50, 2)
    y = np.arange(50) % 3
    np.savez(tmp_path / "a.npz", ids=ids, X=X, y=y)
    ds = load_dataset("npz", tmp_path / "a.npz")
    assert ds.num_classes == 3 and len(ds.train_ids) + len(ds.test_ids) == 50
    assert list(ds.test_ids) == [s for s in ids if split_is_test(s, 0.2, 0)]
    i = ds.train_ids.index("s7")
    assert ds.X_train[i].tolist() == [14.0, 15.0] and ds.y_train[i] == 1
    np.savez(tmp_path / "b.npz", ids=ids, X=X, y=y, test_ids=np.array(["t0"]), X_test=np.zeros((1, 2)), y_test=np.array([2]))
    ds = load_dataset("npz", tmp_path / "b.npz")
    assert ds.train_ids == tuple(ids) and ds.test_ids == ("t0",) and ds.y_test.tolist() == [2]


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"ids": ["a", "b"], "X": [[1.0], [2.0]]}, r"a.npz: missing array 'y'"),
        ({"ids": ["a", "a"], "X": [[1.0], [2.0]], "y": [0, 1]}, r"a.npz: array 'ids' row 1: duplicate id 'a' \(first seen in row 0\)"),
        ({"ids": ["a", "b"], "X": [[1.0], [np.inf]], "y": [0, 1]}, r"a.npz: array 'X' row 1 \('b'\), column 0: inf is not finite"),
        ({"ids": ["a", "b"], "X": [[1.0], [2.0]], "y": [0, -1]}, r"a.npz: array 'y' row 1 \('b'\): label -1 is negative"),
        ({"ids": ["a", "b"], "X": [[1.0], [2.0]], "y": [0.0, 1.0]}, r"a.npz: array 'y' has dtype float64"),
        ({"ids": ["a", "b"], "X": [[1.0]], "y": [0, 1]}, r"a.npz: 'ids', 'X', 'y' have 2, 1, 2 rows"),
        ({"ids": ["a", "b"], "X": [[1.0], [2.0]], "y": [0, 1], "X_test": [[1.0]]}, r"not all of test_ids, X_test, y_test"),
    ],
)
def test_npz_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "a.npz", **{k: np.array(v) for k, v in arrays.items()})
    with pytest.raises(DataError, match=message):
        load_dataset("npz", tmp_path / "a.npz", test_fraction=0.0)


def test_npz_bytes_ids(tmp_path):
    np.savez(tmp_path / "a.npz", ids=np.array([b"a", b"b"]), X=np.zeros((2, 1)), y=np.array([0, 1]))
    assert load_dataset("npz", tmp_path / "a.npz", test_fraction=0.0).train_ids == ("a", "b")
    np.savez(tmp_path / "a.npz", ids=np.array([b"a", b"\xff"]), X=np.zeros((2, 1)), y=np.array([0, 1]))
    with pytest.raises(DataError, match=r"a.npz: array 'ids' row 1: id b'\\xff' is not UTF-8"):
        load_dataset("npz", tmp_path / "a.npz", test_fraction=0.0)


def test_npz_not_a_zip(tmp_path):
    with pytest.raises(DataError, match=r"a.npz: not a readable .npz file"):
        load_dataset("npz", write(tmp_path / "a.npz", "hello"))


# --- Adult ----------------------------------------------------------------------------------------


def adult_dir(tmp_path: Path, data: str, test: str) -> Path:
    write(tmp_path / "adult.data", data)
    write(tmp_path / "adult.test", test)
    return tmp_path


def test_adult_format_on_small_files(tmp_path):
    # The original adult.test: a comment first line and labels ending with '.'.
    folder = adult_dir(
        tmp_path,
        f"{ADULT_ROW}\n{ADULT_ROW2}\n\n",
        f"|1x3 Cross validator\n{ADULT_ROW2.replace('?', 'Martian')}.\n{ADULT_ROW}.\n",
    )
    ds = load_dataset("adult", folder)
    assert ds.train_ids == ("adult.data:1", "adult.data:2") and ds.test_ids == ("adult.test:2", "adult.test:3")
    assert ds.y_train.tolist() == [0, 1] and ds.y_test.tolist() == [1, 0]
    names = ds.feature_names
    assert names[:3] == ("age", "workclass=?", "workclass=State-gov")
    # Train statistics: age 39 and 50 standardise to -1 and +1, and the test rows reuse them.
    assert ds.X_train[:, 0].tolist() == [-1.0, 1.0] and ds.X_test[:, 0].tolist() == [1.0, -1.0]
    # A category seen only in the test file ('Martian') encodes as zeros.
    wc = [names.index("workclass=?"), names.index("workclass=State-gov")]
    assert ds.X_test[0, wc].tolist() == [0.0, 0.0] and ds.X_train[1, wc].tolist() == [1.0, 0.0]
    # Constant columns (education-num = 13 in both rows) stay at zero instead of dividing by zero.
    assert ds.X_train[:, names.index("education-num")].tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    "data, message",
    [
        (ADULT_ROW + "\n" + "39, State-gov, 77516\n", r"adult.data: row 2: 3 fields, expected 15"),
        (ADULT_ROW.replace("39,", "old,"), r"adult.data: row 1, column 'age': 'old' is not a number"),
        (ADULT_ROW.replace("77516", "nan"), r"adult.data: row 1, column 'fnlwgt': 'nan' is not a finite number"),
        (ADULT_ROW.replace("<=50K", "rich"), r"adult.data: row 1, column 'income': 'rich' is neither"),
        ("\n\n", r"adult.data: no data rows"),
    ],
)
def test_adult_errors(tmp_path, data, message):
    with pytest.raises(DataError, match=message):
        load_dataset("adult", adult_dir(tmp_path, data, ADULT_ROW + "\n"))


def test_adult_missing_file(tmp_path):
    write(tmp_path / "adult.data", ADULT_ROW)
    with pytest.raises(DataError, match=r"adult.test: no such file"):
        load_dataset("adult", tmp_path)


@needs_adult
def test_adult_full_files():
    ds = load_dataset("adult", ADULT)
    assert ds.X_train.shape == (32561, 108) and ds.X_test.shape == (16281, 108)
    assert ds.train_ids[0] == "adult.data:1" and ds.test_ids[-1] == "adult.test:16281"
    assert abs(ds.y_train.mean() - 0.2408) < 1e-3 and abs(ds.y_test.mean() - 0.2362) < 1e-3
    assert np.allclose(ds.X_train[:, ds.feature_names.index("age")].mean(), 0.0, atol=1e-5)
    one_hot = [j for j, n in enumerate(ds.feature_names) if n.startswith("workclass=")]
    assert (ds.X_train[:, one_hot].sum(1) == 1).all()
    assert "workclass=?" in ds.feature_names
    sub = ds.subset(1000, 200)
    assert sub.X_train.shape == (1000, 108) and sub.y_test.shape == (200,)
    # Pinned: the digest goes into the ledger's genesis event, so the encoding must not drift.
    assert ds.digest() == "9d874ff504b8d9ab37ff55c982501fd00cd4e24b0a1cbb6e4d4b5d89d6e065c8"


# --- the package, the registry and the KIND:PATH spec ---------------------------------------------


def test_every_public_name_is_importable_from_the_package():
    import forgetd.server.data as data

    for name in data.__all__:
        assert getattr(data, name) is not None, name
    with pytest.raises(AttributeError, match="has no attribute 'Loader'"):
        data.Loader  # noqa: B018 - a name the package does not have is an AttributeError, not None


def test_the_spec_and_the_registry_name_the_same_kinds():
    from forgetd.server.data import DATA_KINDS, DATA_SPEC_HELP, KINDS

    assert set(KINDS) == set(DATA_KINDS)
    assert all(kind in DATA_SPEC_HELP for kind in DATA_KINDS)


@pytest.mark.parametrize("spec, want", [
    ("adult:../data/adult", ("adult", "../data/adult")),
    ("csv:people.csv", ("csv", "people.csv")),
    ("npz:C:/x.npz", ("npz", "C:/x.npz")),  # only the first colon separates
    ("synthetic", ("synthetic", None)),
])
def test_a_data_spec_names_a_kind_and_its_path(spec, want):
    from forgetd.server.data import parse_data_spec

    assert parse_data_spec(spec) == want


@pytest.mark.parametrize("spec", ["adult", "csv:", "synthetic:rows", "parquet:x.parquet", ""])
def test_a_bad_data_spec_says_what_to_give(spec):
    from forgetd.server.data import parse_data_spec

    with pytest.raises(DataError, match=re.escape(f"data is {spec!r}; give adult:DIR, csv:PATH, npz:PATH, purchase:NPZ, census:DIR, "
                                                     "olympics:CSV or synthetic")):
        parse_data_spec(spec)


def test_the_spec_and_the_train_help_need_no_numpy():
    # `forgetd -h` lists every command, so the train command's module (which reads spec.py) must import on a
    # client-only install.
    code = ("import sys; sys.modules['numpy'] = None; sys.modules['torch'] = None\n"
            "from forgetd.server.data.spec import parse_data_spec\n"
            "assert parse_data_spec('synthetic') == ('synthetic', None)\n"
            "from forgetd.client.cli.main import main\n"
            "main(['train', '-h'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "adult:DIR, csv:PATH, npz:PATH" in " ".join(done.stdout.split())  # the help wraps lines
