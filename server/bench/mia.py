"""Membership inference: does a model still carry traces of samples it was asked to forget?

Two attacks, both model-agnostic (they see only predicted probabilities):

- `loss_threshold_attack`: members of the training set tend to have lower loss. The AUC of "lower loss means
  member" over members versus non-members, computed exactly from ranks (ties count one half), and the true
  positive rate at 1% false positive rate. 0.5 means the attack cannot tell them apart; far below 0.5 is
  also a signal (forgotten samples that look *less* familiar than unseen ones).
- `shadow_attack`: the attack of the hybrid-unlearning paper (section 4.4, after Shokri et al.): shadow models
  trained on random halves of a data pool, an attack classifier trained on their outputs for in and out
  samples, then asked about the target model's outputs for the samples of interest.

Pure numpy; the caller supplies the training function, so nothing here depends on the engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "AttackResult",
    "ShadowResult",
    "PredictProba",
    "TrainFn",
    "roc_auc",
    "tpr_at_fpr",
    "loss_threshold_attack",
    "per_sample_loss",
    "model_loss_attack",
    "shadow_attack",
]

PredictProba = Callable[[np.ndarray], np.ndarray]  # (n, F) float32 -> (n, C) probabilities
TrainFn = Callable[[np.ndarray, np.ndarray, int], PredictProba]  # (X, y, seed) -> a trained model's predict_proba

_MIN_PROB = 1e-12  # clip before log so a confident wrong prediction is a large finite loss, not inf


@dataclass(frozen=True)
class AttackResult:
    """Outcome of a threshold attack on members versus non-members."""

    auc: float  # P(a member scores as more member-like than a non-member), ties counted one half
    tpr_at_1pct_fpr: float  # the largest share of members caught while at most 1% of non-members are
    n_members: int
    n_nonmembers: int


@dataclass(frozen=True)
class ShadowResult:
    """Outcome of the shadow-model attack on the target samples."""

    member_rate: float  # share of the target samples the attack calls members
    reference_member_rate: float | None  # same for the reference (known non-member) samples, when given
    attack_accuracy: float  # accuracy of the attack classifier on held-out shadow in/out samples
    attack_auc: float  # its AUC there: how much membership signal the shadow models leak at all
    num_shadows: int
    n_targets: int


def _scores(name: str, values: np.ndarray | list[float]) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D array, got shape {a.shape}")
    bad = np.flatnonzero(np.isnan(a))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] is NaN; every score must be a number")
    return a


def roc_auc(member_scores: np.ndarray | list[float], nonmember_scores: np.ndarray | list[float]) -> float:
    """Exact AUC where a higher score means "member": the Mann-Whitney U statistic over n_m * n_n pairs.

    Tied scores get the average of their ranks; ranks are doubled so the sum stays an integer, which makes
    perfectly separated scores give exactly 1.0 (or 0.0 reversed) and all-equal scores exactly 0.5.
    """
    m = _scores("member_scores", member_scores)
    n = _scores("nonmember_scores", nonmember_scores)
    both = np.concatenate([m, n])
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts + 1  # 1-based rank of each distinct value's first occurrence
    doubled_ranks = 2 * starts[inverse] + counts[inverse] - 1  # 2 x (average rank of the tie group)
    r = int(doubled_ranks[: m.size].sum(dtype=np.int64))
    n_m, n_n = m.size, n.size
    return (r - n_m * (n_m + 1)) / (2 * n_m * n_n)


def tpr_at_fpr(member_scores: np.ndarray | list[float], nonmember_scores: np.ndarray | list[float], max_fpr: float = 0.01) -> float:
    """The largest share of members scoring above a threshold that at most `max_fpr` of non-members exceed.

    Conservative at ties: a threshold cannot split equal scores, so all of a tied group count together.
    """
    if not 0.0 <= max_fpr <= 1.0:
        raise ValueError(f"max_fpr is {max_fpr}; choose a value in [0, 1]")
    m = _scores("member_scores", member_scores)
    n = np.sort(_scores("nonmember_scores", nonmember_scores))[::-1]  # most member-like first
    allowed = math.floor(max_fpr * n.size + 1e-9)  # false positives allowed
    if allowed >= n.size:
        return 1.0
    # Flag "member" when score > t; the tightest t with at most `allowed` non-members above it is the
    # (allowed+1)-th highest non-member score.
    t = n[allowed]
    return float(np.count_nonzero(m > t)) / m.size


def loss_threshold_attack(member_losses: np.ndarray | list[float], nonmember_losses: np.ndarray | list[float]) -> AttackResult:
    """The loss-threshold attack: a lower loss means "member"."""
    m = -_scores("member_losses", member_losses)
    n = -_scores("nonmember_losses", nonmember_losses)
    return AttackResult(
        auc=roc_auc(m, n), tpr_at_1pct_fpr=tpr_at_fpr(m, n, 0.01), n_members=int(m.size), n_nonmembers=int(n.size)
    )


def per_sample_loss(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cross-entropy of each row: -log p[y], with p clipped at 1e-12."""
    p = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y)
    if p.ndim != 2 or y.shape != (p.shape[0],):
        raise ValueError(f"per_sample_loss: proba shape {p.shape} and labels shape {y.shape} do not match (n, C) and (n,)")
    if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"per_sample_loss: labels must be in 0..{p.shape[1] - 1}")
    return -np.log(np.clip(p[np.arange(p.shape[0]), y], _MIN_PROB, 1.0))


