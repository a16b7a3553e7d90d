"""The erasable row store: round trips, erasure that leaves no bytes behind, and erase sequences as a property."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forgetd.server.errors import DataError, StoreError, UnknownSample
from forgetd.server.store.rows import RowStore


def make_rows(n: int, f: int = 6, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Distinctive ids (no id is a prefix of another) and random features, so a byte search for one row
    # cannot be satisfied by a neighbour.
    ids = [f"user-{i:05d}-{seed}!" for i in range(n)]
    return ids, rng.standard_normal((n, f)).astype(np.float32), rng.integers(0, 3, n)


def store_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())


def residue(folder: Path, ids: list[str], X: np.ndarray, rows: list[int]) -> list[str]:
    """Which of these rows still have their id or their feature bytes somewhere in the folder's files."""
    blob = store_bytes(folder)
    return [ids[r] for r in rows if ids[r].encode() in blob or X[r].tobytes() in blob]


@pytest.fixture
def rows():
    return make_rows(300)


@pytest.fixture
def store(tmp_path, rows):
    s = RowStore.create(tmp_path / "rows.db", *rows)
    yield s
    s.close()


def test_round_trip(tmp_path, rows, store):
    ids, X, y = rows
    assert len(store) == 300 and "user-00007-0!" in store and "nobody" not in store
    assert store.ids() == ids
    got_ids, got_X, got_y = store.load()
    assert got_ids == ids and got_X.dtype == np.float32 and got_y.dtype == np.int64
    assert got_X.tobytes() == X.tobytes() and got_y.tolist() == y.tolist()
    named = [ids[9], ids[2], ids[250]]
    got_ids, got_X, got_y = store.load(named)
    assert got_ids == named and np.array_equal(got_X, X[[9, 2, 250]]) and got_y.tolist() == y[[9, 2, 250]].tolist()
    digest = store.digest()
    store.close()
    with RowStore.open(tmp_path / "rows.db") as again:
        assert again.ids() == ids and again.digest() == digest and again.num_features == 6
    # Nothing but the store itself is left in the folder: no temp file from the atomic create.
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))) == ["rows.db"]


def test_digest_depends_on_every_part(tmp_path):
    ids, X, y = make_rows(20)
    base = RowStore.create(tmp_path / "a.db", ids, X, y).digest()
    X2 = X.copy()
    X2[3, 1] += 1
    y2 = y.copy()
    y2[4] += 1
    assert RowStore.create(tmp_path / "b.db", ids, X2, y).digest() != base
    assert RowStore.create(tmp_path / "c.db", ids, X, y2).digest() != base
    assert RowStore.create(tmp_path / "d.db", ids[:19] + ["other"], X, y).digest() != base
    assert RowStore.create(tmp_path / "e.db", ids, X, y).digest() == base


def test_erase_leaves_no_residue(tmp_path, rows, store):
    ids, X, y = rows
    victims = [0, 1, 57, 150, 151, 152, 299]
    # The search works: before erasing, every victim's id and feature bytes are in the files.
    assert residue(tmp_path, ids, X, victims) == [ids[r] for r in victims]
    store.erase([ids[r] for r in victims[:3]])
    store.erase([ids[r] for r in victims[3:]])
    assert residue(tmp_path, ids, X, victims) == []
    keep = [r for r in range(300) if r not in victims]
    assert residue(tmp_path, ids, X, keep) == [ids[r] for r in keep]
    for r in victims:
        assert ids[r] not in store
        with pytest.raises(UnknownSample) as err:
            store.load([ids[r]])
        assert err.value.ids == (ids[r],)
    got_ids, got_X, _ = store.load()
    assert got_ids == [ids[r] for r in keep] and np.array_equal(got_X, X[keep])
    store.close()
    with RowStore.open(tmp_path / "rows.db") as again:
        assert again.ids() == [ids[r] for r in keep]
    assert residue(tmp_path, ids, X, victims) == []


