"""Certified removal (Guo, Goldstein, Hannun and van der Maaten, ICML 2020) for a linear model family.

Written from the paper alone. The model is L2-regularised logistic regression on rows with ||x|| <= 1, no
intercept (append a constant feature before normalising if one is wanted). With two classes it is one
weight vector (class 1 positive); with C > 2 it is one-vs-rest, C binary models whose weights are stacked into
one parameter W (K, d), K = 1 or C. Training minimises the perturbed objective

    L_b(W; D) = sum_i sum_k l(y_ik w_k^T x_i) + (lambda n / 2) ||W||^2 + <b, W>,   l(z) = log(1 + e^-z),

with y_ik = +1 if row i is of class k (or of class 1, binary) and -1 otherwise, n = |D|, and b ~ N(0, sigma^2 I)
drawn once from a torch.Generator seeded by the caller. One-vs-rest sums K binary objectives that share no
parameter, so everything below holds block by block and the blocks share one noise vector and one budget.

Removal (the paper's Newton update). Removing a set F of m rows leaves D' with n' = n - m rows, and the
regulariser of L(.; D') is (lambda n' / 2)||W||^2, so at the current W

    grad L_b(W; D') = grad L_b(W; D) - Delta,   Delta = m lambda W + sum_{x in F} grad l(W; x),

and with grad L_b(W; D) = 0 the Newton step towards the minimiser of L_b(.; D') is W- = W + H^-1 Delta, H the
Hessian of L(.; D') at W: X'^T diag(l''(z_i)) X' + lambda n' I per block, X' the remaining rows.

The bound (the paper's data-dependent bound on the gradient residual, derived here in our words). Let
v = H^-1 Delta and W_t = W + t v. Integrating the Hessian along the segment,
grad L_b(W-; D') = grad L_b(W; D') + int_0^1 H(W_t) v dt = int_0^1 (H(W_t) - H) v dt, since H v = Delta and the
regulariser's Hessian is constant. H(W_t) - H = X'^T E_t X' with E_t diagonal, and as l'' is gamma-Lipschitz
(gamma = 1/4 for the logistic loss, the paper's constant; the tightest is 1/(6 sqrt 3)), each entry obeys
|E_t,ii| <= gamma t |v^T x_i| <= gamma ||v|| r, r = max_i ||x_i|| <= 1. Hence

    ||grad L_b(W-; D')|| <= ||X'||_2 * max_t ||E_t X' v|| <= gamma r ||X'||_2 ||v|| ||X' v||,

the paper's bound gamma ||X||_2 ||H^-1 Delta||_2 ||X H^-1 Delta||_2 (the integral would allow half of it; we keep
the paper's form). Two things the paper's statement assumes and a computer does not give are added to it: the
linear solve's own residual ||H v - Delta||, and training's final gradient norm ||grad L_b(W*; D)||, which is
not exactly 0. ||X'||_2 <= ||X||_2 for any subset of the training rows, so the training data's spectral norm
serves every later removal. Across blocks the residual is a stacked vector, so the step's bound is the root
of the sum of the blocks' squared bounds.

Sequential removals. Each step starts from a W whose residual is not zero, and that residual carries into the
next gradient unchanged, so the residual after j removals is at most beta = ||training residual|| + the sum of
the step bounds: the accumulated bound, per model (per shard).

The budget (the paper's theorem for Gaussian loss perturbation): W- is the exact minimiser of L_{b'}(.; D') for
b' = b - (its residual), and with b ~ N(0, sigma^2 I) the removal is (epsilon, delta)-certified while
beta <= sigma epsilon / c, c = sqrt(2 log(1.5 / delta)), i.e. delta = 1.5 exp(-c^2 / 2). A removal that would
take beta past that is refused (RetrainRequired): the caller retrains from scratch without every forgotten row, which
is exact, and the new model's beta starts again from its training residual.

Cost of a removal: one Hessian of the remaining rows, O(n' d^2 K), a d x d Cholesky per block, O(K d^3), and
O(n' d K) for ||X' v||. The Hessian dominates. It depends on the current W, so every removal forms it afresh
(a caller could form it ahead of the next request, off that request's path). Everything is float64 on the
CPU (a removal at n' = 30,000, d = 108 is tens of milliseconds there), on one thread inside training.deterministic().
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from ..errors import EngineError, InvalidConfig
from .influence import LossFn
from .training import deterministic

__all__ = [
    "GAMMA", "CertifiedConfig", "LinearModel", "CertifiedRemoval", "RetrainRequired", "FeaturesNotNormalized",
    "NotConverged", "l2_normalize", "perturbation", "train_linear", "certify_removal", "gradient_residual",
    "linear_loss", "predict", "class_signs", "loss_gradient", "block_hessian",
]

GAMMA = 0.25  # Lipschitz constant of l'' for the logistic loss, as the paper takes it
_ROW_SLACK = 1e-6  # float32 rows normalised to 1 may read 1 + 1e-7; the bound uses the true max row norm


class FeaturesNotNormalized(EngineError):
    """A row has L2 norm above 1: the certified bound needs ||x|| <= 1."""


class NotConverged(EngineError):
    """Training stopped at its step limit before the gradient norm reached the tolerance."""


@dataclass(frozen=True)
class CertifiedConfig:
    lam: float = 1e-3  # lambda: the L2 term is (lambda n / 2)||W||^2, n the rows the model stands for
    sigma: float = 1.0  # standard deviation of each coordinate of b; 0 = no perturbation, so nothing is certified
    epsilon: float = 1.0  # the certificate's epsilon
    delta: float = 1e-4  # the certificate's delta
    grad_tol: float = 1e-8  # training stops once ||grad L_b(W; D)|| <= grad_tol (absolute: L_b is a sum over rows)
    max_newton_steps: int = 100  # per block; NotConverged past it

    def __post_init__(self) -> None:
        for name in ("lam", "sigma", "epsilon", "delta", "grad_tol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidConfig(f"{name} is {value!r}; give a finite positive number")
            object.__setattr__(self, name, float(value))
            if value < 0 or (value == 0 and name != "sigma"):
                least = "0 (no certificate) or more" if name == "sigma" else "a positive number"
                raise InvalidConfig(f"{name} is {value!r}; give {least}")
        if self.delta >= 1:
            raise InvalidConfig(f"delta is {self.delta}; give a probability below 1, e.g. 1e-4")
        steps = self.max_newton_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise InvalidConfig(f"max_newton_steps is {steps!r}; give a whole number of at least 1 (Newton needs ~10)")
        if self.sigma > 0 and self.grad_tol >= self.budget:
            raise InvalidConfig(
                f"grad_tol {self.grad_tol:g} is not below the removal budget sigma*epsilon/c = {self.budget:.3g}; "
                "lower grad_tol (1e-8) or raise sigma or epsilon, or no removal could ever be certified"
            )

    @property
    def c(self) -> float:
        """c = sqrt(2 log(1.5 / delta)): delta = 1.5 exp(-c^2 / 2) for Gaussian noise."""
        return math.sqrt(2.0 * math.log(1.5 / self.delta))

    @property
    def budget(self) -> float:
        """The largest accumulated gradient-residual bound that is still (epsilon, delta)-certified."""
        return self.sigma * self.epsilon / self.c


@dataclass(frozen=True, eq=False)  # tensors have no single truth value; compare fields explicitly
class LinearModel:
    weights: torch.Tensor  # (K, d) float64, K = 1 (binary) or num_classes (one-vs-rest)
    noise: torch.Tensor  # (K, d) float64, b drawn from noise_seed; part of the objective, never of the prediction
    noise_seed: int
    num_classes: int
    config: CertifiedConfig
    rows: int  # n: the rows the model stands for now (trained on, less those removed since)
    data_norm: float  # ||X||_2 of the training rows: bounds ||X'||_2 of every remaining subset
    row_norm: float  # max_i ||x_i|| of the training rows, <= 1 (+ float32 rounding)
    train_grad_norm: float  # ||grad L_b(W*; D)|| where training stopped
    bound: float  # beta: accumulated bound on the gradient residual norm, from train_grad_norm up
    removed: int  # rows removed by Newton steps since training
    newton_steps: int = 0  # Newton iterations training took, summed over the blocks (each reads every row)

    @property
    def budget_left(self) -> float:
        return self.config.budget - self.bound


@dataclass(frozen=True, eq=False)
class CertifiedRemoval:
    """Apply `model`: the Newton step is within the (epsilon, delta) budget."""

    model: LinearModel  # the new weights, rows, accumulated bound
    step_bound: float  # this removal's share of the bound
    bound: float  # beta after the removal (model.bound)
    budget_left: float  # sigma epsilon / c - beta, >= 0


@dataclass(frozen=True)
class RetrainRequired:
    """The Newton step would pass the budget: retrain without every forgotten row (train_linear)."""

    bound: float  # beta before this removal
    step_bound: float  # what this removal would add
    budget: float  # sigma epsilon / c


def l2_normalize(X: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (zero rows stay zero), float64."""
    X = X.to(torch.float64)
    return X / torch.linalg.vector_norm(X, dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)


