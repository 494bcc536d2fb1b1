"""Vectorized fits of ``y ~ c * f(a*x + b) + d`` for many edges and many functions at once.

For E edges (rows of ``x``/``y``) and F candidate functions the fitter

1. scans a coarse (a, b) grid on a subsample, every edge and grid point at once per function,
   with (c, d) by closed-form least squares, keeping the best few starts;
2. refines (a, b, c, d) of all edges, functions and starts together by Levenberg-Marquardt on
   all points (batched 4x4 solves; only the function evaluation loops over the F names);
3. recomputes (c, d) in closed form at the refined (a, b) and reports R2 = 1 - SSE/SST.

Candidates that leave a function's domain (NaN/Inf from the exact function) are rejected, so a
'log' fit never relies on a clamp. Power functions (``degree`` set in the library) keep a = +-1:
their scale goes into c, which removes a redundant constant from the formula.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .library import SymbolicFunction, get_symbolic

__all__ = ["FitResult", "fit_functions", "score_candidates"]


@dataclass
class FitResult:
    names: list[str]
    params: torch.Tensor  # (E, F, 4): a, b, c, d
    r2: torch.Tensor  # (E, F); -inf where no valid fit was found


def _closed_cd(fv: torch.Tensor, y: torch.Tensor, sst: torch.Tensor):
    """Least-squares c, d for y ~ c*fv + d along the last axis; returns c, d, r2."""
    fm = fv.mean(-1, keepdim=True)
    ym = y.mean(-1, keepdim=True)
    fc = fv - fm
    cov = (fc * (y - ym)).sum(-1)
    var = (fc * fc).sum(-1)
    # f numerically constant over the points (e.g. a = 0): no slope can be fitted
    ok = var > 1e-20 * (fv * fv).sum(-1) + 1e-300
    c = torch.where(ok, cov / torch.where(ok, var, torch.ones_like(var)), torch.zeros_like(var))
    d = ym.squeeze(-1) - c * fm.squeeze(-1)
    sse = ((c.unsqueeze(-1) * fv + d.unsqueeze(-1) - y) ** 2).sum(-1)
    r2 = 1 - sse / sst
    return c, d, r2


def _subsample(n: int, m: int, device) -> torch.Tensor:
    if n <= m:
        return torch.arange(n, device=device)
    return torch.linspace(0, n - 1, m, device=device).round().long()


def _eval(f, u: torch.Tensor, need_grad: bool):
    """f(u) and, when asked, f'(u) (elementwise) by autograd, or by central differences for a
    function autograd cannot differentiate (``torch.special.bessel_j0``, user functions)."""
    if not need_grad:
        with torch.no_grad():
            return f(u), None
    try:
        with torch.enable_grad():
            w = u.detach().requires_grad_(True)
            v = f(w)
            g = torch.autograd.grad(v.sum(), w, allow_unused=True)[0] if v.requires_grad else None
    except (RuntimeError, NotImplementedError):  # a backward that is not implemented
        with torch.no_grad():
            v, g = f(u), None
    if g is None:
        with torch.no_grad():
            h = 1e-5 * (1.0 + u.abs())
            g = (f(u + h) - f(u - h)) / (2 * h)
            g = torch.where(torch.isfinite(g), g, torch.zeros_like(g))
    return v.detach(), g


def _a_points(a_range, grid_number: int, cap: int = 1001) -> int:
    """Points of the coarse scan over a: ``grid_number`` over the default width of 20
    (a in (-10, 10)), and twice as dense over a wider ``a_range``: a user who widens the range
    is after a narrow basin (J0(20x) on [-1, 1] has basins in a well under 1 wide;
    a_range=(-40, 40) gets 248 points, not 31 spread 2.6 apart). Default scans keep their cost."""
    width = float(a_range[1]) - float(a_range[0])
    if not math.isfinite(width) or width <= 20.0:
        return int(grid_number)
    return int(min(cap, math.ceil(2 * int(grid_number) * width / 20.0)))


def fit_functions(
    x: torch.Tensor,
    y: torch.Tensor,
    names: list[str],
    a_range=(-10.0, 10.0),
    b_range=(-10.0, 10.0),
    grid_number: int = 31,
    n_starts: int = 2,
    iters: int = 30,
    max_points: int = 512,
    coarse_points: int = 64,
) -> FitResult:
    """Fit every function in ``names`` to every edge.

    Args:
        x, y: (E, N) inputs and outputs of E edges (any float dtype; computed in float64).
        names: candidate function names (see :mod:`kanlab.symbolic.library`), or
            :class:`~kanlab.symbolic.library.SymbolicFunction` objects that are not registered.
        a_range, b_range: coarse search ranges of a and b.
        grid_number: coarse grid points per axis.
        n_starts: coarse optima refined per edge and function.
        iters: Levenberg-Marquardt iterations.
        max_points: points used for refinement (evenly spaced subsample when more).
        coarse_points: points used for the coarse scan.

    Returns:
        :class:`FitResult` with params (E, F, 4) = (a, b, c, d) and r2 (E, F).
    """
    if x.dim() == 1:
        x, y = x[None], y[None]
    if x.shape != y.shape or x.dim() != 2:
        raise ValueError(f"x and y must both be (edges, samples), got {tuple(x.shape)} and {tuple(y.shape)}")
    device = x.device
    x = x.detach().to(torch.float64)
    y = y.detach().to(torch.float64)
    E, N = x.shape
    F = len(names)
    # a name, or an unregistered SymbolicFunction (a caller's private shape)
    funcs = [n if isinstance(n, SymbolicFunction) else get_symbolic(n) for n in names]
    names = [fn.name for fn in funcs]
    params = torch.zeros(E, F, 4, dtype=torch.float64, device=device)
    r2 = torch.full((E, F), -math.inf, dtype=torch.float64, device=device)
    if N < 2 or E == 0 or F == 0:
        return FitResult(list(names), params, r2)

    ref = _subsample(N, max_points, device)
    xr, yr = x[:, ref], y[:, ref]
    sst = ((yr - yr.mean(-1, keepdim=True)) ** 2).sum(-1).clamp_min(1e-300)  # (E,)
    co = _subsample(N, coarse_points, device)
    # coarse points spread over each edge's range: sort by x first
    order = torch.argsort(x, dim=1)
    xs = torch.gather(x, 1, order)
    ys = torch.gather(y, 1, order)
    xc, yc = xs[:, co], ys[:, co]
    sstc = ((yc - yc.mean(-1, keepdim=True)) ** 2).sum(-1).clamp_min(1e-300)

    a_grid = torch.linspace(float(a_range[0]), float(a_range[1]), _a_points(a_range, grid_number),
                            dtype=torch.float64, device=device)
    b_grid = torch.linspace(float(b_range[0]), float(b_range[1]), grid_number, dtype=torch.float64,
                            device=device)
    b_fine = torch.linspace(float(b_range[0]), float(b_range[1]), 4 * grid_number + 1,
                            dtype=torch.float64, device=device)
    pm1 = torch.tensor([-1.0, 1.0], dtype=torch.float64, device=device)

    # ---- 1. coarse scan, one function at a time, all edges and grid points at once
    starts = torch.zeros(E, F, n_starts, 2, dtype=torch.float64, device=device)
    fixed_a = torch.zeros(F, dtype=torch.bool, device=device)
    active = torch.zeros(F, dtype=torch.bool, device=device)
    for fi, fn in enumerate(funcs):
        if fn.name == "0":
            params[:, fi, 3] = yr.mean(-1)
            r2[:, fi] = 0.0
            continue
        if fn.name == "x":
            c, d, rr = _closed_cd(xr, yr, sst)
            params[:, fi] = torch.stack([torch.ones_like(c), torch.zeros_like(c), c, d], -1)
            r2[:, fi] = rr
            continue
        active[fi] = True
        if fn.degree is not None:
            fixed_a[fi] = True
            ag, bg = torch.meshgrid(pm1, b_fine, indexing="ij")
        else:
            ag, bg = torch.meshgrid(a_grid, b_grid, indexing="ij")
        ag, bg = ag.reshape(-1), bg.reshape(-1)
        P = ag.numel()
        best = torch.full((E, P), -math.inf, dtype=torch.float64, device=device)
        chunk = max(1, int(4_000_000 // max(P * xc.shape[1], 1)))
        for e0 in range(0, E, chunk):
            xe = xc[e0 : e0 + chunk]
            u = ag[None, :, None] * xe[:, None, :] + bg[None, :, None]
            with torch.no_grad():
                fv = fn.torch_fn(u)
            valid = torch.isfinite(fv).all(-1)
            if fn.degree is None:  # an argument with (almost) no spread only mimics a line
                valid &= (ag[None, :].abs() * xe.std(-1, keepdim=True)) >= 1e-2
            fv = torch.where(torch.isfinite(fv), fv, torch.zeros_like(fv))
            _, _, rr = _closed_cd(fv, yc[e0 : e0 + chunk, None, :].expand_as(fv),
                                  sstc[e0 : e0 + chunk, None])
            rr = torch.where(valid & torch.isfinite(rr), rr, torch.full_like(rr, -math.inf))
            best[e0 : e0 + chunk] = rr
        k = min(n_starts, P)
        idx = torch.topk(best, k, dim=1).indices  # (E, k)
        starts[:, fi, :k, 0] = ag[idx]
        starts[:, fi, :k, 1] = bg[idx]
        if k < n_starts:
            starts[:, fi, k:] = starts[:, fi, :1]

    act = torch.nonzero(active).flatten().tolist()
    if act:
        _refine(funcs, act, starts, fixed_a, xr, yr, sst, params, r2, iters)
        for fi in act:
            params[:, fi] = canonical_params(funcs[fi], params[:, fi])
    return FitResult(list(names), params, r2)


def canonical_params(fn, p: torch.Tensor) -> torch.Tensor:
    """Rewrite (..., 4) affine parameters of ``fn`` into an equivalent tidy form.

    Odd/even functions get a >= 0; exp absorbs b into c; sin/cos/tan shifts are reduced to
    (-pi/2, pi/2] (a half period with the sign moved into c). The edge computes the same values.
    """
    a, b, c, d = p.unbind(-1)
    if fn.parity is not None:
        neg = a < 0
        a, b = torch.where(neg, -a, a), torch.where(neg, -b, b)
        if fn.parity == "odd":
            c = torch.where(neg, -c, c)
    if fn.name == "exp":
        c, b = c * torch.exp(b), torch.zeros_like(b)
    elif fn.name in ("sin", "cos", "tan"):
        pi = math.pi
        b = torch.remainder(b + pi, 2 * pi) - pi  # (-pi, pi]
        flip = b.abs() > pi / 2
        b = torch.where(flip, b - torch.sign(b) * pi, b)
        if fn.name != "tan":
            c = torch.where(flip, -c, c)
    return torch.stack([a, b, c, d], -1)


def _refine(funcs, act, starts, fixed_a, xr, yr, sst, params, r2, iters):
    """Levenberg-Marquardt on (a, b, c, d) for all edges x active functions x starts at once."""
    E, F, S, _ = starts.shape
    A = len(act)
    act_t = torch.tensor(act, device=xr.device)
    ab = starts[:, act_t].reshape(E, A * S, 2)  # (E, A*S, 2)
    N = xr.shape[1]
    X = xr[:, None, :]  # (E, 1, N)
    Y = yr[:, None, :]
    fixed = fixed_a[act_t].repeat_interleave(S)  # (A*S,)

    def f_eval(a, b, need_grad):
        """f values (and derivatives) for every column block of functions."""
        u = a.unsqueeze(-1) * X + b.unsqueeze(-1)  # (E, A*S, N)
        vs, gs = [], []
        for q, fi in enumerate(act):
            sl = slice(q * S, (q + 1) * S)
            v, g = _eval(funcs[fi].torch_fn, u[:, sl], need_grad)
            vs.append(v)
            gs.append(g)
        v = torch.cat(vs, 1)
        g = torch.cat(gs, 1) if need_grad else None
        return v, g

    a, b = ab[..., 0].clone(), ab[..., 1].clone()
    v, _ = f_eval(a, b, False)
    bad = ~torch.isfinite(v).all(-1)
    v = torch.where(torch.isfinite(v), v, torch.zeros_like(v))
    c, d, _ = _closed_cd(v, Y.expand_as(v), sst[:, None])
    p = torch.stack([a, b, c, d], -1)  # (E, A*S, 4)

    def sse_of(p):
        vv, _ = f_eval(p[..., 0], p[..., 1], False)
        r = p[..., 2:3] * vv + p[..., 3:4] - Y
        s = (r * r).sum(-1)
        return torch.where(torch.isfinite(s), s, torch.full_like(s, math.inf))

    cur = sse_of(p)
    cur = torch.where(bad, torch.full_like(cur, math.inf), cur)
    lam = torch.full_like(cur, 1e-3)
    eye = torch.eye(4, dtype=p.dtype, device=p.device)
    a_min = (1e-2 / xr.std(-1).clamp_min(1e-12))[:, None].expand_as(cur)  # (E, A*S)
    a_min = torch.where(fixed[None, :], torch.zeros_like(a_min), a_min)
    col_mask = torch.ones(A * S, 4, dtype=p.dtype, device=p.device)
    col_mask[fixed, 0] = 0.0
    for _ in range(iters):
        vv, gg = f_eval(p[..., 0], p[..., 1], True)
        finite = torch.isfinite(vv) & torch.isfinite(gg)
        vv = torch.where(finite, vv, torch.zeros_like(vv))
        gg = torch.where(finite, gg, torch.zeros_like(gg))
        cg = p[..., 2:3] * gg
        J = torch.stack([cg * X, cg, vv, torch.ones_like(vv)], -1) * col_mask[None, :, None, :]
        r = p[..., 2:3] * vv + p[..., 3:4] - Y
        JtJ = J.transpose(-1, -2) @ J  # (E, A*S, 4, 4)
        g = (J * r.unsqueeze(-1)).sum(-2)  # (E, A*S, 4)
        diag = torch.diagonal(JtJ, dim1=-2, dim2=-1)
        M = JtJ + lam[..., None, None] * torch.diag_embed(diag + 1e-12) + 1e-12 * eye
        # fixed columns have zero rows/cols; the identity term keeps M invertible
        M = M + torch.diag_embed(1.0 - col_mask)[None]
        step = torch.linalg.solve(M, -g.unsqueeze(-1)).squeeze(-1) * col_mask[None]
        step = torch.where(torch.isfinite(step), step, torch.zeros_like(step))
        trial = p + step
        # keep the argument's spread above 1e-2: a -> 0 with c -> inf only mimics a line
        ta = trial[..., 0]
        ta = torch.where(ta.abs() < a_min, torch.where(ta < 0, -a_min, a_min), ta)
        trial = torch.cat([ta.unsqueeze(-1), trial[..., 1:]], -1)
        new = sse_of(trial)
        better = new < cur
        p = torch.where(better.unsqueeze(-1), trial, p)
        cur = torch.where(better, new, cur)
        lam = torch.where(better, lam * 0.3, lam * 10.0).clamp(1e-12, 1e12)
    # closed-form (c, d) at the refined (a, b) and the final R2
    vv, _ = f_eval(p[..., 0], p[..., 1], False)
    ok = torch.isfinite(vv).all(-1)
    vv = torch.where(torch.isfinite(vv), vv, torch.zeros_like(vv))
    c, d, rr = _closed_cd(vv, Y.expand_as(vv), sst[:, None])
    rr = torch.where(ok & torch.isfinite(rr), rr, torch.full_like(rr, -math.inf))
    p = torch.stack([p[..., 0], p[..., 1], c, d], -1)
    rr = rr.reshape(E, A, S)
    p = p.reshape(E, A, S, 4)
    best = rr.argmax(-1)  # (E, A)
    r2[:, act_t] = torch.gather(rr, 2, best.unsqueeze(-1)).squeeze(-1)
    params[:, act_t] = torch.gather(p, 2, best[..., None, None].expand(E, A, 1, 4)).squeeze(2)


def score_candidates(r2: torch.Tensor, complexity: torch.Tensor, weight_simple: float = 0.8,
                     names: list[str] | None = None) -> torch.Tensor:
    """Lower is better: ``log10(1 - r2) + weight_simple * complexity``.

    One unit of complexity is worth ``weight_simple`` decades of unexplained variance, so a
    simpler function wins only when its fit is nearly as good. The unexplained variance is
    floored at 1e-6: a trained spline edge is rarely more accurate than that, and below it a
    flexible function fitting the spline's own error would beat the true, simpler one
    (e.g. -2*atanh(u) against log). '0' is ranked last
    (edges whose output is constant are set to '0' before any ranking).
    """
    err = (1 - r2).clamp(min=1e-6)
    score = torch.log10(err) + weight_simple * complexity.to(err)
    score = torch.where(torch.isfinite(r2), score, torch.full_like(score, math.inf))
    if names is not None and "0" in names:
        score[..., names.index("0")] = math.inf
    return score
