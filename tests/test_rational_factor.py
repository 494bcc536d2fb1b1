"""Power-law sums with one input's share a ratio of polynomials (discovery.rational_factor)."""
import time

import numpy as np
import pytest
import sympy

from kanlab import discover
from kanlab.discovery.algebraic import _transforms
from kanlab.discovery.rational_factor import _fit as rational_fit
from kanlab.discovery.rational_factor import rational_factor
from kanlab.discovery.signomial import _fit, _Space, signomial_sums


def _rational(X, y, symbols):
    found = signomial_sums(X, _transforms(y), symbols, np.ones(X.shape[1], dtype=bool),
                           deadline=time.perf_counter() + 30, seconds=3.0)
    return [f for f in found if ", rational in " in f[1]]


def _max_error(expr, truth, symbols, Z):
    fn = sympy.lambdify(symbols, expr - truth)
    return float(np.max(np.abs(fn(*Z.T))))


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_a_clausius_mossotti_factor_behind_power_laws(noise):
    # Jackson 4.60: two power-law terms, one of them times (alpha - 1)/(alpha + 2); the power
    # laws alone bend alpha into alpha**1.5 (R2 0.99), the rational share is the law
    S = sympy.symbols("E theta r d alpha", positive=True)
    E, th, r, d, al = S
    rng = np.random.default_rng(0)
    lo_hi = [(1, 5), (0, 6), (1, 5), (1, 5), (1, 5)]

    def draw(n, seed):
        g = np.random.default_rng(seed)
        return np.column_stack([g.uniform(lo, hi, n) for lo, hi in lo_hi])

    truth = E * sympy.cos(th) * (-r + d ** 3 / r ** 2 * (al - 1) / (al + 2))
    law = sympy.lambdify(S, truth)
    X = draw(600, 1)
    y = law(*X.T)
    y = y + noise * np.sqrt(np.mean(y * y)) * rng.normal(size=len(y))
    found = _rational(X, y, S)
    assert found and found[0][1].endswith("rational in alpha"), found
    expr = found[0][0]
    Z = draw(500, 2)
    scale = float(np.sqrt(np.mean(law(*Z.T) ** 2)))
    tol = 1e-9 if noise == 0 else 0.02  # the coefficients are least-squares values
    assert _max_error(expr, truth, S, Z) < tol * scale
    assert found[0][3] < (1e-20 if noise == 0 else 3 * noise ** 2)


def test_a_shared_denominator_of_degree_one_is_found_with_integer_coefficients():
    a, b, c = S = sympy.symbols("a b c", positive=True)
    X = np.random.default_rng(3).uniform(0.5, 3.0, (500, 3))
    truth = a * b / (1 + c) + b ** 2
    y = sympy.lambdify(S, truth)(*X.T)
    found = _rational(X, y, S)
    assert found, signomial_sums(X, _transforms(y), S, np.ones(3, bool),
                                 deadline=time.perf_counter() + 30, seconds=3.0)
    assert found[0][1].endswith("rational in c")
    assert _max_error(found[0][0], truth, S, X) < 1e-9 * float(np.max(np.abs(y)))
    # Q is monic in c: 1.0*c + 1.0, the numerators' coefficients the law's own
    den = sympy.fraction(sympy.together(found[0][0]))[1]
    coeffs = sympy.Poly(den, c).all_coeffs()
    assert [float(v.subs({a: 1, b: 1})) for v in coeffs][0] == pytest.approx(1.0)


def test_no_rational_share_where_the_power_laws_are_the_law():
    # a noisy sum of two power laws: no input's share pays for a ratio's extra coefficients
    S = sympy.symbols("a b c d", positive=True)
    rng = np.random.default_rng(5)
    X = rng.uniform(1.0, 4.0, (800, 4))
    y = X[:, 0] ** 2 * X[:, 1] + 3 * X[:, 2] / X[:, 3]
    y = y + 0.01 * np.sqrt(np.mean(y * y)) * rng.normal(size=len(y))
    space = _Space.of(X, S, np.ones(4, bool))
    w = np.ones(len(y))
    E0 = np.array([[2.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]])
    t = y / np.sqrt(np.mean(y * y))
    E, tags, rel = _fit(space, t, E0, np.array([0, 0]), w=w)
    assert rel < 3e-4
    assert rational_factor(space, t, w, E, tags, rel) is None


def test_a_denominator_that_vanishes_among_the_points_is_refused():
    # 1/(u - 2) over u in [1, 3]: Q changes sign on the data, a pole among the points
    v = np.linspace(1.0, 3.0, 400) / 3.0
    M = np.ones((400, 1))
    t = 1.0 / (v * 3.0 - 2.0 + 1e-3)
    assert rational_fit(M, v, t, np.ones(400), 0, 1) is None
    # and one that keeps its sign is fitted exactly
    t = 1.0 / (v * 3.0 + 2.0)
    a, b, res = rational_fit(M, v, t, np.ones(400), 0, 1)
    assert float(res @ res) < 1e-20


def test_discover_returns_the_rational_law():
    rng = np.random.default_rng(7)
    X = rng.uniform(1.0, 5.0, (800, 3))
    y = X[:, 0] * (X[:, 2] - 1) / (X[:, 2] + 2) + X[:, 1] ** 2
    res = discover(X, y, var_names=["x", "y", "z"], time_budget=20, seed=0)
    names = {s.name: s for s in res.formula.free_symbols}
    fn = sympy.lambdify([names.get(v, sympy.Symbol(v)) for v in "xyz"], res.formula)
    Z = rng.uniform(1.0, 5.0, (300, 3))
    truth = Z[:, 0] * (Z[:, 2] - 1) / (Z[:, 2] + 2) + Z[:, 1] ** 2
    assert np.max(np.abs(fn(*Z.T) - truth)) < 1e-8 * np.max(np.abs(truth)), res.formula
