"""The fused KAN layer operation.

For inputs ``x`` (batch, in) the layer builds the feature matrix ``F = [b(x_i), B_1(x_i), ...,
B_P(x_i)]_i`` (batch, in*(1+P)) from the ``k+1`` non-zero B-spline values per input, and the
weight matrix ``W`` (in*(1+P), out) with rows ``scale_base_ij*mask_ij`` and
``scale_sp_ij*mask_ij*coef_ijm``; then ``y = F @ W + bias``: one matrix product.

Optionally (for pykan's sparsity regularizer) it also returns the exact batch variance of every
edge, ``Var(phi_ij) = w_ij^T Cov(F_i) w_ij``, from the same features.

Backward recomputes ``F`` and the analytic basis derivative from ``x``; the saved state is ``x``,
``b(x)`` (batch, in) and the parameters, never a (batch, in, 1+P) or (batch, in, out) tensor.
Weight assembly is done inside the function, so one autograd node covers the whole layer.
"""
from __future__ import annotations

import torch

from .basis import BasisPlan

__all__ = ["kan_layer", "fused_features"]


def fused_features(x: torch.Tensor, base: torch.Tensor, plan: BasisPlan, need_deriv: bool):
    """Features (batch, in*(1+P)+1) with a trailing dummy column; local columns and derivative."""
    batch = x.shape[0]
    vals, cols, der = plan.evaluate(x, need_deriv)
    feat = torch.zeros(batch, plan.dummy + 1, dtype=x.dtype, device=x.device)
    feat[:, 0 : plan.dummy : plan.width] = base
    n = cols.shape[1] * cols.shape[2]
    feat.scatter_add_(1, cols.reshape(batch, n), vals.reshape(batch, n))
    return feat, cols, der


def _weights(plan, scale_base, scale_sp, coef, mask):
    """(in, 1+P, out) edge weights: b(x) first, then the P B-splines."""
    n_in, n_out = scale_base.shape
    w = torch.empty(n_in, plan.width, n_out, dtype=coef.dtype, device=coef.device)
    torch.mul(scale_base, mask, out=w[:, 0, :])
    torch.mul(coef, (scale_sp * mask).unsqueeze(-1), out=w[:, 1:, :].transpose(1, 2))
    return w


def _flat_weight(w):
    n_in, width, n_out = w.shape
    flat = torch.zeros(n_in * width + 1, n_out, dtype=w.dtype, device=w.device)
    flat[:-1] = w.view(n_in * width, n_out)
    return flat


class _KANLayerFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, base, scale_base, scale_sp, coef, mask, bias, plan, want_var):
        batch, n_in = x.shape
        feat, _, _ = fused_features(x, base, plan, need_deriv=False)
        w = _weights(plan, scale_base, scale_sp, coef, mask)
        W = _flat_weight(w)
        y = feat @ W if bias is None else torch.addmm(bias, feat, W)
        ctx.save_for_backward(x, base, scale_base, scale_sp, coef, mask)
        ctx.plan, ctx.want_var, ctx.has_bias = plan, want_var, bias is not None
        if not want_var:
            return y
        fc = _centred(feat, plan, batch)
        cov = torch.bmm(fc.permute(1, 2, 0), fc.permute(1, 0, 2)) / max(batch - 1, 1)
        wt = w.transpose(1, 2)  # (in, out, 1+P)
        var = (torch.bmm(wt, cov) * wt).sum(-1)
        return y, var

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy, gvar=None):
        x, base, scale_base, scale_sp, coef, mask = ctx.saved_tensors
        plan = ctx.plan
        batch, n_in = x.shape
        need = ctx.needs_input_grad
        need_x, need_base = need[0], need[1]
        need_w = need[2] or need[3] or need[4]
        feat, cols, der = fused_features(x, base, plan, need_deriv=need_x)
        w = _weights(plan, scale_base, scale_sp, coef, mask)
        W = _flat_weight(w)
        use_var = ctx.want_var and gvar is not None
        gx = gbase = gsb = gsp = gcoef = gbias = None
        gw = None
        if need_w:
            gw = (feat.t() @ gy)[:-1].view(n_in, plan.width, -1)  # (in, 1+P, out)
        gfeat = None
        if need_x or need_base:
            gfeat = gy @ W.t()  # (batch, in*(1+P)+1); the dummy column's gradient is 0
        if use_var:
            fc = _centred(feat, plan, batch)
            denom = max(batch - 1, 1)
            cov = torch.bmm(fc.permute(1, 2, 0), fc.permute(1, 0, 2)) / denom
            wt = w.transpose(1, 2)  # (in, out, 1+P)
            if need_w:
                # d var_io / d w_io = 2 Cov_i w_io
                gw = gw + (2.0 * gvar.unsqueeze(-1) * torch.bmm(wt, cov)).transpose(1, 2)
            if need_x or need_base:
                gcov = torch.bmm((wt * gvar.unsqueeze(-1)).transpose(1, 2), wt)  # (in, 1+P, 1+P)
                gfc = torch.bmm(fc.permute(1, 0, 2), (gcov + gcov.transpose(1, 2)) / denom)
                gfeat[:, :-1].view(batch, n_in, plan.width).add_(gfc.permute(1, 0, 2))
        if gfeat is not None:
            if need_base:
                gbase = gfeat[:, 0 : plan.dummy : plan.width]
            if need_x:
                picked = torch.gather(gfeat, 1, cols.reshape(batch, der.shape[1] * der.shape[2]))
                picked = picked.view_as(der)
                gx = (picked * der).sum(-1)
        if gw is not None:
            gwb = gw[:, 0, :]
            gwsp = gw[:, 1:, :].transpose(1, 2)  # (in, out, P)
            if need[2]:
                gsb = gwb * mask
            if need[3]:
                gsp = (gwsp * coef).sum(-1) * mask
            if need[4]:
                gcoef = gwsp * (scale_sp * mask).unsqueeze(-1)
        if ctx.has_bias and need[6]:
            gbias = gy.sum(0)
        return gx, gbase, gsb, gsp, gcoef, None, gbias, None, None


def _centred(feat, plan, batch):
    f3 = feat[:, :-1].view(batch, plan.n_in, plan.width)
    return f3 - f3.mean(0, keepdim=True)


def kan_layer(
    x: torch.Tensor,
    base: torch.Tensor,
    scale_base: torch.Tensor,
    scale_sp: torch.Tensor,
    coef: torch.Tensor,
    mask: torch.Tensor,
    bias: torch.Tensor | None,
    plan: BasisPlan,
    want_var: bool = False,
):
    """Fused KAN layer.

    Args:
        x: (batch, in) inputs; base: (batch, in) values b(x) (autograd flows into it).
        scale_base, scale_sp, mask: (in, out); coef: (in, out, P); bias: (out,) or None.
        plan: the :class:`~kanlab.basis.BasisPlan` of the layer's grid.
        want_var: also return the (in, out) batch variance (unbiased) of every edge.

    Returns:
        y (batch, out), or (y, var) with ``want_var``.
    """
    return _KANLayerFn.apply(x, base, scale_base, scale_sp, coef, mask, bias, plan, want_var)
