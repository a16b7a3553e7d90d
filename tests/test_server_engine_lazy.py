"""Opening a store reads what Predict needs and nothing more: the training rows, checkpoints, increments and
indexes load on the first forget (on the worker's thread, never a Predict's), once, and give what an engine
that loaded them at open gives."""

from __future__ import annotations

import shutil
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from forgetd.server.engine.engine import Engine
from forgetd.server.engine.state import SampleIndex, ref_bytes
from forgetd.server.errors import StoreError
from forgetd.server.store.rows import RowStore
from forgetd.v1 import common_pb2, inference_service_pb2 as ipb, unlearning_service_pb2 as upb

from helpers import running_daemon, train_small_store


@pytest.fixture(scope="module")
def two_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small store of two shards, shared by the module: copy it (`twin`), never modify it."""
    return train_small_store(tmp_path_factory.mktemp("lazy") / "store", shards=2)


def twin(source: Path, where: Path) -> Path:
    shutil.copytree(source, where)
    return where


class RowReads:
    """Counts RowStore.load calls (the only read of row data) while it is installed; the real load still runs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        # called on the reading thread before each read (a test sets it to hold a read)
        self.before_read: Callable[[Sequence[str] | None], None] = lambda ids: None
        real = RowStore.load

        def load(store: RowStore, ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
            self.calls += 1
            self.before_read(ids)
            return real(store, ids)

        monkeypatch.setattr(RowStore, "load", load)


@pytest.fixture
def row_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[RowReads]:
    yield RowReads(monkeypatch)


def features_of(engine: Engine) -> np.ndarray:
    return np.asarray(engine._store.X_test[:8], dtype=np.float32)


def test_opening_reads_no_row_data_and_predict_answers(store: Path, row_reads: RowReads) -> None:
    with Engine.open(store, device="cpu") as engine:
        assert not engine._store.loaded
        probs = engine.predict_proba(features_of(engine))
        ids = engine.sample_ids()
        assert engine.has_sample(ids[3]) and not engine.has_sample("synthetic:nobody")
        assert engine.digest() and engine.evaluate() > 0
        assert row_reads.calls == 0 and not engine._store.loaded  # Predict, ids and digests read no row
        engine.forget([ids[3]], "sisa")
        assert engine._store.loaded and row_reads.calls > 0
        assert not engine.has_sample(ids[3])
    with Engine.open(store, device="cpu") as again:  # the eager reference: a reader loads everything at open
        with Engine.open(store, device="cpu") as reader:
            assert reader._store.loaded and not again._store.loaded
        assert again.version == 1
    assert probs.shape == (8, 2) and np.allclose(probs.sum(axis=1), 1)


def test_closing_a_store_never_used_loads_nothing(store: Path, row_reads: RowReads) -> None:
    engine = Engine.open(store, device="cpu")
    engine.close()
    assert row_reads.calls == 0 and not engine._store.loaded


def forget_all(engine: Engine, batches: list[tuple[list[str], str]]) -> list[tuple[str, tuple[str, ...], int]]:
    out = []
    for ids, strategy in batches:
        report = engine.forget(ids, strategy)
        out.append((report.digest, report.shard_digests, report.samples_read))
    return out


def test_a_forget_after_a_lazy_open_gives_the_digests_of_an_eager_one(two_shards: Path, tmp_path: Path) -> None:
    lazy_root, eager_root = twin(two_shards, tmp_path / "lazy"), twin(two_shards, tmp_path / "eager")
    batches = [(["synthetic:3", "synthetic:77"], "sisa"), (["synthetic:10"], "dpus"),
               (["synthetic:150", "synthetic:299"], "hs"), (["synthetic:42"], "ohs")]
    with Engine.open(lazy_root, device="cpu") as lazy:
        assert not lazy._store.loaded
        from_lazy = forget_all(lazy, batches)
    holder = Engine.open(eager_root, device="cpu")
    with Engine.open(eager_root, device="cpu") as eager:  # a reader: everything loaded at open
        assert eager._store.loaded
        holder.close()
        from_eager = forget_all(eager, batches)  # takes over the writer lock
    assert from_lazy == from_eager
    with Engine.open(lazy_root, device="cpu") as a, Engine.open(eager_root, device="cpu") as b:
        assert a.sample_ids() == b.sample_ids() and a.digest() == b.digest()


def test_two_threads_reaching_the_store_first_load_it_once(store: Path, row_reads: RowReads) -> None:
    with Engine.open(store, device="cpu") as engine:
        start = threading.Barrier(2)
        got: list[Any] = []

        def reach() -> None:
            start.wait()
            got.append(engine._store.shards)

        threads = [threading.Thread(target=reach) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(got) == 2 and got[0] is got[1]
        assert row_reads.calls == 1  # one shard, one chunk, read once


def predict_request(features: np.ndarray) -> ipb.PredictRequest:
    rows, columns = features.shape
    return ipb.PredictRequest(features=struct.pack(f"<{rows * columns}f", *features.ravel().tolist()), rows=rows,
                              columns=columns)


def test_predict_answers_while_the_first_forget_is_loading_the_rows(store: Path, row_reads: RowReads) -> None:
    loading, predicted = threading.Event(), threading.Event()
    held: list[bool] = []

    def hold(ids: Sequence[str] | None) -> None:
        if not loading.is_set():
            loading.set()
            held.append(predicted.wait(timeout=120))  # the Predict below answers while this read waits

    with running_daemon(store) as running:  # its first start reads the rows once, for the genesis vault's digest
        engine = running.daemon.runtime.engine
        assert not engine._store.loaded
        row_reads.before_read = hold
        X = features_of(engine)
        expected = engine.predict_proba(X)
        inference, unlearning = running.stubs()
        request = upb.ForgetRequest(sample_ids=["synthetic:7"], strategy=common_pb2.STRATEGY_SISA,
                                    request_id="first", wait=False)
        unlearning.Forget(request)  # durable; the worker starts on it
        assert loading.wait(timeout=120)
        answer = inference.Predict(predict_request(X), timeout=60)
        predicted.set()
        assert answer.model_version == 0
        assert np.allclose(np.array(answer.probabilities).reshape(expected.shape), expected, atol=1e-6)
        request.wait = True
        done = unlearning.Forget(request, timeout=120)  # the same request: answers once applied
        assert done.result.model_version == 1
        assert engine._store.loaded
    assert held == [True]


def test_a_crash_between_commit_and_erasure_is_rolled_forward_at_open(store: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(self: RowStore, ids: Sequence[str]) -> None:
        raise OSError("power cut")

    with Engine.open(store, device="cpu") as engine:
        victim = engine.sample_ids()[5]
        monkeypatch.setattr(RowStore, "erase", crash)
        with pytest.raises(StoreError, match="committed but erasing"):
            engine.forget([victim], "dpus")
        monkeypatch.undo()
    with Engine.open(store, device="cpu") as reopened:
        assert reopened._store.loaded  # the count disagreed: loaded (and rolled forward) before serving
        assert not reopened.has_sample(victim) and len(reopened.sample_ids()) == 299


def test_a_row_missing_behind_forgetds_back_is_refused_at_open(store: Path) -> None:
    with RowStore.open(store / "rows.sqlite") as rows:
        rows.erase(["synthetic:9"])
    with pytest.raises(StoreError, match="1 rows missing"):
        Engine.open(store, device="cpu")


def test_the_sample_index_finds_every_ref_and_nothing_else(store: Path) -> None:
    with Engine.open(store, device="cpu") as engine:
        index, key = engine._store.index, engine.subject_key
        refs = np.load(store / "refs.npy")
        assert isinstance(index, SampleIndex) and index.size == len(refs) == 300
        found = index.positions([r.tobytes() for r in refs])
        assert found.tolist() == list(range(300))
        assert index.position(key, "synthetic:123") == 123
        assert index.position(key, "synthetic:nobody") is None
        assert index.positions([ref_bytes(key, "x"), refs[0].tobytes()]).tolist() == [-1, 0]
        assert index.positions([]).tolist() == []
