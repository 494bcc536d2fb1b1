"""Derivatives of any order through every layer path: double backward (create_graph=True),
torch.func transforms, against finite differences of the forward and against each other."""
from __future__ import annotations

import os

import pytest
import torch
from torch.func import functional_call, hessian, jacrev, vmap

from kanlab import KAN, KANLayer, native
from kanlab.reference import dense_basis, layer_reference, local_reference
from kanlab.splines import bspline_basis

F64 = torch.float64


def _model(width=(2, 2, 1), k=3, base="silu", adaptive=False, seed=0, **kw):
    m = KAN(width=list(width), grid=4, k=k, seed=seed, dtype=F64, base_fun=base,
            noise_scale=0.5, **kw)
    if adaptive:  # knots from skewed samples: non-uniform grids in every layer
        m.update_grid_from_samples(torch.randn(200, width[0], dtype=F64) ** 3 * 0.4)
    return m


def _x(n, d, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, d, generator=g, dtype=F64) * 1.8 - 0.9).requires_grad_(True)


def _as_function(model):
    """f(x, *params) -> model(x) with the parameters as explicit inputs (for gradgradcheck)."""
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in model.named_parameters()]

    def f(x, *ps):
        return functional_call(model, dict(zip(names, ps)), (x,))
    return f, params


