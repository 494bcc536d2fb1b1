"""B-spline math as pure functions.

Conventions (shared with pykan):

* A layer with ``in_dim`` inputs keeps one knot vector per input: ``grid`` has shape
  ``(in_dim, G + 2k + 1)``: ``G`` intervals on the grid range, extended by ``k`` knots on each
  side.
* There are ``P = G + k`` basis functions of order ``k`` (degree ``k``); basis ``m`` is
  supported on ``[t_m, t_{m+k+1})``. Outside ``[t_0, t_{G+2k})`` every basis function is 0.
* Coefficients have shape ``(in_dim, out_dim, P)``.

Only the ``k + 1`` basis functions that are non-zero at ``x`` are ever evaluated, through a
:class:`~kanlab.basis.BasisPlan` (span lookup plus per-span polynomials).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .basis import BasisPlan, extend_grid, grid_is_uniform

__all__ = [
    "make_grid",
    "extend_grid",
    "grid_is_uniform",
    "SplineBasis",
    "local_basis",
    "bspline_basis",
    "coef2curve",
    "curve2coef",
]


def make_grid(
    in_dim: int,
    num: int,
    k: int,
    grid_range=(-1.0, 1.0),
    dtype: torch.dtype | None = None,
    device=None,
) -> torch.Tensor:
    """Uniform knot vectors: ``num`` intervals on ``grid_range`` extended by ``k`` on each side.

    Returns:
        (in_dim, num + 2k + 1) knots.
    """
    dtype = dtype or torch.get_default_dtype()
    lo, hi = float(grid_range[0]), float(grid_range[1])
    # build in float64 so float32 grids are uniform to rounding
    base = torch.linspace(lo, hi, num + 1, dtype=torch.float64)[None, :].expand(in_dim, num + 1)
    return extend_grid(base, k).to(dtype=dtype, device=device).contiguous()


def local_basis(
    x: torch.Tensor,
    grid: torch.Tensor,
    k: int,
    need_deriv: bool = False,
    plan: BasisPlan | None = None,
) -> SplineBasis:
    """Evaluate the ``k+1`` non-zero B-splines of each input (and optionally their derivatives).

    Args:
        x: (batch, in_dim) inputs.
        grid: (in_dim, G + 2k + 1) increasing knots.
        k: spline order, ``k >= 1``.
        need_deriv: also return d/dx of the values.
        plan: a :class:`~kanlab.basis.BasisPlan` of ``grid`` to reuse.

    Returns:
        A :class:`SplineBasis` whose ``index`` addresses the fused feature layout
        (see :mod:`kanlab.basis`).
    """
    if plan is None or not plan.matches(grid):
        plan = BasisPlan(grid, k)
    vals, cols, der = plan.evaluate(x, need_deriv)
    return SplineBasis(vals, cols, der, plan)


@dataclass
class SplineBasis:
    """The ``k + 1`` non-zero basis values at each input.

    Attributes:
        values: (batch, in_dim, k+1) values of B_{j-k}, ..., B_j.
        index: (batch, in_dim, k+1) column of each value in the fused layout
            ``(batch, in_dim*(1+P) + 1)``; non-existent functions point at the dummy column.
        deriv: (batch, in_dim, k+1) d/dx of the values, or None.
        plan: the plan that produced them.
    """

    values: torch.Tensor
    index: torch.Tensor
    deriv: torch.Tensor | None
    plan: BasisPlan


def bspline_basis(
    x: torch.Tensor, grid: torch.Tensor, k: int, derivative: bool = False
) -> torch.Tensor:
    """Dense basis (batch, in_dim, G+k): every B-spline at every input (pykan's ``B_batch``).

    ``x`` is (batch, in_dim); ``grid`` is (in_dim, knots), or a single row of knots shared by
    every input (pykan's broadcasting). Built from the span-local values; for analysis, refits
    and tests, not for training loops.
    """
    x, grid = _check_basis_args(x, grid, k)
    b, n = x.shape
    if not derivative and not (x.requires_grad and torch.is_grad_enabled()):
        from . import native

        # one native sweep (it carries no autograd: only for inputs that need no gradient)
        if native.supports(x) and x.dtype == grid.dtype:
            plan = BasisPlan(grid, k)
            tables = plan.native_tables()
            if tables is not None:
                feat = native.features(x, torch.zeros_like(x), tables)
                return feat[:, :-1].reshape(b, n, plan.width)[:, :, 1:]
    basis = local_basis(x, grid, k, need_deriv=derivative)
    plan = basis.plan
    src = basis.deriv if derivative else basis.values
    out = torch.zeros(b, plan.dummy + 1, dtype=src.dtype, device=src.device)
    out.scatter_add_(1, basis.index.reshape(b, -1), src.reshape(b, -1))
    return out[:, :-1].reshape(b, n, plan.width)[:, :, 1:]


def _check_basis_args(x, grid, k):
    """Shapes of a dense-basis call, checked (never a silently wrong basis); a one-row grid is
    shared by every input."""
    if not isinstance(x, torch.Tensor) or not isinstance(grid, torch.Tensor):
        raise ValueError("bspline_basis needs torch tensors x (batch, in_dim) and grid "
                         "(in_dim, knots)")
    if x.dim() != 2 or grid.dim() != 2:
        raise ValueError(f"bspline_basis: x must be (batch, in_dim) and grid (in_dim, knots), "
                         f"got x {tuple(x.shape)} and grid {tuple(grid.shape)}")
    if isinstance(k, bool) or int(k) != k or k < 0:
        raise ValueError(f"bspline_basis: k must be an integer >= 0, got {k!r}")
    if grid.shape[1] < int(k) + 2:
        raise ValueError(f"bspline_basis: a grid of order k={k} needs at least k+2 = {int(k) + 2} "
                         f"knots per row, got {grid.shape[1]}")
    n = x.shape[1]
    if grid.shape[0] != n:
        if grid.shape[0] != 1:
            raise ValueError(f"bspline_basis: grid has {grid.shape[0]} rows but x has {n} "
                             f"inputs (columns); pass one knot row per input, or a single row "
                             f"shared by all")
        grid = grid.expand(n, -1)
    if grid.dtype != x.dtype:
        grid = grid.to(x.dtype)
    return x, grid.contiguous()


def coef2curve(x: torch.Tensor, grid: torch.Tensor, coef: torch.Tensor, k: int) -> torch.Tensor:
    """Per-edge spline values.

    Args:
        x: (batch, in_dim); grid: (in_dim, G+2k+1); coef: (in_dim, out_dim, G+k).

    Returns:
        (batch, in_dim, out_dim) values sum_m coef[i, j, m] B_m(x_i).
    """
    return torch.einsum("bip,iop->bio", bspline_basis(x, grid, k), coef)


def curve2coef(
    x: torch.Tensor,
    y: torch.Tensor,
    grid: torch.Tensor,
    k: int,
    smooth: float = 1e-6,
    ridge: float = 1e-8,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Least-squares B-spline coefficients for samples of per-edge curves.

    Solves, per input i, ``min_C ||B_i C - Y_i||^2 + lam2 ||D2 C||^2 + lam0 ||C||^2`` with the
    design matrix ``B_i`` shared by all outputs of that input. The tiny second-difference penalty
    makes the problem well posed when some intervals hold no samples (the curve is bridged
    smoothly instead of jumping to 0); the tiny ridge handles an input with no samples in the
    grid at all. Both are scaled by the trace of ``B^T B`` so they are scale free.

    Args:
        x: (batch, in_dim) sample positions.
        y: (batch, in_dim, out_dim) target values.
        grid: (in_dim, G+2k+1) knots.
        k: spline order.
        weights: optional (batch, in_dim) non-negative weights of the samples.

    Returns:
        (in_dim, out_dim, G+k) coefficients.
    """
    b, n = x.shape
    n_basis = grid.shape[1] - k - 1
    work = torch.float64
    A = bspline_basis(x.to(work), grid.to(work), k)  # (batch, in, P)
    A = A.permute(1, 0, 2)  # (in, batch, P)
    Aw = A if weights is None else A * weights.to(work).t().unsqueeze(-1)
    AtA = Aw.transpose(1, 2) @ A  # (in, P, P)
    Aty = Aw.transpose(1, 2) @ y.to(work).permute(1, 0, 2)  # (in, P, out)
    scale = AtA.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(1.0) / n_basis  # (in,)
    eye = torch.eye(n_basis, dtype=work, device=x.device)
    reg = ridge * eye
    if n_basis >= 3 and smooth > 0:
        D2 = torch.diff(eye, n=2, dim=0)
        reg = reg + smooth * (D2.t() @ D2)
    lhs = AtA + scale[:, None, None] * reg
    coef = torch.linalg.solve(lhs, Aty)  # (in, P, out)
    return coef.permute(0, 2, 1).to(y.dtype).contiguous()