def perturbation(seed: int, shape: tuple[int, int], sigma: float) -> torch.Tensor:
    """b ~ N(0, sigma^2 I) of the given shape from a private CPU generator, float64: the same on every run."""
    if sigma == 0:
        return torch.zeros(shape, dtype=torch.float64)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64) * sigma


def train_linear(X: torch.Tensor, y: torch.Tensor, num_classes: int, seed: int,
                 config: CertifiedConfig = CertifiedConfig()) -> LinearModel:
    """Minimise L_b(W; D) by Newton's method with backtracking, block by block, to config.grad_tol."""
    X64, signs = _prepare(X, y, num_classes)
    row_norm = float(torch.linalg.vector_norm(X64, dim=1).max())
    if row_norm > 1 + _ROW_SLACK:
        raise FeaturesNotNormalized(f"a row has L2 norm {row_norm:.6g} > 1; normalise the features (l2_normalize)")
    n, d = X64.shape
    noise = perturbation(seed, (signs.shape[1], d), config.sigma)
    with deterministic():
        K = signs.shape[1]
        fits = [_fit_block(X64, signs[:, k], noise[k], config, K) for k in range(K)]
        W = torch.stack([w for w, _ in fits])
        grad_norm = _grad_norm(W, X64, signs, noise, config.lam)
        data_norm = math.sqrt(float(torch.linalg.eigvalsh(X64.T @ X64)[-1].clamp_min(0)))
    return LinearModel(
        weights=W, noise=noise, noise_seed=seed, num_classes=num_classes, config=config, rows=n,
        data_norm=data_norm, row_norm=row_norm, train_grad_norm=grad_norm, bound=grad_norm, removed=0,
        newton_steps=sum(steps for _, steps in fits),
    )


