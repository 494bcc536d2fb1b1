"""A KAN's values with their first and pure second derivatives in the inputs, in one pass.

A PDE loss needs ``u``, ``u_{x_a}`` and ``u_{x_a x_a}`` at thousands of points, and the
gradient of a loss on them with respect to the parameters. Nested autograd gets there by
differentiating the network twice (two backward passes per evaluation, each a graph of many
small operations). The network's structure gives them directly (Taylor mode, forward): a layer
is ``y_j = sum_i phi_ij(x_i) + bias_j``, so for every input direction a

    y_j'  = sum_i phi_ij'(x_i) x_i'
    y_j'' = sum_i phi_ij''(x_i) (x_i')^2 + phi_ij'(x_i) x_i''

and ``phi'``, ``phi''`` are the base function's derivatives and the B-splines' (the span-local
polynomials differentiated once and twice) times the same edge weights: three feature matrices
against one weight matrix. Products of multiplication nodes follow the product rule; symbolic
edges (rare in PDE training) are differentiated by autograd, edge by edge.

The result is built from plain operations, so the loss's gradient in the parameters (and in
anything else) is ordinary backward. :func:`jet` is what :class:`kanlab.pde.Derivatives` uses
for a kanlab KAN; tests/test_derivatives.py checks it against double backward.
"""
from __future__ import annotations

import torch

from .basis import _horner as basis_horner
from .reference import _edge_weights

__all__ = ["jet", "supports"]


def _silu_derivs(x):
    s = torch.sigmoid(x)
    d1 = s * (1 + x * (1 - s))
    return d1, s * (1 - s) * (2 + x * (1 - 2 * s))


def _tanh_derivs(x):
    t = torch.tanh(x)
    d1 = 1 - t * t
    return d1, -2 * t * d1


_BASE_DERIVS = {
    "silu": _silu_derivs,
    "identity": lambda x: (torch.ones_like(x), torch.zeros_like(x)),
    "zero": lambda x: (torch.zeros_like(x), torch.zeros_like(x)),
    "tanh": _tanh_derivs,
    "relu": lambda x: ((x > 0).to(x.dtype), torch.zeros_like(x)),
}


def _autograd_derivs(fun, x):
    """b'(x), b''(x) of an elementwise function by autograd (custom base functions, gelu)."""
    z = x.view_as(x) if x.requires_grad else x.detach().requires_grad_(True)
    with torch.enable_grad():
        y = fun(z)
        (d1,) = torch.autograd.grad(y.sum(), z, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), z, create_graph=True, allow_unused=True)
    return d1, torch.zeros_like(x) if d2 is None else d2


def supports(model) -> bool:
    """Whether :func:`jet` takes ``model`` (a kanlab KAN)."""
    return hasattr(model, "act_fun") and hasattr(model, "symbolic_fun") and hasattr(model, "_arity")


def _horner(coefs, u, K):
    """(K, batch*in): sum_p coefs[p] u^p for the K local functions (0 for no coefficients);
    ``coefs`` (powers, K, 1 or batch*in)."""
    if coefs.shape[0] == 0:
        return u.new_zeros(K, u.shape[1])
    return basis_horner(list(coefs), u)


