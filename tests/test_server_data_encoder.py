"""The feature encoder (forgetd.server.data.encoder): the loaders' features are its encodings, bitwise those of
a naive reference written from the documented rules; a raw row encodes alone as it did in its batch; the
artifact round-trips and refuses anything but its own canonical bytes; bad cells are refused by name.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forgetd.server.data import load_dataset
from forgetd.server.data.encoder import Column, FeatureEncoder
from forgetd.server.errors import DataError, InvalidRequest, StoreError

from helpers import ADULT_DIR
from records_data import ADULT_COLUMNS, write_adult_folder


def reference_encode(columns: list[tuple[str, bool]], train: list[list[str]], rows: list[list[str]]) -> np.ndarray:
    """The encoding as docs/unlearning.md states it, one cell at a time and nothing shared with the product:
    numeric (x - mean) / std over the train split (population std, 1 when 0) in float64 then float32;
    categorical one-hot over the sorted train categories, unseen ones all zeros."""
    out = []
    for row in rows:
        feats: list[float] = []
        for j, (_name, numeric) in enumerate(columns):
            values = [r[j] for r in train]
            if numeric:
                xs = [float(v) for v in values]
                mean = math.fsum(xs) / len(xs)
                std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / len(xs)) or 1.0
                feats.append((float(row[j]) - mean) / std)
            else:
                feats.extend(1.0 if row[j] == c else 0.0 for c in sorted(set(values)))
        out.append(feats)
    return np.array(out, dtype=np.float64).astype(np.float32)


def test_adult_format_features_are_the_reference_encoding(tmp_path: Path) -> None:
    folder = write_adult_folder(tmp_path, rows=120)
    ds = load_dataset("adult", folder)
    cells = [[v.strip() for v in line.split(",")][:-1] for line in (folder / "adult.data").read_text().splitlines()]
    ref = reference_encode(ADULT_COLUMNS, cells, cells)
    # numpy's pairwise mean may differ from fsum in the last bit: the reference is held to 1 ulp, the product's
    # own serving path (below and in test_server_api_records.py) to every bit.
    assert np.allclose(ds.X_train, ref, rtol=0, atol=1e-6)
    assert ds.feature_names[:3] == ("age", "workclass=Federal-gov", "workclass=Local-gov")
    assert ds.encoder.encode(cells).tobytes() == ds.X_train.tobytes()


@pytest.mark.skipif(not (ADULT_DIR / "adult.data").is_file(), reason=f"UCI Adult not found at {ADULT_DIR}")
def test_the_real_adult_rows_encode_one_at_a_time_as_in_training() -> None:
    ds = load_dataset("adult", ADULT_DIR)
    assert ds.encoder is not None and ds.num_features == 108 and len(ds.encoder.columns) == 14
    lines = [ln for ln in (ADULT_DIR / "adult.data").read_text().splitlines() if ln.strip()][:200]
    cells = [[v.strip() for v in ln.split(",")][:-1] for ln in lines]
    for i in (0, 7, 199):
        assert ds.encoder.encode([cells[i]]).tobytes() == ds.X_train[i : i + 1].tobytes()
    assert ds.encoder.encode(cells).tobytes() == ds.X_train[:200].tobytes()


def test_the_artifact_round_trips_and_is_canonical(tmp_path: Path) -> None:
    enc = load_dataset("adult", write_adult_folder(tmp_path, rows=60)).encoder
    assert enc is not None
    data = enc.to_bytes()
    back = FeatureEncoder.from_bytes(data)
    assert back == enc and back.to_bytes() == data and back.digest() == enc.digest()
    doc = json.loads(data)
    assert list(doc) == sorted(doc) and doc["format"] == "forgetd.encoder.v1" and doc["num_features"] == enc.num_features
    with pytest.raises(StoreError, match="canonical form"):
        FeatureEncoder.from_bytes(json.dumps(doc, indent=1, sort_keys=True).encode())


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(format="other"), "format is not 'forgetd.encoder.v1'"),
    (lambda d: d.update(num_features=3), "num_features is 3 but the columns give"),
    (lambda d: d["columns"][0].update(scale=0.0), "scale > 0"),
    (lambda d: d["columns"][1]["categories"].reverse(), "sorted order"),
    (lambda d: d.update(unknown_category="guess"), "unknown_category is 'guess'"),
    (lambda d: d["columns"][1].update(kind="text"), "has kind 'text'"),
])
def test_a_malformed_artifact_is_refused_by_name(tmp_path: Path, edit, message: str) -> None:
    enc = load_dataset("adult", write_adult_folder(tmp_path, rows=60)).encoder
    assert enc is not None
    doc = json.loads(enc.to_bytes())
    edit(doc)
    data = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    with pytest.raises(StoreError, match=message):
        FeatureEncoder.from_bytes(data, "store/encoder.json")


def _small() -> FeatureEncoder:
    return FeatureEncoder.fit([Column("age", True), Column("color", False)],
                              [["30", "red"], ["50", "blue"], ["40", "red"]])


@pytest.mark.parametrize("record, message", [
    ({"age": 30, "color": "green"}, "row 0, column 'color': unknown category 'green'; the training data held 2 ('blue', 'red')"),
    ({"age": 30}, "row 0: column 'color' is missing"),
    ({"age": 30, "color": "red", "colour": "red"}, "row 0: unknown column 'colour'; the model's columns are 'age', 'color'"),
    ({"age": 30, "color": 1.0}, "row 0, column 'color': 1.0 is a number, but the column is categorical"),
    ({"age": "old", "color": "red"}, "row 0, column 'age': 'old' is not a number"),
    ({"age": float("nan"), "color": "red"}, "row 0, column 'age': nan is not a finite number"),
    ({"age": True, "color": "red"}, "row 0, column 'age': True is not a number"),
])
def test_records_that_cannot_be_encoded_are_refused_by_name(record: dict, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        _small().encode_records([record])
    assert str(info.value).startswith(message)


def test_the_zeros_policy_encodes_an_unknown_category_as_zeros() -> None:
    enc = _small().with_unknown_category("zeros")
    x = enc.encode_records([{"age": " 40 ", "color": "green"}, {"age": "40", "color": " red "}])
    assert x[0, 1:].tolist() == [0.0, 0.0] and x[1, 1:].tolist() == [0.0, 1.0] and x[0, 0] == x[1, 0] == 0.0
    with pytest.raises(DataError, match="unknown_category is 'maybe'"):
        _small().with_unknown_category("maybe")


def test_numbers_and_their_text_encode_alike_and_the_identity_passes_values_through() -> None:
    enc = _small()
    assert enc.encode_records([{"age": 31.5, "color": "red"}]).tobytes() == \
        enc.encode_records([{"age": "31.5", "color": "red"}]).tobytes()
    ident = FeatureEncoder.identity(["x0", "x1"])
    x = np.array([[0.1, -2.5]], dtype=np.float32)
    assert ident.encode_records([{"x0": float(x[0, 0]), "x1": float(x[0, 1])}]).tobytes() == x.tobytes()
    assert ident.categorical_features() == {} and ident.feature_names == ("x0", "x1")


def test_a_loader_without_categories_refuses_the_policy() -> None:
    with pytest.raises(DataError, match=r"synthetic: unknown option\(s\) \['unknown_category'\]"):
        load_dataset("synthetic", n=50, unknown_category="zeros")


_cell = st.sampled_from(["a", "b", "c", " d", "é"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e6, 1e6, allow_nan=False), _cell, st.integers(-5, 5)), min_size=1, max_size=30),
       st.data())
def test_any_row_encodes_alone_as_in_any_batch(table, data) -> None:
    rows = [[repr(a), b, str(c)] for a, b, c in table]
    enc = FeatureEncoder.fit([Column("a", True), Column("b", False), Column("c", True)], rows)
    enc = FeatureEncoder.from_bytes(enc.to_bytes())
    whole = enc.encode(rows)
    i = data.draw(st.integers(0, len(rows) - 1))
    assert enc.encode([rows[i]]).tobytes() == whole[i : i + 1].tobytes()
    record = {"a": float(rows[i][0]), "b": rows[i][1], "c": int(rows[i][2])}
    assert enc.encode_records([record]).tobytes() == whole[i : i + 1].tobytes()
