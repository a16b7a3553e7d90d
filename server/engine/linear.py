"""The linear model family (EngineConfig.model = "linear"): per shard, L2-regularised logistic regression at
the optimum of its perturbed objective, the state certified removal keeps beside it, and how it is served.

Rows. Guo et al.'s bound needs ||x|| <= 1. A row x becomes x~ = [x, 1] / r: a constant feature (the intercept)
and one global scale r, the largest ||[x, 1]|| over the training split, fixed at training and kept in every
shard's state. A global scale (not each row divided by its own norm) keeps the model linear in x, so the
daemon serves it as a one-layer MLP (model.model_shape with no hidden layer) through the same forward, digests
and predictor as the MLP: logits [0, w.x~] for two classes (softmax gives the logistic probabilities), W x~ for
one-vs-rest. r is a statistic of the training rows that a removal does not update (docs/unlearning.md 12).

Training (per shard, `train_shard`): certified.train_linear on the shard's rows still present, Newton's method
from W = 0 to a gradient norm of 1e-8, with the perturbation b drawn from derive_seed(seed, "noise", k). The
objective is strongly convex, so its optimum does not depend on an order of rows or slices: SISA, HS, OHS
and RETRAIN all retrain a shard this way, and two trainings on the same rows give the same bits.

The state (`LinearShard`, one float64 artifact per shard and version, `to_array`): the weights W (K, d), and
for fast removals the data part of the Hessian, H_data = X'^T diag(l''(X' w0)) X' per block, formed at some
weights w0 (`base`) over the shard's current rows X'. A removal downdates it by the removed rows' terms, so the
d x d solve never needs the other rows' Hessian: O(m d^2 + K d^3) instead of forming it again, O(n d^2 K).

The step and its bound (certified_step). With v = (H_data + lambda n' I)^-1 Delta, the gradient after the step is
the residual carried in, plus the solve's error e, plus int_0^1 (H(W + t v) - H(w0)) v dt = int X'^T E_t X' v dt,
E_t diagonal with |E_t,ii| <= gamma |x_i . (W + t v - w0)| <= gamma (|a_i| + |b_i|), a = X'(W - w0), b = X' v.
Hence ||int X'^T E_t X' v dt|| <= ||X'||_2 max_t ||E_t b||, and the step's bound is

    ||e|| + gamma ||X||_2 || (|a| + |b|) * |b| ||_2          (elementwise over the rows, one float32 pass)

per block, stacked as certified.py stacks them. It is at most the paper's gamma r ||X||_2 ||v|| ||X' v|| when
w0 = W (then a = 0 and ||b * b|| <= max|b| ||b||), and reads the rows' own margins instead of their worst case,
so far less of the budget goes per removal. w0 != W adds the drift's part, what a Hessian formed at W would
save; when that is more than REBUILD_SHARE of the budget, or the step would pass the budget, the Hessian is
formed afresh at W (a pass of O(n d^2)) and the step solved again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from forgetd.server.config import EngineConfig
from forgetd.server.engine.certified import (
    GAMMA,
    CertifiedConfig,
    block_hessian,
    class_signs,
    linear_loss,
    loss_gradient,
    train_linear,
)
from forgetd.server.engine.influence import InfluenceConfig, InfluenceResult, influence_removal
from forgetd.server.engine.training import derive_seed, deterministic
from forgetd.server.errors import StoreError

__all__ = ["INTERCEPT", "REBUILD_SHARE", "LinearShard", "ScaledRows", "CertifiedStep", "certified_config", "input_scale",
           "scaled_rows", "noise_seed", "train_shard", "served_params", "certified_step", "linear_influence",
           "rows_read"]

INTERCEPT = 1.0  # the constant feature appended to every row before scaling
# Form the Hessian afresh when the drift ||W - w0|| would add more than this share of the budget to a step's
# bound: each fresh Hessian costs one pass over the shard's rows (about 45 ms for Adult on one idle core), each
# stale step spends more of the budget. Measured on Adult by `forgetd bench unlearning` (README).
REBUILD_SHARE = 1e-2
_FORMAT = 1.0  # the first entry of every state array
_EPS32 = 2.0**-24  # float32's unit roundoff
_HEADER = 12  # header entries of the state array


@dataclass(frozen=True, eq=False)  # arrays have no single truth value; compare fields explicitly
class LinearShard:
    """One shard's linear model and what certified removal keeps about it (module docstring)."""

    weights: np.ndarray  # (K, d) float64, K = 1 (two classes) or C (one-vs-rest), d = F + 1
    base: np.ndarray  # (K, d) float64: w0, where `hessian` was formed
    hessian: np.ndarray  # (K, d, d) float64: X'^T diag(l''(X' w0_k)) X' over the current rows, no regulariser
    rows: int  # n': the rows the model stands for now
    scale: float  # r: x~ = [x, 1] / r
    data_norm: float  # ||X||_2 of the rows at the last training: bounds ||X'||_2 of every later subset
    row_norm: float  # max ||x~|| over the rows at the last training, <= 1
    train_grad_norm: float  # ||grad L_b|| where the last training stopped
    bound: float  # beta: the accumulated bound on the gradient residual since the last training
    removed: int  # rows removed by certified steps since the last training
    void: bool  # an influence step moved W without accounting for it: the next certified removal retrains

    @property
    def blocks(self) -> int:
        return int(self.weights.shape[0])

    def to_array(self) -> np.ndarray:
        """The state as one float64 vector (the `shard<k>.linear` artifact): a header, then W, w0, H_data."""
        K, d = self.weights.shape
        header = np.zeros(_HEADER)
        header[:11] = (_FORMAT, K, d, self.rows, self.scale, self.data_norm, self.row_norm, self.train_grad_norm,
                       self.bound, self.removed, float(self.void))
        return np.concatenate([header, self.weights.ravel(), self.base.ravel(), self.hessian.ravel()])

    @classmethod
    def from_array(cls, a: np.ndarray, where: str) -> LinearShard:
        a = np.asarray(a, dtype=np.float64)
        if a.ndim != 1 or len(a) < _HEADER or a[0] != _FORMAT:
            raise StoreError(f"{where}: not a linear model state; the store is damaged")
        K, d = int(a[1]), int(a[2])
        if len(a) != _HEADER + 2 * K * d + K * d * d:
            raise StoreError(f"{where}: a linear state of {len(a)} values does not fit K={K}, d={d}; the store is "
                             "damaged")
        parts = np.split(a[_HEADER:], np.cumsum([K * d, K * d]))
        return cls(parts[0].reshape(K, d), parts[1].reshape(K, d), parts[2].reshape(K, d, d), int(a[3]), float(a[4]),
                   float(a[5]), float(a[6]), float(a[7]), float(a[8]), int(a[9]), bool(a[10]))


