"""The KAN layer as plain PyTorch operations: differentiable to any order.

The fast layer paths (:mod:`kanlab.functional`, the native CPU kernels, the Triton kernel) are
custom autograd Functions with hand-written first derivatives. Higher derivatives (a PDE loss on
``u_xx``, ``torch.autograd.grad(..., create_graph=True)``, Hessians) and the ``torch.func``
transforms (``grad``, ``jacrev``, ``jacfwd``, ``hessian``, ``vmap``, ``functional_call``) need a
computation autograd itself can differentiate again. This module is that computation:

* :func:`dense_basis`: all ``G + k`` B-splines of every input by the Cox-de Boor recursion on
  whole tensors (comparisons, differences and products only, so every derivative, forward or
  reverse mode, batched or not, is defined). It is the slow way to evaluate splines, used only
  where derivatives of derivatives are asked for.
* :func:`layer_reference`: ``y = b(x) @ (scale_base * mask) + sum_m B_m(x) coef_m (scale_sp *
  mask) + bias`` (and the edge variances of the regularizer) from it.
* :func:`reference_vjp`: what a fast Function's ``backward`` returns when autograd asks it for a
  differentiable gradient (``create_graph=True``): the gradient of the plain computation, built
  as a graph, so the next derivative is autograd's own.

Values agree with the fast paths to rounding (tests/test_derivatives.py).
"""
from __future__ import annotations

import torch

__all__ = ["dense_basis", "layer_reference", "local_reference", "cached_reference",
           "reference_vjp", "in_functorch_transform", "triton_reference"]


def in_functorch_transform() -> bool:
    """Whether the caller runs inside a ``torch.func`` transform (grad, vmap, jacrev, ...),
    where custom autograd Functions of the old style cannot run."""
    try:
        return torch._C._functorch.peek_interpreter_stack() is not None
    except AttributeError:  # an older or newer torch without this helper
        return False


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den, 0 where den is 0 (repeated knots)."""
    safe = torch.where(den == 0, torch.ones_like(den), den)
    return torch.where(den == 0, torch.zeros_like(num), num / safe)


def dense_basis(x: torch.Tensor, grid: torch.Tensor, k: int) -> torch.Tensor:
    """B-splines (batch, in, G + k) of order ``k`` on the knots ``grid`` (in, G + 2k + 1) at
    ``x`` (batch, in); 0 outside the knots (half-open intervals, as the fast paths)."""
    g = grid.to(x.dtype).unsqueeze(0)  # (1, in, n_knots)
    xe = x.unsqueeze(-1)
    basis = ((xe >= g[..., :-1]) & (xe < g[..., 1:])).to(x.dtype)
    for p in range(1, k + 1):
        left = _ratio(xe - g[..., : -(p + 1)], g[..., p:-1] - g[..., : -(p + 1)])
        right = _ratio(g[..., p + 1:] - xe, g[..., p + 1:] - g[..., 1:-p])
        basis = left * basis[..., :-1] + right * basis[..., 1:]
    return basis


def _edge_weights(scale_base, scale_sp, coef, mask) -> torch.Tensor:
    """Per-edge weights (in, 1 + P, out): the base weight, then the spline coefficients."""
    return torch.cat([(scale_base * mask).unsqueeze(1),
                      (coef * (scale_sp * mask).unsqueeze(-1)).transpose(1, 2)], 1)


def _variance(feat: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Unbiased batch variance (in, out) of every edge ``feat_i . w_io``, in float64."""
    dtype = w.dtype if w.device.type == "mps" else torch.float64
    f = feat.to(dtype)
    fc = f - f.mean(0, keepdim=True)
    cov = torch.bmm(fc.permute(1, 2, 0), fc.permute(1, 0, 2)) / max(feat.shape[0] - 1, 1)
    return _quadratic(cov, w)


