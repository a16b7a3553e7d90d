"""The store around the engine: crash safety of training and forgetting, opening, snapshots, JSON records."""

from __future__ import annotations

import dataclasses
import json
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from forgetd.ledger import subject_ref
from forgetd.server.store import layout as store_module
from forgetd.server.config import EngineConfig
from forgetd.server.data import Dataset, load_dataset
from forgetd.server.engine.engine import Engine
from forgetd.server.errors import AlreadyForgotten, DataError, StoreError
from forgetd.server.store.rows import RowStore

CONFIG = EngineConfig(slices=4, epochs=1, epoch_schedule="per-step", batch_size=32, hidden_sizes=(8,), budget=300, seed=5)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return load_dataset("synthetic", n=240, seed=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, dataset: Dataset) -> Path:
    root = tmp_path_factory.mktemp("trained") / "store"
    Engine.train(dataset, CONFIG, root).close()
    return root


@pytest.fixture
def engine(trained: Path, tmp_path: Path):
    shutil.copytree(trained, tmp_path / "store")
    e = Engine.open(tmp_path / "store")
    yield e
    e.close()


def _no_floats(obj: Any) -> bool:
    if isinstance(obj, float):
        return False
    if isinstance(obj, dict):
        return all(_no_floats(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(_no_floats(v) for v in obj)
    return True


# -- training -----------------------------------------------------------------------------------------------


def test_a_failed_training_leaves_nothing_behind(dataset: Dataset, tmp_path: Path) -> None:
    def stop(done: int, total: int) -> None:
        if done * 2 > total:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Engine.train(dataset, CONFIG, tmp_path / "store", progress=stop)
    assert list(tmp_path.iterdir()) == []


def test_a_training_killed_midway_leaves_no_store_that_opens(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import os
        from forgetd.server.config import EngineConfig
        from forgetd.server.data import load_dataset
        from forgetd.server.engine.engine import Engine
        def die(done, total):
            if done * 2 > total:
                os._exit(9)   # no cleanup, like a kill -9
        Engine.train(load_dataset("synthetic", n=240, seed=1), EngineConfig(slices=4, epochs=1, epoch_schedule="per-step", hidden_sizes=(8,)),
                     {str(tmp_path / "store")!r}, progress=die)
    """)
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    assert not (tmp_path / "store").exists()
    with pytest.raises(StoreError, match="no forgetd store"):
        Engine.open(tmp_path / "store")


def test_training_refuses_an_existing_store(trained: Path, dataset: Dataset) -> None:
    with pytest.raises(StoreError, match="already exists"):
        Engine.train(dataset, CONFIG, trained)


def test_the_subject_key_is_private_and_the_records_have_no_floats(engine: Engine) -> None:
    key_file = engine.store_dir / "keys" / "subject.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert engine.subject_key == key_file.read_bytes() and len(engine.subject_key) == 32
    genesis = engine.genesis_record()
    assert _no_floats(genesis) and genesis["model"]["digest"] == engine.digest()
    assert genesis["config"] == CONFIG.to_json_dict() and genesis["m"] == engine.m
    result = engine.forget([engine.sample_ids()[0]], "sisa", request_ids=["req-1"])
    assert _no_floats(result.to_json_dict()) and result.to_json_dict()["micros"] > 0
    assert engine.ledger_path == engine.store_dir / "ledger.sqlite"


# -- forgetting is all or nothing -------------------------------------------------------------------------------


def test_a_forget_that_fails_before_its_commit_changes_nothing(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    root = engine.store_dir
    before = {p.name: p.read_bytes() for p in (root / "artifacts").iterdir()}
    digest, ids = engine.digest(), engine.sample_ids()

    def crash(self: Any, path: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store_module.Manifest, "write", crash)
    with pytest.raises(OSError, match="disk full"):
        engine.forget([ids[0]], "sisa")
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in (root / "artifacts").iterdir()} == before
    assert engine.digest() == digest and engine.version == 0 and engine.sample_ids() == ids
    again = engine.forget([ids[0]], "sisa")  # and the engine is still usable
    assert again.version == 1


def test_a_crash_between_commit_and_erasure_is_finished_on_open(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    victim = engine.sample_ids()[5]

    def crash(self: RowStore, ids: Any) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(RowStore, "erase", crash)
    with pytest.raises(StoreError, match="committed but erasing"):
        engine.forget([victim], "dpus", request_ids=["req-9"])
    monkeypatch.undo()
    digest = engine.digest()
    engine.close()
    with RowStore.open(engine.store_dir / "rows.sqlite") as rows:
        assert victim in rows  # the crash left the row behind...
    with Engine.open(engine.store_dir) as reopened:
        assert reopened.live_batch is not None
        assert (reopened.version, reopened.live_batch.request_ids, reopened.digest()) == (1, ("req-9",), digest)
        assert not reopened.has_sample(victim)  # ...and opening finished the erasure
    with RowStore.open(engine.store_dir / "rows.sqlite") as rows:
        assert victim not in rows


def test_open_removes_files_a_crash_left_unreferenced(engine: Engine) -> None:
    stray = engine.store_dir / "artifacts" / "shard0.params.v1.npy"
    stray.write_bytes(b"half written")
    engine.close()
    with Engine.open(engine.store_dir) as reopened:
        assert not stray.exists() and reopened.version == 0


def test_opening_a_damaged_store_is_a_store_error(engine: Engine) -> None:
    engine.close()
    (engine.store_dir / "CURRENT.json").unlink()
    with pytest.raises(StoreError, match="CURRENT.json"):
        Engine.open(engine.store_dir)


# -- snapshots ------------------------------------------------------------------------------------------------------


def test_a_snapshot_never_changes_after_it_is_handed_out(engine: Engine, dataset: Dataset) -> None:
    snap = engine.snapshot()
    probs = snap.predict_proba(dataset.X_test)
    assert probs.shape == (len(dataset.X_test), 2) and probs.dtype == np.float32
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    result = engine.forget(engine.sample_ids()[:3], "retrain")
    assert np.array_equal(snap.predict_proba(dataset.X_test), probs)
    assert (snap.version, engine.snapshot().version) == (0, 1)
    assert engine.snapshot().digest == result.digest != snap.digest
    accuracy = float((engine.predict_proba(dataset.X_test).argmax(1) == dataset.y_test).mean())
    assert engine.evaluate() == pytest.approx(accuracy)
    with pytest.raises(ValueError, match="takes"):
        snap.predict_proba(np.zeros((2, 3), np.float32))


def test_vote_aggregation_gives_vote_fractions(dataset: Dataset, tmp_path: Path) -> None:
    cfg = EngineConfig(shards=3, slices=2, epochs=1, epoch_schedule="per-step", hidden_sizes=(8,), aggregation="vote", seed=2)
    with Engine.train(dataset, cfg, tmp_path / "vote") as e:
        probs = e.predict_proba(dataset.X_test)
        assert set(np.unique(np.round(probs * 3))) <= {0.0, 1.0, 2.0, 3.0}


def test_store_json_names_the_live_state(engine: Engine) -> None:
    result = engine.forget([engine.sample_ids()[1]], "hs", request_ids=["abc"])
    manifest = json.loads((engine.store_dir / "CURRENT.json").read_text())
    assert result.tag is not None and manifest["version"] == 1 and manifest["tag"] == result.tag.to_json()
    assert json.loads(manifest["tag"])["request_ids"] == ["abc"]
    live = set(manifest["files"].values())
    assert {p.name for p in (engine.store_dir / "artifacts").iterdir()} == live


def test_only_one_engine_per_store_forgets(engine: Engine) -> None:
    reader = Engine.open(engine.store_dir)  # the fixture's engine holds the store
    victim = engine.sample_ids()[0]
    assert reader.plan([victim]).samples[0].sample_id == victim and reader.digest() == engine.digest()
    with pytest.raises(StoreError, match="another engine has this store open"):
        reader.forget([victim])
    engine.forget([victim], "dpus")
    engine.close()
    for _ in range(2):  # stale for good: it never writes over the newer version
        with pytest.raises(StoreError, match="changed the store since"):
            reader.forget([reader.sample_ids()[1]])
    reader.close()
    with Engine.open(engine.store_dir) as fresh:
        assert fresh.version == 1 and fresh.forget([fresh.sample_ids()[1]]).version == 2


def test_an_engine_nobody_closed_lets_go_of_the_store_when_freed(engine: Engine) -> None:
    root = engine.store_dir
    engine.close()
    Engine.open(root)  # opened to check the store, never closed
    with Engine.open(root) as writer:
        assert writer.forget([writer.sample_ids()[0]]).version == 1


# -- one name per sample: the NFC subject ref -------------------------------------------------------------------


def _renamed(ds: Dataset, names: dict[int, str]) -> Dataset:
    ids = list(ds.train_ids)
    for i, name in names.items():
        ids[i] = name
    return dataclasses.replace(ds, train_ids=tuple(ids))


def test_the_store_names_rows_by_their_ledger_subject_ref_and_any_normal_form_finds_them(
        dataset: Dataset, tmp_path: Path) -> None:
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    with Engine.train(_renamed(dataset, {0: nfc}), CONFIG, tmp_path / "store") as engine:
        refs = np.load(tmp_path / "store" / "refs.npy")
        assert refs[0].tobytes().hex() == subject_ref(engine.subject_key, nfc) == subject_ref(engine.subject_key, nfd)
        assert refs[1].tobytes().hex() == subject_ref(engine.subject_key, dataset.train_ids[1])
        report = engine.forget([nfd], "sisa")  # the request's spelling; the row store's is erased
        assert report.samples[0].sample_id == nfd and not engine.has_sample(nfc)
        with pytest.raises(AlreadyForgotten):
            engine.forget([nfc])
    with RowStore.open(tmp_path / "store" / "rows.sqlite") as rows:
        assert nfc not in rows and len(rows) == len(dataset.train_ids) - 1


def test_training_refuses_two_ids_that_are_one_id_in_nfc(dataset: Dataset, tmp_path: Path) -> None:
    twins = _renamed(dataset, {0: "caf\u00e9", 1: "cafe\u0301"})
    with pytest.raises(DataError, match="same id after Unicode NFC normalisation"):
        Engine.train(twins, CONFIG, tmp_path / "store")
    assert list(tmp_path.iterdir()) == []
