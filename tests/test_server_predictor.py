"""The daemon's predictor against the engine's torch forward: same probabilities (allclose), any shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from forgetd.server.engine import Engine
from forgetd.server.predictor import Predictor, predictor_for

from conftest import train_small_store


@pytest.mark.parametrize("rows", [1, 7, 1024])
def test_the_numpy_forward_matches_the_engines_torch_forward(trained_store: Path, rows: int) -> None:
    with Engine.open(trained_store, device="cpu") as engine:
        snapshot = engine.snapshot()
        x = np.random.default_rng(rows).normal(scale=3.0, size=(rows, engine.num_features)).astype(np.float32)
        ours = Predictor(snapshot).predict_proba(x)
        assert ours.dtype == np.float32 and ours.shape == (rows, engine.num_classes)
        np.testing.assert_allclose(ours, snapshot.predict_proba(x), rtol=1e-5, atol=1e-6)
        assert isinstance(predictor_for(snapshot).__self__, Predictor)


@pytest.mark.parametrize("aggregation", ["mean", "vote"])
def test_several_shards_aggregate_like_the_engine(tmp_path: Path, aggregation: str) -> None:
    store = train_small_store(tmp_path / "store", rows=200, shards=3, slices=2, aggregation=aggregation)
    with Engine.open(store, device="cpu") as engine:
        snapshot = engine.snapshot()
        x = np.random.default_rng(0).normal(size=(50, engine.num_features)).astype(np.float32)
        np.testing.assert_allclose(Predictor(snapshot).predict_proba(x), snapshot.predict_proba(x),
                                   rtol=1e-5, atol=1e-6)


def test_predicting_builds_no_autograd_graph(trained_store: Path) -> None:
    import torch

    with Engine.open(trained_store, device="cpu") as engine:
        predictor = Predictor(engine.snapshot())
        assert not any(w.requires_grad or b.requires_grad for layers in predictor.shards for w, b in layers)
        assert torch.is_grad_enabled()  # the daemon's threads run with grad mode on: nothing may depend on it
        out = predictor.predict_proba(np.zeros((2, engine.num_features), np.float32))
        assert out.flags.writeable and out.shape == (2, engine.num_classes)
