"""The audit vault of a block-format store keeps only the rows erased since its snapshot (server/store/erased.py):
it costs the forgotten rows, not a second copy of the data, and still gives a replay the snapshot's rows."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forgetd.server.store import erased as erased_mod
from forgetd.server.store.erased import ERASED, ROW_DIGESTS, snapshot_rows
from forgetd.server.store.rows import RowStore, content_digest
from forgetd.server.store.vault import FORMAT, FORMAT_V1, create_vault, remove_vault, vault_dir, vault_rows
from test_server_store_rows import write_v1_store


def _kept(vault: Path) -> list[tuple[int, str]]:
    conn = sqlite3.connect(vault / ERASED)
    try:
        return [(int(o), str(i)) for o, i in conn.execute("SELECT ord, id FROM rows ORDER BY ord")]
    finally:
        conn.close()


def _view_digest(store: Path, name: str) -> str:
    _ords, ids, X, y = snapshot_rows(store / "rows.sqlite", vault_dir(store, name) / ERASED)
    return content_digest(X.shape[1], ids, X, y)


def test_a_new_vault_holds_no_row_and_commits_the_live_rows(store: Path) -> None:
    with RowStore.open(store / "rows.sqlite") as rows:
        live_digest, n = rows.digest(), len(rows)
    record = create_vault(store, "genesis")
    vault = vault_dir(store, "genesis")
    assert record.format == FORMAT and record.rows == n and record.rows_digest == live_digest
    assert not (vault / "rows.sqlite").exists() and _kept(vault) == []
    assert ROW_DIGESTS in record.files and (vault / ROW_DIGESTS).stat().st_size == 40 * n
    # What the vault adds to the disk: no copy of any row (its other files are links to the store's).
    with RowStore.open(store / "rows.sqlite") as rows:
        _, X, _ = rows.load()
    own = b"".join((vault / name).read_bytes() for name in (ERASED, ROW_DIGESTS))
    assert not any(x.tobytes() in own for x in X)


def test_erases_are_kept_once_with_their_bytes_and_the_snapshot_stays_whole(store: Path) -> None:
    record = create_vault(store, "genesis")
    vault = vault_dir(store, "genesis")
    with RowStore.open(store / "rows.sqlite", vaults=store / "audit") as rows:
        ids = rows.ids()
        _, X_before, y_before = rows.load(ids[3:6])
        rows.erase(ids[3:5])
        rows.erase([ids[5], ids[40]])
    kept = _kept(vault)
    assert [i for _o, i in kept] == [ids[3], ids[4], ids[5], ids[40]]
    conn = sqlite3.connect(vault / ERASED)
    x_kept = [np.frombuffer(x, dtype="<f4") for (x,) in conn.execute("SELECT x FROM rows ORDER BY ord LIMIT 3")]
    y_kept = [y for (y,) in conn.execute("SELECT y FROM rows ORDER BY ord LIMIT 3")]
    conn.close()
    assert np.array_equal(np.stack(x_kept), X_before) and y_kept == y_before.tolist()
    assert _view_digest(store, "genesis") == record.rows_digest


def test_a_store_opened_without_its_vaults_keeps_nothing(store: Path) -> None:
    # The replay's scratch store and the benches open rows without a vault folder: their erases are not kept.
    create_vault(store, "genesis")
    with RowStore.open(store / "rows.sqlite") as rows:
        rows.erase(rows.ids()[:2])
    assert _kept(vault_dir(store, "genesis")) == []


def test_an_erase_between_the_two_reads_of_a_snapshot_is_seen_once(store: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # The snapshot reads the live rows, then the kept ones; a forget that erases in between must not lose a row.
    record = create_vault(store, "genesis")
    keeper = vault_dir(store, "genesis") / ERASED
    real = erased_mod.kept_rows

    def erase_first(path: Path) -> dict[int, tuple[str, int, bytes]]:
        with RowStore.open(store / "rows.sqlite", vaults=store / "audit") as rows:
            rows.erase(rows.ids()[10:13])
        return real(path)

    monkeypatch.setattr(erased_mod, "kept_rows", erase_first)
    _ords, ids, X, y = snapshot_rows(store / "rows.sqlite", keeper)
    assert content_digest(X.shape[1], ids, X, y) == record.rows_digest
    assert len(_kept(keeper.parent)) == 3


def test_a_scratch_copy_holds_the_snapshot_at_its_ordinals(store: Path, tmp_path: Path) -> None:
    record = create_vault(store, "genesis")
    with RowStore.open(store / "rows.sqlite", vaults=store / "audit") as rows:
        before = rows.ordinals()
        rows.erase([before[0][1], before[0][77], before[0][-1]])
    scratch = tmp_path / "scratch.sqlite"
    vault_rows(vault_dir(store, "genesis"), scratch)
    with RowStore.open(scratch) as copy:
        assert copy.digest() == record.rows_digest
        assert copy.ordinals()[0] == before[0] and np.array_equal(copy.ordinals()[1], before[1])


def test_removing_the_vault_removes_the_kept_rows(store: Path) -> None:
    create_vault(store, "genesis")
    with RowStore.open(store / "rows.sqlite", vaults=store / "audit") as rows:
        victim = rows.ids()[7]
        _, X, _ = rows.load([victim])
        rows.erase([victim])
    remove_vault(store, "genesis")
    blob = b"".join(p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file())
    assert X[0].tobytes() not in blob and victim.encode() + b"\x00" not in blob


def test_a_v1_store_still_gets_a_full_copy(store: Path) -> None:
    with RowStore.open(store / "rows.sqlite") as rows:
        ids, X, y = rows.load()
    (store / "rows.sqlite").unlink()
    write_v1_store(store / "rows.sqlite", ids, X, y)
    record = create_vault(store, "genesis")
    vault = vault_dir(store, "genesis")
    assert record.format == FORMAT_V1 and (vault / "rows.sqlite").is_file() and not (vault / ERASED).exists()
    with RowStore.open(store / "rows.sqlite", vaults=store / "audit") as rows:
        rows.erase(ids[:3])  # nothing to keep: the copy has them
    with RowStore.open(vault / "rows.sqlite") as copy:
        assert len(copy) == len(ids) and copy.digest() == record.rows_digest


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.integers(0, 299), min_size=1, max_size=6, unique=True), min_size=1, max_size=5))
def test_any_erase_sequence_leaves_the_snapshot_unchanged(trained_store: Path, tmp_path_factory: pytest.TempPathFactory,
                                                          batches: list[list[int]]) -> None:
    store = tmp_path_factory.mktemp("seq") / "store"
    shutil.copytree(trained_store, store)
    record = create_vault(store, "genesis")
    with RowStore.open(store / "rows.sqlite", vaults=store / "audit") as rows:
        ids = rows.ids()
        gone: set[str] = set()
        for batch in batches:
            wanted = [ids[i] for i in batch if ids[i] not in gone]
            rows.erase(wanted)
            gone.update(wanted)
    assert sorted(i for _o, i in _kept(vault_dir(store, "genesis"))) == sorted(gone)
    assert _view_digest(store, "genesis") == record.rows_digest
