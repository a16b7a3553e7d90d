"""Influence-function removal (Koh and Liang, ICML 2017): forget a set F with one damped Newton step.

Koh and Liang up-weight a training row z by eps and show that the optimum moves by
d theta / d eps = -H^-1 grad l(z; theta); removing z is eps = -1/n. For a forget set F of m rows out of n this
module takes that step as a Newton step on the objective that retraining would minimise, the *retain
objective* over the n_R = n - m remaining rows:

    R(theta) = (1/n_R) sum_{x in R} l(x; theta) + (l2/2) ||theta||^2
    theta'   = theta + (1/n_R) (H_R + damping I)^-1 ( sum_{x in F} grad l(x; theta) + m l2 theta )

H_R is the Hessian of R, i.e. of the training objective on the remaining rows. When theta is a stationary
point of the full objective, -(1/n_R)(sum_F grad l + m l2 theta) is exactly grad R(theta), so without damping
theta' is one Newton step towards the retrained optimum and lands on it up to second-order terms. The
influence formula's 1/n becomes 1/n_R because H_R averages over the n_R remaining rows rather than all n
(with l2 = 0, (1/n_R) H_R^-1 = (1/n) H_n^-1, H_n the remaining rows' summed Hessians divided by n); the
m l2 theta term is the regulariser no longer balanced by F's gradients (Guo et al.'s lambda w, as a mean).

The MLP is not convex, so H_R can be indefinite: `damping` adds a multiple of the identity, and conjugate
gradients refuses (NegativeCurvature) rather than return a step along a direction of negative curvature.

H_R is never formed. CG only needs products H_R v, each the derivative of <grad l, v> (double backward
through autograd) summed over fixed-size chunks of the remaining rows, so memory is bounded by the chunk,
not by n. Everything runs in float64 (so CG's residual can fall far below float32's rounding) on the device
the inputs live on, inside training.deterministic(): one thread, deterministic kernels, chunks always in row
order, so the same inputs give bitwise the same step on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import EngineError, InvalidConfig
from .model import MLPShape, forward
from .training import deterministic

__all__ = ["LossFn", "InfluenceConfig", "InfluenceResult", "NegativeCurvature", "mlp_loss", "influence_removal"]

# loss_fn(theta (P,), X (B, F), y (B,)) -> the mean loss over the batch, a 0-dim tensor, differentiable twice.
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class NegativeCurvature(EngineError):
    """Conjugate gradients met a direction where H + damping I is not positive: the damping is too small."""

    def __init__(self, curvature: float, damping: float) -> None:
        self.curvature = curvature
        self.damping = damping
        super().__init__(
            f"the damped Hessian has non-positive curvature {curvature:.3g} along a CG direction with damping "
            f"{damping:g}; raise InfluenceConfig.damping (try 10x) or remove these rows by retraining"
        )


@dataclass(frozen=True)
class InfluenceConfig:
    damping: float = 0.01  # lambda in H_R + lambda I; 0 is fine only for a strongly convex objective
    cg_max_iterations: int = 100  # CG stops here even if the tolerance is not met (converged = False)
    cg_tolerance: float = 1e-6  # CG stops when ||b - A x|| <= tolerance * ||b||
    chunk_rows: int = 1024  # rows per Hessian-vector product; bounds memory, not the result (up to rounding)
    l2: float = 0.0  # the objective's L2 term: mean loss + (l2/2)||theta||^2; the engine's MLP trains without one

    def __post_init__(self) -> None:
        for name in ("damping", "cg_tolerance", "l2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidConfig(f"{name} is {value!r}; give a finite number")
            object.__setattr__(self, name, float(value))
        if self.damping < 0:
            raise InvalidConfig(f"damping is {self.damping}; give 0 or more (0.01 suits the MLP)")
        if self.l2 < 0:
            raise InvalidConfig(f"l2 is {self.l2}; give 0 or more, the training objective's L2 coefficient")
        if not 0 < self.cg_tolerance < 1:
            raise InvalidConfig(f"cg_tolerance is {self.cg_tolerance}; give a relative residual in (0, 1), e.g. 1e-6")
        for name in ("cg_max_iterations", "chunk_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidConfig(f"{name} is {value!r}; give a whole number of at least 1")


@dataclass(frozen=True, eq=False)  # tensors have no single truth value; compare fields explicitly
class InfluenceResult:
    params: torch.Tensor  # (P,) theta' in the input's dtype and device
    cg_iterations: int  # Hessian-vector products CG spent on the solve (the final residual check not counted)
    relative_residual: float  # ||b - (H_R + damping I) x|| / ||b||, recomputed from x, not CG's running estimate
    converged: bool  # relative_residual <= cg_tolerance
    retained_grad_norm_before: float  # ||grad R(theta)||: what the step set out to remove
    retained_grad_norm: float  # ||grad R(theta')||: stationarity of theta' for the retain objective


def mlp_loss(shape: MLPShape) -> LossFn:
    """The engine's training loss for `shape`: the mean cross-entropy of model.forward's logits."""

    def loss(theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(forward(shape, theta, X), y)  # (B, F) -> (B, C) -> ()

    return loss


def influence_removal(
    loss_fn: LossFn,
    params: torch.Tensor,  # (P,) theta, trained on the retained rows and the forget rows together
    retained: tuple[torch.Tensor, torch.Tensor],  # X (n_R, F), y (n_R,)
    forget: tuple[torch.Tensor, torch.Tensor],  # X (m, F), y (m,)
    config: InfluenceConfig = InfluenceConfig(),
) -> InfluenceResult:
    """theta' = theta + (1/n_R)(H_R + damping I)^-1 (sum_F grad l + m l2 theta), solved by CG on chunked HVPs."""
    _check_inputs(params, retained, forget)
    with deterministic():
        theta = params.detach().to(torch.float64)
        rows = _Rows(loss_fn, retained, config.chunk_rows)
        n_r, m = rows.count, forget[0].shape[0]
        g_forget = _Rows(loss_fn, forget, config.chunk_rows).grad_sum(theta)
        b = (g_forget + m * config.l2 * theta) / n_r  # (P,)

        def apply(v: torch.Tensor) -> torch.Tensor:  # (H_R + damping I) v
            return rows.hvp_sum(theta, v) / n_r + (config.l2 + config.damping) * v

        b_norm = float(torch.linalg.vector_norm(b))
        if b_norm == 0.0:
            step, iterations, residual = torch.zeros_like(theta), 0, 0.0
        else:
            step, iterations = _conjugate_gradients(apply, b, config)
            residual = float(torch.linalg.vector_norm(b - apply(step))) / b_norm
        new = theta + step
        before = _retain_grad_norm(rows, theta, config.l2)
        after = _retain_grad_norm(rows, new, config.l2)
    return InfluenceResult(
        params=new.to(dtype=params.dtype, device=params.device),
        cg_iterations=iterations,
        relative_residual=residual,
        converged=residual <= config.cg_tolerance,
        retained_grad_norm_before=before,
        retained_grad_norm=after,
    )


