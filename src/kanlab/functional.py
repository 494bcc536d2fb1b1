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
A backward asked for a differentiable result (``create_graph=True``: second derivatives, PDE
losses) returns the gradient of :mod:`kanlab.reference`'s plain computation instead, so higher
derivatives are autograd's own; first-order backward stays the fused one.
"""
from __future__ import annotations

import torch

from . import native
from .basis import BasisPlan
from .reference import cached_reference, local_reference, reference_vjp

__all__ = ["kan_layer", "kan_layer_cached", "LayerFeatures", "fused_features", "layer_features"]


def fused_features(x: torch.Tensor, base: torch.Tensor, plan: BasisPlan, need_deriv: bool,
                   located=None):
    """Features (batch, in*(1+P)+1) with a trailing dummy column; local columns and derivative.

    ``located``: the ``(row, u)`` of ``plan.locate(x)`` when already known.
    """
    batch = x.shape[0]
    row, u = plan.locate(x) if located is None else located
    vals, cols, der = plan.values(row, u, batch, need_deriv)
    feat = torch.zeros(batch, plan.dummy + 1, dtype=x.dtype, device=x.device)
    feat[:, 0 : plan.dummy : plan.width] = base
    n = cols.shape[1] * cols.shape[2]
    feat.scatter_add_(1, cols.reshape(batch, n), vals.reshape(batch, n))
    return feat, cols, der


def _native_tables(x: torch.Tensor, plan: BasisPlan):
    """The plan's native kernel tables when the native CPU kernels take ``x``, else None."""
    return plan.native_tables() if native.supports(x) else None


def layer_features(x: torch.Tensor, base: torch.Tensor, plan: BasisPlan) -> torch.Tensor:
    """Fused features (batch, in*(1+P)+1) of ``x``: native kernels where they apply."""
    tables = _native_tables(x, plan)
    if tables is not None:
        return native.features(x, base, tables)
    return fused_features(x, base, plan, need_deriv=False)[0]


def _weights(plan, scale_base, scale_sp, coef, mask):
    """Edge weights w (in, 1+P, out) and the flat matrix W (in*(1+P)+1, out), dummy row 0."""
    n_in, n_out = scale_base.shape
    W = torch.zeros(n_in * plan.width + 1, n_out, dtype=coef.dtype, device=coef.device)
    w = W[:-1].view(n_in, plan.width, n_out)
    torch.mul(scale_base, mask, out=w[:, 0, :])
    torch.mul(coef, (scale_sp * mask).unsqueeze(-1), out=w[:, 1:, :].transpose(1, 2))
    return w, W


def _param_grads(need, gw, scale_sp, coef, mask):
    """Gradients of scale_base, scale_sp, coef from the gradient of w (in, 1+P, out)."""
    gsb = gsp = gcoef = None
    gwsp = gw[:, 1:, :].transpose(1, 2)  # (in, out, P)
    if need[0]:
        gsb = gw[:, 0, :] * mask
    if need[1]:
        gsp = (gwsp * coef).sum(-1) * mask
    if need[2]:
        gcoef = gwsp * (scale_sp * mask).unsqueeze(-1)
    return gsb, gsp, gcoef


def _centred(feat, plan, batch, dtype=None):
    f3 = feat[:, :-1].view(batch, plan.n_in, plan.width)
    if dtype is not None:
        f3 = f3.to(dtype)
    return f3 - f3.mean(0, keepdim=True)


def _stats_dtype(t):
    """float64 for the edge statistics (MPS has none: there the tensor's own dtype)."""
    return t.dtype if t.device.type == "mps" else torch.float64


def _feature_cov(feat, plan, batch):
    """Per-input covariance (in, 1+P, 1+P) of the centred features, in float64.

    An edge that the sparsity penalty has nearly switched off has a variance w^T Cov w many
    orders below its terms; summed in float32 that cancellation left 10-40% errors in such
    variances and 10-20% in the regularizer's gradient. float64 here costs little (the
    features are (batch, in, 1+P), the covariance is small)."""
    fc = _centred(feat, plan, batch, _stats_dtype(feat))
    return torch.bmm(fc.permute(1, 2, 0), fc.permute(1, 0, 2)) / max(batch - 1, 1)


