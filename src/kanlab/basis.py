"""Span-local B-spline evaluation plans.

A :class:`BasisPlan` is built once per knot vector (and rebuilt when the grid changes). On each
knot span ``[t_j, t_{j+1})`` the ``k+1`` non-zero B-splines ``B_{j-k}, ..., B_j`` are
polynomials of degree ``k`` in the local coordinate ``u = (x - t_j) / (t_{j+1} - t_j)``; the plan
stores their coefficients (computed exactly in float64 by the Cox-de Boor recursion on
polynomials) and, per span, the column each value lands in. Evaluating then takes a handful of
tensor operations whatever the grid:

* find the span: closed form ``floor((x - t_0) / h)`` on a uniform grid, ``searchsorted`` on an
  adaptive one;
* Horner's rule on the span's polynomials (one shared set on a uniform grid, a gathered set per
  span otherwise), and the same for the derivative.

Columns follow the fused feature layout used by :mod:`kanlab.functional`: input ``i`` owns
columns ``i*(1+P)`` (its base value ``b(x_i)``) and ``i*(1+P)+1+m`` (``B_m(x_i)``); one extra
"dummy" column at ``in*(1+P)`` receives the values of basis functions that do not exist (near
the ends of the extended grid) and of inputs outside the grid. Its weight is always zero.
"""
from __future__ import annotations

import collections
import functools

import numpy as np
import torch

__all__ = ["BasisPlan", "extend_grid", "grid_is_uniform", "uniform_poly"]


def grid_is_uniform(grid: torch.Tensor) -> bool:
    """True when every row of ``grid`` has equally spaced knots (up to rounding)."""
    d = grid[:, 1:] - grid[:, :-1]
    h = (grid[:, -1:] - grid[:, :1]) / (grid.shape[1] - 1)
    tol = 1e-9 if grid.dtype == torch.float64 else 2e-5
    scale = torch.maximum(h.abs(), grid.abs().amax(dim=1, keepdim=True) * 1e-3)
    return bool(((d - h).abs() <= tol * scale).all() and (h > 0).all())


@functools.lru_cache(maxsize=32)
def uniform_poly(k: int) -> np.ndarray:
    """(k+1 powers, k+1 functions): on a uniform grid B_{j-k+r}(t_j + u h) = sum_p M[p, r] u^p."""
    P = np.polynomial.polynomial
    prev = {0: np.array([1.0])}  # cardinal B-splines with integer knots, restricted to [0, 1)
    for d in range(1, k + 1):
        cur = {}
        for m in range(-d, 1):
            term = np.zeros(1)
            if m in prev:
                term = P.polyadd(term, P.polymul([-m / d, 1.0 / d], prev[m]))
            if m + 1 in prev:
                term = P.polyadd(term, P.polymul([(m + d + 1) / d, -1.0 / d], prev[m + 1]))
            cur[m] = term
        prev = cur
    M = np.zeros((k + 1, k + 1))
    for r, m in enumerate(range(-k, 1)):
        c = prev[m]
        M[: len(c), r] = c
    return M


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
    return torch.cat([grid[:, :1] - h * steps.flip(0), grid, grid[:, -1:] + h * steps], dim=1)


_POLY_CACHE: "collections.OrderedDict" = collections.OrderedDict()
_POLY_CACHE_SIZE = 32


def _span_polys(grid64: torch.Tensor, k: int) -> torch.Tensor:
    """Polynomial pieces (in, spans, k+1 powers, k+1 functions) of every span, in float64.

    Computed in NumPy (a few dozen operations on small arrays, where PyTorch's per-operation
    cost would dominate), returned on the grid's device. The last few results are kept by
    knot values: a grid update evaluates the old grid, refits on the new one in float64 and
    then runs the layer on it, three plans of two grids.
    """
    g = grid64.detach().cpu().to(torch.float64).numpy()
    key = (k, g.shape, g.tobytes())
    hit = _POLY_CACHE.get(key)
    if hit is not None:
        _POLY_CACHE.move_to_end(key)
        return hit.to(grid64.device)
    out = _span_polys_np(g, k)
    _POLY_CACHE[key] = out
    if len(_POLY_CACHE) > _POLY_CACHE_SIZE:
        _POLY_CACHE.popitem(last=False)
    return out.to(grid64.device)


