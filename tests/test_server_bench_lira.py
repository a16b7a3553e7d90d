"""LiRA on tiny synthetic pools with known answers: power on an overfit target, none on a target that never
saw the rows, metrics against naive references, bitwise determinism, and planted outliers ranked first."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from forgetd.server.bench.lira import (
    VARIANTS,
    Lira,
    LiraConfig,
    attack_metrics,
    logit_confidence,
    membership,
    separation,
    train_plain,
)
from forgetd.server.engine.training import derive_seed
from forgetd.server.errors import InvalidConfig

# Wide for the data and trained long: it memorises random labels, so membership is visible.
OVERFIT = LiraConfig(shadows=16, epochs=60, batch_size=16, hidden_sizes=(64,), learning_rate=0.01, resamples=200)


def random_labels(n: int, f: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, f)).astype(np.float32), rng.integers(0, 2, n)


@pytest.fixture(scope="module")
def pool() -> tuple[np.ndarray, np.ndarray, Lira]:
    X, y = random_labels(128, 6, 0)
    return X, y, Lira.train(X, y, OVERFIT)


def halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    inside = np.sort(np.random.default_rng(seed).choice(n, n // 2, replace=False))
    return inside, np.setdiff1d(np.arange(n), inside)


# --- naive references, used only here ---------------------------------------------------------------


def naive_auc(m: list[float], n: list[float]) -> Fraction:
    wins = sum((Fraction(1) if a > b else Fraction(1, 2) if a == b else Fraction(0) for a in m for b in n), Fraction(0))
    return wins / (len(m) * len(n))


def naive_tpr_at_fpr(m: list[float], n: list[float], fpr: Fraction) -> Fraction:
    """Try every threshold "member when score > t" (t below all scores, then each score sorted): the best
    TPR among those whose FPR is at most `fpr`."""
    ms, ns = np.array(m), np.array(n)
    best = Fraction(0)
    for t in [-np.inf, *sorted(set(m) | set(n))]:
        if Fraction(int((ns > t).sum()), len(n)) <= fpr:
            best = max(best, Fraction(int((ms > t).sum()), len(m)))
    return best


# --- the attack ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_an_overfit_target_is_caught(pool, variant):
    X, y, attack = pool
    members, nonmembers = halves(len(y), 1)
    target = train_plain(X[members], y[members], OVERFIT, seed=12345)
    res = attack_metrics(attack.scores(target, members, variant), attack.scores(target, nonmembers, variant),
                         resamples=OVERFIT.resamples)
    assert res.auc > 0.7 and res.auc_interval[0] > 0.6, res
    assert res.n_members == res.n_nonmembers == 64


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_target_that_saw_neither_set_gives_about_one_half(pool, variant):
    X, y, attack = pool
    members, nonmembers = halves(len(y), 1)
    X_other, y_other = random_labels(64, 6, 7)  # same distribution, none of the pool's rows
    target = train_plain(X_other, y_other, OVERFIT, seed=999)
    res = attack_metrics(attack.scores(target, members, variant), attack.scores(target, nonmembers, variant),
                         resamples=OVERFIT.resamples)
    assert res.auc_interval[0] <= 0.5 <= res.auc_interval[1], res


def test_a_shadow_as_target_gives_back_its_own_phi(pool):
    # The target path (predict_proba, then phi) must see a model exactly as the shadow statistics did.
    X, y, attack = pool
    inside = attack.keep[3]
    shadow = train_plain(X[inside], y[inside], OVERFIT, derive_seed(OVERFIT.seed, "lira.shadow", 3), 2)
    assert np.array_equal(attack.target_phi(shadow, np.arange(len(y))), attack.phi[3])


def test_same_seeds_give_bitwise_the_same_scores():
    X, y = random_labels(48, 4, 2)
    cfg = LiraConfig(shadows=4, epochs=5, batch_size=8, hidden_sizes=(16,), resamples=50)
    a, b = Lira.train(X, y, cfg), Lira.train(X, y, cfg)
    target = train_plain(X[:24], y[:24], cfg, seed=5)
    rows = np.arange(48)
    assert a.phi.tobytes() == b.phi.tobytes() and np.array_equal(a.keep, b.keep)
    for variant in VARIANTS:
        assert a.scores(target, rows, variant).tobytes() == b.scores(target, rows, variant).tobytes()
    assert attack_metrics(a.scores(target, rows[:24]), a.scores(target, rows[24:]), resamples=50) == \
        attack_metrics(b.scores(target, rows[:24]), b.scores(target, rows[24:]), resamples=50)
    other = Lira.train(X, y, replace(cfg, seed=1))
    assert not np.array_equal(other.phi, a.phi)  # the seed does reach the shadows


@pytest.fixture(scope="module")
def planted_pool() -> tuple[np.ndarray, np.ndarray, np.ndarray, Lira]:
    rng = np.random.default_rng(3)
    y = np.arange(120) % 2
    X = (0.5 * rng.standard_normal((120, 4))).astype(np.float32)
    X[:, 0] += np.where(y == 1, 3.0, -3.0)  # two well separated blobs: clean rows are learnt either way
    planted = np.sort(rng.choice(120, 6, replace=False))
    y[planted] ^= 1  # only a model that trained on them predicts their labels
    cfg = LiraConfig(shadows=16, epochs=100, batch_size=16, hidden_sizes=(64,), learning_rate=0.01)
    return X, y, planted, Lira.train(X, y, cfg)


@pytest.mark.parametrize("variance", ["global", "per_example"])
def test_planted_mislabelled_points_rank_most_vulnerable(planted_pool, variance):
    X, y, planted, trained = planted_pool
    attack = Lira(X, y, trained.keep, trained.phi, replace(trained.config, variance=variance))
    assert attack.fit.global_variance == (variance == "global")
    assert sorted(attack.most_vulnerable()[:6]) == list(planted)
    assert separation(attack.fit)[planted].min() > np.delete(separation(attack.fit), planted).max()
    inside = [int(p) for p in planted if p < 60]  # restricted to some rows, it ranks only those
    ranked = attack.most_vulnerable(np.arange(60))
    assert inside and sorted(ranked[: len(inside)]) == inside and sorted(ranked) == list(range(60))


# --- pieces -------------------------------------------------------------------------------------------


def test_logit_confidence_is_exact_where_p_rounds_to_one():
    logits = torch.tensor([[0.0, -60.0, -61.0], [2.0, 1.0, 0.0], [-30.0, 0.0, 5.0]], dtype=torch.float64)
    y = np.array([0, 1, 2])
    proba = torch.softmax(logits.float(), 1).numpy()  # row 0: p_y is 1.0 in float32
    want = [(lg[k] - torch.logsumexp(torch.cat([lg[:k], lg[k + 1:]]), 0)).item() for lg, k in zip(logits, y)]
    assert np.allclose(logit_confidence(proba, y), want, rtol=1e-5)
    capped = logit_confidence(np.array([[1.0, 0.0], [0.0, 1.0]], np.float32), np.array([0, 0]))
    assert np.isfinite(capped).all() and capped[0] == -capped[1] > 100


def test_membership_puts_every_row_in_exactly_half_the_shadows():
    keep = membership(10, 500, seed=4)
    assert keep.shape == (10, 500) and (keep.sum(axis=0) == 5).all()
    assert (abs(keep.sum(axis=1) - 250) < 60).all()  # each shadow trains on about half the pool
    assert np.array_equal(keep, membership(10, 500, seed=4)) and not np.array_equal(keep, membership(10, 500, seed=5))


scores = st.lists(st.integers(-4, 4).map(float) | st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=30)


@settings(max_examples=150, deadline=None)
@given(m=scores, n=scores)
def test_auc_is_the_pairwise_count(m, n):
    assert attack_metrics(m, n, resamples=1).auc == float(naive_auc(m, n))


@settings(max_examples=40, deadline=None)
@given(m=scores, n=st.lists(st.integers(-30, 30).map(float), min_size=1, max_size=1500))
def test_tpr_at_low_fpr_is_the_best_threshold(m, n):
    res = attack_metrics(m, n, resamples=1)
    assert res.tpr_at_1pct_fpr == float(naive_tpr_at_fpr(m, n, Fraction(1, 100)))
    assert res.tpr_at_0_1pct_fpr == float(naive_tpr_at_fpr(m, n, Fraction(1, 1000)))


def test_bootstrap_intervals():
    rng = np.random.default_rng(0)
    m, n = rng.normal(1.0, 1.0, 200), rng.normal(0.0, 1.0, 300)
    res = attack_metrics(m, n, resamples=400, seed=3)
    assert res.auc_interval[0] < res.auc < res.auc_interval[1] and res.auc_interval[1] - res.auc_interval[0] < 0.15
    assert res == attack_metrics(m, n, resamples=400, seed=3)
    assert res.auc_interval != attack_metrics(m, n, resamples=400, seed=4).auc_interval
    separated = attack_metrics([5.0, 6.0, 7.0], [1.0, 2.0], resamples=100)
    assert separated.auc_interval == (1.0, 1.0) and separated.tpr_at_1pct_fpr_interval == (1.0, 1.0)


@pytest.mark.parametrize("change, message", [
    ({"shadows": 2}, "shadows is 2; LiRA needs at least 4"),
    ({"variance": "pooled"}, "variance is 'pooled'; choose one of auto, per_example, global"),
    ({"variance": "per_example", "shadows": 4}, "use variance='global' or at least 8 shadows"),
    ({"epochs": 0}, "epochs is 0; use at least 1"),
    ({"learning_rate": -1.0}, "learning_rate is -1.0; give a positive number"),
    ({"hidden_sizes": ()}, "hidden_sizes is \\(\\); give one or more positive widths"),
    ({"device": "tpu"}, "device is 'tpu'; choose auto, cpu, cuda or cuda:N"),
])
def test_config_says_how_to_fix(change, message):
    with pytest.raises(InvalidConfig, match=message):
        LiraConfig(**change)


def test_auto_variance_is_global_below_64_shadows():
    assert LiraConfig(shadows=63).global_variance and not LiraConfig(shadows=64).global_variance
    assert LiraConfig(shadows=64, variance="global").global_variance


def test_bad_rows_and_variants(pool):
    X, y, attack = pool
    target = train_plain(X[:8], y[:8], replace(OVERFIT, epochs=1), seed=1)
    with pytest.raises(InvalidConfig, match="rows must be one or more positions in the pool, 0..127"):
        attack.scores(target, [0, 128])
    with pytest.raises(InvalidConfig, match="variant is 'both'; choose online"):
        attack.scores(target, [0, 1], "both")
