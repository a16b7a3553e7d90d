"""The linear model family in the engine: training, serving, INFLUENCE and CERTIFIED, and the exact strategies.

Known answers come from certified.py's own training (train_linear on the same rows, same noise) and from a
naive gradient written out here; tolerances are stated where a Newton step is compared with an optimum.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from forgetd.server.config import EngineConfig
from forgetd.server.data import load_dataset
from forgetd.server.engine.certified import CertifiedConfig, perturbation, train_linear
from forgetd.server.engine.engine import Engine
from forgetd.server.engine.linear import LinearShard, ScaledRows, certified_step, noise_seed, scaled_rows
from forgetd.server.errors import StoreError, UnsupportedStrategy

ROWS = 400


def train(tmp: Path, name: str = "lin", **kw: object) -> Engine:
    cfg = EngineConfig(model="linear", slices=4, shards=1, device="cpu", **{"l2": 1e-2, **kw})  # type: ignore[arg-type]
    return Engine.train(load_dataset("synthetic", n=ROWS, seed=0), cfg, tmp / name)


def optimum(engine: Engine, forgotten: list[str] = (), sigma: float | None = None) -> np.ndarray:
    """certified.train_linear on the shard's rows less `forgotten`, with the store's scale and noise: (K, d)."""
    st = engine._store.shards[0]
    keep = st.alive.copy()
    gone = {engine._store.index.local_of[engine._store.index.position(engine.subject_key, i)] for i in forgotten}
    keep[list(gone)] = False
    assert st.linear is not None
    X = scaled_rows(st.X[torch.from_numpy(keep)], st.linear.scale)
    cfg = engine.config
    model = train_linear(X, st.y[torch.from_numpy(keep)], 2, noise_seed(cfg.seed, 0),
                         CertifiedConfig(lam=cfg.l2, sigma=cfg.sigma if sigma is None else sigma, delta=cfg.delta))
    return model.weights.numpy()


def residual(engine: Engine) -> float:
    """||grad L_b(W; D)|| on the shard's live rows, written out: sum of logistic gradients + lambda n W + b."""
    st = engine._store.shards[0]
    assert st.linear is not None
    keep = torch.from_numpy(st.alive)
    X, y = scaled_rows(st.X[keep], st.linear.scale), st.y[keep]
    W = torch.from_numpy(st.linear.weights)
    s = (2 * (y == 1).double() - 1).unsqueeze(1)
    grad = (-s * torch.sigmoid(-s * (X @ W.T))).T @ X + engine.config.l2 * X.shape[0] * W
    b = perturbation(noise_seed(engine.config.seed, 0), tuple(W.shape), engine.config.sigma)
    return float(torch.linalg.vector_norm(grad + b))


def test_training_reaches_the_perturbed_optimum_and_serves_it(tmp_path: Path) -> None:
    with train(tmp_path) as engine:
        st = engine._store.shards[0]
        assert st.linear is not None and engine.m == engine.config.slices  # no update region
        np.testing.assert_allclose(st.linear.weights, optimum(engine), rtol=0, atol=1e-9)
        assert residual(engine) < 1e-7
        X = engine._store.X_test
        margins = scaled_rows(torch.from_numpy(X), st.linear.scale) @ torch.from_numpy(st.linear.weights).T  # (N, 1)
        proba = engine.predict_proba(X)  # the one-layer MLP the daemon serves: logits [0, w . x~]
        np.testing.assert_allclose(proba[:, 1], torch.sigmoid(margins[:, 0]).numpy(), atol=1e-5)
        assert engine.snapshot().shape.hidden_sizes == ()


def test_the_noise_draw_is_reproducible_from_the_seed(tmp_path: Path) -> None:
    with train(tmp_path, "a") as a, train(tmp_path, "b") as b, train(tmp_path, "c", seed=1) as c:
        assert a.digest() == b.digest() != c.digest()
    first = perturbation(noise_seed(0, 0), (1, 17), 1.0)
    assert torch.equal(first, perturbation(noise_seed(0, 0), (1, 17), 1.0))
    assert not torch.equal(first, perturbation(noise_seed(0, 1), (1, 17), 1.0))  # each shard its own draw


def test_influence_without_noise_lands_next_to_the_retrained_optimum(tmp_path: Path) -> None:
    # Tolerance: a Newton step from the old optimum misses the new one by O(||step||^2); here 1e-3 of ||W||.
    with train(tmp_path, sigma=0.0) as engine:
        ids = engine.sample_ids()[:3]
        report = engine.forget(ids, "influence")
        assert report.guarantee == "approximate" and report.details["influence"][0]["damping"] == "0.0"
        st = engine._store.shards[0]
        want = optimum(engine, [], sigma=0.0)  # the live rows are now the remaining ones
        assert st.linear is not None and st.linear.void
        assert np.linalg.norm(st.linear.weights - want) <= 1e-3 * np.linalg.norm(want)


