"""The erasable row store: round trips, erasure that leaves no bytes behind (in the block format and in v1 files
written by older forgetd), and erase sequences as a property."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forgetd.client.audit import store_reader
from forgetd.server.bench.rows_bench import row_store_figures
from forgetd.server.errors import DataError, StoreError, UnknownSample
from forgetd.server.store.row_blocks import FORMAT_V1, FORMAT_V2, rows_per_block
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
    # Large rows (more than a page each): a block's bytes lie in a chain of overflow pages.
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
    reader.execute("SELECT count(*) FROM blocks").fetchone()
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


# -- the block format (v2) ------------------------------------------------------------------------------------


def test_erase_in_the_middle_at_the_end_and_all_of_a_block(tmp_path):
    ids, X, y = make_rows(300, f=2048, seed=2)
    B = rows_per_block(2048)
    assert B == 128  # blocks [0, 128) [128, 256) [256, 300)
    with RowStore.create(tmp_path / "rows.db", ids, X, y) as store:
        assert store.format == FORMAT_V2
        cases = [[60], [B - 1, 2 * B - 1, 299], list(range(2 * B, 299)), [0, B]]  # block 2 ends all erased
        erased: list[int] = []
        for victims in cases:
            store.erase([ids[r] for r in victims])
            erased += victims
            assert residue(tmp_path, ids, X, erased) == []
            keep = [r for r in range(300) if r not in erased]
            got_ids, got_X, got_y = store.load()
            assert got_ids == [ids[r] for r in keep] and np.array_equal(got_X, X[keep])
            assert got_y.tolist() == y[keep].tolist()
            named = [ids[keep[-1]], ids[keep[0]], ids[keep[-1]]]
            assert np.array_equal(store.load(named)[1], X[[keep[-1], keep[0], keep[-1]]])
        assert residue(tmp_path, ids, X, keep) == [ids[r] for r in keep]
    with RowStore.open(tmp_path / "rows.db") as again:
        assert again.ids() == [ids[r] for r in keep] and len(again) == 300 - len(erased)


def test_erasing_runs_of_small_rows_leaves_no_stale_copies(tmp_path):
    # Many small rows share a page. Deleting records makes SQLite rebalance pages, and a rebuilt page keeps
    # stale bytes of the cells it moved; in a v1 file this very sequence leaves an erased id in a page's gap.
    # The block format never deletes or moves a record.
    n, seed = 2000, 8
    ids, X, y = make_rows(n, seed=seed)
    with RowStore.create(tmp_path / "rows.db", ids, X, y) as store:
        erased = list(range(1481, 1652))
        store.erase([ids[r] for r in erased])
        assert residue(tmp_path, ids, X, erased) == []
        rng = np.random.default_rng(seed)
        for _ in range(5):
            alive = [r for r in range(n) if r not in set(erased)]
            start = int(rng.integers(0, len(alive) - 200))
            erased += alive[start:start + 200]
            store.erase([ids[r] for r in alive[start:start + 200]])
            assert residue(tmp_path, ids, X, erased) == []


def test_an_erase_is_one_transaction(tmp_path):
    # An erase that fails part way (here: a row already zeroed behind the store's back, in a later block)
    # changes nothing, the rows of the blocks it had already overwritten included.
    ids, X, y = make_rows(300, f=2048, seed=3)
    with RowStore.create(tmp_path / "rows.db", ids, X, y) as store:
        before = store.digest()
        other = sqlite3.connect(tmp_path / "rows.db", isolation_level=None)
        with other.blobopen("blocks", "live", 2) as live:
            live[5] = 0  # row 261
        other.close()
        with pytest.raises(StoreError, match="row 261 was already erased in the file"):
            store.erase([ids[3], ids[130], ids[261]])
        assert ids[3] in store and ids[130] in store
        assert residue(tmp_path, ids, X, [3, 130]) == [ids[3], ids[130]]
        assert np.array_equal(store.load([ids[3], ids[130]])[1], X[[3, 130]])
        with pytest.raises(StoreError, match="changed behind this store's back"):
            store.digest()  # the flag changed outside: loading every row notices
        store.erase([ids[3], ids[130]])
        assert residue(tmp_path, ids, X, [3, 130]) == []
    assert before


def test_the_block_format_is_about_the_size_of_its_features(tmp_path):
    # Purchase's row width: one 2,400-byte record a row filled 4 KiB pages to 59% (1.71x the features).
    ids, X, y = make_rows(3000, f=600, seed=4)
    with RowStore.create(tmp_path / "rows.db", ids, X, y) as store:
        store.erase(ids[100:200])
    assert (tmp_path / "rows.db").stat().st_size <= 1.1 * X.nbytes
    legacy = write_v1_store(tmp_path / "v1.db", ids, X, y)
    assert legacy.stat().st_size >= 1.6 * X.nbytes


# -- v1 files (written by forgetd before the block format) ----------------------------------------------------


def write_v1_store(path: Path, ids: list[str], X: np.ndarray, y: np.ndarray) -> Path:
    """A row store exactly as forgetd wrote it before the block format: one record a row, 4 KiB pages."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA secure_delete=ON")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
        CREATE TABLE rows (ord INTEGER PRIMARY KEY, id TEXT NOT NULL, y INTEGER NOT NULL, x BLOB NOT NULL) STRICT;
        """
    )
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO meta VALUES (?, ?)", [("format", "forgetd.rowstore.v1"), ("num_features", str(X.shape[1]))])
    conn.executemany(
        "INSERT INTO rows (ord, id, y, x) VALUES (?, ?, ?, ?)",
        ((i, sid, int(label), X[i].astype("<f4").tobytes()) for i, (sid, label) in enumerate(zip(ids, y.tolist()))),
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


def test_a_v1_store_opens_loads_and_erases(tmp_path, rows):
    ids, X, y = rows
    with RowStore.create(tmp_path / "v2.db", ids, X, y) as new:
        new_digest = new.digest()
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    with RowStore.open(write_v1_store(old_dir / "rows.db", ids, X, y)) as old:
        assert old.format == FORMAT_V1 and old.ids() == ids and old.num_features == 6
        assert old.digest() == new_digest  # the digest is of the rows, not of the file format
        assert np.array_equal(old.load([ids[7], ids[1]])[1], X[[7, 1]])
        old.erase([ids[r] for r in (0, 150, 299)])
        assert residue(old_dir, ids, X, [0, 150, 299]) == []
        keep = [r for r in range(300) if r not in (0, 150, 299)]
        got_ids, got_X, got_y = old.load()
        assert got_ids == [ids[r] for r in keep] and np.array_equal(got_X, X[keep])
    with RowStore.open(old_dir / "rows.db") as again:
        assert again.format == FORMAT_V1 and len(again) == 297


def test_open_refuses_an_unknown_format(tmp_path, rows):
    path = write_v1_store(tmp_path / "rows.db", *rows)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE meta SET value = 'forgetd.rowstore.v9' WHERE key = 'format'")
    conn.close()
    with pytest.raises(StoreError, match=r"format 'forgetd.rowstore.v9'; this forgetd reads .*retrain"):
        RowStore.open(path)


def test_the_auditors_reader_agrees_on_both_formats(tmp_path, rows):
    # client/audit decodes the file with its own code; it must see the same rows and the same digest.
    ids, X, y = rows
    old = write_v1_store(tmp_path / "v1.db", ids, X, y)
    for path in (old, tmp_path / "v2.db"):
        store = RowStore.open(path) if path.exists() else RowStore.create(path, ids, X, y)
        with store:
            store.erase([ids[5], ids[200]])
            digest = store.digest()
        assert store_reader.rows_digest(path) == (digest, 298)
        got = list(store_reader.iter_rows(path))
        keep = [r for r in range(300) if r not in (5, 200)]
        assert [g[1] for g in got] == [ids[r] for r in keep] and [g[0] for g in got] == keep
        assert b"".join(g[3] for g in got) == X[keep].tobytes() and [g[2] for g in got] == y[keep].tolist()


_CRASH = """
import os, sqlite3, sys
from pathlib import Path
from forgetd.server.store.rows import RowStore
store = RowStore.open(Path(sys.argv[1]))
conn, layout = store._conn, store._layout
conn.execute("BEGIN IMMEDIATE")
layout.erase(conn, [int(o) for o in sys.argv[3:]])
if sys.argv[2] == "commit":
    conn.execute("COMMIT")
