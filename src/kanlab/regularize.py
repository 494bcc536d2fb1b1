"""pykan's sparsity regularizer, as one autograd node.

Per layer, with ``A_ij = std(phi_ij) / (std(x_i) + 0.1)`` (pykan's ``edge_forward_spline_n``),

    R = lamb_l1 * sum(A) + lamb_entropy * (E_out(A) + E_in(A))

where ``E_out`` is the mean over outputs of the entropy of each output's incoming scores and
``E_in`` the mean over inputs of the entropy of each input's outgoing scores, both normalized by
``(sum + 1)`` and with ``log2(p + 1e-4)``, as in pykan. The edge spreads come from the layers'
exact variances (see :mod:`kanlab.functional`). Forward and the analytic backward run as one
custom autograd function: a few dozen small operations instead of a graph of them.
"""
from __future__ import annotations

import math

import torch

from .reference import in_functorch_transform, reference_vjp

__all__ = ["sparsity", "edge_scores", "coefficient_penalty", "var_to_std", "regularization"]

_EPS = 1e-4


def var_to_std(var: torch.Tensor) -> torch.Tensor:
    """sqrt with a zero (and zero-gradient) floor for round-off-sized variances."""
    tiny = torch.finfo(var.dtype).eps ** 2
    return torch.sqrt(var.clamp_min(tiny)) * (var > tiny)


def _layer_terms(var, xstd, normalized):
    s = var_to_std(var)
    live = s > 0
    d = xstd + 0.1
    a = s / d.unsqueeze(-1) if normalized else s
    c_out = a.sum(0, keepdim=True) + 1  # per output: sum over inputs
    c_in = a.sum(1, keepdim=True) + 1  # per input: sum over outputs
    p, q = a / c_out, a / c_in
    return s, d, a, c_out, c_in, p, q, live


def _h(p):
    return p * torch.log2(p + _EPS)


def _dh(p):
    return torch.log2(p + _EPS) + p / ((p + _EPS) * math.log(2.0))


def _sparsity_total(lamb_l1, lamb_entropy, normalized, *tensors):
    """The regularizer's value from (var, xstd) pairs, in plain (differentiable) operations."""
    total = tensors[0].new_zeros(())
    for var, xstd in zip(tensors[0::2], tensors[1::2]):
        _, _, a, _, _, p, q, _ = _layer_terms(var, xstd, normalized)
        ent = -_h(p).sum(0).mean() - _h(q).sum(1).mean()
        total = total + lamb_l1 * a.sum() + lamb_entropy * ent
    return total


class _SparsityFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, lamb_l1, lamb_entropy, normalized, *tensors):
        ctx.save_for_backward(*tensors)
        ctx.lamb_l1, ctx.lamb_entropy, ctx.normalized = lamb_l1, lamb_entropy, normalized
        return _sparsity_total(lamb_l1, lamb_entropy, normalized, *tensors)

    @staticmethod
    def backward(ctx, g):
        tensors = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the plain computation's gradient
            def fn(*ts):
                return _sparsity_total(ctx.lamb_l1, ctx.lamb_entropy, ctx.normalized, *ts)
            return (None, None, None,
                    *reference_vjp(fn, tensors, ctx.needs_input_grad[3:], (g,)))
        grads = []
        for var, xstd in zip(tensors[0::2], tensors[1::2]):
            s, d, a, c_out, c_in, p, q, live = _layer_terms(var, xstd, ctx.normalized)
            n_in, n_out = a.shape
            dp, dq = _dh(p), _dh(q)
            d_out = -(dp - (dp * p).sum(0, keepdim=True)) / (c_out * n_out)
            d_in = -(dq - (dq * q).sum(1, keepdim=True)) / (c_in * n_in)
            ga = g * (ctx.lamb_l1 + ctx.lamb_entropy * (d_out + d_in))
            if ctx.normalized:
                gs = ga / d.unsqueeze(-1)
                gx = -(ga * s).sum(1) / (d * d)
            else:
                gs, gx = ga, torch.zeros_like(xstd)
            gvar = torch.where(live, gs * 0.5 / torch.where(live, s, torch.ones_like(s)),
                               torch.zeros_like(gs))
            grads += [gvar if ctx.needs_input_grad[3 + len(grads)] else None,
                      gx if ctx.needs_input_grad[4 + len(grads)] else None]
        return (None, None, None, *grads)