def test_the_certified_bound_holds_over_sequential_removals(tmp_path: Path) -> None:
    with train(tmp_path) as engine:
        for sid in engine.sample_ids()[:12]:
            report = engine.forget([sid], "certified")
            shard = report.details["certified"]["shards"][0]
            assert shard["retrained"] is False and report.guarantee == "certified"
            assert float(shard["bound"]) >= residual(engine)  # the accumulated bound vs the actual residual
            assert float(shard["budget_left"]) == pytest.approx(float(report.details["certified"]["budget"])
                                                                - float(shard["bound"]))


def test_a_stale_hessian_still_bounds_the_residual(tmp_path: Path) -> None:
    # Removals without rebuilding the Hessian (the drift term carries the bound): checked against the residual.
    with train(tmp_path) as engine:
        st = engine._store.shards[0]
        state = st.linear
        assert state is not None
        alive = st.alive.copy()
        scaled = ScaledRows.of(st.X, state.scale)
        for j in range(8):
            alive[j] = False
            keep = torch.from_numpy(alive.copy())
            step = certified_step(state, (st.X[[j]], st.y[[j]]), 2, engine.config, lambda: (scaled, keep))
            assert step is not None
            state = step.state
            X, y = scaled_rows(st.X[keep], state.scale), st.y[keep]
            s = (2 * (y == 1).double() - 1).unsqueeze(1)
            W = torch.from_numpy(state.weights)
            b = perturbation(noise_seed(0, 0), tuple(W.shape), engine.config.sigma)
            grad = (-s * torch.sigmoid(-s * (X @ W.T))).T @ X + engine.config.l2 * X.shape[0] * W + b
            assert state.bound >= float(torch.linalg.vector_norm(grad))


def test_exhausting_the_budget_retrains_the_shard_and_resets_its_bound(tmp_path: Path) -> None:
    with train(tmp_path, sigma=0.3) as engine:  # 400 rows: removals spend about 0.005 each of a budget of 0.06
        records = []
        for sid in engine.sample_ids()[:60]:
            records.append(engine.forget([sid], "certified").details["certified"]["shards"][0])
            if records[-1]["retrained"]:
                break
        assert records[-1]["retrained"] and len(records) > 1, records[-1]
        last, before = records[-1], records[-2]
        assert last["step_bound"] == "0.0" and last["removed"] == 0 and float(last["bound"]) < float(before["bound"])
        st = engine._store.shards[0]
        assert st.linear is not None and not st.linear.void
        # The retrain dropped every forgotten row, not only the last: the optimum of the rows left, bit for bit.
        np.testing.assert_array_equal(st.linear.weights, optimum(engine))
        assert st.linear.rows == ROWS - len(records) and st.linear.bound == st.linear.train_grad_norm


def test_exact_strategies_equal_training_without_the_rows(tmp_path: Path) -> None:
    with train(tmp_path) as engine:
        ids = engine.sample_ids()
        for strategy, batch in (("sisa", ids[:2]), ("hs", ids[2:4]), ("ohs", ids[4:5]), ("retrain", ids[5:7])):
            report = engine.forget(batch, strategy)
            assert report.guarantee == "exact" and {s.strategy for s in report.samples} <= {"sisa", "retrain"}
        st = engine._store.shards[0]
        assert st.linear is not None
        np.testing.assert_array_equal(st.linear.weights, optimum(engine))  # bitwise: the same solve


def test_dpus_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    with train(tmp_path) as engine:
        before = engine.digest()
        with pytest.raises(UnsupportedStrategy, match="use one of auto, retrain, sisa"):
            engine.forget(engine.sample_ids()[:1], "dpus")
        assert engine.digest() == before and engine.version == 0


def test_the_state_survives_a_reopen_and_a_damaged_one_is_refused(tmp_path: Path) -> None:
    with train(tmp_path) as engine:
        engine.forget(engine.sample_ids()[:2], "certified")
        digest, state = engine.digest(), engine._store.shards[0].linear
    with Engine.open(tmp_path / "lin", device="cpu") as again:
        got = again._store.shards[0].linear
        assert again.digest() == digest and got is not None and state is not None
        assert np.array_equal(got.to_array(), state.to_array())
    with pytest.raises(StoreError, match="not a linear model state"):
        LinearShard.from_array(np.zeros(20), "x")
    shutil.rmtree(tmp_path / "lin")
