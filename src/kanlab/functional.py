"""The fused KAN layer operation: base path and spline path as one matrix product.

    y = [b(x) | B(x)] @ [W_base ; W_sp] + bias

``B(x)`` (batch, in*(G+k)) is built in forward from the ``k+1`` non-zero values per input,
used by one matrix product and dropped. Backward recomputes it (with its analytic derivative)
from ``x``; so the saved state is ``x``, ``b(x)`` (batch, in) and the weights, never a
(batch, in, G+k) or (batch, in, out) tensor.
"""
from __future__ import annotations

import torch

from .splines import local_basis

__all__ = ["kan_linear", "features"]


def features(
    x: torch.Tensor, base: torch.Tensor, grid: torch.Tensor, k: int, uniform: bool, need_deriv: bool
):
    """Feature matrix ``[b(x) | B(x)]`` (batch, in*(1+P)) and the span-local basis."""
    batch, in_dim = x.shape
    n_basis = grid.shape[1] - k - 1
    basis = local_basis(x, grid, k, need_deriv=need_deriv, uniform=uniform)
    feat = torch.zeros(batch, in_dim * (1 + n_basis), dtype=x.dtype, device=x.device)
    feat[:, :in_dim] = base
    sp = feat[:, in_dim:]
    sp.scatter_add_(1, basis.index.reshape(batch, -1), basis.values.reshape(batch, -1))
    return feat, basis


class _KANLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, base, weight, bias, grid, k, uniform):
        feat, _ = features(x, base, grid, k, uniform, need_deriv=False)
        if bias is None:
            y = feat @ weight
        else:
            y = torch.addmm(bias, feat, weight)
        ctx.save_for_backward(x, base, weight, grid)
        ctx.k = k
        ctx.uniform = uniform
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        x, base, weight, grid = ctx.saved_tensors
        k = ctx.k
        in_dim = x.shape[1]
        need_x, need_base, need_w, need_bias = ctx.needs_input_grad[:4]
        gx = gbase = gw = gb = None
        need_basis_deriv = need_x
        if need_w or need_x or need_base:
            feat, basis = features(x, base, grid, k, ctx.uniform, need_deriv=need_basis_deriv)
            if need_w:
                gw = feat.t() @ g
            del feat
            if need_x or need_base:
                gfeat = g @ weight.t()  # (batch, in*(1+P))
                if need_base:
                    gbase = gfeat[:, :in_dim]
                if need_x:
                    gsp = gfeat[:, in_dim:]
                    picked = torch.gather(gsp, 1, basis.index.reshape(x.shape[0], -1))
                    gx = (picked.view_as(basis.deriv) * basis.deriv).sum(-1)
        if need_bias and ctx.has_bias:
            gb = g.sum(0)
        return gx, gbase, gw, gb, None, None, None


def kan_linear(
    x: torch.Tensor,
    base: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    grid: torch.Tensor,
    k: int,
    uniform: bool,
) -> torch.Tensor:
    """Fused KAN layer.

    Args:
        x: (batch, in) inputs.
        base: (batch, in) base function values b(x) (autograd flows into it).
        weight: (in*(1+P), out): rows ``[0, in)`` are the base weights, then ``P`` spline
            weights per input, input-major.
        bias: (out,) or None.
        grid: (in, G+2k+1) knots; k: spline order; uniform: whether knots are uniform per row.

    Returns:
        (batch, out).
    """
    return _KANLinear.apply(x, base, weight, bias, grid, k, uniform)