def model_loss_attack(
    predict_proba: PredictProba, X_members: np.ndarray, y_members: np.ndarray, X_nonmembers: np.ndarray, y_nonmembers: np.ndarray
) -> AttackResult:
    """`loss_threshold_attack` on a model's losses for the two sets (e.g. forgotten samples vs the test set)."""
    return loss_threshold_attack(
        per_sample_loss(predict_proba(X_members), y_members), per_sample_loss(predict_proba(X_nonmembers), y_nonmembers)
    )


# ----------------------------------------------------------------------------------------------------
# The shadow-model attack


def attack_features(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """What the attack classifier sees of one prediction: log p[true label], the probabilities sorted in
    decreasing order (label-free confidence), their entropy, and the true label one-hot (so one classifier
    can learn per-class thresholds, as Shokri et al.'s per-class attack models do)."""
    p = np.clip(np.asarray(proba, dtype=np.float64), _MIN_PROB, 1.0)  # (n, C)
    n, c = p.shape
    log_true = np.log(p[np.arange(n), y])[:, None]  # (n, 1)
    ranked = -np.sort(-p, axis=1)  # (n, C)
    entropy = -(p * np.log(p)).sum(axis=1, keepdims=True)  # (n, 1)
    one_hot = np.eye(c)[y]  # (n, C)
    return np.hstack([log_true, ranked, entropy, one_hot])


@dataclass(frozen=True)
class _Logistic:
    """A standardised, L2-regularised logistic regression fitted by Newton's method (deterministic)."""

    mean: np.ndarray
    scale: np.ndarray
    w: np.ndarray  # (F + 1,) bias last

    @classmethod
    def fit(cls, X: np.ndarray, t: np.ndarray, l2: float = 1e-3, iterations: int = 50) -> _Logistic:
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        scale[scale == 0] = 1.0
        Z = np.hstack([(X - mean) / scale, np.ones((X.shape[0], 1))])  # (n, F+1)
        w = np.zeros(Z.shape[1])
        reg = l2 * X.shape[0] * np.eye(Z.shape[1])
        reg[-1, -1] = 0.0  # the bias is not shrunk
        for _ in range(iterations):
            p = 1.0 / (1.0 + np.exp(-np.clip(Z @ w, -30, 30)))
            grad = Z.T @ (p - t) + reg @ w
            hess = (Z * (p * (1 - p))[:, None]).T @ Z + reg + 1e-9 * np.eye(Z.shape[1])
            step = np.linalg.solve(hess, grad)
            w = w - step
            if np.abs(step).max() < 1e-10:
                break
        return cls(mean, scale, w)

    def predict(self, X: np.ndarray) -> np.ndarray:
        Z = np.hstack([(X - self.mean) / self.scale, np.ones((X.shape[0], 1))])
        return 1.0 / (1.0 + np.exp(-np.clip(Z @ self.w, -30, 30)))


def shadow_attack(
    train_fn: TrainFn,
    X_pool: np.ndarray,
    y_pool: np.ndarray,
    target_proba: PredictProba,
    X_targets: np.ndarray,
    y_targets: np.ndarray,
    *,
    X_reference: np.ndarray | None = None,
    y_reference: np.ndarray | None = None,
    num_shadows: int = 4,
    seed: int = 0,
) -> ShadowResult:
    """The paper's shadow-model attack on the target model, asked about `X_targets` (e.g. forgotten samples).

    Each shadow model is `train_fn(X_in, y_in, seed)` on a random half of the pool; its outputs on its own
    half are labelled "member" and on the other half "non-member". A logistic attack classifier learns from
    80% of those outputs (the rest measures its accuracy and AUC), then labels the target model's outputs
    on `X_targets`: `member_rate` is the share it calls members. Give known non-members of the target
    model (e.g. its test set) as `X_reference` to read `member_rate` against their rate rather than 0.
    The pool should come from the same distribution as the target's training data but need not be disjoint.
    """
    X_pool = np.asarray(X_pool, dtype=np.float32)
    y_pool = np.asarray(y_pool, dtype=np.int64)
    _check_shadow_inputs(X_pool, y_pool, num_shadows, X_reference, y_reference)
    rng = np.random.default_rng(seed)
    A, t = _shadow_outputs(train_fn, X_pool, y_pool, num_shadows, seed, rng)
    order = rng.permutation(A.shape[0])
    cut = int(0.8 * A.shape[0])
    fit, held = order[:cut], order[cut:]
    attack = _Logistic.fit(A[fit], t[fit])
    p_held = attack.predict(A[held])
    held_auc = roc_auc(p_held[t[held] == 1], p_held[t[held] == 0]) if 0 < t[held].sum() < held.size else float("nan")

    def member_rate(X: np.ndarray, y: np.ndarray) -> float:
        y = np.asarray(y, dtype=np.int64)
        if len(y) == 0:
            raise ValueError("shadow_attack: no samples to ask about")
        calls = attack.predict(attack_features(target_proba(np.asarray(X, dtype=np.float32)), y)) > 0.5
        return float(calls.mean())

    return ShadowResult(
        member_rate=member_rate(X_targets, y_targets),
        reference_member_rate=None if X_reference is None or y_reference is None
        else member_rate(X_reference, y_reference),
        attack_accuracy=float(((p_held > 0.5) == (t[held] == 1)).mean()),
        attack_auc=held_auc,
        num_shadows=num_shadows,
        n_targets=int(len(y_targets)),
    )


def _check_shadow_inputs(X_pool: np.ndarray, y_pool: np.ndarray, num_shadows: int, X_reference: np.ndarray | None,
                         y_reference: np.ndarray | None) -> None:
    if X_pool.ndim != 2 or y_pool.shape != (X_pool.shape[0],):
        raise ValueError(f"shadow_attack: X_pool shape {X_pool.shape} and y_pool shape {y_pool.shape} do not match")
    if X_pool.shape[0] < 4:
        raise ValueError(f"shadow_attack: the pool has {X_pool.shape[0]} rows; it needs at least 4 to split in halves")
    if num_shadows < 1:
        raise ValueError(f"shadow_attack: num_shadows is {num_shadows}; choose at least 1")
    if (X_reference is None) != (y_reference is None):
        raise ValueError("shadow_attack: give both X_reference and y_reference, or neither")


def _shadow_outputs(train_fn: TrainFn, X_pool: np.ndarray, y_pool: np.ndarray, num_shadows: int, seed: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(attack features, 1 = member / 0 = not) of every shadow model's outputs on its own half and the other."""
    n = X_pool.shape[0]
    half = n // 2
    features: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for s in range(num_shadows):
        order = rng.permutation(n)
        inside, outside = order[:half], order[half : 2 * half]
        proba = train_fn(X_pool[inside], y_pool[inside], seed * 1000 + s)
        features.append(attack_features(proba(X_pool[inside]), y_pool[inside]))
        features.append(attack_features(proba(X_pool[outside]), y_pool[outside]))
        labels.append(np.ones(inside.size))
        labels.append(np.zeros(outside.size))
    return np.vstack(features), np.concatenate(labels)