def _var_weight_grad(wt, cov, gvar):
    """Gradient wrt w (in, 1+P, out) of sum(gvar * var), var_io = w_io^T Cov_i w_io."""
    g = 2.0 * gvar.to(cov.dtype).unsqueeze(-1) * torch.bmm(wt.to(cov.dtype), cov)
    return g.transpose(1, 2).to(wt.dtype)


def _edge_var(w, cov):
    wt = w.transpose(1, 2).to(cov.dtype)  # (in, out, 1+P)
    return (torch.bmm(wt, cov) * wt).sum(-1).to(w.dtype)


class _KANLayerFn(torch.autograd.Function):
    """Layer with inputs that need gradients (hidden layers)."""

    @staticmethod
    def forward(ctx, x, base, scale_base, scale_sp, coef, mask, bias, plan, want_var):
        batch = x.shape[0]
        tables = _native_tables(x, plan)
        if tables is not None:  # one pass in C++: span search, polynomials, base column
            row = u = None
            feat = native.features(x, base, tables)
        else:
            # span rows and local coordinates are (batch, in) sized: kept so backward skips the
            # search
            row, u = plan.locate(x)
            feat, _, _ = fused_features(x, base, plan, need_deriv=False, located=(row, u))
        w, W = _weights(plan, scale_base, scale_sp, coef, mask)
        y = feat @ W if bias is None else torch.addmm(bias, feat, W)
        ctx.plan, ctx.want_var, ctx.has_bias = plan, want_var, bias is not None
        ctx.tables = tables
        if not want_var:
            ctx.save_for_backward(x, base, scale_base, scale_sp, coef, mask, bias, W, row, u)
            return y
        cov = _feature_cov(feat, plan, batch)
        ctx.save_for_backward(x, base, scale_base, scale_sp, coef, mask, bias, W, row, u, cov)
        return y, _edge_var(w, cov)

    @staticmethod
    def backward(ctx, gy, gvar=None):
        saved = ctx.saved_tensors
        plan = ctx.plan
        if torch.is_grad_enabled():  # create_graph: a gradient autograd can differentiate again
            def fn(*args):
                return local_reference(*args, plan, ctx.want_var)
            grads = reference_vjp(fn, saved[:7], ctx.needs_input_grad[:7], (gy, gvar))
            return (*grads, None, None)
        x, base, _, scale_sp, coef, mask, _, W, row, u = saved[:10]
        cov = saved[10] if ctx.want_var else None
        batch, n_in = x.shape
        # under autocast the forward's product ran in lower precision; gradients are computed
        # in the parameters' dtype (gy may come back as bfloat16)
        gy = gy.to(W.dtype)
        gvar = gvar.to(W.dtype) if gvar is not None else None
        need = ctx.needs_input_grad
        need_x, need_base, need_w = need[0], need[1], need[2] or need[3] or need[4]
        tables = ctx.tables
        if tables is not None:  # features, and with need_x the spline derivatives, in one sweep
            if need_x:
                feat, der, cols = native.features(x, base, tables, with_der=True)
            else:
                feat, der, cols = native.features(x, base, tables), None, None
        else:
            feat, cols, der = fused_features(x, base, plan, need_deriv=need_x, located=(row, u))
        w = W[:-1].view(n_in, plan.width, -1)
        use_var = cov is not None and gvar is not None
        gx = gbase = gsb = gsp = gcoef = gbias = None
        gw = (feat.t() @ gy)[:-1].view(n_in, plan.width, -1) if need_w else None
        gfeat = gy @ W.t() if (need_x or need_base) else None  # dummy column gets 0
        if use_var:
            wt = w.transpose(1, 2)  # (in, out, 1+P)
            if need_w:  # d var_io / d w_io = 2 Cov_i w_io
                gw = gw + _var_weight_grad(wt, cov, gvar)
            if gfeat is not None:
                # in the statistics' dtype: fc @ w cancels for nearly switched-off edges
                wt64, gvar64 = wt.to(cov.dtype), gvar.to(cov.dtype)
                gcov = torch.bmm((wt64 * gvar64.unsqueeze(-1)).transpose(1, 2), wt64)  # (in, 1+P, 1+P)
                fc = _centred(feat, plan, batch, cov.dtype)
                gfc = torch.bmm(fc.permute(1, 0, 2), (gcov + gcov.transpose(1, 2)) / max(batch - 1, 1))
                gfeat[:, :-1].view(batch, n_in, plan.width).add_(gfc.permute(1, 0, 2).to(gfeat.dtype))
        if gfeat is not None and tables is not None:
            gx, gbase = native.gather(gfeat, der, cols, tables, want_gx=need_x, want_gbase=need_base)
        elif gfeat is not None:
            if need_base:
                gbase = gfeat[:, 0 : plan.dummy : plan.width]
            if need_x:
                picked = torch.gather(gfeat, 1, cols.reshape(batch, der.shape[1] * der.shape[2]))
                gx = (picked.view_as(der) * der).sum(-1)
        if gw is not None:
            gsb, gsp, gcoef = _param_grads(need[2:5], gw, scale_sp, coef, mask)
        if ctx.has_bias and need[6]:
            gbias = gy.sum(0)
        return gx, gbase, gsb, gsp, gcoef, None, gbias, None, None


