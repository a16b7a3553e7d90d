"""LiRA: per-example membership inference by likelihood ratio (Carlini et al., "Membership Inference Attacks
From First Principles", IEEE S&P 2022), in the form unlearning evaluations use (U-LiRA, Hayes et al. 2024).

    attack = Lira.train(X_pool, y_pool, LiraConfig(shadows=64))        # the shadow models: the whole cost
    s_in = attack.scores(target.predict_proba, members)               # members, non-members: pool positions
    s_out = attack.scores(target.predict_proba, nonmembers)
    metrics = attack_metrics(s_in, s_out, resamples=1000)              # AUC, TPR at 0.1% and 1% FPR, 95% CIs
    forget = attack.most_vulnerable(among=train_rows)[:100]            # a "most vulnerable" forget set

Shadow model s trains on the pool rows with keep[s] true; every row is IN for exactly floor(S/2) of the S
shadows. Each is the engine's MLP trained the plain way: one model, no shards, no slices, `epochs` epochs over
its rows in seeded batches, through the engine's own optimizer loop (training.run_steps on a one-slice
layout), every seed derived from the config's. That suits a plain target; a forgetd store is sliced and
sharded, so `forgetd bench unlearning` trains its shadows like the store instead (privacy.py) and hands this
module their confidences. A model is seen through phi = log(p_y / (1 - p_y)), the
logit-scaled confidence in the true label, with 1 - p_y summed from the other classes so it stays exact where
p_y rounds to 1. Per pool row, Gaussians are fitted to the phi of the shadows that had it IN and of those that
had it OUT; with few shadows (the paper: under 64) one pooled within-row variance per side is used instead.

- online: score = log N(phi; mu_in, sd_in^2) - log N(phi; mu_out, sd_out^2), the log likelihood ratio.
- offline: score = (phi - mu_out) / sd_out, a one-sided test against OUT only (the paper's 1 - Pr[Z > phi] is
  a monotone function of it, so AUC and TPR at any FPR are the same); it reads only the OUT shadows, so it
  also works with shadows that never trained on the rows asked about.

Cost: shadow training dominates. Each shadow reads epochs * |pool| / 2 samples, so S shadows read
S * epochs * |pool| / 2 (UCI Adult, train and test rows as the pool, 64 shadows of 5 epochs: 64 * 5 * 24,421
= 7.8 M samples, about nine trainings of the engine's default K=1, S=10, E=5 store on the training split;
measured on a shared 2-core CPU: 0.8 to 4 s per shadow, 127 s for the 64).
Then each shadow predicts the pool once (S * |pool| rows) and a target model predicts the rows asked about.
Fitting, scoring, ranking and the bootstrap are numpy over (S, |pool|) arrays: negligible.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from ..engine.model import MLPShape, forward, init_params
from ..engine.training import OptState, ShardLayout, derive_seed, deterministic, run_steps
from ..errors import InvalidConfig
from ..vocabulary import check_device, resolve_device
from .mia import PredictProba, roc_auc, tpr_at_fpr

__all__ = ["LiraConfig", "VARIANCES", "VARIANTS", "GLOBAL_VARIANCE_BELOW", "Lira", "GaussianFit", "LiraMetrics",
           "train_plain", "logit_confidence", "membership", "fit_gaussians", "lira_scores", "separation",
           "attack_metrics"]

VARIANCES = ("auto", "per_example", "global")
VARIANTS = ("online", "offline")
GLOBAL_VARIANCE_BELOW = 64  # "auto" pools the variance with fewer shadows than this, as the paper advises
_TINY = float(np.finfo(np.float32).smallest_subnormal)  # probabilities arrive as float32: phi stays in +-103.3
_MIN_SD = 1e-6  # a row every shadow scores alike would otherwise divide by zero


@dataclass(frozen=True)
class LiraConfig:
    """The shadow models and the attack. Train them like the target model, or the attack is miscalibrated."""

    shadows: int = 64  # S: shadow models (the paper uses 64 to 256); each pool row is IN for floor(S/2)
    epochs: int = 5  # epochs of each shadow's plain training over its half of the pool
    batch_size: int = 128  # the paper's batch size
    learning_rate: float = 0.005  # Adam, as the engine trains
    hidden_sizes: tuple[int, ...] = (128, 128)  # the paper's MLP
    seed: int = 0  # the shadows' halves, initial parameters and batch plans all derive from it
    variance: str = "auto"  # per_example | global (one pooled variance per side) | auto (global below 64)
    resamples: int = 1000  # bootstrap resamples behind each 95% interval
    device: str = "cpu"  # cpu | cuda | cuda:N | auto; phi is bitwise reproducible on the same kind of device

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        for name in ("shadows", "epochs", "batch_size", "seed", "resamples"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidConfig(f"{name} is {value!r}; give a whole number")
        if self.shadows < 4:
            raise InvalidConfig(f"shadows is {self.shadows}; LiRA needs at least 4 (2 IN and 2 OUT per row to "
                                "estimate a variance), and the paper uses 64 or more")
        for name in ("epochs", "batch_size", "resamples"):
            if getattr(self, name) < 1:
                raise InvalidConfig(f"{name} is {getattr(self, name)}; use at least 1")
        if not 0 <= self.seed < 2**63:
            raise InvalidConfig(f"seed is {self.seed}; choose 0 <= seed < 2**63")
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < float(lr) < 1e3:
            raise InvalidConfig(f"learning_rate is {lr!r}; give a positive number such as 0.005")
        object.__setattr__(self, "learning_rate", float(lr))
        if not self.hidden_sizes or any(not isinstance(h, int) or isinstance(h, bool) or h < 1 for h in self.hidden_sizes):
            raise InvalidConfig(f"hidden_sizes is {self.hidden_sizes!r}; give one or more positive widths, e.g. (128, 128)")
        if self.variance not in VARIANCES:
            raise InvalidConfig(f"variance is {self.variance!r}; choose one of {', '.join(VARIANCES)}")
        if self.variance == "per_example" and self.shadows < 8:
            raise InvalidConfig(f"variance is per_example with {self.shadows} shadows: too few to fit a variance "
                                "per row; use variance='global' or at least 8 shadows (the paper: 64)")
        check_device(self.device)

    @property
    def global_variance(self) -> bool:
        return self.variance == "global" or (self.variance == "auto" and self.shadows < GLOBAL_VARIANCE_BELOW)


# -- the shadow models ---------------------------------------------------------------------------------------


def _matrix(X: np.ndarray, y: np.ndarray, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    X = np.ascontiguousarray(X, dtype=np.float32)
    y = np.ascontiguousarray(y, dtype=np.int64)
    if X.ndim != 2 or y.shape != (X.shape[0],) or X.shape[0] == 0:
        raise InvalidConfig(f"X has shape {X.shape} and y {y.shape}; give rows (n, F) and labels (n,) with n >= 1")
    c = int(y.max()) + 1 if num_classes is None else num_classes
    if y.min() < 0 or y.max() >= c or c < 2:
        raise InvalidConfig(f"labels span {y.min()}..{y.max()} with num_classes {c}; labels must be in 0..C-1, C >= 2")
    return X, y, c


def train_plain(X: np.ndarray, y: np.ndarray, config: LiraConfig, seed: int, num_classes: int | None = None) -> PredictProba:
    """The engine's MLP trained on all of (X, y) for `config.epochs` epochs, no shards and no slices, by the
    engine's optimizer loop; returns its predict_proba (float32 softmax, as a one-shard ModelSnapshot's)."""
    X, y, c = _matrix(X, y, num_classes)
    n = X.shape[0]
    shape = MLPShape(X.shape[1], config.hidden_sizes, c)
    device = torch.device(resolve_device(config.device))
    p0 = init_params(shape, derive_seed(seed, "init", 0))
    zeros = torch.zeros_like(p0)
    layout = ShardLayout(members=np.arange(n, dtype=np.int64), bounds=np.array([0, n], dtype=np.int64))
    states: list[OptState] = []
    with deterministic():
        run_steps(shape=shape, layout=layout, X=torch.from_numpy(X.copy()).to(device), y=torch.from_numpy(y.copy()).to(device),
                  alive=np.ones(n, bool), start=OptState(p0, zeros, zeros.clone(), 0), first=1, seed=seed, shard=0,
                  epochs=config.epochs, batch_size=config.batch_size, learning_rate=config.learning_rate,
                  record_upto=0, on_step=lambda _s, state: states.append(state))
    flat = states[-1].params.detach()

    @torch.no_grad()
    def predict_proba(Q: np.ndarray) -> np.ndarray:
        q = torch.from_numpy(np.array(Q, dtype=np.float32, order="C")).to(device)  # (N, F), our own copy
        with deterministic():
            return torch.softmax(forward(shape, flat, q), dim=1).cpu().numpy()  # (N, C)

    return predict_proba


def logit_confidence(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """phi = log(p_y / (1 - p_y)) per row, (N,) float64. 1 - p_y is the sum of the other classes' probabilities,
    not a subtraction, so a confident row keeps its value; zero probabilities count as float32's smallest."""
    p = np.asarray(proba, dtype=np.float64)  # (N, C)
    y = np.asarray(y, dtype=np.int64)
    if p.ndim != 2 or y.shape != (p.shape[0],) or (y.size and (y.min() < 0 or y.max() >= p.shape[1])):
        raise InvalidConfig(f"probabilities {p.shape} and labels {y.shape} do not match (N, C) and (N,) in 0..C-1")
    true = p[np.arange(p.shape[0]), y]  # (N,)
    others = np.where(np.eye(p.shape[1], dtype=bool)[y], 0.0, p).sum(axis=1)  # (N,)
    return np.log(np.maximum(true, _TINY)) - np.log(np.maximum(others, _TINY))