def _span_polys_np(g: np.ndarray, k: int) -> torch.Tensor:
    n_in, n_knots = g.shape
    S = n_knots - 1
    K = k + 1
    steps = np.arange(1, k + 1, dtype=np.float64)
    h_mean = (g[:, -1:] - g[:, :1]) / (n_knots - 1)
    pad = np.concatenate([g[:, :1] - h_mean * steps[::-1], g, g[:, -1:] + h_mean * steps], 1)
    j = np.arange(S)
    t_j = pad[:, j + k]
    h = pad[:, j + k + 1] - t_j  # (in, S)
    N = np.zeros((n_in, S, 1, K))
    N[..., 0, 0] = 1.0  # order 0: the indicator of the span

    def mul_lin(poly, c0, c1):  # poly * (c0 + c1 u), truncated to degree k
        out = poly * c0[..., None]
        out[..., 1:] += poly[..., :-1] * c1[..., None]
        return out

    def safe_div(a, b):
        ok = b != 0
        return np.where(ok, a / np.where(ok, b, 1.0), 0.0)

    for d in range(1, k + 1):
        r = np.arange(d + 1)
        m = j[:, None] - d + r[None, :]  # (S, d+1) basis indices
        t_m, t_md = pad[:, m + k], pad[:, m + d + k]
        t_m1, t_md1 = pad[:, m + 1 + k], pad[:, m + d + 1 + k]
        hh, tj = h[..., None], t_j[..., None]
        den1, den2 = t_md - t_m, t_md1 - t_m1
        zero = np.zeros_like(N[..., :1, :])
        left = np.concatenate([zero, N], 2)  # N_{m, d-1}
        right = np.concatenate([N, zero], 2)  # N_{m+1, d-1}
        N = mul_lin(left, safe_div(tj - t_m, den1), safe_div(hh, den1)) + mul_lin(
            right, safe_div(t_md1 - tj, den2), safe_div(-hh, den2))
    N = np.where((h > 0)[..., None, None], N, 0.0)
    out = np.ascontiguousarray(N.transpose(0, 1, 3, 2))  # (in, S, powers, functions)
    return torch.from_numpy(out)


