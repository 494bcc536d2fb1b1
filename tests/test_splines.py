"""B-spline math against scipy, and the least-squares refit."""
import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline

from kanlab.splines import (
    bspline_basis, coef2curve, curve2coef, extend_grid, grid_is_uniform, local_basis, make_grid,
)


def _grid(kind, n_in, G, k, gen):
    if kind == "uniform":
        return make_grid(n_in, G, k, (-1, 1), dtype=torch.float64)
    inner = torch.sort(torch.rand(n_in, G + 1, dtype=torch.float64, generator=gen) * 2 - 1, dim=1).values
    return extend_grid(inner, k)


def _scipy_basis(x, t, k, m, deriv=False):
    be = BSpline.basis_element(t[m : m + k + 2], extrapolate=False)
    if deriv:
        be = be.derivative()
    return np.nan_to_num(be(x))


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("kind", ["uniform", "nonuniform"])
def test_basis_matches_scipy(k, kind):
    gen = torch.Generator().manual_seed(k)
    G, n_in = 6, 3
    g = _grid(kind, n_in, G, k, gen)
    assert grid_is_uniform(g) == (kind == "uniform")
    x = torch.rand(400, n_in, dtype=torch.float64, generator=gen) * 4 - 2  # inside and outside
    x[:5] = g[:, 2:7].t()  # exactly on knots
    B = bspline_basis(x, g, k).numpy()
    dB = bspline_basis(x, g, k, derivative=True).numpy()
    assert B.shape == (400, n_in, G + k)
    for i in range(n_in):
        t = g[i].numpy()
        for m in range(G + k):
            ref = _scipy_basis(x[:, i].numpy(), t, k, m)
            np.testing.assert_allclose(B[:, i, m], ref, atol=1e-12, rtol=0)
            # derivatives away from knots (one-sided there)
            xi = x[5:, i].numpy()
            dref = _scipy_basis(xi, t, k, m, deriv=True)
            np.testing.assert_allclose(dB[5:, i, m], dref, atol=1e-10 * (1 + np.abs(dref).max()), rtol=0)


def test_partition_of_unity_and_outside_zero():
    g = make_grid(2, 5, 3, (-1, 1), dtype=torch.float64)
    x = torch.linspace(-1, 0.999, 101, dtype=torch.float64)[:, None].repeat(1, 2)
    B = bspline_basis(x, g, 3)
    torch.testing.assert_close(B.sum(-1), torch.ones(101, 2, dtype=torch.float64))
    far = torch.tensor([[-10.0, 10.0], [100.0, -100.0]], dtype=torch.float64)
    assert torch.count_nonzero(bspline_basis(far, g, 3)) == 0


@pytest.mark.parametrize("kind", ["uniform", "nonuniform"])
def test_local_basis_only_k_plus_1_values(kind):
    gen = torch.Generator().manual_seed(0)
    g = _grid(kind, 4, 7, 3, gen).float()
    x = torch.rand(50, 4, generator=gen) * 3 - 1.5
    lb = local_basis(x, g, 3, need_deriv=True)
    assert lb.values.shape == (50, 4, 4) and lb.index.shape == (50, 4, 4)
    assert lb.deriv.shape == (50, 4, 4)
    plan = lb.plan
    assert plan.uniform == (kind == "uniform") and plan.width == 11 and plan.dummy == 44
    # scattering the local values into the fused layout reproduces the dense basis
    flat = torch.zeros(50, 45).scatter_add_(1, lb.index.reshape(50, -1), lb.values.reshape(50, -1))
    dense = flat[:, :-1].view(50, 4, 11)[:, :, 1:]
    torch.testing.assert_close(dense, bspline_basis(x, g, 3))
    # each input's columns stay inside its own block (or the dummy column)
    block = lb.index // 11
    assert torch.all((block == torch.arange(4)[None, :, None]) | (lb.index == 44))


@pytest.mark.parametrize("kind", ["uniform", "nonuniform"])
def test_coef2curve_matches_scipy_spline(kind):
    gen = torch.Generator().manual_seed(0)
    k, G = 3, 5
    g = _grid(kind, 2, G, k, gen)
    coef = torch.randn(2, 3, G + k, dtype=torch.float64, generator=gen)
    x = torch.rand(200, 2, dtype=torch.float64, generator=gen) * 2 - 1
    y = coef2curve(x, g, coef, k)
    for i in range(2):
        for j in range(3):
            spl = BSpline(g[i].numpy(), coef[i, j].numpy(), k, extrapolate=False)
            ref = np.nan_to_num(spl(x[:, i].numpy()))
            inside = (x[:, i].numpy() >= g[i, k].item()) & (x[:, i].numpy() < g[i, -k - 1].item())
            np.testing.assert_allclose(y[inside.nonzero()[0], i, j].numpy(), ref[inside], atol=1e-12)


def test_curve2coef_recovers_spline_exactly():
    gen = torch.Generator().manual_seed(1)
    g = _grid("nonuniform", 3, 6, 3, gen)
    coef = torch.randn(3, 2, 9, dtype=torch.float64, generator=gen)
    lo, hi = g[:, 0], g[:, -1]
    x = lo + (hi - lo) * torch.rand(500, 3, dtype=torch.float64, generator=gen)
    y = coef2curve(x, g, coef, 3)
    fit = curve2coef(x, y, g, 3, smooth=0.0, ridge=0.0)
    torch.testing.assert_close(fit, coef, atol=1e-8, rtol=1e-8)


def test_curve2coef_is_well_posed_without_samples():
    g = make_grid(2, 5, 3, dtype=torch.float64)
    x = torch.full((10, 2), 50.0, dtype=torch.float64)  # far outside the grid
    y = torch.zeros(10, 2, 1, dtype=torch.float64)
    coef = curve2coef(x, y, g, 3)
    assert torch.isfinite(coef).all()
    assert coef.abs().max() < 1e-6


def test_uniform_detection_float32():
    assert grid_is_uniform(make_grid(5, 10, 3, (-3.7, 12.1), dtype=torch.float32))
    g = make_grid(5, 10, 3, dtype=torch.float32)
    g[2, 6] += 0.01
    assert not grid_is_uniform(g)