os._exit(0)  # killed: no rollback, no checkpoint, no close
"""


@pytest.mark.parametrize("when", ["before the commit", "after the commit"])
def test_a_crash_during_an_erase_leaves_all_the_rows_or_none(tmp_path, when):
    ids, X, y = make_rows(300, f=2048, seed=5)
    victims = [3, 130, 290]
    RowStore.create(tmp_path / "rows.db", ids, X, y).close()
    mode = "commit" if when == "after the commit" else "crash"
    subprocess.run([sys.executable, "-c", _CRASH, str(tmp_path / "rows.db"), mode, *map(str, victims)], check=True)
    with RowStore.open(tmp_path / "rows.db") as store:  # open folds a committed erase's WAL into the file
        if mode == "commit":
            assert all(ids[r] not in store for r in victims) and residue(tmp_path, ids, X, victims) == []
        else:
            assert all(ids[r] in store for r in victims) and np.array_equal(store.load()[1], X)


def test_the_benchmark_measures_both_formats_on_the_same_rows():
    figures = row_store_figures(1200, 600, subset=100)
    assert figures["feature_bytes"] == 1200 * 600 * 4
    assert figures["v1"]["format"] == FORMAT_V1 and figures["v2"]["format"] == FORMAT_V2
    assert figures["v2"]["ratio"] <= 1.1 < 1.6 <= figures["v1"]["ratio"]
    assert all(figures[f][k] >= 0 for f in ("v1", "v2") for k in ("load_all_s", "load_chunked_s", "erase_100_s"))
    with pytest.raises(ValueError, match="need at least 201 rows"):
        row_store_figures(150, 4, subset=100)