def membership(shadows: int, rows: int, seed: int) -> np.ndarray:
    """(S, N) bool: shadow s trains on row n. Each column has exactly floor(S/2) IN, drawn at random."""
    rng = np.random.Generator(np.random.PCG64(derive_seed(seed, "lira.membership")))
    ranks = rng.random((shadows, rows)).argsort(axis=0)  # a random permutation of 0..S-1 down each column
    return ranks < shadows // 2


@dataclass(frozen=True)
class GaussianFit:
    """Per pool row: the Gaussians of phi for shadows that trained on it (in) and that did not (out)."""

    mu_in: np.ndarray  # (N,)
    sd_in: np.ndarray  # (N,); one value repeated when the variance is global
    mu_out: np.ndarray  # (N,)
    sd_out: np.ndarray  # (N,)
    global_variance: bool


def _side(phi: np.ndarray, mask: np.ndarray, pooled: bool) -> tuple[np.ndarray, np.ndarray]:
    count = mask.sum(axis=0)  # (N,)
    mu = np.where(mask, phi, 0.0).sum(axis=0) / count  # (N,)
    squares = (np.where(mask, phi - mu, 0.0) ** 2).sum(axis=0)  # (N,)
    var = np.full(mu.shape, squares.sum() / (count - 1).sum()) if pooled else squares / (count - 1)
    return mu, np.maximum(np.sqrt(var), _MIN_SD)


