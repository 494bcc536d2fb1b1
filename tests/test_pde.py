"""kanlab.pde: derivatives of the solution, residual training, and the Taylor-mode jet."""
from __future__ import annotations

import math

import pytest
import torch

from kanlab import KAN, pde
from kanlab.taylor import jet

F64 = torch.float64


class _Known(torch.nn.Module):
    """u = sin(x) y^2 + x^3 y: derivatives known in closed form."""

    def forward(self, z):
        x, y = z[:, :1], z[:, 1:2]
        return torch.sin(x) * y ** 2 + x ** 3 * y


def test_derivatives_of_a_known_function():
    z = (torch.rand(9, 2, dtype=F64) * 2 - 1).requires_grad_(True)
    u = _Known()(z)
    D = pde.Derivatives(u, z)
    x, y = z[:, :1].detach(), z[:, 1:2].detach()
    cases = {(0,): torch.cos(x) * y ** 2 + 3 * x ** 2 * y, (1,): 2 * torch.sin(x) * y + x ** 3,
             (0, 0): -torch.sin(x) * y ** 2 + 6 * x * y, (0, 1): 2 * torch.cos(x) * y + 3 * x ** 2,
             (1, 0): 2 * torch.cos(x) * y + 3 * x ** 2, (1, 1): 2 * torch.sin(x),
             (0, 0, 1): -2 * torch.sin(x) * y + 6 * x}
    for index, want in cases.items():
        torch.testing.assert_close(D(*index).detach(), want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(D.laplacian().detach(), cases[(0, 0)] + cases[(1, 1)])
    torch.testing.assert_close(D.grad().detach(), torch.cat([cases[(0,)], cases[(1,)]], 1))
    with pytest.raises(ValueError, match="columns"):
        D(2)


def test_jet_and_nested_autograd_agree_on_a_kan():
    model = KAN(width=[2, [2, 1], 1], mult_arity=2, grid=4, k=3, seed=0, dtype=F64,
                noise_scale=0.5)
    model.update_grid_from_samples(torch.randn(100, 2, dtype=F64) * 0.6)
    z = (torch.rand(12, 2, dtype=F64) * 1.8 - 0.9).requires_grad_(True)
    u = model(z)
    slow = pde.Derivatives(u, z)  # no model: nested autograd
    fast = pde.Derivatives(u, z, model)  # Taylor mode
    for index in [(0,), (1,), (0, 0), (1, 1)]:
        torch.testing.assert_close(fast(*index), slow(*index), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast(0, 1), slow(0, 1), rtol=1e-10, atol=1e-12)  # mixed: autograd
    v, dv, d2v = jet(model, z)
    torch.testing.assert_close(v, u, rtol=1e-12, atol=1e-12)
    # the jet is differentiable in the parameters: its gradient equals nested autograd's
    g_fast = torch.autograd.grad(d2v.sum(), model.act_fun[0].coef, retain_graph=True)[0]
    g_slow = torch.autograd.grad((slow(0, 0) + slow(1, 1)).sum(), model.act_fun[0].coef)[0]
    torch.testing.assert_close(g_fast, g_slow, rtol=1e-9, atol=1e-12)


def test_fit_solves_a_1d_poisson_problem():
    """u'' = -pi^2 sin(pi x) on [-1, 1], u(-1) = u(1) = 0: u = sin(pi x)."""
    x = torch.linspace(-1, 1, 60, dtype=F64)[1:-1, None]
    exact = lambda t: torch.sin(math.pi * t)  # noqa: E731
    conds = [pde.Condition(x, lambda t, u, D: D(0, 0) + math.pi ** 2 * exact(t), 0.01, "pde"),
             pde.dirichlet(torch.tensor([[-1.0], [1.0]], dtype=F64), 0.0)]
    model = KAN(width=[1, 3, 1], grid=5, k=3, seed=0, dtype=F64)
    err0 = pde.l2_error(model, x, exact)
    hist = pde.fit(model, conds, steps=12, exact=exact)
    assert err0 > 0.3 and hist["l2"][-1] < 3e-3  # from 0.7 to ~6e-4
    assert set(hist) == {"loss", "pde", "boundary", "seconds", "l2"}
    assert hist["loss"][-1] < 1e-2 * hist["loss"][0]


def test_fit_updates_grids_only_when_asked():
    """No grid updates by default; with ``grid_update_every`` the first layer's knots move to
    the interior points' range (here [0, 0.5], inside the initial [-1, 1])."""
    x = torch.linspace(0, 0.5, 40, dtype=F64)[:, None]
    conds = [pde.Condition(x, lambda t, u, D: D(0, 0) - 1.0, 0.01, "pde"),
             pde.dirichlet(torch.tensor([[0.0], [0.5]], dtype=F64), 0.0)]
    for every, moved in ((0, False), (2, True)):
        model = KAN(width=[1, 2, 1], grid=5, k=3, seed=0, dtype=F64)
        before = model.act_fun[0].grid.clone()
        pde.fit(model, conds, steps=2, grid_update_every=every)
        after = model.act_fun[0].grid
        assert bool(torch.equal(before, after)) is not moved
        if moved:
            inner = after[0, 3:-3]
            assert float(inner.min()) >= -1e-9 and float(inner.max()) <= 0.5 + 1e-9


def test_fit_with_adam_on_any_module_and_neumann_condition():
    """u' = cos(x) on [0, 1] with u(0) = 0 (u = sin x), an MLP and Adam: the helper is not
    KAN-specific."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x = torch.rand(40, 1)
    conds = [pde.Condition(x, lambda t, u, D: D(0) - torch.cos(t)),
             pde.dirichlet(torch.zeros(1, 1), 0.0)]
    hist = pde.fit(net, conds, steps=300, opt="Adam", lr=1e-2, exact=torch.sin)
    assert hist["l2"][-1] < 0.05


def test_fit_checks_its_input():
    model = KAN(width=[1, 1], seed=0)
    with pytest.raises(ValueError, match="at least one"):
        pde.fit(model, [])
    with pytest.raises(ValueError, match="NaN"):
        pde.fit(model, [pde.dirichlet(torch.tensor([[float("nan")]]), 0.0)])
    with pytest.raises(ValueError, match="opt"):
        pde.fit(model, [pde.dirichlet(torch.zeros(2, 1), 0.0)], opt="SGD")
    bad = pde.Condition(torch.zeros(3, 1), lambda t, u, D: u[:2])
    with pytest.raises(ValueError, match="one row per point"):
        pde.fit(model, [bad], steps=1)


def test_repeated_evaluations_agree_with_mixed_derivatives():
    """After its first evaluation a condition that uses derivatives takes the Taylor-mode pass
    on the fixed points (cached first-layer features); mixed derivatives then still come from
    autograd on a connected graph: the loss and its gradient are the same every time."""
    model = KAN(width=[2, 3, 1], grid=4, k=3, seed=0, dtype=F64, noise_scale=0.5)
    x = torch.rand(30, 2, dtype=F64) * 2 - 1
    cond = pde.Condition(x, lambda t, u, D: D(0, 1) + D.laplacian() + D(1) * u)
    values = []
    for _ in range(3):
        (loss,) = pde._losses(model, [cond], F64, "cpu")
        g = torch.autograd.grad(loss, model.act_fun[0].coef)[0]
        values.append((loss.detach(), g))
    for loss, g in values[1:]:
        torch.testing.assert_close(loss, values[0][0], rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(g, values[0][1], rtol=1e-9, atol=1e-12)
    assert cond._derivatives


def test_cached_first_layer_follows_grid_updates_and_weights():
    """The first layer's rows on fixed points are cached between closures; a grid update or a
    change of weights must still give the derivatives nested autograd gives."""
    from kanlab import taylor

    model = KAN(width=[2, 3, 1], grid=4, k=3, seed=0, dtype=F64, noise_scale=0.5)
    x = torch.rand(40, 2, dtype=F64) * 2 - 1

    def reference():
        xr = x.clone().requires_grad_(True)
        u = model(xr)
        (g,) = torch.autograd.grad(u.sum(), xr, create_graph=True)
        lap = sum(torch.autograd.grad(g[:, i].sum(), xr, retain_graph=True)[0][:, i]
                  for i in range(2))
        return u.detach(), g.detach(), lap.detach()

    for change in ("none", "weights", "grid"):
        if change == "weights":
            with torch.no_grad():
                model.act_fun[0].coef.mul_(1.5)
                model.act_fun[0].scale_base.add_(0.2)
        elif change == "grid":
            model.update_grid_from_samples(x * 0.8)
        u, du, d2u = taylor.jet(model, x.detach())
        u_ref, g_ref, lap_ref = reference()
        torch.testing.assert_close(u, u_ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(du[:, :, 0], g_ref, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(d2u[:, :, 0].sum(1), lap_ref, rtol=1e-8, atol=1e-9)