@dataclass(frozen=True, eq=False)
class ScaledRows:
    """A shard's rows as the model sees them (scaled_rows), every member in member order, kept in memory for
    certified removals: float64 for a Hessian formed afresh, and float32 for the pass over the rows' margins
    each removal makes (half the memory to read; its rounding is added to the bound, see _step). A forgotten
    row is zeroed in both, as in the store's own copy."""

    x64: torch.Tensor  # (n, d)
    x32: torch.Tensor  # (n, d)

    @classmethod
    def of(cls, X: torch.Tensor, scale: float) -> ScaledRows:
        x64 = scaled_rows(X, scale)
        return cls(x64, x64.to(torch.float32))

    def forget(self, rows: torch.Tensor) -> None:
        """Zero the rows `rows` (a bool mask) marks."""
        self.x64[rows] = 0
        self.x32[rows] = 0


Remaining = tuple[ScaledRows, torch.Tensor]  # the shard's rows, and which remain (n,) bool


@dataclass(frozen=True)
class CertifiedStep:
    """A certified removal within the budget: the new state and this step's share of the bound."""

    state: LinearShard
    step_bound: float
    rebuilt: bool  # the Hessian was formed afresh at W for this step


def certified_config(cfg: EngineConfig) -> CertifiedConfig:
    return CertifiedConfig(lam=cfg.l2, sigma=cfg.sigma, epsilon=cfg.epsilon, delta=cfg.delta)


def input_scale(X: np.ndarray) -> float:
    """r: the largest ||[x, INTERCEPT]|| over rows X (N, F), so every scaled training row has norm <= 1."""
    norms = np.sqrt(np.einsum("ij,ij->i", X.astype(np.float64), X.astype(np.float64)) + INTERCEPT**2)
    return float(norms.max()) if len(norms) else 1.0


def scaled_rows(X: torch.Tensor, scale: float) -> torch.Tensor:
    """x~ = [x, 1] / r for rows X (n, F), float64 on the CPU: (n, F + 1)."""
    X64 = X.detach().to("cpu", torch.float64)
    ones = torch.full((X64.shape[0], 1), INTERCEPT, dtype=torch.float64)
    return torch.cat([X64, ones], dim=1) / scale


