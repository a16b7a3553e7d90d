"""The daemon's predictor against the engine's torch forward: same probabilities (allclose), any shape; and
every batch with a NaN, an infinity or an overflow refused, naming it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from forgetd.server.engine.engine import Engine
from forgetd.server.errors import InvalidRequest
from forgetd.server.engine.model import ModelSnapshot
from forgetd.server.runtime.predictor import SMALL_ANSWER, Predictor, _NotFinite, _softmax_lists, predictor_for

from helpers import train_small_store


# A refused batch makes NaN on the way, and numpy warns; the daemon silences that at import, pytest resets it.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning",
                                        "ignore:overflow encountered:RuntimeWarning")

FORWARDS = ["predict_proba", "predict_proba_numpy"]  # torch (what CUDA runs) and numpy (what the CPU runs)


# answer() turns the forwards' _NotFinite into the InvalidRequest the client sees.
REFUSAL: dict[str, type[Exception]] = {"answer": InvalidRequest, "predict_proba": _NotFinite}


def wire(x: np.ndarray) -> tuple[bytes, int]:
    """x as PredictRequest carries it: (features, rows)."""
    return x.astype("<f4").tobytes(), x.shape[0]


@pytest.fixture(scope="module")
def snapshots(trained_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelSnapshot]:
    """The shared store's model (one shard, mean) and a three-shard model that votes."""
    voting = train_small_store(tmp_path_factory.mktemp("vote") / "store", rows=200, shards=3, slices=2,
                               aggregation="vote")
    out = {}
    for name, path in (("mean", trained_store), ("vote", voting)):
        with Engine.open(path, device="cpu") as engine:
            out[name] = engine.snapshot()
    return out


