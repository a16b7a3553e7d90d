"""Naming the stored samples at start without a one-shot HMAC per id: the bulk refs are the ledger's refs,
the row store's ids read by ordinal are the ones it was written with, and a row whose id is not the one
trained at its place (a forgotten one put back there, or any other) is refused before anything is served."""

from __future__ import annotations

import sqlite3
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from forgetd.ledger.subjects import subject_ref, subject_refs_raw
from forgetd.server.engine.engine import Engine
from forgetd.server.errors import StoreError
from forgetd.server.store.rows import RowStore
from forgetd.v1 import common_pb2, unlearning_service_pb2 as upb

from helpers import running_daemon, start_and_stop

DECOMPOSED = unicodedata.normalize("NFD", "café")  # not NFC: its ref is the NFC spelling's


@pytest.mark.parametrize("key", [b"k", bytes(range(32)), bytes(range(64)), bytes(100)])  # > 64 bytes: hashed first
def test_bulk_refs_are_the_ledgers_refs_for_every_key_length(key: bytes) -> None:
    ids = ["a", "synthetic:7", "café", DECOMPOSED, "日本", "x" * 300]
    raw = subject_refs_raw(key, ids)
    assert [raw[32 * i:32 * i + 32].hex() for i in range(len(ids))] == [subject_ref(key, i) for i in ids]
    assert raw[64:96] == raw[96:128]  # the two spellings are one sample
    assert subject_refs_raw(key, []) == b""
    with pytest.raises(ValueError):
        subject_refs_raw(b"", ids)
    with pytest.raises(TypeError):
        subject_refs_raw(key, [b"bytes"])  # type: ignore[list-item]


def test_row_ordinals_are_the_creation_positions_in_ascii_and_other_blocks(tmp_path: Path) -> None:
    ids = [f"r{i}" for i in range(5)] + ["é", "日本", DECOMPOSED]
    X = np.arange(len(ids) * 3, dtype=np.float32).reshape(-1, 3)
    with RowStore.create(tmp_path / "rows.sqlite", ids, X, np.zeros(len(ids), np.int64)) as rows:
        rows.erase(["r1", "日本"])
    with RowStore.open(tmp_path / "rows.sqlite") as rows:
        got, ords = rows.ordinals()
    assert got == ["r0", "r2", "r3", "r4", "é", DECOMPOSED]
    assert ords.tolist() == [0, 2, 3, 4, 5, 7]


def _rewrite_id(rows_file: Path, position: int, new_id: str) -> None:
    """Overwrite the id bytes of the row at `position` in place (as an editor of the file would), keeping
    its length so the block stays well formed."""
    conn = sqlite3.connect(rows_file, isolation_level=None)
    try:
        B = int(conn.execute("SELECT value FROM meta WHERE key = 'rows_per_block'").fetchone()[0])
        blk, slot = divmod(position, B)
        ends = np.frombuffer(conn.execute("SELECT id_ends FROM blocks WHERE blk = ?", (blk,)).fetchone()[0], "<u4")
        start = int(ends[slot - 1]) if slot else 0
        encoded = new_id.encode()
        assert len(encoded) == int(ends[slot]) - start
        with conn.blobopen("blocks", "ids", blk) as blob:
            blob.seek(start)
            blob.write(encoded)
    finally:
        conn.close()


def _position_of(store: Path, sample_id: str) -> int:
    with RowStore.open(store / "rows.sqlite") as rows:
        ids, ords = rows.ordinals()
    return int(ords[ids.index(sample_id)])


def test_a_forgotten_id_put_back_in_another_rows_place_is_refused_at_start(store: Path) -> None:
    with running_daemon(store) as running:
        running.stubs()[1].Forget(upb.ForgetRequest(sample_ids=["synthetic:5"], strategy=common_pb2.STRATEGY_SISA,
                                                    request_id="r1", wait=True))
    # the row count still adds up (one row forgotten, none missing), so only the id tells
    _rewrite_id(store / "rows.sqlite", _position_of(store, "synthetic:3"), "synthetic:5")
    with pytest.raises(StoreError, match="holds an id that is not the one the store trained there"):
        start_and_stop(store)


def test_a_row_whose_id_does_not_match_its_ref_is_refused_at_start(store: Path) -> None:
    with running_daemon(store):  # genesis written: the refusal below is a later start's, not the first serve's
        pass
    _rewrite_id(store / "rows.sqlite", _position_of(store, "synthetic:3"), "synthetic:Z")
    with pytest.raises(StoreError, match="at position .* holds an id that is not the one the store trained there"):
        start_and_stop(store)


def test_stored_subjects_name_every_row_by_its_ledger_ref(store: Path) -> None:
    with Engine.open(store, device="cpu") as engine:
        by_ref = engine.stored_subjects()
        assert not engine._store.loaded  # named from the ids and refs.npy, nothing else loaded
        key = engine.subject_key
        assert by_ref == {subject_ref(key, i): i for i in engine.sample_ids()}
