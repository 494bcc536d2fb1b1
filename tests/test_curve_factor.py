"""One power law times a curve of one input (discovery.curve_factor), and the curve stage's
curves refitted on y (discovery.univariate.univariate_curves)."""
import time

import numpy as np
import pytest
import sympy

from kanlab.discovery.algebraic import _transforms
from kanlab.discovery.curve_factor import curve_factor
from kanlab.discovery.signomial import _Space, signomial_sums
from kanlab.discovery.univariate import univariate_curves


def _rutherford(n, seed, noise=0.0):
    """(Z1*Z2/(4*E*sin(theta/2)**2))**2 on Rutherford's ranges, with noise of ``noise`` times
    y's RMS: the values span five decades, so the noise buries the small ones."""
    g = np.random.default_rng(seed)
    X = np.column_stack([g.uniform(1, 2, n), g.uniform(1, 2, n), g.uniform(1, 3, n),
                         g.uniform(1, 3, n)])
    y = (X[:, 0] * X[:, 1] / (4 * X[:, 2] * np.sin(X[:, 3] / 2) ** 2)) ** 2
    if noise:
        y = y + g.normal(0, noise * np.sqrt(np.mean(y * y)), n)
    return X, y


S = sympy.symbols("Z_1 Z_2 E_n theta", positive=True)
TRUTH = (S[0] * S[1] / (4 * S[2] * sympy.sin(S[3] / 2) ** 2)) ** 2


def _rel_error(expr, X):
    f = sympy.lambdify(S, expr, "numpy")
    t = sympy.lambdify(S, TRUTH, "numpy")
    truth = t(*X.T)
    return float(np.sqrt(np.mean((f(*X.T) - truth) ** 2) / np.mean(truth ** 2)))


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_the_curve_behind_a_power_law_is_found(noise):
    # exponents as a one-term power-law fit leaves them: the others near their integers, and
    # theta's share bent into a power
    X, y = _rutherford(600, 0, noise)
    space = _Space.of(X, list(S), np.ones(4, dtype=bool))
    E = np.array([[2.03, 1.97, -2.02, -1.7]])
    found = curve_factor(space, y, np.ones_like(y), E, 0, 3, deadline=time.perf_counter() + 30)
    assert found
    expr, rel, label = found[0]
    assert "curve" in label and label.endswith("in theta")
    assert expr.has(sympy.sin) or expr.has(sympy.cos), expr
    # on fresh points the curve is the law to within a fraction of the noise
    Xf, _ = _rutherford(400, 1)
    assert _rel_error(expr, Xf) < (1e-6 if noise == 0 else 0.3 * noise), (expr, rel)


def test_no_curve_where_the_other_powers_are_no_integers_or_halves():
    X, y = _rutherford(300, 0)
    space = _Space.of(X, list(S), np.ones(4, dtype=bool))
    E = np.array([[2.3, 2.0, -2.0, -1.7]])  # Z_1**2.3 is no power a law would have
    assert curve_factor(space, y, np.ones_like(y), E, 0, 3,
                        deadline=time.perf_counter() + 30) == []


def test_power_law_sums_offer_the_curve_at_noise():
    # the whole power-law stage: a one-term fit whose theta share is better a ratio than a
    # power sends theta to the curve search, and the curve is among the candidates
    X, y = _rutherford(600, 2, 0.01)
    found = signomial_sums(X, _transforms(y), list(S), np.ones(4, dtype=bool),
                           deadline=time.perf_counter() + 30, seconds=2.0)
    curves = [f for f in found if "times a curve" in f[1]]
    assert curves, [f[1] for f in found]
    Xf, _ = _rutherford(400, 3)
    assert min(_rel_error(f[0], Xf) for f in curves) < 0.003


def test_curves_evaluate_as_they_are_written():
    # the numbers a curve computes are those of its sympy expression, at its own constants and
    # at others (the refit moves them)
    x = np.linspace(0.5, 3.0, 200)
    y = 1.0 / (1.3 - np.cos(x)) ** 2
    curves = univariate_curves(x, y)
    assert curves and curves[0].r2 > 1 - 1e-9
    u = sympy.Symbol("u", positive=True)
    for cv in curves[:10]:
        for p in (cv.params, cv.params * 1.01):
            f = sympy.lambdify([u], cv.expression(u, p), "numpy")
            with np.errstate(all="ignore"):
                want = np.broadcast_to(f(x), x.shape).astype(float)
            got = cv.values(x, p)
            ok = np.isfinite(want)
            assert np.array_equal(ok, np.isfinite(got)), cv.label
            assert np.allclose(got[ok], want[ok], rtol=1e-9, atol=1e-12), cv.label