def fit_gaussians(keep: np.ndarray, phi: np.ndarray, global_variance: bool) -> GaussianFit:
    """Means and unbiased variances of each row's IN and OUT phi; global pools squared deviations over rows
    (within-row only: the spread between rows' means is not noise)."""
    if keep.shape != phi.shape or keep.ndim != 2:
        raise InvalidConfig(f"keep {keep.shape} and phi {phi.shape} must both be (shadows, rows)")
    if (keep.sum(axis=0) < 2).any() or ((~keep).sum(axis=0) < 2).any():
        raise InvalidConfig("some pool row is IN or OUT for fewer than 2 shadows; train at least 4 shadows")
    mu_in, sd_in = _side(phi, keep, global_variance)
    mu_out, sd_out = _side(phi, ~keep, global_variance)
    return GaussianFit(mu_in, sd_in, mu_out, sd_out, global_variance)


def _log_normal(x: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd)  # the 2 pi term cancels in every ratio


def lira_scores(fit: GaussianFit, rows: np.ndarray, phi: np.ndarray, variant: str = "online") -> np.ndarray:
    """Membership scores (higher = member) of a target whose phi on pool `rows` is `phi`."""
    if variant not in VARIANTS:
        raise InvalidConfig(f"variant is {variant!r}; choose online (IN and OUT shadows) or offline (OUT only)")
    mo, so = fit.mu_out[rows], fit.sd_out[rows]
    if variant == "offline":
        return (phi - mo) / so
    return _log_normal(phi, fit.mu_in[rows], fit.sd_in[rows]) - _log_normal(phi, mo, so)


def separation(fit: GaussianFit) -> np.ndarray:
    """(N,) how far apart a row's IN and OUT distributions are: (mu_in - mu_out) / sqrt((sd_in^2 + sd_out^2) / 2).
    Signed: a row a model is less sure of when it trained on it is no membership risk."""
    return (fit.mu_in - fit.mu_out) / np.sqrt((fit.sd_in**2 + fit.sd_out**2) / 2)


# -- the attack on one pool ----------------------------------------------------------------------------------