def test_erasing_every_row_of_many_pages(tmp_path):
    # Large rows (one page each and beyond): whole pages and overflow pages go to the freelist.
    ids, X, y = make_rows(40, f=1500, seed=1)
    with RowStore.create(tmp_path / "rows.db", ids, X, y) as store:
        store.erase(ids[5:35])
        assert residue(tmp_path, ids, X, list(range(5, 35))) == []
        store.erase(ids[:5] + ids[35:])
        assert len(store) == 0
        got_ids, got_X, got_y = store.load()
        assert got_ids == [] and got_X.shape == (0, 1500) and got_y.shape == (0,)
    assert residue(tmp_path, ids, X, list(range(40))) == []


def test_erase_unknown_id_changes_nothing(tmp_path, rows, store):
    ids, _, _ = rows
    before, files_before = store.digest(), store_bytes(tmp_path)
    with pytest.raises(UnknownSample, match=r"'ghost'") as err:
        store.erase([ids[3], "ghost", ids[4]])
    assert err.value.ids == ("ghost",)
    assert store.digest() == before and len(store) == 300 and ids[3] in store
    assert store_bytes(tmp_path) == files_before
    store.erase([ids[3]])
    with pytest.raises(UnknownSample, match=repr(ids[3])):
        store.erase([ids[3]])  # already erased
    store.erase([])  # nothing to do
    assert len(store) == 299


def test_erase_with_a_reader_holding_a_snapshot(tmp_path, rows, store):
    # A reader that pins the old pages stops the checkpoint: the erase is committed, the caller is told the
    # bytes could not be scrubbed yet, and the next open scrubs them.
    ids, X, _ = rows
    store.close()
    store = RowStore.open(tmp_path / "rows.db", busy_timeout=0)
    reader = sqlite3.connect(tmp_path / "rows.db", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM rows").fetchone()
    with pytest.raises(StoreError, match="could not checkpoint the WAL"):
        store.erase([ids[10]])
    assert ids[10] not in store
    reader.execute("COMMIT")
    reader.close()
    store.close()
    with RowStore.open(tmp_path / "rows.db") as again:
        assert ids[10] not in again and len(again) == 299
        assert residue(tmp_path, ids, X, [10]) == []


def test_create_refuses_bad_rows_and_existing_paths(tmp_path):
    ids, X, y = make_rows(5)
    path = tmp_path / "rows.db"
    cases = [
        ((ids[:4] + [ids[0]], X, y), r"row 4: duplicate id 'user-00000-0!'"),
        ((ids, X[:4], y), r"5 ids, 4 rows of X, 5 labels"),
        ((ids, X, y.astype(float)), r"y has dtype float64"),
        ((ids, np.where(np.eye(5, 6) > 0, np.nan, X), y), r"row 0 \('user-00000-0!'\), column 0: nan is not finite"),
        ((ids[:4] + [""], X, y), r"row 4: id ''"),
    ]
    for args, message in cases:
        with pytest.raises(DataError, match=message):
            RowStore.create(path, *args)
        assert list(tmp_path.iterdir()) == []
    RowStore.create(path, ids, X, y).close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="already exists"):
        RowStore.create(path, ids[:2], X[:2], y[:2])
    assert path.read_bytes() == before


def test_open_errors(tmp_path, store):
    with pytest.raises(StoreError, match="no row store here"):
        RowStore.open(tmp_path / "missing.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="junk.db: not a readable row store"):
        RowStore.open(junk)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.load()


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 40),
    batches=st.lists(st.lists(st.integers(0, 39), max_size=6), max_size=6),
)
def test_any_erase_sequence_leaves_exactly_the_remaining_rows(n, batches):
    ids, X, y = make_rows(n, f=3, seed=n)
    remaining = list(range(n))
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        with RowStore.create(folder / "rows.db", ids, X, y) as store:
            for batch in batches:
                names = [ids[r] for r in batch if r < n]
                if any(ids.index(s) not in remaining for s in names):
                    with pytest.raises(UnknownSample):
                        store.erase(names)
                    continue
                store.erase(names)
                remaining = [r for r in remaining if ids[r] not in names]
            got_ids, got_X, got_y = store.load()
            assert got_ids == [ids[r] for r in remaining]
            assert np.array_equal(got_X, X[remaining]) and got_y.tolist() == y[remaining].tolist()
            erased = [r for r in range(n) if r not in remaining]
            assert residue(folder, ids, X, erased) == []
