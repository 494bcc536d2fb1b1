"""Grid adaptation: knots from samples, and grid extension (refine) between models."""
from __future__ import annotations

import torch

from .splines import curve2coef, extend_grid

__all__ = ["adaptive_grid", "interpolate_grid", "refit_layer"]


def adaptive_grid(x: torch.Tensor, num: int, k: int, grid_eps: float) -> torch.Tensor:
    """Knots that follow the data.

    Interior knots are ``grid_eps * uniform + (1 - grid_eps) * quantiles`` over each input's
    sample range, then extended by ``k`` knots on each side. An input whose samples (nearly)
    coincide gets a small interval around them instead of a collapsed grid.

    Args:
        x: (batch, in) samples.
        num: number of intervals G.
        k: number of extension knots per side.
        grid_eps: weight of the uniform part, in [0, 1].

    Returns:
        (in, num + 2k + 1) increasing knots.
    """
    batch = x.shape[0]
    xs = torch.sort(x, dim=0).values
    ids = [int(batch / num * i) for i in range(num)] + [batch - 1]
    adaptive = xs[ids, :].t()  # (in, num+1)
    lo, hi = adaptive[:, :1], adaptive[:, -1:]
    span = hi - lo
    # guard against a collapsed range (constant input, single sample)
    min_span = 1e-3 * torch.clamp(torch.maximum(lo.abs(), hi.abs()), min=1.0)
    small = span < min_span
    centre = (lo + hi) / 2
    lo = torch.where(small, centre - min_span / 2, lo)
    hi = torch.where(small, centre + min_span / 2, hi)
    steps = torch.arange(num + 1, dtype=x.dtype, device=x.device)[None, :] / num
    uniform = lo + (hi - lo) * steps
    adaptive = torch.where(small, uniform, adaptive)
    grid = grid_eps * uniform + (1.0 - grid_eps) * adaptive
    # keep knots strictly increasing even when many samples repeat
    grid = _strictly_increasing(grid, uniform)
    return extend_grid(grid, k)


def _strictly_increasing(grid: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    d = grid[:, 1:] - grid[:, :-1]
    h = (uniform[:, 1:] - uniform[:, :-1])
    bad = (d <= 1e-4 * h).any(dim=1, keepdim=True)
    if bool(bad.any()):
        # mix in more of the uniform grid on the rows that collapsed
        grid = torch.where(bad, 0.5 * grid + 0.5 * uniform, grid)
    return grid


def _allocate(weights: list[float], total: int) -> list[int]:
    """Split ``total`` intervals over segments in proportion to ``weights``, at least 1 each."""
    n = len(weights)
    wsum = sum(weights)
    raw = [total * w / wsum for w in weights]
    counts = [max(1, int(r)) for r in raw]
    while sum(counts) > total:  # too many: take from the segment that is most over its share
        i = max(range(n), key=lambda j: (counts[j] - raw[j]) if counts[j] > 1 else -1e9)
        counts[i] -= 1
    while sum(counts) < total:  # too few: give to the segment most under its share
        i = max(range(n), key=lambda j: raw[j] - counts[j])
        counts[i] += 1
    return counts


def interpolate_grid(parent_grid: torch.Tensor, parent_k: int, num: int, k: int,
                     x: torch.Tensor | None = None) -> torch.Tensor:
    """Knots for a finer grid that follow the parent's knots (grid extension).

    The new interior range is the parent's, widened to cover the samples ``x`` where they
    reach into the parent's extension knots. Every parent knot inside that range stays a knot
    and each parent interval is split into equal parts (the same number for every full
    interval, following the parent's density), so the parent spline is exactly representable
    on the range. When ``num`` is too small for that, the parent's interior knots are read as a
    piecewise-linear map and sampled at ``num + 1`` points (pykan's rule).

    Args:
        parent_grid: (in, G_old + 2 k_old + 1) knots.
        x: optional (batch, in) samples of the layer's inputs.

    Returns:
        (in, num + 2k + 1) knots.
    """
    n_knots = parent_grid.shape[1]
    g_old = n_knots - 1 - 2 * parent_k
    rows = []
    for i, row in enumerate(parent_grid):
        t0, tg = row[parent_k], row[n_knots - 1 - parent_k]
        lo, hi = t0, tg
        if x is not None and x.shape[0] > 0:
            xmin, xmax = x[:, i].min(), x[:, i].max()
            # unseen data lands a little beyond the samples (and a grid fitted to the samples
            # ends exactly at them): cover 5% more on each side, inside the parent's support
            margin = 0.05 * (torch.maximum(xmax, tg) - torch.minimum(xmin, t0))
            lo = torch.maximum(torch.minimum(xmin, t0) - margin, row[0])
            hi = torch.minimum(torch.maximum(xmax, tg) + margin, row[-1])
        inside = row[(row > lo) & (row < hi)]
        bps = torch.cat([lo.reshape(1), inside, hi.reshape(1)])
        seg = bps[1:] - bps[:-1]
        # weight 1 per full parent interval, a fraction for a partial one at either end
        full = (tg - t0) / g_old
        weights = [float(s / full) for s in seg]
        weights = [min(max(w, 1e-6), 1.0) if (j == 0 or j == len(weights) - 1) else 1.0
                   for j, w in enumerate(weights)]
        if len(seg) > num:
            inner = row[parent_k : n_knots - parent_k]
            pos = torch.linspace(0, g_old, num + 1, dtype=row.dtype, device=row.device)
            left = pos.floor().clamp(max=g_old - 1).long()
            rows.append(inner[left] + (inner[left + 1] - inner[left]) * (pos - left))
            continue
        pieces = [bps[:1]]
        for a, b, c in zip(bps[:-1], bps[1:], _allocate(weights, num)):
            t = torch.arange(1, c + 1, dtype=row.dtype, device=row.device) / c
            pieces.append(a + (b - a) * t)
        rows.append(torch.cat(pieces))
    return extend_grid(torch.stack(rows), k)


@torch.no_grad()
def refit_layer(child, parent, x: torch.Tensor | None) -> None:
    """Give ``child`` (a finer layer) the parent's function: knots by interpolation, spline
    coefficients by least squares on the samples ``x`` plus dense points over the grid, and
    the parent's scales, mask and bias.
    """
    grid = interpolate_grid(parent.grid, parent.k, child.num, child.k, x).to(child.grid.dtype)
    child.set_grid(grid)
    # dense points over the child's grid range (outside it the parent's extension tails are
    # not representable by the finer grid, and fitting them would spoil the range)
    lo = child.grid[:, child.k]
    hi = child.grid[:, child.grid.shape[1] - 1 - child.k]
    n_dense = 8 * child.num + 1
    t = torch.linspace(0, 1, n_dense, dtype=parent.grid.dtype, device=parent.grid.device)
    pts = lo[None, :] + (hi - lo)[None, :] * t[:, None]  # (n_dense, in)
    if x is not None and x.shape[0] > 0:
        pts = torch.cat([pts, x.detach().to(pts.dtype)], dim=0)
    y = parent.spline(pts)
    child.coef.copy_(curve2coef(pts, y, child.grid, child.k))
    child.scale_base.copy_(parent.scale_base)
    child.scale_sp.copy_(parent.scale_sp)
    child.mask.copy_(parent.mask)
    if child.bias is not None and parent.bias is not None:
        child.bias.copy_(parent.bias)