class Lira:
    """The shadow models' statistics on one pool, ready to score target models on pool rows."""

    def __init__(self, X_pool: np.ndarray, y_pool: np.ndarray, keep: np.ndarray, phi: np.ndarray,
                 config: LiraConfig, shadow_seconds: tuple[float, ...] = ()) -> None:
        self.X_pool, self.y_pool, _ = _matrix(X_pool, y_pool, None)
        if keep.shape != (config.shadows, self.X_pool.shape[0]) or phi.shape != keep.shape:
            raise InvalidConfig(f"keep {keep.shape} and phi {phi.shape}: expected ({config.shadows}, {self.X_pool.shape[0]})")
        self.keep = keep  # (S, N) bool
        self.phi = phi  # (S, N) float64
        self.config = config
        self.shadow_seconds = shadow_seconds  # wall time of each shadow's training and pool prediction

    @classmethod
    def train(cls, X_pool: np.ndarray, y_pool: np.ndarray, config: LiraConfig, *, num_classes: int | None = None,
              progress: Callable[[int], None] | None = None) -> Lira:
        """Train the config's shadow models on halves of the pool; progress(done) after each."""
        X, y, c = _matrix(X_pool, y_pool, num_classes)
        keep = membership(config.shadows, X.shape[0], config.seed)
        phi = np.empty(keep.shape, dtype=np.float64)
        seconds = []
        for s in range(config.shadows):
            t0 = time.perf_counter()
            proba = train_plain(X[keep[s]], y[keep[s]], config, derive_seed(config.seed, "lira.shadow", s), c)
            phi[s] = logit_confidence(proba(X), y)
            seconds.append(time.perf_counter() - t0)
            if progress is not None:
                progress(s + 1)
        return cls(X, y, keep, phi, config, tuple(seconds))

    @cached_property
    def fit(self) -> GaussianFit:
        return fit_gaussians(self.keep, self.phi, self.config.global_variance)

    def _rows(self, rows: np.ndarray | list[int]) -> np.ndarray:
        r = np.asarray(rows, dtype=np.int64).reshape(-1)
        n = self.X_pool.shape[0]
        if r.size == 0 or r.min() < 0 or r.max() >= n:
            raise InvalidConfig(f"rows must be one or more positions in the pool, 0..{n - 1}")
        return r

    def target_phi(self, target: PredictProba, rows: np.ndarray | list[int]) -> np.ndarray:
        r = self._rows(rows)
        return logit_confidence(target(self.X_pool[r]), self.y_pool[r])

    def scores(self, target: PredictProba, rows: np.ndarray | list[int], variant: str = "online") -> np.ndarray:
        """(len(rows),) membership scores of the target model on pool `rows`; higher means member."""
        r = self._rows(rows)
        return lira_scores(self.fit, r, self.target_phi(target, r), variant)

    def most_vulnerable(self, among: np.ndarray | list[int] | None = None) -> np.ndarray:
        """Pool positions (of `among`, or all), the widest IN/OUT separation first; ties by position."""
        r = np.arange(self.X_pool.shape[0]) if among is None else np.unique(self._rows(among))
        return r[np.argsort(-separation(self.fit)[r], kind="stable")]


# -- metrics -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiraMetrics:
    """Attack figures on members versus non-members, each with a stratified bootstrap 95% interval."""

    auc: float
    auc_interval: tuple[float, float]
    tpr_at_0_1pct_fpr: float
    tpr_at_0_1pct_fpr_interval: tuple[float, float]
    tpr_at_1pct_fpr: float
    tpr_at_1pct_fpr_interval: tuple[float, float]
    n_members: int
    n_nonmembers: int
    resamples: int


def _figures(m: np.ndarray, n: np.ndarray) -> tuple[float, float, float]:
    return roc_auc(m, n), tpr_at_fpr(m, n, 0.001), tpr_at_fpr(m, n, 0.01)


def attack_metrics(member_scores: np.ndarray | list[float], nonmember_scores: np.ndarray | list[float], *,
                   resamples: int = 1000, seed: int = 0) -> LiraMetrics:
    """AUC and TPR at 0.1% and 1% FPR (higher score = member), with percentile intervals from `resamples`
    bootstrap draws of members and of non-members separately, seeded so a rerun gives the same bounds."""
    m = np.asarray(member_scores, dtype=np.float64)
    n = np.asarray(nonmember_scores, dtype=np.float64)
    point = _figures(m, n)  # validates both arrays
    if resamples < 1:
        raise InvalidConfig(f"resamples is {resamples}; give at least 1 (1000 is usual)")
    rng = np.random.Generator(np.random.PCG64(derive_seed(seed, "lira.bootstrap")))
    draws = np.empty((resamples, 3))
    for i in range(resamples):
        draws[i] = _figures(m[rng.integers(0, m.size, m.size)], n[rng.integers(0, n.size, n.size)])
    low, high = np.quantile(draws, [0.025, 0.975], axis=0)
    iv = [(float(a), float(b)) for a, b in zip(low, high)]
    return LiraMetrics(point[0], iv[0], point[1], iv[1], point[2], iv[2], int(m.size), int(n.size), resamples)
