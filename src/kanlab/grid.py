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


def interpolate_grid(parent_grid: torch.Tensor, parent_k: int, num: int, k: int) -> torch.Tensor:
    """Knots for a finer grid that follow the parent's knot density.

    When ``num`` is at least the parent's number of intervals, every parent interval is split
    into equal parts (``num // G_old`` each, one more for the longest ``num % G_old``), so the
    new interior knots contain the old ones and the parent spline is exactly representable on
    the grid range. For a coarser grid the parent's knots are read as a piecewise-linear map
    from [0, 1] to the range and sampled at ``num + 1`` equally spaced points (pykan's rule).

    Returns:
        (in, num + 2k + 1) knots.
    """
    inner = parent_grid[:, parent_k : parent_grid.shape[1] - parent_k]  # (in, G+1)
    g_old = inner.shape[1] - 1
    if num >= g_old:
        rows = []
        base, extra = divmod(num, g_old)
        for row in inner:
            lengths = row[1:] - row[:-1]
            counts = torch.full((g_old,), base, dtype=torch.long)
            if extra:
                counts[torch.argsort(lengths.cpu(), descending=True, stable=True)[:extra]] += 1
            pieces = [row[:1]]
            for a, b, c in zip(row[:-1], row[1:], counts.tolist()):
                t = torch.arange(1, c + 1, dtype=row.dtype, device=row.device) / c
                pieces.append(a + (b - a) * t)
            rows.append(torch.cat(pieces))
        new = torch.stack(rows)
    else:
        pos = torch.linspace(0, g_old, num + 1, dtype=inner.dtype, device=inner.device)
        left = pos.floor().clamp(max=g_old - 1).long()
        frac = (pos - left).unsqueeze(0)
        new = inner[:, left] + (inner[:, left + 1] - inner[:, left]) * frac
    return extend_grid(new, k)


@torch.no_grad()
def refit_layer(child, parent, x: torch.Tensor | None) -> None:
    """Give ``child`` (a finer layer) the parent's function: knots by interpolation, spline
    coefficients by least squares on the samples ``x`` plus dense points over the grid, and
    the parent's scales, mask and bias.
    """
    grid = interpolate_grid(parent.grid, parent.k, child.num, child.k).to(child.grid.dtype)
    child.set_grid(grid)
    lo = parent.grid[:, parent.k]
    hi = parent.grid[:, parent.grid.shape[1] - 1 - parent.k]
    n_dense = 8 * max(child.num, parent.num) + 1
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