def noise_seed(seed: int, shard: int) -> int:
    """The seed of shard k's perturbation b, derived like every other seed (training.derive_seed)."""
    return derive_seed(seed, "noise", shard)


def rows_read(rows: int, passes: int) -> int:
    return rows * passes


def train_shard(X: torch.Tensor, y: torch.Tensor, num_classes: int, scale: float, cfg: EngineConfig,
                shard: int) -> tuple[LinearShard, int]:
    """Shard `shard`'s model on rows X (n, F), y (n,) (those still present) from W = 0, and the rows read
    (n per Newton step, plus the pass that forms the Hessian)."""
    Xs = scaled_rows(X, scale)
    yc = y.detach().cpu()
    if Xs.shape[0] == 0:  # every row forgotten: no objective left to minimise; W = 0 predicts uniformly
        K, d = (1 if num_classes == 2 else num_classes), Xs.shape[1]
        zeros = np.zeros((K, d))
        return LinearShard(zeros, zeros.copy(), np.zeros((K, d, d)), 0, scale, 0.0, 0.0, 0.0, 0.0, 0, True), 0
    with deterministic():
        model = train_linear(Xs, yc, num_classes, noise_seed(cfg.seed, shard), certified_config(cfg))
        W = model.weights
        hessian = _hessians(W, Xs, yc, num_classes)
    state = LinearShard(W.numpy(), W.numpy().copy(), hessian, int(Xs.shape[0]), scale,
                        model.data_norm, model.row_norm, model.train_grad_norm, model.train_grad_norm, 0, False)
    return state, rows_read(int(Xs.shape[0]), model.newton_steps + 1)


def served_params(state: LinearShard, num_features: int, num_classes: int) -> np.ndarray:
    """The flat float32 parameters (P,) of the one-layer MLP (F -> C) that computes the model's logits on raw
    rows: weight (C, F) row-major, then bias (C,). Two classes: logits [0, w . x~]."""
    W = state.weights / state.scale  # (K, d): w . x~ = (w[:F] / r) . x + w[F] * INTERCEPT / r
    weight, bias = W[:, :num_features], W[:, num_features] * INTERCEPT
    if num_classes == 2 and state.blocks == 1:
        weight = np.vstack([np.zeros((1, num_features)), weight])
        bias = np.concatenate([[0.0], bias])
    return np.concatenate([weight.ravel(), bias]).astype(np.float32)


def certified_step(state: LinearShard, removed: tuple[torch.Tensor, torch.Tensor], num_classes: int,
                   cfg: EngineConfig, remaining: Callable[[], Remaining]) -> CertifiedStep | None:
    """The certified Newton step removing rows `removed` (X (m, F), y (m,)) from `state`, or None when even
    with a fresh Hessian it would take the accumulated bound past the budget (retrain the shard then).
    `remaining()` gives the shard's rows as scaled_rows makes them and which of them remain (a bool mask)."""
    config = certified_config(cfg)
    Xf, yf = scaled_rows(removed[0], state.scale), removed[1].detach().cpu()
    Xs, keep = remaining()
    with deterministic():
        down = _downdated(state, Xf, yf, num_classes)
        V, step_bound, drift = _step(down, Xf, yf, num_classes, cfg.l2, Xs, keep)
        rebuilt = False
        if drift > 0 and (drift > REBUILD_SHARE * config.budget or state.bound + step_bound > config.budget):
            down = replace(down, base=state.weights.copy(), hessian=_masked_hessians(state.weights, Xs.x64, keep))
            V, step_bound, _ = _step(down, Xf, yf, num_classes, cfg.l2, Xs, keep)
            rebuilt = True
    bound = state.bound + step_bound
    if bound > config.budget:
        return None
    new = replace(down, weights=state.weights + V, bound=bound, removed=state.removed + int(Xf.shape[0]))
    return CertifiedStep(new, step_bound, rebuilt)


def linear_influence(state: LinearShard, retained: tuple[torch.Tensor, torch.Tensor],
                     forget: tuple[torch.Tensor, torch.Tensor], num_classes: int, cfg: EngineConfig,
                     config: InfluenceConfig) -> tuple[LinearShard, InfluenceResult]:
    """The influence step on the linear objective (influence.py with l2 = lambda; the perturbation b drops out
    of the step, as it does from the certified one). The certificate no longer describes W: the state is void."""
    Xr, Xf = scaled_rows(retained[0], state.scale), scaled_rows(forget[0], state.scale)
    yr, yf = retained[1].detach().cpu(), forget[1].detach().cpu()
    result = influence_removal(linear_loss(num_classes), torch.from_numpy(state.weights).flatten(), (Xr, yr),
                               (Xf, yf), replace(config, l2=cfg.l2))
    with deterministic():
        down = _downdated(state, Xf, yf, num_classes)
    weights = result.params.detach().cpu().numpy().reshape(state.weights.shape)
    return replace(down, weights=weights, void=True), result