class LayerFeatures:
    """Features of a fixed input (e.g. the data entering the first layer), computed once.

    Reused while the input tensor, its contents and the grid stay the same, so a full-batch
    optimizer pays for the basis once per grid instead of once per evaluation.
    """

    def __init__(self, x: torch.Tensor, base: torch.Tensor, plan: BasisPlan):
        batch = x.shape[0]
        self.x, self.version, self.plan = x, x._version, plan
        self.feat = layer_features(x, base, plan)
        self.cov = _feature_cov(self.feat, plan, batch)

    def matches(self, x: torch.Tensor, plan: BasisPlan) -> bool:
        return x is self.x and x._version == self.version and plan is self.plan


class _KANLayerConstFn(torch.autograd.Function):
    """Layer whose input needs no gradient and whose features are cached."""

    @staticmethod
    def forward(ctx, cache, scale_base, scale_sp, coef, mask, bias, want_var):
        w, W = _weights(cache.plan, scale_base, scale_sp, coef, mask)
        feat = cache.feat
        y = feat @ W if bias is None else torch.addmm(bias, feat, W)
        ctx.cache, ctx.want_var, ctx.has_bias = cache, want_var, bias is not None
        ctx.save_for_backward(scale_base, scale_sp, coef, mask, bias, W)
        if not want_var:
            return y
        return y, _edge_var(w, cache.cov)

    @staticmethod
    def backward(ctx, gy, gvar=None):
        saved = ctx.saved_tensors
        cache = ctx.cache
        if torch.is_grad_enabled():  # create_graph: second derivatives in the parameters
            def fn(*args):
                return cached_reference(cache.feat, cache.cov, cache.plan, *args, ctx.want_var)
            grads = reference_vjp(fn, saved[:5], ctx.needs_input_grad[1:6], (gy, gvar))
            return (None, *grads, None)
        _, scale_sp, coef, mask, _, W = saved
        n_in = coef.shape[0]
        gy = gy.to(W.dtype)  # bfloat16 under autocast
        gvar = gvar.to(W.dtype) if gvar is not None else None
        need = ctx.needs_input_grad
        gsb = gsp = gcoef = gbias = None
        if need[1] or need[2] or need[3]:
            gw = (cache.feat.t() @ gy)[:-1].view(n_in, cache.plan.width, -1)
            if ctx.want_var and gvar is not None:
                wt = W[:-1].view(n_in, cache.plan.width, -1).transpose(1, 2)
                gw = gw + _var_weight_grad(wt, cache.cov, gvar)
            gsb, gsp, gcoef = _param_grads(need[1:4], gw, scale_sp, coef, mask)
        if ctx.has_bias and need[5]:
            gbias = gy.sum(0)
        return None, gsb, gsp, gcoef, None, gbias, None


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


def kan_layer_cached(cache: LayerFeatures, scale_base, scale_sp, coef, mask, bias, want_var=False):
    """:func:`kan_layer` on cached features of an input that needs no gradient."""
    return _KANLayerConstFn.apply(cache, scale_base, scale_sp, coef, mask, bias, want_var)