def _input_std(x: torch.Tensor) -> torch.Tensor:
    return x.std(0) if x.shape[0] > 1 else x.new_zeros(x.shape[1])


def sparsity(inputs, variances, lamb_l1=1.0, lamb_entropy=2.0, normalized=True,
             input_stds=None) -> torch.Tensor:
    """L1 + entropy term of the regularizer, summed over layers.

    Args:
        inputs: per layer, its input (batch, in).
        variances: per layer, the batch variance (in, out) of every edge.
        normalized: divide each edge's spread by ``std(x_i) + 0.1`` (pykan's default).
        input_stds: per layer, the spread of each input, when not that of ``inputs`` (the
            distributed fit passes the spread over all ranks' rows).
    """
    tensors = []
    stds = input_stds if input_stds is not None else [_input_std(x) for x in inputs]
    for var, sd in zip(variances, stds):
        tensors += [var, sd]
    if in_functorch_transform():  # torch.func: the plain computation
        return _sparsity_total(float(lamb_l1), float(lamb_entropy), bool(normalized), *tensors)
    return _SparsityFn.apply(float(lamb_l1), float(lamb_entropy), bool(normalized), *tensors)


def edge_scores(inputs, variances, normalized: bool = True) -> list[torch.Tensor]:
    """Per layer, (in, out): the edge scores ``A`` the regularizer penalizes."""
    out = []
    for x, var in zip(inputs, variances):
        out.append(_layer_terms(var, _input_std(x), normalized)[2])
    return out


def coefficient_penalty(model, lamb_coef=0.0, lamb_coefdiff=0.0) -> torch.Tensor:
    """pykan's ``lamb_coef * |coef|`` and ``lamb_coefdiff * |diff coef|`` terms."""
    total = model.act_fun[0].coef.new_zeros(())
    for layer in model.act_fun:
        c = layer.coef
        if lamb_coef:
            total = total + lamb_coef * c.abs().mean(1).sum()
        if lamb_coefdiff:
            total = total + lamb_coefdiff * torch.diff(c, dim=-1).abs().mean(1).sum()
    return total


_REG_METRICS = ("edge_forward_spline_n", "edge_forward_sum", "edge_forward_spline_u")


def regularization(model, inputs, variances, lamb_l1=1.0, lamb_entropy=2.0, lamb_coef=0.0,
                   lamb_coefdiff=0.0, reg_metric="edge_forward_spline_n",
                   input_stds=None) -> torch.Tensor:
    """pykan's regularizer (without the overall ``lamb``).

    Args:
        inputs, variances: per layer, its input (batch, in) and its edges' batch variance
            (in, out), as returned by ``model.forward_with_stats``.

    Per layer: ``lamb_l1 * sum(A) + lamb_entropy * (row entropy + column entropy)`` with
    ``A_ij = std(phi_ij) / (std(x_i) + 0.1)``, plus ``lamb_coef * |coef|`` and
    ``lamb_coefdiff * |diff coef|`` penalties (means over outputs, sums elsewhere).
    """
    if reg_metric not in _REG_METRICS:
        raise ValueError(f"reg_metric {reg_metric!r} is not supported; use one of {_REG_METRICS}")
    total = inputs[0].new_zeros(())
    if lamb_l1 != 0 or lamb_entropy != 0:
        total = sparsity(inputs, variances, lamb_l1, lamb_entropy,
                         normalized=reg_metric != "edge_forward_spline_u", input_stds=input_stds)
    if lamb_coef != 0 or lamb_coefdiff != 0:
        total = total + coefficient_penalty(model, lamb_coef, lamb_coefdiff)
    return total