def _laplacian(model, x):
    u = model(x)
    (g,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    return sum(torch.autograd.grad(g[:, i].sum(), x, create_graph=True)[0][:, i]
               for i in range(x.shape[1]))


def test_dense_basis_matches_scipy_and_the_fast_basis():
    from scipy.interpolate import BSpline

    grid = torch.sort(torch.rand(2, 12, dtype=F64) * 4 - 2, dim=1).values
    x = torch.rand(50, 2, dtype=F64) * 3 - 1.5
    for k in (1, 2, 3):
        dense = dense_basis(x, grid, k)
        torch.testing.assert_close(dense, bspline_basis(x, grid, k), rtol=1e-12, atol=1e-12)
        t = grid[0].numpy()
        for m in range(dense.shape[-1]):
            ref = BSpline.basis_element(t[m:m + k + 2], extrapolate=False)(x[:, 0].numpy())
            ref = torch.nan_to_num(torch.as_tensor(ref), nan=0.0)
            torch.testing.assert_close(dense[:, 0, m], ref, rtol=1e-10, atol=1e-12)


# every base function, every order and both grid kinds, each at least once (the full cross
# product costs 40 s and finds nothing more: the paths differ by grid kind and base only)
@pytest.mark.parametrize("base,k,adaptive", [
    ("silu", 3, False), ("silu", 3, True), ("silu", 1, True), ("identity", 1, False),
    ("identity", 3, True), ("zero", 2, True), ("tanh", 2, False), ("custom", 1, True),
    ("custom", 3, False)])
def test_gradgradcheck_inputs_and_all_parameters(base, k, adaptive):
    fun = (lambda t: torch.sin(t) * t) if base == "custom" else base
    model = _model(k=k, base=fun, adaptive=adaptive)
    f, params = _as_function(model)
    x = _x(4, 2)
    assert torch.autograd.gradgradcheck(f, (x, *params), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("mode", ["s", "sn"])
def test_gradgradcheck_symbolic_edges_and_mult_nodes(mode):
    model = _model(width=(2, [1, 1], 1), mult_arity=2)
    model.fix_symbolic(0, 0, 1, "sin", fit_params_bool=False)
    model.fix_symbolic(0, 1, 0, "x^2", fit_params_bool=False)
    if mode == "sn":
        model.set_mode(0, 0, 1, "sn")
    f, params = _as_function(model)
    assert torch.autograd.gradgradcheck(f, (_x(4, 2), *params), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("use_native", [True, False])
@pytest.mark.parametrize("adaptive", [False, True])
def test_laplacian_against_finite_differences(use_native, adaptive):
    """u_xx + u_yy of a cubic-spline KAN by double backward, against central differences of
    the forward pass (float64, h = 1e-4: error ~1e-7)."""
    old = native.enabled()
    native.set_enabled(use_native)
    try:
        model = _model(width=(2, 3, 1), adaptive=adaptive)
        x = _x(30, 2)
        lap = _laplacian(model, x)
        h = 1e-4
        with torch.no_grad():
            u0 = model(x)[:, 0]
            fd = 0
            for i in range(2):
                e = torch.zeros_like(x)
                e[:, i] = h
                fd = fd + (model(x + e)[:, 0] - 2 * u0 + model(x - e)[:, 0]) / h ** 2
        torch.testing.assert_close(lap, fd, rtol=1e-4, atol=1e-4 * float(fd.abs().max()))
    finally:
        native.set_enabled(old)


def test_torch_func_hessian_equals_double_backward():
    model = _model(width=(3, 4, 2, 1))
    x = _x(6, 3)
    H = vmap(hessian(lambda xi: model(xi[None])[0, 0]))(x.detach())
    u = model(x)
    (g,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    rows = [torch.autograd.grad(g[:, i].sum(), x, retain_graph=True)[0] for i in range(3)]
    torch.testing.assert_close(H, torch.stack(rows, 1), rtol=1e-10, atol=1e-12)
    J = vmap(jacrev(lambda xi: model(xi[None])[0]))(x.detach())
    torch.testing.assert_close(J[:, 0, :], g.detach(), rtol=1e-10, atol=1e-12)


def test_torch_func_grad_over_parameters_matches_backward():
    model = _model(width=(2, 3, 1))
    x = _x(8, 2).detach()
    params = {n: p.detach() for n, p in model.named_parameters()}

    def loss(ps):
        return (functional_call(model, ps, (x,)) ** 2).mean()
    g = torch.func.grad(loss)(params)
    (model(x) ** 2).mean().backward()
    for n, p in model.named_parameters():  # unused parameters (symbolic branch): no .grad
        want = p.grad if p.grad is not None else torch.zeros_like(p)
        torch.testing.assert_close(g[n], want, rtol=1e-10, atol=1e-12)


def test_parameter_hessian_on_cached_features_and_regularizer():
    """Second derivatives in the parameters when the input needs no gradient (the cached
    feature path) and through the sparsity regularizer: against torch.func.hessian."""
    model = _model(width=(2, 2, 1))
    model.train()
    x = _x(20, 2).detach()
    name = "act_fun.0.coef"
    base = {n: p.detach() for n, p in model.named_parameters()}

    def loss(c):
        y = functional_call(model, {**base, name: c}, (x,))
        return (y ** 2).mean()
    c = base[name].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss(c), c, create_graph=True)
    hv = torch.autograd.grad((g * torch.ones_like(g)).sum(), c)[0]
    H = torch.func.hessian(loss)(base[name])
    torch.testing.assert_close(hv, H.reshape(c.numel(), c.numel()).sum(1).reshape(c.shape),
                               rtol=1e-9, atol=1e-12)
    wrapped = _Reg(model)

    def reg(c):  # pykan's sparsity regularizer (its own autograd Function on the fast path)
        ps = {f"model.{n}": v for n, v in {**base, name: c}.items()}
        return functional_call(wrapped, ps, (x,))
    (gr,) = torch.autograd.grad(reg(c), c, create_graph=True)
    hv = torch.autograd.grad(gr.sum(), c)[0]
    H = torch.func.hessian(reg)(base[name])
    torch.testing.assert_close(hv, H.reshape(c.numel(), c.numel()).sum(1).reshape(c.shape),
                               rtol=1e-7, atol=1e-10)


class _Reg(torch.nn.Module):
    """model.reg(x) as a module, for functional_call."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.reg(x)


def test_reference_layer_equals_the_fast_layer_with_variances():
    layer = KANLayer(3, 4, num=5, k=3, dtype=F64, noise_scale=0.5)
    x = _x(40, 3) * 1.5
    y, var = layer.forward_with_var(x)
    yr, varr = layer_reference(x, layer.base_fun(x), layer.scale_base, layer.scale_sp,
                               layer.coef, layer.mask, layer.bias, layer.grid, layer.k,
                               want_var=True)
    torch.testing.assert_close(yr, y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(varr, var, rtol=1e-10, atol=1e-14)
    for adaptive in (False, True):  # the span-local form, on uniform and adaptive grids
        if adaptive:
            layer.update_grid_from_samples(torch.randn(300, 3, dtype=F64) ** 3 * 0.4)
        y, var = layer.forward_with_var(x)
        yl, varl = local_reference(x, layer.base_fun(x), layer.scale_base, layer.scale_sp,
                                   layer.coef, layer.mask, layer.bias, layer.plan(), want_var=True)
        torch.testing.assert_close(yl, y, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(varl, var, rtol=1e-10, atol=1e-14)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
                    reason="Triton needs a GPU or its interpreter")
def test_triton_layer_second_derivatives():
    pytest.importorskip("triton")
    from kanlab import triton_spline as ts

    layer = KANLayer(2, 3, num=5, k=3, noise_scale=0.5)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    layer = layer.to(dev)
    x = (torch.rand(16, 2, device=dev) * 1.6 - 0.8).requires_grad_(True)
    tables = ts.SplineTables(layer.grid, layer.k)

    def second(fn):
        (g,) = torch.autograd.grad(fn(x).sum(), x, create_graph=True)
        return torch.autograd.grad(g[:, 0].sum(), x)[0]
    tri = second(lambda z: ts.kan_layer_triton(z, tables, layer.scale_base, layer.scale_sp,
                                               layer.coef, layer.mask, layer.bias))
    ref = second(layer)
    torch.testing.assert_close(tri, ref, rtol=1e-4, atol=1e-4)
