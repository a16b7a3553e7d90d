"""The daemon's predictor against the engine's torch forward: same probabilities (allclose), any shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from forgetd.server.engine import Engine
from forgetd.server.predictor import SMALL_ANSWER, Predictor, _softmax_lists, predictor_for

from conftest import train_small_store


FORWARDS = ["predict_proba", "predict_proba_numpy"]  # torch (what CUDA runs) and numpy (what the CPU runs)


@pytest.mark.parametrize("forward", FORWARDS)
@pytest.mark.parametrize("rows", [1, 7, 1024])
def test_the_serving_forwards_match_the_engines_torch_forward(trained_store: Path, rows: int, forward: str) -> None:
    with Engine.open(trained_store, device="cpu") as engine:
        snapshot = engine.snapshot()
        x = np.random.default_rng(rows).normal(scale=3.0, size=(rows, engine.num_features)).astype(np.float32)
        ours = getattr(Predictor(snapshot), forward)(x)
        assert ours.dtype == np.float32 and ours.shape == (rows, engine.num_classes)
        np.testing.assert_allclose(ours, snapshot.predict_proba(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rows", [1, 7, 32, 33, 1024])  # 2 classes: up to 32 rows take the Python softmax
def test_the_answer_matches_the_engine_on_both_sides_of_the_small_batch_path(trained_store: Path, rows: int) -> None:
    with Engine.open(trained_store, device="cpu") as engine:
        snapshot = engine.snapshot()
        assert SMALL_ANSWER // engine.num_classes == 32
        x = np.random.default_rng(rows).normal(scale=3.0, size=(rows, engine.num_features)).astype(np.float32)
        probabilities, labels = predictor_for(snapshot)(x)
        assert type(probabilities) is list and type(labels) is list
        expected = snapshot.predict_proba(x)
        np.testing.assert_allclose(np.array(probabilities).reshape(rows, -1), expected, rtol=1e-5, atol=1e-6)
        assert labels == expected.argmax(axis=1).tolist()


def test_the_python_softmax_is_stable_and_breaks_ties_to_the_lower_class() -> None:
    logits = np.array([[1000.0, 1000.0, -1000.0], [-5.0, 3.0, 3.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    probabilities, labels = _softmax_lists(logits)
    assert labels == [0, 1, 0]
    np.testing.assert_allclose(probabilities, [0.5, 0.5, 0.0, 1.6770318e-4, 0.49991615, 0.49991615, 1 / 3, 1 / 3, 1 / 3],
                               rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("forward", FORWARDS)
@pytest.mark.parametrize("aggregation", ["mean", "vote"])
def test_several_shards_aggregate_like_the_engine(tmp_path: Path, aggregation: str, forward: str) -> None:
    store = train_small_store(tmp_path / "store", rows=200, shards=3, slices=2, aggregation=aggregation)
    with Engine.open(store, device="cpu") as engine:
        snapshot = engine.snapshot()
        x = np.random.default_rng(0).normal(size=(50, engine.num_features)).astype(np.float32)
        np.testing.assert_allclose(getattr(Predictor(snapshot), forward)(x), snapshot.predict_proba(x),
                                   rtol=1e-5, atol=1e-6)


def test_the_numpy_forward_leaves_the_models_parameters_alone(trained_store: Path) -> None:
    with Engine.open(trained_store, device="cpu") as engine:
        snapshot = engine.snapshot()
        before = [p.clone() for p in snapshot.params]
        predictor = Predictor(snapshot)
        x = np.random.default_rng(1).normal(size=(64, engine.num_features)).astype(np.float32)
        kept = x.copy()
        first = predictor.predict_proba_numpy(x)
        np.testing.assert_array_equal(predictor.predict_proba_numpy(x), first)  # nothing accumulated in place
        np.testing.assert_array_equal(x, kept)
        assert all(bool((a == b).all()) for a, b in zip(before, snapshot.params))


def test_serving_pins_torch_and_blas_to_one_thread_and_restores_them() -> None:
    import torch
    from threadpoolctl import threadpool_info

    from forgetd.server.predictor import serving_threads

    def blas() -> list[int]:
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    torch_before, blas_before = torch.get_num_threads(), blas()
    assert blas_before, "numpy's BLAS should be visible to threadpoolctl"
    with serving_threads():
        assert torch.get_num_threads() == 1 and set(blas()) == {1}
    assert torch.get_num_threads() == torch_before and blas() == blas_before


def test_predicting_builds_no_autograd_graph(trained_store: Path) -> None:
    import torch

    with Engine.open(trained_store, device="cpu") as engine:
        predictor = Predictor(engine.snapshot())
        assert not any(w.requires_grad or b.requires_grad for layers in predictor.shards for w, b in layers)
        assert torch.is_grad_enabled()  # the daemon's threads run with grad mode on: nothing may depend on it
        out = predictor.predict_proba(np.zeros((2, engine.num_features), np.float32))
        assert out.flags.writeable and out.shape == (2, engine.num_classes)
