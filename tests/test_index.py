"""A single monomial index read off the data (kanlab.discovery.index) and fast curves."""
import time

import numpy as np
import sympy

from kanlab import discover
from kanlab.discovery.index import find_index
from kanlab.discovery.univariate import univariate_candidates


def _unit(v):
    v = np.asarray(v, float)
    return v / v[np.flatnonzero(v)[0]]


def test_index_and_prefactor_of_an_oscillating_law():
    rng = np.random.default_rng(0)
    X = rng.uniform(1, 3, (800, 3))
    m, p, q = X.T
    y = m ** 2 * (1 + np.cos(6 * p * q))
    found = find_index(X, y, [0, 1, 2])
    assert found is not None
    cols, a, pre, R = found
    assert cols == [0, 1, 2] and R < 1e-3
    assert np.allclose(_unit(a), [0, 1, 1])
    # the prefactor is m**2, up to a power of the index (the same law)
    rest = pre - np.array([2, 0, 0])
    assert np.linalg.matrix_rank(np.vstack([a, rest]), tol=1e-9) <= 1


def test_index_takes_negative_inputs_with_whole_exponents():
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.uniform(-3, -1, 800), rng.uniform(1, 3, 800)])
    y = np.sin(4 * X[:, 0] / X[:, 1])
    cols, a, pre, _ = find_index(X, y, [0, 1])
    assert np.allclose(_unit(a), [1, -1])
    # no prefactor, or one that is a power of the index
    assert np.linalg.matrix_rank(np.vstack([a, pre]), tol=1e-9) <= 1


def test_no_index_where_the_law_needs_two():
    rng = np.random.default_rng(2)
    X = rng.uniform(1, 3, (800, 3))
    y = X[:, 0] + np.sin(5 * X[:, 1] * X[:, 2])
    assert find_index(X, y, [0, 1, 2]) is None
    # an input with zeros has no whole-number powers to divide by
    X[:5, 0] = 0.0
    assert find_index(X, np.cos(3 * X[:, 1] * X[:, 2]), [0, 1, 2]) is None


def test_curve_stage_fits_a_fast_oscillation():
    rng = np.random.default_rng(3)
    u = rng.uniform(0.3, 4.0, 600)
    y = np.cos(2 * np.pi * 1.5 * u) ** 2  # beyond the default scan of a on the standardized u
    s = sympy.Symbol("u", positive=True)
    found = univariate_candidates(u, y, s)
    assert found
    f = sympy.lambdify([s], found[0][1], "numpy")
    assert np.max(np.abs(f(u) - y)) < 1e-6


def test_discover_reads_an_oscillating_law_a_network_cannot_follow():
    rng = np.random.default_rng(4)
    X = rng.uniform(1, 4, (1000, 3))
    w, k, r = X.T
    y = 3 * w * np.sin(2 * k * r)
    t = time.perf_counter()
    res = discover(X, y, ["w", "k", "r"], time_budget=30, seed=0)
    assert time.perf_counter() - t < 45  # the budget is kept (loosely: a loaded machine)
    wv, kv, rv = sympy.symbols("w k r", positive=True)
    e = res.formula.subs(dict(zip(res.variables, (wv, kv, rv))))
    assert sympy.simplify(e - 3 * wv * sympy.sin(2 * kv * rv)) == 0, e
    assert any(str(a["hidden"]).startswith("groups(k*r") for a in res.attempts)
