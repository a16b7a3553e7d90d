"""Certified removal for the linear family: training, the noise draw, the Newton step, its bound and the budget.

The bound is checked against the actual gradient residual on many generated cases, the Newton step against a
naive one built from torch.autograd.functional.hessian, and the bound's value against the paper's formula
recomputed here with an SVD for ||X||_2.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from forgetd.server.engine.certified import (
    GAMMA,
    CertifiedConfig,
    CertifiedRemoval,
    FeaturesNotNormalized,
    LinearModel,
    NotConverged,
    RetrainRequired,
    certify_removal,
    gradient_residual,
    l2_normalize,
    perturbation,
    predict,
    train_linear,
)
from forgetd.server.engine.training import deterministic
from forgetd.server.errors import InvalidConfig


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """The tests' own tensor work on one thread too: tiny ops split over two busy cores take milliseconds each."""
    with deterministic():
        yield


def make_data(n: int, d: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows with norms in (0, 1] (not all exactly 1) and labels from a noisy linear rule."""
    gen = torch.Generator().manual_seed(seed)
    X = l2_normalize(torch.randn(n, d, generator=gen, dtype=torch.float64))
    X = X * (0.2 + 0.8 * torch.rand(n, 1, generator=gen, dtype=torch.float64))
    W = torch.randn(classes, d, generator=gen, dtype=torch.float64) * 4
    scores = X @ W.T + 0.5 * torch.randn(n, classes, generator=gen, dtype=torch.float64)
    y = (scores[:, 0] > 0).long() if classes == 2 else scores.argmax(dim=1)
    return X, y


def objective(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, model: LinearModel) -> torch.Tensor:
    """L_b(W; D) written out independently of the module: sum of logistic losses + (lam n / 2)||W||^2 + <b, W>."""
    signs = (2 * (y == 1).double() - 1).unsqueeze(1) if model.num_classes == 2 else \
        2 * torch.nn.functional.one_hot(y, model.num_classes).double() - 1
    losses = torch.log1p(torch.exp(-signs * (X @ W.T)))
    return losses.sum() + 0.5 * model.config.lam * X.shape[0] * (W * W).sum() + (model.noise * W).sum()


# -- the bound bounds the residual ------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    n=st.integers(30, 160),
    d=st.integers(2, 8),
    classes=st.sampled_from([2, 3]),
    lam=st.sampled_from([1e-3, 1e-2, 1e-1]),
    sigma=st.sampled_from([1.0, 1e3]),  # a large sigma keeps most removals certified, so the bound is checked
    batches=st.lists(st.integers(1, 3), min_size=1, max_size=5),
)
def test_the_accumulated_bound_is_at_least_the_actual_residual(
    seed: int, n: int, d: int, classes: int, lam: float, sigma: float, batches: list[int]
) -> None:
    X, y = make_data(n, d, classes, seed)
    config = CertifiedConfig(lam=lam, sigma=sigma, epsilon=1.0)
    model = train_linear(X, y, classes, seed=seed, config=config)
    alive = torch.ones(n, dtype=torch.bool)
    for size in batches:
        gone = torch.nonzero(alive).flatten()[:size]
        alive[gone] = False
        result = certify_removal(model, (X[alive], y[alive]), (X[gone], y[gone]))
        if isinstance(result, RetrainRequired):
            assert result.bound + result.step_bound > config.budget >= result.bound
            model = train_linear(X[alive], y[alive], classes, seed=seed, config=config)
            continue
        assert result.bound == pytest.approx(model.bound + result.step_bound, rel=1e-15)
        model = result.model
        assert gradient_residual(model, X[alive], y[alive]) <= model.bound
        assert model.bound <= config.budget and result.budget_left == config.budget - model.bound


def test_the_step_bound_is_the_papers_data_dependent_bound() -> None:
    X, y = make_data(200, 5, 2, seed=1)
    model = train_linear(X, y, 2, seed=3)
    result = certify_removal(model, (X[1:], y[1:]), (X[:1], y[:1]))
    assert isinstance(result, CertifiedRemoval)
    v = (result.model.weights - model.weights)[0]
    x_norm = float(torch.linalg.matrix_norm(X, ord=2))  # the training rows' ||X||_2, by SVD
    row_norm = float(X.norm(dim=1).max())
    paper = GAMMA * row_norm * x_norm * float(v.norm()) * float((X[1:] @ v).norm())
    # The module adds the Cholesky solve's residual, a rounding-level term, to the paper's expression.
    assert result.step_bound == pytest.approx(paper, rel=1e-9)
    assert result.step_bound >= paper


# -- the Newton step --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("classes", [2, 3])
def test_the_newton_step_matches_a_naive_dense_hessian_step(classes: int) -> None:
    X, y = make_data(120, 4, classes, seed=2)
    model = train_linear(X, y, classes, seed=4, config=CertifiedConfig(lam=0.05, sigma=10.0))
    result = certify_removal(model, (X[3:], y[3:]), (X[:3], y[:3]))
    assert isinstance(result, CertifiedRemoval)
    W = model.weights.clone()

    def remaining(flat: torch.Tensor) -> torch.Tensor:
        return objective(flat.view_as(W), X[3:], y[3:], model)

    H = torch.autograd.functional.hessian(remaining, W.flatten())  # (K d, K d)
    w = W.flatten().requires_grad_(True)
    (g,) = torch.autograd.grad(remaining(w), w)
    naive = W.flatten() - torch.linalg.solve(H, g)
    assert torch.allclose(result.model.weights.flatten(), naive, rtol=0, atol=1e-10)


def test_removal_lands_near_the_model_retrained_with_the_same_noise() -> None:
    X, y = make_data(400, 6, 3, seed=5)
    model = train_linear(X, y, 3, seed=9)
    result = certify_removal(model, (X[5:], y[5:]), (X[:5], y[:5]))
    assert isinstance(result, CertifiedRemoval)
    retrained = train_linear(X[5:], y[5:], 3, seed=9)
    moved = float((model.weights - retrained.weights).norm())
    assert float((result.model.weights - retrained.weights).norm()) <= 0.05 * moved


# -- training and the noise draw --------------------------------------------------------------------------------


@pytest.mark.parametrize("classes", [2, 3])
def test_training_reaches_the_gradient_tolerance(classes: int) -> None:
    X, y = make_data(300, 7, classes, seed=6)
    config = CertifiedConfig(grad_tol=1e-9)
    model = train_linear(X, y, classes, seed=1, config=config)
    assert model.train_grad_norm <= 1e-9 and model.bound == model.train_grad_norm and model.removed == 0
    w = model.weights.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(objective(w, X, y, model), w)
    assert float(g.norm()) <= 1e-9 * 1.01
    assert float((predict(model, X) == y).double().mean()) > 0.8


def test_the_noise_is_reproducible_from_the_seed() -> None:
    assert torch.equal(perturbation(5, (3, 4), 2.0), perturbation(5, (3, 4), 2.0))
    assert not torch.equal(perturbation(5, (3, 4), 2.0), perturbation(6, (3, 4), 2.0))
    draw = perturbation(11, (1, 40_000), 2.0)
    assert float(draw.std()) == pytest.approx(2.0, rel=0.03) and abs(float(draw.mean())) < 0.05
    X, y = make_data(80, 3, 2, seed=7)
    a, b = train_linear(X, y, 2, seed=42), train_linear(X, y, 2, seed=42)
    assert torch.equal(a.weights, b.weights) and torch.equal(a.noise, perturbation(42, (1, 3), 1.0))
    assert not torch.equal(train_linear(X, y, 2, seed=43).weights, a.weights)


# -- the budget -------------------------------------------------------------------------------------------------


def test_exhausting_the_budget_asks_for_a_retrain_that_resets_the_bound() -> None:
    X, y = make_data(150, 4, 2, seed=8)
    config = CertifiedConfig(lam=1e-2, sigma=0.05, epsilon=1.0)
    model = train_linear(X, y, 2, seed=0, config=config)
    alive = torch.ones(150, dtype=torch.bool)
    certified = 0
    for i in range(100):
        alive[i] = False
        result = certify_removal(model, (X[alive], y[alive]), (X[i : i + 1], y[i : i + 1]))
        if isinstance(result, RetrainRequired):
            break
        model, certified = result.model, certified + 1
    assert isinstance(result, RetrainRequired), "the budget never ran out; lower sigma in this test"
    assert certified >= 1 and result.bound == model.bound
    assert result.bound <= config.budget < result.bound + result.step_bound
    fresh = train_linear(X[alive], y[alive], 2, seed=0, config=config)  # without every forgotten row
    assert fresh.bound == fresh.train_grad_norm <= config.grad_tol and fresh.rows == int(alive.sum())
    alive[i + 1] = False
    again = certify_removal(fresh, (X[alive], y[alive]), (X[i + 1 : i + 2], y[i + 1 : i + 2]))
    assert isinstance(again, CertifiedRemoval) and again.bound < result.bound


def test_without_noise_nothing_is_certified() -> None:
    X, y = make_data(60, 3, 2, seed=9)
    model = train_linear(X, y, 2, seed=0, config=CertifiedConfig(sigma=0.0))
    assert torch.count_nonzero(model.noise) == 0
    result = certify_removal(model, (X[1:], y[1:]), (X[:1], y[:1]))
    assert isinstance(result, RetrainRequired) and result.budget == 0.0


def test_the_budget_is_sigma_epsilon_over_c() -> None:
    config = CertifiedConfig(sigma=2.0, epsilon=0.5, delta=1e-5)
    assert config.c == pytest.approx(math.sqrt(2 * math.log(1.5e5)))
    assert 1.5 * math.exp(-config.c**2 / 2) == pytest.approx(1e-5)
    assert config.budget == pytest.approx(2.0 * 0.5 / config.c)


# -- refusals ---------------------------------------------------------------------------------------------------


def test_rows_longer_than_one_are_refused() -> None:
    X, y = make_data(20, 3, 2, seed=10)
    with pytest.raises(FeaturesNotNormalized, match=r"normalise the features \(l2_normalize\)"):
        train_linear(X * 2, y, 2, seed=0)


def test_a_removal_must_account_for_every_row() -> None:
    X, y = make_data(30, 3, 2, seed=11)
    model = train_linear(X, y, 2, seed=0)
    with pytest.raises(ValueError, match="the model stands for 30 rows; got 27 remaining \\+ 1 removed"):
        certify_removal(model, (X[3:], y[3:]), (X[:1], y[:1]))


def test_training_that_runs_out_of_steps_says_so() -> None:
    X, y = make_data(100, 4, 2, seed=12)
    with pytest.raises(NotConverged, match="raise max_newton_steps"):
        train_linear(X, y, 2, seed=0, config=CertifiedConfig(max_newton_steps=1))


@pytest.mark.parametrize("kwargs, message", [
    ({"lam": 0.0}, "lam is 0.0; give a positive number"),
    ({"sigma": -1.0}, "sigma is -1.0; give 0 (no certificate) or more"),
    ({"delta": 1.0}, "delta is 1.0; give a probability below 1"),
    ({"max_newton_steps": 0}, "max_newton_steps is 0; give a whole number of at least 1"),
    ({"sigma": 1e-9}, "grad_tol 1e-08 is not below the removal budget"),
    ({"epsilon": math.inf}, "epsilon is inf; give a finite positive number"),
])
def test_config_errors_say_how_to_fix(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidConfig, match=message.replace("(", r"\(").replace(")", r"\)")):
        CertifiedConfig(**kwargs)  # type: ignore[arg-type]