def _spline_features(layer, x):
    """Dense (batch, in*(1+P)+1) features of the layer and their first and second derivatives
    in x (base column first per input, then the P B-splines, then a zero column)."""
    plan = layer.plan()
    plan._torch_tables()
    batch, n_in = x.shape
    K = plan.k + 1
    row, u = plan.locate(x)
    tables = getattr(plan, "_jet_tables", None)
    if tables is None:  # derivative polynomials of the span polynomials, once per grid
        if plan.uniform:
            c0 = torch.stack([c[:, 0] for c in plan.M], 0)  # (powers, K)
        else:
            c0 = plan.packed[2:].reshape(K, K, -1)  # (powers, K, rows)
        p = torch.arange(K, dtype=c0.dtype, device=c0.device).reshape(-1, *[1] * (c0.dim() - 1))
        tables = plan._jet_tables = (c0, (c0 * p)[1:], (c0 * p * (p - 1))[2:])
    if plan.uniform:
        coefs = [t.unsqueeze(-1) for t in tables]  # (powers, K, 1)
        inv_h = plan.inv_h.expand(batch, n_in).reshape(1, -1)
    else:
        coefs = [t.index_select(2, row) for t in tables]  # (powers, K, batch*in)
        inv_h = plan.packed[0].index_select(0, row).unsqueeze(0)
    local = torch.stack([_horner(coefs[0], u, K), _horner(coefs[1], u, K) * inv_h,
                         _horner(coefs[2], u, K) * (inv_h * inv_h)], 0)  # (3, K, batch*in)
    cols = plan.cols.index_select(0, row).view(batch, n_in * K)
    name = layer.base_fun_name
    b0 = layer.base_fun(x)
    b1, b2 = (_BASE_DERIVS[name](x) if name in _BASE_DERIVS
              else _autograd_derivs(layer.base_fun, x))
    base_cols = (torch.arange(n_in, device=x.device) * plan.width).expand(batch, n_in)
    index = torch.cat([base_cols, cols], 1).expand(3, batch, n_in * (K + 1))
    src = torch.cat([torch.stack([b0, b1, b2], 0),
                     local.transpose(1, 2).reshape(3, batch, n_in * K)], 2)
    feats = x.new_zeros(3, batch, plan.dummy + 1).scatter_add(2, index, src)
    return feats, plan.width


def _weights(layer):
    """The layer's weight matrix (in*(1+P)+1, out) with the zero row of the dummy column."""
    w = _edge_weights(layer.scale_base, layer.scale_sp, layer.coef, layer.mask)
    n_in, width, n_out = w.shape
    return torch.cat([w.reshape(n_in * width, n_out), w.new_zeros(1, n_out)], 0)


def _rows(feats, width, dv, d2v):
    """The rows whose product with the weight matrix gives the values, then the derivatives in
    each direction, then the second derivatives: (batch * (1 + 2 dirs), features)."""
    f0, f1, f2 = feats
    batch, dirs, _ = dv.shape
    pad = dv.new_zeros(batch, dirs, 1)
    d_cols = torch.cat([dv.repeat_interleave(width, -1), pad], -1)
    d2_cols = torch.cat([d2v.repeat_interleave(width, -1), pad], -1)
    f1 = f1.unsqueeze(1)
    return torch.cat([f0, (f1 * d_cols).reshape(batch * dirs, -1),
                      (f2.unsqueeze(1) * d_cols * d_cols + f1 * d2_cols).reshape(batch * dirs, -1)])


def _cached_rows(layer, v, dv, d2v):
    """:func:`_rows` of the first layer on fixed points (no gradient; dv the identity and d2v 0
    there), reused while the points, the grid and the base function stay the same (between grid
    updates): a PDE fit evaluates the same points dozens of times per L-BFGS step, and only the
    weight matrix changes."""
    plan = layer.plan()
    key = (v.data_ptr(), tuple(v.shape), v.dtype, v._version, id(plan), plan.version,
           layer.base_fun)
    cached = getattr(layer, "_jet_cache", None)
    if cached is None or cached[0] != key:
        feats, width = _spline_features(layer, v)
        cached = (key, _rows(feats, width, dv, d2v))
        layer._jet_cache = cached
    return cached[1]


