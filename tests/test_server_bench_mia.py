"""Membership inference on cases with known answers, and the exact AUC against a naive pairwise count."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from forgetd.server.bench.mia import (
    attack_features,
    loss_threshold_attack,
    model_loss_attack,
    per_sample_loss,
    roc_auc,
    shadow_attack,
    tpr_at_fpr,
)

# --- naive references, used only here ---------------------------------------------------------------


def naive_auc(m: list[float], n: list[float]) -> Fraction:
    wins = sum(Fraction(1) if a > b else Fraction(1, 2) if a == b else Fraction(0) for a in m for b in n)
    return wins / (len(m) * len(n))


def naive_tpr_at_1pct(m: list[float], n: list[float]) -> Fraction:
    best = Fraction(0)
    for t in [float("-inf")] + sorted(set(m) | set(n)):
        false_pos = sum(b > t for b in n)
        if Fraction(false_pos, len(n)) <= Fraction(1, 100):
            best = max(best, Fraction(sum(a > t for a in m), len(m)))
    return best


scores = st.lists(st.integers(-5, 5).map(float) | st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(m=scores, n=scores)
def test_auc_equals_the_pairwise_count(m, n):
    assert roc_auc(m, n) == float(naive_auc(m, n))


@settings(max_examples=100, deadline=None)
@given(m=scores, n=st.lists(st.integers(-5, 5).map(float), min_size=1, max_size=250))
def test_tpr_at_1pct_fpr_equals_a_threshold_scan(m, n):
    assert tpr_at_fpr(m, n, 0.01) == float(naive_tpr_at_1pct(m, n))


def test_known_auc_values():
    assert loss_threshold_attack([0.1, 0.2, 0.3], [0.5, 0.9]).auc == 1.0  # members all lower loss
    assert loss_threshold_attack([0.5, 0.9], [0.1, 0.2, 0.3]).auc == 0.0  # reversed
    assert loss_threshold_attack([0.4] * 7, [0.4] * 5).auc == 0.5  # all tied
    assert roc_auc([1, 2], [2, 3]) == 0.125  # one win of one half out of four pairs
    res = loss_threshold_attack(np.arange(10) / 10, np.arange(10, 20) / 10)
    assert res.tpr_at_1pct_fpr == 1.0 and res.n_members == 10 and res.n_nonmembers == 10


def test_tpr_at_1pct_fpr_by_hand():
    nonmembers = np.arange(1, 201, dtype=float)  # 200 non-member losses: 1..200
    members = np.array([0.5, 1.5, 2.5, 10.0])
    # 1% of 200 = 2 false positives allowed: flag losses below 3 (non-members 1 and 2 are caught too),
    # which catches three of the four members.
    assert loss_threshold_attack(members, nonmembers).tpr_at_1pct_fpr == 0.75
    # With 99 non-members no false positive is allowed: only losses below the smallest, 1.0, count.
    assert loss_threshold_attack(members, nonmembers[:99]).tpr_at_1pct_fpr == 0.25


def test_identical_distributions_give_about_one_half():
    rng = np.random.default_rng(0)
    res = loss_threshold_attack(rng.exponential(size=5000), rng.exponential(size=5000))
    assert abs(res.auc - 0.5) < 0.03
    assert res.tpr_at_1pct_fpr < 0.03


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"member_losses\[1\] is NaN"):
        loss_threshold_attack([0.1, float("nan")], [0.2])
    with pytest.raises(ValueError, match="nonmember_losses: expected a non-empty 1-D array"):
        loss_threshold_attack([0.1], [])
    with pytest.raises(ValueError, match="labels must be in 0..1"):
        per_sample_loss(np.full((2, 2), 0.5), np.array([0, 2]))


def test_per_sample_loss():
    proba = np.array([[0.9, 0.1], [0.25, 0.75], [1.0, 0.0]])
    assert np.allclose(per_sample_loss(proba, np.array([0, 0, 1])), [-np.log(0.9), -np.log(0.25), -np.log(1e-12)])


# --- models with known membership behaviour -------------------------------------------------------


def memoriser(X: np.ndarray, y: np.ndarray, seed: int = 0, num_classes: int = 2, tau: float = 0.5):
    """A nearest-neighbour model: each class scores by its nearest training point, so a training row's own
    label wins with near certainty and unseen rows get whatever their random neighbours say."""

    def predict_proba(Q: np.ndarray) -> np.ndarray:
        d = ((Q[:, None, :].astype(np.float64) - X[None, :, :]) ** 2).sum(-1)  # (q, n)
        nearest = np.stack([np.where(y == c, d, np.inf).min(1) for c in range(num_classes)], 1)  # (q, C)
        logits = -nearest / tau
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(1, keepdims=True)

    return predict_proba


def random_labels(n: int, f: int, seed: int):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, f)).astype(np.float32), rng.integers(0, 2, n)


def test_memorised_training_set_is_detected_by_the_loss_attack():
    X, y = random_labels(400, 8, 1)
    model = memoriser(X[:200], y[:200])
    res = model_loss_attack(model, X[:200], y[:200], X[200:], y[200:])
    assert res.auc > 0.9 and res.tpr_at_1pct_fpr > 0.5


def test_overfit_mlp_on_random_labels_is_detected():
    torch.manual_seed(0)
    X, y = random_labels(400, 20, 2)
    net = torch.nn.Sequential(torch.nn.Linear(20, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128), torch.nn.ReLU(), torch.nn.Linear(128, 2))
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    Xt, yt = torch.from_numpy(X[:200]), torch.from_numpy(y[:200])
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(Xt), yt).backward()
        opt.step()

    @torch.no_grad()
    def proba(Q: np.ndarray) -> np.ndarray:
        return torch.softmax(net(torch.from_numpy(Q)), 1).numpy()

    res = model_loss_attack(proba, X[:200], y[:200], X[200:], y[200:])
    # Not near 1: the overfit net is confident everywhere, so the half of the unseen rows whose random label
    # it happens to guess right also get a low loss. The wrongly guessed half are all caught: ~0.75 + a bit.
    assert res.auc > 0.75


def test_shadow_attack_finds_members_and_not_forgotten_samples():
    X, y = random_labels(600, 6, 3)
    pool_X, pool_y = X[:300], y[:300]
    # The target trained on rows 300..449 and never saw 450..599 (as if those had been forgotten exactly).
    target = memoriser(X[300:450], y[300:450])
    train_fn = lambda Xs, ys, seed: memoriser(Xs, ys)  # noqa: E731
    on_members = shadow_attack(train_fn, pool_X, pool_y, target, X[300:450], y[300:450], num_shadows=2, seed=0)
    assert on_members.attack_auc > 0.9 and on_members.attack_accuracy > 0.85
    assert on_members.member_rate > 0.9
    forgotten = shadow_attack(
        train_fn, pool_X, pool_y, target, X[450:525], y[450:525], X_reference=X[525:], y_reference=y[525:], num_shadows=2, seed=0
    )
    assert forgotten.member_rate < 0.5 and abs(forgotten.member_rate - forgotten.reference_member_rate) < 0.2
    assert forgotten.n_targets == 75 and forgotten.num_shadows == 2
    # Deterministic for a given seed.
    again = shadow_attack(train_fn, pool_X, pool_y, target, X[300:450], y[300:450], num_shadows=2, seed=0)
    assert again == on_members


def test_shadow_attack_rejects_bad_arguments():
    X, y = random_labels(10, 2, 0)
    fn = lambda Xs, ys, seed: memoriser(Xs, ys)  # noqa: E731
    with pytest.raises(ValueError, match="num_shadows is 0"):
        shadow_attack(fn, X, y, memoriser(X, y), X, y, num_shadows=0)
    with pytest.raises(ValueError, match="needs at least 4"):
        shadow_attack(fn, X[:3], y[:3], memoriser(X, y), X, y)
    with pytest.raises(ValueError, match="both X_reference and y_reference"):
        shadow_attack(fn, X, y, memoriser(X, y), X, y, X_reference=X)


def test_attack_features_shape():
    f = attack_features(np.array([[0.2, 0.8], [0.6, 0.4]]), np.array([1, 1]))
    assert f.shape == (2, 1 + 2 + 1 + 2)
    assert np.allclose(f[:, 0], np.log([0.8, 0.4])) and np.allclose(f[:, 1:3], [[0.8, 0.2], [0.6, 0.4]])