class _Rows:
    """A set of rows cut into fixed chunks, always visited in row order so sums are reproducible."""

    def __init__(self, loss_fn: LossFn, data: tuple[torch.Tensor, torch.Tensor], chunk_rows: int) -> None:
        X, y = data
        self.loss_fn = loss_fn
        self.count = int(X.shape[0])
        X64 = X.detach().to(torch.float64)
        self.chunks = [(X64[i : i + chunk_rows], y[i : i + chunk_rows]) for i in range(0, self.count, chunk_rows)]

    def grad_sum(self, theta: torch.Tensor) -> torch.Tensor:
        """sum over rows of grad l(x; theta), (P,)."""
        total = torch.zeros_like(theta)
        for Xc, yc in self.chunks:
            t = theta.detach().requires_grad_(True)
            # The caller's loss is a mean; scaling by the chunk's rows turns chunk means into one exact sum.
            (g,) = torch.autograd.grad(self.loss_fn(t, Xc, yc) * Xc.shape[0], t)
            total += g
        return total

    def hvp_sum(self, theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """sum over rows of (Hessian of l(x; .) at theta) v, (P,), by double backward: the derivative of
        <grad, v>. torch.func's jvp-of-grad gives the same product but costs seconds of imports on first use
        and Python-level decompositions per operation."""
        total = torch.zeros_like(theta)
        for Xc, yc in self.chunks:
            t = theta.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.loss_fn(t, Xc, yc) * Xc.shape[0], t, create_graph=True)
            (hv,) = torch.autograd.grad(g, t, grad_outputs=v)
            total += hv
        return total


def _retain_grad_norm(rows: _Rows, theta: torch.Tensor, l2: float) -> float:
    return float(torch.linalg.vector_norm(rows.grad_sum(theta) / rows.count + l2 * theta))


def _conjugate_gradients(
    apply: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, config: InfluenceConfig
) -> tuple[torch.Tensor, int]:
    """Solve A x = b for symmetric A from x = 0; return x and the iterations run. Hestenes-Stiefel CG."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = float(r @ r)
    target = (config.cg_tolerance * float(torch.linalg.vector_norm(b))) ** 2
    for i in range(config.cg_max_iterations):
        if rs <= target:
            return x, i
        Ap = apply(p)
        curvature = float(p @ Ap)
        if not curvature > 0:  # also catches NaN
            raise NegativeCurvature(curvature / float(p @ p), config.damping)
        alpha = rs / curvature
        x += alpha * p
        r -= alpha * Ap
        rs_next = float(r @ r)
        p = r + (rs_next / rs) * p
        rs = rs_next
    return x, config.cg_max_iterations


def _check_inputs(
    params: torch.Tensor, retained: tuple[torch.Tensor, torch.Tensor], forget: tuple[torch.Tensor, torch.Tensor]
) -> None:
    if params.ndim != 1:
        raise ValueError(f"params has shape {tuple(params.shape)}; pass the flat parameter vector (P,)")
    for name, (X, y) in (("retained", retained), ("forget", forget)):
        if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
            raise ValueError(f"{name} rows are X {tuple(X.shape)}, y {tuple(y.shape)}; pass X (rows, F) and y (rows,)")
        if X.shape[0] == 0:
            raise ValueError(f"{name} has no rows; influence removal needs at least one {name} row")
    if retained[0].shape[1] != forget[0].shape[1]:
        raise ValueError(f"retained rows have {retained[0].shape[1]} features, forget rows {forget[0].shape[1]}")