# -- the arithmetic, float64 on the CPU inside deterministic() -----------------------------------------------------


def _hessians(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor, num_classes: int) -> np.ndarray:
    signs = class_signs(y.to(torch.int64), num_classes)
    return np.stack([block_hessian(W[k], X, signs[:, k], 0.0).numpy() for k in range(W.shape[0])])


def _masked_hessians(weights: np.ndarray, Xs: torch.Tensor, keep: torch.Tensor) -> np.ndarray:
    """H_data at `weights` over the rows `keep` marks, (K, d, d): each row's curvature times 0 or 1, so no copy
    of the remaining rows is made (l''(z) = sigmoid(z) sigmoid(-z) does not depend on the label)."""
    mask = keep.to(torch.float64)
    out = []
    for w in torch.from_numpy(weights):
        z = Xs @ w  # (n,)
        curv = torch.sigmoid(z) * torch.sigmoid(-z) * mask
        out.append(((Xs * curv.unsqueeze(1)).T @ Xs).numpy())
    return np.stack(out)


def _downdated(state: LinearShard, Xf: torch.Tensor, yf: torch.Tensor, num_classes: int) -> LinearShard:
    """The state without rows Xf's terms in H_data (at w0), and with n' = n - m."""
    base = torch.from_numpy(state.base)
    H = torch.from_numpy(state.hessian) - torch.from_numpy(_hessians(base, Xf, yf, num_classes))
    return replace(state, hessian=H.numpy(), rows=state.rows - int(Xf.shape[0]))


def _step(state: LinearShard, Xf: torch.Tensor, yf: torch.Tensor, num_classes: int, lam: float, Xs: ScaledRows,
          keep: torch.Tensor) -> tuple[np.ndarray, float, float]:
    """(V (K, d), the step's bound, the drift's part of it) on the downdated `state`: V = (H_data + lambda n' I)^-1
    Delta per block, and the bound of the module docstring from a = X'(W - w0) and b = X' v, one pass over the
    rows in float32. Each |a_i| (|b_i|) is then enlarged by what float32 can have lost, (2 eps + gamma_d) (1 +
    eps)^2 ||x_i|| ||W - w0|| (||v||), with ||x_i|| <= 1 (rounding of the row and of the vector, and the d-term
    dot product: Higham's gamma_d = d eps / (1 - d eps)), so the bound stays an upper bound. The drift's part is
    what a Hessian formed at W would save (0 when w0 = W)."""
    W = torch.from_numpy(state.weights)
    Delta = Xf.shape[0] * lam * W + loss_gradient(W, Xf, class_signs(yf.to(torch.int64), num_classes))  # (K, d)
    eye = torch.eye(W.shape[1], dtype=torch.float64)
    K = W.shape[0]
    V = torch.empty_like(W)
    err = torch.empty(K, dtype=torch.float64)
    for k in range(K):
        H = torch.from_numpy(state.hessian[k]) + lam * state.rows * eye
        V[k] = torch.cholesky_solve(Delta[k].unsqueeze(1), torch.linalg.cholesky(H)).squeeze(1)
        err[k] = torch.linalg.vector_norm(H @ V[k] - Delta[k])
    UV = torch.cat([W - torch.from_numpy(state.base), V])  # (2K, d)
    d = UV.shape[1]
    slack = (2 * _EPS32 + d * _EPS32 / (1 - d * _EPS32)) * (1 + _EPS32) ** 2 * torch.linalg.vector_norm(UV, dim=1)
    AB = (Xs.x32 @ UV.T.to(torch.float32)).to(torch.float64).abs() + slack  # (n, 2K), each an upper bound
    AB *= keep.to(torch.float64).unsqueeze(1)
    a, b = AB[:, :K], AB[:, K:]
    scale = GAMMA * state.data_norm
    stale = scale * torch.linalg.vector_norm((a + b) * b, dim=0)  # (K,): |E_ii| <= gamma (|a_i| + |b_i|)
    fresh = scale * torch.linalg.vector_norm(b * b, dim=0)
    bound = float(torch.linalg.vector_norm(err + stale))
    return V.numpy(), bound, float(torch.linalg.vector_norm(stale - fresh))