def certify_removal(model: LinearModel, remaining: tuple[torch.Tensor, torch.Tensor],
                    removed: tuple[torch.Tensor, torch.Tensor]) -> CertifiedRemoval | RetrainRequired:
    """The Newton step removing `removed` from `model`, if the accumulated bound stays within the budget.

    `remaining` must be exactly the model's other rows (model.rows = remaining + removed)."""
    X_r, s_r = _prepare(*remaining, model.num_classes)
    X_f, s_f = _prepare(*removed, model.num_classes)
    n_r, m = X_r.shape[0], X_f.shape[0]
    if m == 0 or n_r == 0 or n_r + m != model.rows:
        raise ValueError(f"the model stands for {model.rows} rows; got {n_r} remaining + {m} removed: pass every "
                         "other row as remaining and at least one row on each side")
    lam, W = model.config.lam, model.weights
    with deterministic():
        Delta = m * lam * W + _loss_grad(W, X_f, s_f)  # (K, d)
        V, solve_err = _newton_direction(W, X_r, s_r, lam * n_r, Delta)  # (K, d), (K,)
        XV = X_r @ V.T  # (n', K)
        per_block = (GAMMA * model.row_norm * model.data_norm * torch.linalg.vector_norm(V, dim=1)
                     * torch.linalg.vector_norm(XV, dim=0) + solve_err)
        step_bound = float(torch.linalg.vector_norm(per_block))
    bound = model.bound + step_bound
    if bound > model.config.budget:
        return RetrainRequired(bound=model.bound, step_bound=step_bound, budget=model.config.budget)
    new = replace(model, weights=W + V, rows=n_r, bound=bound, removed=model.removed + m)
    return CertifiedRemoval(model=new, step_bound=step_bound, bound=bound, budget_left=new.budget_left)