@pytest.mark.parametrize("forward", FORWARDS)
@pytest.mark.parametrize("rows", [1, 7, 1024])
def test_the_serving_forwards_match_the_engines_torch_forward(trained_store: Path, rows: int, forward: str) -> None:
    with Engine.open(trained_store, device="cpu") as engine:
        snapshot = engine.snapshot()
        x = np.random.default_rng(rows).normal(scale=3.0, size=(rows, engine.num_features)).astype(np.float32)
        ours = getattr(Predictor(snapshot), forward)(*wire(x))
        assert ours.dtype == np.float32 and ours.shape == (rows, engine.num_classes)
        np.testing.assert_allclose(ours, snapshot.predict_proba(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rows", [1, 7, 32, 33, 1024])  # 2 classes: up to 32 rows take the Python softmax
def test_the_answer_matches_the_engine_on_both_sides_of_the_small_batch_path(trained_store: Path, rows: int) -> None:
    with Engine.open(trained_store, device="cpu") as engine:
        snapshot = engine.snapshot()
        assert SMALL_ANSWER // engine.num_classes == 32
        x = np.random.default_rng(rows).normal(scale=3.0, size=(rows, engine.num_features)).astype(np.float32)
        probabilities, labels = predictor_for(snapshot)(*wire(x))
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


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_the_python_softmax_refuses_a_row_with_a_non_finite_logit(bad: float) -> None:
    logits = np.array([[0.0, 1.0], [2.0, 3.0], [bad, 0.0], [np.nan, np.nan]], dtype=np.float32)
    with pytest.raises(_NotFinite) as info:
        _softmax_lists(logits)
    assert info.value.row == 2


@pytest.mark.parametrize("forward", FORWARDS)
@pytest.mark.parametrize("aggregation", ["mean", "vote"])
def test_several_shards_aggregate_like_the_engine(tmp_path: Path, aggregation: str, forward: str) -> None:
    store = train_small_store(tmp_path / "store", rows=200, shards=3, slices=2, aggregation=aggregation)
    with Engine.open(store, device="cpu") as engine:
        snapshot = engine.snapshot()
        x = np.random.default_rng(0).normal(size=(50, engine.num_features)).astype(np.float32)
        np.testing.assert_allclose(getattr(Predictor(snapshot), forward)(*wire(x)), snapshot.predict_proba(x),
                                   rtol=1e-5, atol=1e-6)


@settings(max_examples=200, deadline=None)
@given(
    model=st.sampled_from(["mean", "vote"]),
    rows=st.sampled_from([1, 3, 32, 33, 100]),  # one row, the Python softmax, numpy's
    bad=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from([np.nan, np.inf, -np.inf])), max_size=3),
    scale=st.sampled_from([1.0, 1e18, 3.4e38]),
    forward=st.sampled_from(["answer", "predict_proba"]),
)
def test_exactly_the_batches_with_a_non_finite_value_are_refused_naming_the_first(
    snapshots: dict[str, ModelSnapshot], model: str, rows: int, bad: list[tuple[int, float]], scale: float,
    forward: str,
) -> None:
    # Finite values are answered with probabilities as the proto promises (each in [0, 1], rows summing to 1),
    # unless they are so large that the float32 forward overflows: then the refusal names the row.
    snapshot = snapshots[model]
    x = np.clip(np.random.default_rng(len(bad)).normal(size=(rows, snapshot.num_features)) * scale, -3.4e38, 3.4e38)
    x = x.astype("<f4")
    for where, value in bad:
        x.flat[where % x.size] = value
    call = getattr(Predictor(snapshot), forward)  # predict_proba: the torch forward, what CUDA runs
    if not np.isfinite(x).all():
        r, c = np.argwhere(~np.isfinite(x))[0]
        with pytest.raises(REFUSAL[forward]) as info:
            call(*wire(x))
        if forward == "answer":
            assert f"features row {r} column {c} is {float(x[r, c])!r}: NaN and infinity" in str(info.value)
        else:
            assert info.value.row == r  # type: ignore[attr-defined]
        return
    try:
        out = call(*wire(x))
    except REFUSAL[forward] as refused:
        assert scale > 1, "only overflowing values may be refused"
        assert forward == "predict_proba" or "overflow the model" in str(refused)
        return
    proba = np.array(out[0]).reshape(rows, -1) if forward == "answer" else out
    assert np.isfinite(proba).all() and (proba >= 0).all() and (proba <= 1).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    if scale == 1.0:
        np.testing.assert_allclose(proba, snapshot.predict_proba(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rows", [1, 40])
@pytest.mark.parametrize("forward", ["answer", "predict_proba"])
def test_an_infinity_that_every_relu_would_hide_is_still_refused(snapshots: dict[str, ModelSnapshot], rows: int,
                                                                  forward: str) -> None:
    # Feature 0's weights into the first hidden layer made all negative: +inf there gives -inf before every ReLU
    # and 0 after it, so a forward without a check would answer this batch as if the value were missing.
    base = snapshots["mean"]
    flat = base.params[0].clone()
    fan_in, fan_out = base.shape.layers[0]
    w = flat[: fan_in * fan_out].view(fan_out, fan_in)
    w[:, 0] = -w[:, 0].abs() - 0.1
    snapshot = ModelSnapshot(base.version, base.digest, base.shard_digests, base.shape, (flat,), base.aggregation,
                             base.device)
    x = np.zeros((rows, base.num_features), dtype="<f4")
    x[rows - 1, 0] = np.inf
    h = np.maximum(x[:, :] @ w.numpy().T + flat[fan_in * fan_out : fan_in * fan_out + fan_out].numpy(), 0)
    assert np.isfinite(h).all()  # the premise: the first ReLU hides it
    with pytest.raises(REFUSAL[forward]) as info:
        getattr(Predictor(snapshot), forward)(*wire(x))
    if forward == "answer":
        assert f"features row {rows - 1} column 0 is inf" in str(info.value)


def test_the_numpy_forward_leaves_the_models_parameters_alone(trained_store: Path) -> None:
    with Engine.open(trained_store, device="cpu") as engine:
        snapshot = engine.snapshot()
        before = [p.clone() for p in snapshot.params]
        predictor = Predictor(snapshot)
        x = np.random.default_rng(1).normal(size=(64, engine.num_features)).astype(np.float32)
        features, rows = wire(x)
        first = predictor.predict_proba_numpy(features, rows)
        np.testing.assert_array_equal(predictor.predict_proba_numpy(features, rows), first)  # nothing accumulated
        assert all(bool((a == b).all()) for a, b in zip(before, snapshot.params))


def test_serving_pins_torch_and_blas_to_one_thread_and_restores_them() -> None:
    import torch
    from threadpoolctl import threadpool_info

    from forgetd.server.runtime.predictor import serving_threads

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
        out = predictor.predict_proba(*wire(np.zeros((2, engine.num_features), np.float32)))
        assert out.flags.writeable and out.shape == (2, engine.num_classes)