class BasisPlan:
    """Everything needed to evaluate the span-local B-splines of one knot grid.

    Args:
        grid: (in, G + 2k + 1) increasing knots.
        k: spline order, ``k >= 1``.
    """

    def __init__(self, grid: torch.Tensor, k: int):
        self.grid = grid
        self.version = grid._version
        self.data_ptr = grid.data_ptr()
        self.k = k
        n_in, n_knots = grid.shape
        self.n_in = n_in
        self.n_spans = n_knots - 1
        self.n_basis = P = n_knots - k - 1
        self.width = K1 = 1 + P  # columns per input in the fused layout
        self.dummy = n_in * K1
        self.uniform = grid_is_uniform(grid)
        # the tables are built on first use: the native kernels need only the span
        # polynomials, the PyTorch path its own gather tables (a grid update builds plans often)
        self._native = None
        self._polys = None
        self._torch_ready = False

    @property
    def _polys64(self) -> torch.Tensor:
        """(in, S, powers, functions) span polynomials of a non-uniform grid, float64."""
        if self._polys is None:
            self._polys = _span_polys(self.grid.to(torch.float64), self.k)
        return self._polys

    @property
    def _inv_h64(self) -> torch.Tensor:
        """1/h per input of a uniform grid, float64 (h the mean spacing, exact to rounding)."""
        g64 = self.grid.to(torch.float64)
        return 1.0 / ((g64[:, -1] - g64[:, 0]) / (g64.shape[1] - 1))

    def _torch_tables(self) -> None:
        """Build the gather tables of the PyTorch path (once)."""
        if self._torch_ready:
            return
        grid, k = self.grid, self.k
        n_in, S, P, K1 = self.n_in, self.n_spans, self.n_basis, self.width
        K = k + 1
        dev, dt = grid.device, grid.dtype
        # column of each local value, per (input, span) with spans -1 and S meaning "outside"
        s = torch.arange(-1, S + 1, device=dev)
        m = s[:, None] - k + torch.arange(K, device=dev)[None, :]  # (S+2, K)
        ok = (m >= 0) & (m < P) & (s[:, None] >= 0) & (s[:, None] < S)
        i = torch.arange(n_in, device=dev)[:, None, None]
        cols = torch.where(ok[None], i * K1 + 1 + m[None], torch.full_like(m[None], self.dummy))
        self.cols = cols.reshape(n_in * (S + 2), K).contiguous()
        self.row_off = (torch.arange(n_in, device=dev) * (S + 2)).contiguous()
        if self.uniform:
            self.inv_h = self._inv_h64.to(dt)
            self.t0 = grid[:, 0].contiguous()
            M = torch.tensor(uniform_poly(k), dtype=dt, device=dev)  # (powers, functions)
            # coefficient columns (K, 1): Horner runs on (K, batch*in) tensors
            self.M = [M[p].unsqueeze(-1).contiguous() for p in range(K)]
            self.D = [(M[p + 1] * (p + 1)).unsqueeze(-1).contiguous() for p in range(k)]
        else:
            polys = self._polys64  # (in, S, K, K)
            t_j = grid[:, :-1].to(torch.float64)
            inv_h = 1.0 / (grid[:, 1:] - grid[:, :-1]).to(torch.float64)
            inv_h = torch.where(torch.isfinite(inv_h), inv_h, torch.zeros_like(inv_h))
            # u = (x - t_j) * inv_h: subtracting first keeps float32 accurate far from 0
            vals = torch.cat([inv_h.unsqueeze(-1), t_j.unsqueeze(-1), polys.reshape(n_in, S, K * K)], -1)
            der = polys[:, :, 1:, :] * torch.arange(1, K, dtype=torch.float64, device=dev)[:, None]
            zero_v = torch.zeros(n_in, 1, vals.shape[-1], dtype=torch.float64, device=dev)
            zero_d = torch.zeros(n_in, 1, k * K, dtype=torch.float64, device=dev)
            # stored transposed, (fields, rows): a gather gives contiguous (K, batch*in) blocks
            self.packed = torch.cat([zero_v, vals, zero_v], 1).reshape(n_in * (S + 2), -1).t()
            self.packed = self.packed.to(dt).contiguous()
            self.packed_der = torch.cat([zero_d, der.reshape(n_in, S, k * K), zero_d], 1).reshape(
                n_in * (S + 2), -1).t().to(dt).contiguous()
        self._torch_ready = True

    def native_tables(self):
        """Tables of the native CPU kernels (:mod:`kanlab.native`), or None where they don't apply
        (the library is not built or is switched off, the grid is not on the CPU, k too large)."""
        from . import native

        if self.grid.device.type != "cpu" or not native.enabled() or self.k > native.max_k():
            return None
        if self._native is None:
            if self.uniform:
                poly = torch.tensor(uniform_poly(self.k), dtype=torch.float64)
                self._native = native.NativeTables(self.grid, self.k, True, poly,
                                                   t0=self.grid[:, 0], inv_h=self._inv_h64)
            else:
                self._native = native.NativeTables(self.grid, self.k, False, self._polys64)
        return self._native

    def matches(self, grid: torch.Tensor) -> bool:
        """Whether ``grid`` is still the tensor this plan was built from, unchanged (same
        object, storage and version counter; edits through ``.data`` in place are not seen:
        change grids with ``copy_`` or ``KANLayer.set_grid``)."""
        return (grid is self.grid and grid._version == self.version
                and grid.data_ptr() == self.data_ptr)

    def locate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Span row (batch*in,) of the plan's tables and local coordinate u (1, batch*in)."""
        self._torch_tables()
        if self.uniform:
            s = (x - self.t0) * self.inv_h
            jf = torch.floor(s)
            u = (s - jf).reshape(1, -1)
            row = jf.to(torch.long).clamp_(-1, self.n_spans).add_(self.row_off + 1).reshape(-1)
            return row, u
        ss = torch.searchsorted(self.grid, x.t().contiguous(), right=True)  # (in, batch)
        row = ss.add_(self.row_off.unsqueeze(-1)).t().reshape(-1)
        scale = self.packed[:2].index_select(1, row)  # inv_h, t_j of each span
        u = ((x.reshape(-1) - scale[1]) * scale[0]).unsqueeze(0)
        return row, u

    def values(self, row: torch.Tensor, u: torch.Tensor, batch: int, need_deriv: bool = False):
        """Values (batch, in, k+1), their columns and optionally d/dx, from :meth:`locate`.

        The polynomials are evaluated on (k+1, batch*in) tensors, so every elementwise op runs
        over a long contiguous row, then transposed once.
        """
        self._torch_tables()
        k = self.k
        K = k + 1
        n_in = self.n_in
        cols = self.cols.index_select(0, row).view(batch, n_in, K)
        der = None
        if self.uniform:
            vals = _horner(self.M, u).t().reshape(batch, n_in, K)
            if need_deriv:
                inv_h = self.inv_h.expand(batch, n_in).reshape(1, -1)
                der = (_horner(self.D, u) * inv_h).t().reshape(batch, n_in, K)
            return vals, cols, der
        pk = self.packed.index_select(1, row)  # (2 + K*K, batch*in): inv_h, t_j, coefs
        vals = _horner([pk[2 + p * K : 2 + (p + 1) * K] for p in range(K)], u)
        vals = vals.t().reshape(batch, n_in, K)
        if need_deriv:
            dc = self.packed_der.index_select(1, row)
            der = _horner([dc[p * K : (p + 1) * K] for p in range(k)], u) * pk[0]
            der = der.t().reshape(batch, n_in, K)
        return vals, cols, der

    def evaluate(self, x: torch.Tensor, need_deriv: bool = False):
        """Values (batch, in, k+1), their columns (batch, in, k+1) and optionally d/dx."""
        row, u = self.locate(x)
        return self.values(row, u, x.shape[0], need_deriv)


def _horner(coefs, u):
    """sum_p coefs[p] * u^p for a list of coefficient tensors (broadcast against u)."""
    n = len(coefs)
    if n == 1:
        return (coefs[0] + torch.zeros_like(u)).contiguous()
    acc = torch.addcmul(coefs[n - 2], u, coefs[n - 1])
    for p in range(n - 3, -1, -1):
        acc = torch.addcmul(coefs[p], acc, u)
    return acc