def _numeric_jet(layer, v, dv, d2v, first=False):
    """Layer outputs (batch, out) and their derivatives (batch, dirs, out); ``first``: the
    network's first layer (dv the identity, d2v zero)."""
    batch, dirs, _ = dv.shape
    if first and not v.requires_grad:
        rows = _cached_rows(layer, v, dv, d2v)
    else:
        feats, width = _spline_features(layer, v)
        rows = _rows(feats, width, dv, d2v)
    W = _weights(layer)
    out = rows @ W  # one product for the values and both derivatives
    y = out[:batch] if layer.bias is None else out[:batch] + layer.bias
    dy = out[batch: batch * (1 + dirs)].view(batch, dirs, -1)
    d2y = out[batch * (1 + dirs):].view(batch, dirs, -1)
    return y, dy, d2y


def _symbolic_jet(sym, v, dv, d2v):
    """The symbolic branch's outputs and derivatives: each active edge's c*f(a*x+b)+d
    differentiated by autograd (edge values depend on their own input only)."""
    z = v.view_as(v) if v.requires_grad else v.detach().requires_grad_(True)
    with torch.enable_grad():
        acts = sym.activations(z)  # (batch, in, out)
        n_out = acts.shape[2]
        ys, dys, d2ys = [], [], []
        for j in range(n_out):
            a = acts[:, :, j]
            if not a.requires_grad:
                g1 = g2 = torch.zeros_like(v)
            else:
                (g1,) = torch.autograd.grad(a.sum(), z, create_graph=True, allow_unused=True)
                g1 = torch.zeros_like(v) if g1 is None else g1
                g2 = torch.zeros_like(v)
                if g1.requires_grad:
                    (g2,) = torch.autograd.grad(g1.sum(), z, create_graph=True, allow_unused=True)
                    g2 = torch.zeros_like(v) if g2 is None else g2
            ys.append(a.sum(1))
            dys.append((g1.unsqueeze(1) * dv).sum(-1))
            d2ys.append((g2.unsqueeze(1) * dv * dv + g1.unsqueeze(1) * d2v).sum(-1))
    return torch.stack(ys, -1), torch.stack(dys, -1), torch.stack(d2ys, -1)


def _mult_jet(model, l, y, dy, d2y):
    """Multiplication nodes of layer l: the product rule on values and derivatives."""
    arity = model._arity[l + 1]
    if not arity:
        return y, dy, d2y
    n_sum = model.width[l + 1][0]
    outs = [[y[:, :n_sum]], [dy[..., :n_sum]], [d2y[..., :n_sum]]]
    start = n_sum
    for a in arity:
        p, dp, d2p = y[:, start], dy[..., start], d2y[..., start]
        for c in range(start + 1, start + a):
            q, dq, d2q = y[:, c], dy[..., c], d2y[..., c]
            p, dp, d2p = (p * q, dp * q.unsqueeze(1) + p.unsqueeze(1) * dq,
                          d2p * q.unsqueeze(1) + 2 * dp * dq + p.unsqueeze(1) * d2q)
        outs[0].append(p.unsqueeze(-1))
        outs[1].append(dp.unsqueeze(-1))
        outs[2].append(d2p.unsqueeze(-1))
        start += a
    return tuple(torch.cat(o, -1) for o in outs)


def jet(model, x: torch.Tensor):
    """``(u, du, d2u)`` of a kanlab KAN at ``x`` (n, d): u (n, m), du[:, a, :] = du/dx_a and
    d2u[:, a, :] = d^2u/dx_a^2, both (n, d, m); differentiable in the parameters."""
    n, d = x.shape
    v = x
    dv = torch.eye(d, dtype=x.dtype, device=x.device).expand(n, d, d)
    d2v = x.new_zeros(n, d, d)
    for l in range(model.depth):
        y, dy, d2y = _numeric_jet(model.act_fun[l], v, dv, d2v, first=l == 0)
        if model.symbolic_fun[l].is_active():
            s, ds, d2s = _symbolic_jet(model.symbolic_fun[l], v, dv, d2v)
            y, dy, d2y = y + s, dy + ds, d2y + d2s
        v, dv, d2v = _mult_jet(model, l, y, dy, d2y)
    return v, dv, d2v