def gradient_residual(model: LinearModel, X: torch.Tensor, y: torch.Tensor) -> float:
    """||grad L_b(W; D)|| for the model's weights and noise on the rows D = (X, y): 0 at the exact optimum.

    After removals this is the actual gradient residual that model.bound bounds. It is not part of the
    mechanism (a pass over the rows, about a quarter of a removal's cost), so certify_removal leaves it out."""
    X64, signs = _prepare(X, y, model.num_classes)
    with deterministic():
        return _grad_norm(model.weights, X64, signs, model.noise, model.config.lam)


def linear_loss(num_classes: int) -> LossFn:
    """The mean over rows of the family's data loss, sum_k l(y_k w_k^T x), for a flat theta = W.flatten():
    the loss influence.influence_removal takes (with l2 = lambda it reproduces the Newton step above)."""
    def loss(theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        signs = _signs(y, num_classes).to(theta.dtype)
        margins = signs * (X @ theta.view(signs.shape[1], -1).T)  # (B, K)
        return F.softplus(-margins).sum(dim=1).mean()
    return loss


@torch.no_grad()
def predict(model: LinearModel, X: torch.Tensor) -> torch.Tensor:
    """Class labels (N,) int64: the sign of w^T x (binary) or the largest one-vs-rest score."""
    scores = X.to("cpu", torch.float64) @ model.weights.T  # (N, K)
    return (scores[:, 0] > 0).long() if model.weights.shape[0] == 1 else scores.argmax(dim=1)


# -- the objective's pieces, all float64; signs (n, K) are +-1 -----------------------------------------------------
# class_signs, loss_gradient and block_hessian are public for the engine's stateful removal (engine/linear.py).


def _signs(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    if num_classes == 2:
        return (2 * (y == 1).to(torch.float64) - 1).unsqueeze(1)  # (n, 1)
    return 2 * F.one_hot(y, num_classes).to(torch.float64) - 1  # (n, C)


def _prepare(X: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise ValueError(f"rows are X {tuple(X.shape)}, y {tuple(y.shape)}; pass X (rows, d) and y (rows,)")
    if num_classes < 2:
        raise ValueError(f"num_classes is {num_classes}; the family needs at least 2")
    y = y.to(torch.int64)
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"labels lie in [{int(y.min())}, {int(y.max())}]; they must be in [0, {num_classes})")
    return X.detach().to("cpu", torch.float64), _signs(y.cpu(), num_classes)


def _loss_grad(W: torch.Tensor, X: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """sum_i grad of sum_k l(y_ik w_k^T x_i), (K, d)."""
    margins = signs * (X @ W.T)  # (n, K)
    dz = -signs * torch.sigmoid(-margins)  # dl/dz, (n, K)
    return dz.T @ X


def _grad_norm(W: torch.Tensor, X: torch.Tensor, signs: torch.Tensor, noise: torch.Tensor, lam: float) -> float:
    G = _loss_grad(W, X, signs) + lam * X.shape[0] * W + noise  # (K, d)
    return float(torch.linalg.vector_norm(G))


def _hessian(w: torch.Tensor, X: torch.Tensor, signs_k: torch.Tensor, reg: float) -> torch.Tensor:
    """X^T diag(l''(z)) X + reg I for one block, (d, d); l''(z) = sigmoid(z) sigmoid(-z) whatever the label."""
    z = X @ w  # (n,)
    curv = torch.sigmoid(z) * torch.sigmoid(-z)  # (n,)
    H = (X * curv.unsqueeze(1)).T @ X
    return H + reg * torch.eye(X.shape[1], dtype=X.dtype)


def _newton_direction(W: torch.Tensor, X: torch.Tensor, signs: torch.Tensor, reg: float,
                      rhs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per block v_k = H_k^-1 rhs_k by Cholesky, and the solve's residual norms ||H_k v_k - rhs_k||."""
    V = torch.empty_like(rhs)
    err = torch.empty(rhs.shape[0], dtype=rhs.dtype)
    for k in range(rhs.shape[0]):
        H = _hessian(W[k], X, signs[:, k], reg)
        V[k] = torch.cholesky_solve(rhs[k].unsqueeze(1), torch.linalg.cholesky(H)).squeeze(1)
        err[k] = torch.linalg.vector_norm(H @ V[k] - rhs[k])
    return V, err


def _block_objective(w: torch.Tensor, X: torch.Tensor, s: torch.Tensor, b: torch.Tensor, reg: float) -> float:
    return float(F.softplus(-s * (X @ w)).sum() + 0.5 * reg * (w @ w) + b @ w)


def _fit_block(X: torch.Tensor, s: torch.Tensor, b: torch.Tensor, config: CertifiedConfig,
               blocks: int) -> tuple[torch.Tensor, int]:
    """One binary block's minimiser from w = 0, to a gradient norm of grad_tol / sqrt(K) (the stacked gradient
    of the K blocks then ends within grad_tol), and the Newton steps it took."""
    reg = config.lam * X.shape[0]
    w = torch.zeros(X.shape[1], dtype=torch.float64)
    tol = config.grad_tol / math.sqrt(blocks)
    for step in range(config.max_newton_steps + 1):
        g = _loss_grad(w.unsqueeze(0), X, s.unsqueeze(1))[0] + reg * w + b
        if float(torch.linalg.vector_norm(g)) <= tol:
            return w, step
        if step == config.max_newton_steps:
            break
        H = _hessian(w, X, s, reg)
        p = -torch.cholesky_solve(g.unsqueeze(1), torch.linalg.cholesky(H)).squeeze(1)
        w = _backtrack(w, p, g, X, s, b, reg)
    raise NotConverged(
        f"Newton stopped after {config.max_newton_steps} steps with gradient norm "
        f"{float(torch.linalg.vector_norm(g)):.3g} > {tol:.3g}; raise max_newton_steps or grad_tol"
    )


def _backtrack(w: torch.Tensor, p: torch.Tensor, g: torch.Tensor, X: torch.Tensor, s: torch.Tensor,
               b: torch.Tensor, reg: float) -> torch.Tensor:
    """Armijo backtracking along p; near the optimum the decrease drowns in rounding, so the full step is kept."""
    f0 = _block_objective(w, X, s, b, reg)
    slope = float(g @ p)  # < 0: H is positive definite
    slack = 64 * torch.finfo(torch.float64).eps * (abs(f0) + X.shape[0])
    t = 1.0
    for _ in range(40):
        if _block_objective(w + t * p, X, s, b, reg) <= f0 + 1e-4 * t * slope + slack:
            return w + t * p
        t *= 0.5
    return w + t * p


class_signs = _signs
loss_gradient = _loss_grad
block_hessian = _hessian
