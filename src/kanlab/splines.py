"""B-spline math as pure functions.

Conventions (shared with pykan):

* A layer with ``in_dim`` inputs keeps one knot vector per input: ``grid`` has shape
  ``(in_dim, G + 2k + 1)``: ``G`` intervals on the grid range, extended by ``k`` knots on each
  side.
* There are ``P = G + k`` basis functions of order ``k`` (degree ``k``); basis ``m`` is
  supported on ``[t_m, t_{m+k+1})``. Outside ``[t_0, t_{G+2k})`` every basis function is 0.
* Coefficients have shape ``(in_dim, out_dim, P)``.

Only the ``k + 1`` basis functions that are non-zero at ``x`` are ever evaluated: the knot span
``j`` with ``t_j <= x < t_{j+1}`` is found in closed form on a uniform grid and with
``searchsorted`` otherwise; the values of ``B_{j-k}, ..., B_j`` then come from a precomputed
polynomial (uniform grid) or de Boor's triangular recursion (any grid).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

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


def extend_grid(grid: torch.Tensor, k_extend: int) -> torch.Tensor:
    """Extend knot vectors by ``k_extend`` knots on each side at the mean interior spacing.

    Args:
        grid: (n, m) increasing knots per row.
        k_extend: number of knots to add on each side.

    Returns:
        (n, m + 2 * k_extend) knots.
    """
    if k_extend <= 0:
        return grid
    h = (grid[:, -1:] - grid[:, :1]) / (grid.shape[1] - 1)
    steps = torch.arange(1, k_extend + 1, dtype=grid.dtype, device=grid.device)
    left = grid[:, :1] - h * steps.flip(0)
    right = grid[:, -1:] + h * steps
    return torch.cat([left, grid, right], dim=1)


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


def grid_is_uniform(grid: torch.Tensor) -> bool:
    """True when every row of ``grid`` has equally spaced knots (up to rounding)."""
    d = grid[:, 1:] - grid[:, :-1]
    h = (grid[:, -1:] - grid[:, :1]) / (grid.shape[1] - 1)
    tol = 1e-9 if grid.dtype == torch.float64 else 2e-5
    scale = torch.maximum(h.abs(), grid.abs().amax(dim=1, keepdim=True) * 1e-3)
    return bool(((d - h).abs() <= tol * scale).all() and (h > 0).all())


@functools.lru_cache(maxsize=32)
def _uniform_poly(k: int) -> np.ndarray:
    """Matrix M (k+1, k+1): on a uniform grid, B_{j-k+r}(t_j + u h) = sum_p M[r, p] u^p."""
    P = np.polynomial.polynomial
    # cardinal B-splines with knots at integers; on [0, 1) the non-zero ones are m = -d..0
    prev = {0: np.array([1.0])}  # order 0: N_{0,0} = 1 on [0, 1)
    for d in range(1, k + 1):
        cur = {}
        for m in range(-d, 1):
            term = np.zeros(1)
            if m in prev:  # (u - m)/d * N_{m,d-1}
                term = P.polyadd(term, P.polymul([-m / d, 1.0 / d], prev[m]))
            if m + 1 in prev:  # (m + d + 1 - u)/d * N_{m+1,d-1}
                term = P.polyadd(term, P.polymul([(m + d + 1) / d, -1.0 / d], prev[m + 1]))
            cur[m] = term
        prev = cur
    M = np.zeros((k + 1, k + 1))
    for r, m in enumerate(range(-k, 1)):
        c = prev[m]
        M[r, : len(c)] = c
    return M


@functools.lru_cache(maxsize=64)
def _uniform_mats(k: int, dtype: torch.dtype, device: torch.device):
    M = _uniform_poly(k)
    D = np.zeros_like(M)  # derivative wrt u: sum_p p M[r,p] u^(p-1)
    D[:, :-1] = M[:, 1:] * np.arange(1, k + 1)[None, :]
    return (
        torch.tensor(M.T, dtype=dtype, device=device).contiguous(),
        torch.tensor(D.T, dtype=dtype, device=device).contiguous(),
    )


@dataclass
class SplineBasis:
    """The ``k + 1`` non-zero basis values at each input.

    Attributes:
        values: (batch, in_dim, k+1) values of B_{j-k}, ..., B_j (0 where out of range).
        index: (batch, in_dim, k+1) column of each value in the flattened dense basis
            ``(in_dim * P)``, always a valid column (values are 0 where clamped).
        deriv: (batch, in_dim, k+1) d/dx of the values, or None.
    """

    values: torch.Tensor
    index: torch.Tensor
    deriv: torch.Tensor | None


def _span_uniform(x, grid, k, need_deriv):
    t0 = grid[:, 0]
    h = grid[:, 1] - grid[:, 0]
    s = (x - t0) / h
    j = torch.floor(s)
    u = s - j
    M, D = _uniform_mats(k, x.dtype, x.device)
    powers = u.unsqueeze(-1).pow(torch.arange(k + 1, device=x.device, dtype=x.dtype))
    vals = powers @ M
    der = (powers @ D) / h[:, None] if need_deriv else None
    return j.to(torch.long), vals, der


def _span_general(x, grid, k, need_deriv):
    n_knots = grid.shape[1]
    j = (torch.searchsorted(grid, x.t().contiguous(), right=True) - 1).t().contiguous()  # (batch, in)
    jc = j.clamp(0, n_knots - 2)
    padded = extend_grid(grid, k)  # knot t_i sits at padded[:, i + k]
    # local knots t_{j-k+1} .. t_{j+k}  -> padded columns j+1 .. j+2k
    offs = torch.arange(1, 2 * k + 1, device=x.device)
    T = padded.unsqueeze(0).expand(x.shape[0], -1, -1).gather(
        2, jc.unsqueeze(-1) + offs
    )  # (batch, in, 2k)
    xe = x.unsqueeze(-1)
    R = T[..., k:] - xe  # right[s] = t_{j+s} - x, s = 1..k
    L = xe - T[..., :k].flip(-1)  # left[s] = x - t_{j+1-s}, s = 1..k
    N = torch.ones_like(xe)
    temp = None
    tiny = torch.finfo(x.dtype).tiny
    for d in range(1, k + 1):
        den = (R[..., :d] + L[..., :d].flip(-1)).clamp_min(tiny)
        temp = N / den
        a = R[..., :d] * temp
        b = L[..., :d].flip(-1) * temp
        N = torch.nn.functional.pad(a, (0, 1)) + torch.nn.functional.pad(b, (1, 0))
    der = None
    if need_deriv:
        if k == 0:
            der = torch.zeros_like(N)
        else:
            der = k * (torch.nn.functional.pad(temp, (1, 0)) - torch.nn.functional.pad(temp, (0, 1)))
    return j, N, der


def local_basis(
    x: torch.Tensor,
    grid: torch.Tensor,
    k: int,
    need_deriv: bool = False,
    uniform: bool | None = None,
) -> SplineBasis:
    """Evaluate the ``k+1`` non-zero B-splines of each input (and optionally their derivatives).

    Args:
        x: (batch, in_dim) inputs.
        grid: (in_dim, G + 2k + 1) increasing knots.
        k: spline order (degree), ``k >= 0``.
        need_deriv: also return d/dx of the values.
        uniform: whether the knots are uniform per row; computed when None.

    Returns:
        A :class:`SplineBasis`.
    """
    in_dim = grid.shape[0]
    n_basis = grid.shape[1] - k - 1
    if uniform is None:
        uniform = grid_is_uniform(grid)
    if uniform:
        j, vals, der = _span_uniform(x, grid, k, need_deriv)
    else:
        j, vals, der = _span_general(x, grid, k, need_deriv)
    n_spans = grid.shape[1] - 1
    m = j.unsqueeze(-1) + torch.arange(-k, 1, device=x.device)  # basis index of each value
    ok = (m >= 0) & (m < n_basis) & ((j >= 0) & (j < n_spans)).unsqueeze(-1)
    okf = ok.to(vals.dtype)
    vals = vals * okf
    if der is not None:
        der = der * okf
    col = m.clamp(0, n_basis - 1) + (torch.arange(in_dim, device=x.device) * n_basis).unsqueeze(-1)
    return SplineBasis(vals, col, der)


def _dense(basis: SplineBasis, batch: int, width: int, which: str = "values") -> torch.Tensor:
    src = basis.values if which == "values" else basis.deriv
    out = torch.zeros(batch, width, dtype=src.dtype, device=src.device)
    out.scatter_add_(1, basis.index.reshape(batch, -1), src.reshape(batch, -1))
    return out


def bspline_basis(
    x: torch.Tensor, grid: torch.Tensor, k: int, derivative: bool = False
) -> torch.Tensor:
    """Dense basis (batch, in_dim, G+k): every B-spline at every input (pykan's ``B_batch``).

    Built from the span-local values; use it for analysis and tests, not in training loops.
    """
    b, n = x.shape
    n_basis = grid.shape[1] - k - 1
    basis = local_basis(x, grid, k, need_deriv=derivative)
    return _dense(basis, b, n * n_basis, "deriv" if derivative else "values").view(b, n, n_basis)


def coef2curve(x: torch.Tensor, grid: torch.Tensor, coef: torch.Tensor, k: int) -> torch.Tensor:
    """Per-edge spline values.

    Args:
        x: (batch, in_dim); grid: (in_dim, G+2k+1); coef: (in_dim, out_dim, G+k).

    Returns:
        (batch, in_dim, out_dim) values sum_m coef[i, j, m] B_m(x_i).
    """
    basis = local_basis(x, grid, k)
    n_basis = coef.shape[-1]
    local = basis.index - (torch.arange(x.shape[1], device=x.device) * n_basis)[:, None]
    # gather coef[i, :, m] for each (b, i, r): (batch, in, k+1, out)
    c = coef.permute(0, 2, 1)  # (in, P, out)
    i_idx = torch.arange(x.shape[1], device=x.device)[None, :, None]
    picked = c[i_idx, local]  # (batch, in, k+1, out)
    return torch.einsum("bir,biro->bio", basis.values, picked)


def curve2coef(
    x: torch.Tensor,
    y: torch.Tensor,
    grid: torch.Tensor,
    k: int,
    smooth: float = 1e-6,
    ridge: float = 1e-8,
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

    Returns:
        (in_dim, out_dim, G+k) coefficients.
    """
    b, n = x.shape
    n_basis = grid.shape[1] - k - 1
    work = torch.float64
    A = bspline_basis(x.to(work), grid.to(work), k)  # (batch, in, P)
    A = A.permute(1, 0, 2)  # (in, batch, P)
    AtA = A.transpose(1, 2) @ A  # (in, P, P)
    Aty = A.transpose(1, 2) @ y.to(work).permute(1, 0, 2)  # (in, P, out)
    scale = AtA.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(1.0) / n_basis  # (in,)
    eye = torch.eye(n_basis, dtype=work, device=x.device)
    reg = ridge * eye
    if n_basis >= 3 and smooth > 0:
        D2 = torch.diff(eye, n=2, dim=0)
        reg = reg + smooth * (D2.t() @ D2)
    lhs = AtA + scale[:, None, None] * reg
    coef = torch.linalg.solve(lhs, Aty)  # (in, P, out)
    return coef.permute(0, 2, 1).to(y.dtype).contiguous()
