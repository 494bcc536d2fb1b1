"""pykan's ``kan.spline`` functions (same signatures and shapes) on kanlab's spline math."""
import torch

from .. import splines as _splines
from ..basis import extend_grid as _extend_grid

__all__ = ["B_batch", "coef2curve", "curve2coef", "extend_grid"]


def _prepare(x, grid):
    """Tensors, and a 1-D knot vector as one row (kanlab's spline functions check the shapes,
    share a one-row grid across inputs and match the grid's dtype to x)."""
    x, grid = torch.as_tensor(x), torch.as_tensor(grid)
    return x, grid[None, :] if grid.dim() == 1 else grid


def B_batch(x, grid, k=0, extend=True, device="cpu"):
    """Every B-spline of order ``k`` at every input: (batch, in_dim, G + k).

    ``x`` (batch, in_dim); ``grid`` (in_dim, knots) or one row shared by all inputs, as pykan
    broadcasts it. ``extend`` and ``device`` are accepted for pykan's signature (the knots are
    used as given; the result is on x's device).
    """
    x, grid = _prepare(x, grid)
    return _splines.bspline_basis(x, grid, int(k))


def coef2curve(x_eval, grid, coef, k, device="cpu"):
    """Spline curves at ``x_eval`` (batch, in_dim) -> (batch, in_dim, out_dim)."""
    x, grid = _prepare(x_eval, grid)
    return _splines.coef2curve(x, grid, coef.to(x.dtype), int(k))


def curve2coef(x_eval, y_eval, grid, k):
    """Least-squares coefficients (in_dim, out_dim, G + k) of curves ``y_eval`` (batch, in, out)."""
    x, grid = _prepare(x_eval, grid)
    return _splines.curve2coef(x, y_eval.to(x.dtype), grid, int(k))


def extend_grid(grid, k_extend=0):
    """Add ``k_extend`` knots on each side of every row at the mean spacing."""
    grid = torch.as_tensor(grid)
    return _extend_grid(grid[None, :] if grid.dim() == 1 else grid, int(k_extend))