def _quadratic(cov: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """w_io^T cov_i w_io (in, out), in cov's dtype, returned in w's (matrix products only:
    einsum over these small shapes is ~70x slower on the CPU)."""
    w64 = w.to(cov.dtype)
    return (torch.bmm(cov, w64) * w64).sum(1).to(w.dtype)


def layer_reference(x, base, scale_base, scale_sp, coef, mask, bias, grid, k,
                    want_var: bool = False):
    """The layer ``y`` (batch, out) (and with ``want_var`` the edge variances (in, out)) from
    plain operations. ``base`` is ``b(x)`` (batch, in), computed by the caller."""
    feat = torch.cat([base.unsqueeze(-1), dense_basis(x, grid, k)], -1)  # (batch, in, 1+P)
    w = _edge_weights(scale_base, scale_sp, coef, mask).to(feat.dtype)
    n_in, width, n_out = w.shape
    y = feat.reshape(feat.shape[0], n_in * width) @ w.reshape(n_in * width, n_out)
    if bias is not None:
        y = y + bias
    return (y, _variance(feat, w)) if want_var else y


def local_reference(x, base, scale_base, scale_sp, coef, mask, bias, plan, want_var=False):
    """:func:`layer_reference` from the span-local polynomials of ``plan`` (the k+1 live
    B-splines per input, placed by an out-of-place scatter): the same values in a few
    operations, differentiable to any order by autograd (the local coordinate is a linear
    function of x within a span). Fast path backward's ``create_graph`` branch uses it;
    torch.func transforms use the dense recursion, which needs no index tables."""
    from .basis import _horner

    plan._torch_tables()
    batch, n_in = x.shape
    K = plan.k + 1
    row, u = plan.locate(x)
    if plan.uniform:
        vals = _horner(plan.M, u)
    else:
        pk = plan.packed.index_select(1, row)
        vals = _horner([pk[2 + p * K: 2 + (p + 1) * K] for p in range(K)], u)
    cols = plan.cols.index_select(0, row).view(batch, n_in * K)
    base_cols = (torch.arange(n_in, device=x.device) * plan.width).expand(batch, n_in)
    src = torch.cat([base.to(vals.dtype), vals.t().reshape(batch, n_in * K)], 1)
    feat = x.new_zeros(batch, plan.dummy + 1).scatter_add(1, torch.cat([base_cols, cols], 1), src)
    w = _edge_weights(scale_base, scale_sp, coef, mask)
    n_out = w.shape[2]
    y = feat[:, :-1] @ w.reshape(n_in * plan.width, n_out).to(feat.dtype)
    if bias is not None:
        y = y + bias
    if not want_var:
        return y
    return y, _variance(feat[:, :-1].reshape(batch, n_in, plan.width), w)


def cached_reference(feat, cov, plan, scale_base, scale_sp, coef, mask, bias,
                     want_var: bool = False):
    """:func:`layer_reference` on the fused features (batch, in*(1+P)+1) of a fixed input and
    their covariance (in, 1+P, 1+P): differentiable in the parameters to any order."""
    w = _edge_weights(scale_base, scale_sp, coef, mask)
    n_in, width, n_out = w.shape
    y = feat[:, :-1] @ w.reshape(n_in * width, n_out).to(feat.dtype)
    if bias is not None:
        y = y + bias
    if not want_var:
        return y
    return y, _quadratic(cov, w)


def reference_vjp(fn, inputs: tuple, needs, grads: tuple) -> list:
    """Gradients of ``fn(*inputs)`` against the output gradients ``grads``, for the inputs
    flagged in ``needs``, as tensors autograd can differentiate again (``create_graph``).
    Inputs that are not tensors, or need no gradient, get None."""
    wanted = [i for i, (t, n) in enumerate(zip(inputs, needs))
              if n and isinstance(t, torch.Tensor) and t.requires_grad]
    out = [None] * len(inputs)
    if not wanted:
        return out
    with torch.enable_grad():
        # aliases: each input's own node, so the gradient of one is partial (b(x) and x are
        # separate inputs of the layer) while still a function of the originals for the next
        # derivative
        alias = [t.view_as(t) if isinstance(t, torch.Tensor) and t.requires_grad else t
                 for t in inputs]
        outs = fn(*alias)
    outs = outs if isinstance(outs, tuple) else (outs,)
    pairs = [(o, g) for o, g in zip(outs, grads) if g is not None and o.requires_grad]
    if not pairs:
        return out
    got = torch.autograd.grad([o for o, _ in pairs], [alias[i] for i in wanted],
                              [g.to(o.dtype) for o, g in pairs], create_graph=True,
                              allow_unused=True)
    for i, g in zip(wanted, got):
        out[i] = torch.zeros_like(inputs[i]) if g is None else g
    return out


_BASE_FUNS = {0: torch.zeros_like, 1: lambda x: x, 2: torch.nn.functional.silu}


def triton_reference(x, w, tables, base_code: int) -> torch.Tensor:
    """What the fused kernel computes, ``[b(x), B_1(x), ...] @ w`` (w: (in, nb, out), as
    :func:`kanlab.triton_spline.combined_weights` builds it), in plain operations autograd
    differentiates to any order. Backward with ``create_graph`` runs through this."""
    basis = dense_basis(x, tables.grid, tables.k)
    feat = torch.cat([_BASE_FUNS[base_code](x).unsqueeze(-1), basis], -1)
    batch, n_in, width = feat.shape
    wf = w[:, :width].to(feat.dtype).reshape(n_in * width, -1)
    return (feat.reshape(batch, n_in * width) @ wf).to(x.dtype)
