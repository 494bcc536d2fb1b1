"""Square roots of short sums behind a prefactor, alone and beside a power-law term
(discovery.roots), and the power-law terms the signomial fits offer for the second."""
import time

import numpy as np
import pytest
import sympy

from kanlab.discovery.algebraic import _transforms
from kanlab.discovery.roots import divided_root
from kanlab.discovery.signomial import signomial_sums
from kanlab.discovery.terms import build_dictionary, simplest_first


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_the_root_of_a_sum_behind_a_prefactor(noise):
    """c*sqrt(c**2*m**2 + (p - q*A)**2) (Goldstein 8.56 without its potential): y**2 / c**2 is a
    sum of four terms. Exact without noise; at 1% noise the extended-BIC pick has the four
    terms alone, and predicts fresh points within a fraction of the noise."""
    def draw(n, seed):
        X = np.random.default_rng(seed).uniform(1, 5, (n, 5))
        m, c, p, q, A = X.T
        return X, c * np.sqrt(c ** 2 * m ** 2 + (p - q * A) ** 2)

    X, y = draw(600, 0)
    sd = noise * np.sqrt(np.mean(y * y))
    y = y + sd * np.random.default_rng(1).standard_normal(len(y))
    s = sympy.symbols("m c p q A", positive=True)
    D = build_dictionary(X, max_columns=3000)
    found = divided_root(D, X, y, range(5), s, simplest_first(D.terms), 10, len(y),
                         time.perf_counter() + 60, 1.0)
    assert found
    four = [f for f in found if f[2] == 4]
    assert four, [f[1] for f in found]
    expr = four[0][0]
    Xf, yf = draw(400, 2)
    err = sympy.lambdify(s, expr, "numpy")(*Xf.T) - yf
    rms = float(np.sqrt(np.mean(err ** 2)))
    assert rms < (1e-9 * np.sqrt(np.mean(yf ** 2)) if noise == 0 else 0.3 * sd), (expr, rms)
    # no such root where y changes sign
    assert divided_root(D, X, y - np.mean(y), range(5), s, simplest_first(D.terms), 10,
                        len(y), time.perf_counter() + 60, 1.0) == []


def test_a_root_that_would_turn_imaginary_inside_the_box_is_refused():
    """y = x3*sqrt(x1 - x2 + 1.5) on rows where the root is real, in a box where it is not
    (x1 - x2 reaches -4): new points from that box would give no number, so no candidate."""
    X = np.random.default_rng(0).uniform(1, 5, (3000, 3))
    X = X[X[:, 0] - X[:, 1] > -1.0][:500]
    y = X[:, 2] * np.sqrt(X[:, 0] - X[:, 1] + 1.5)
    s = sympy.symbols("x1 x2 x3", positive=True)
    D = build_dictionary(X, max_columns=3000)
    found = divided_root(D, X, y, range(3), s, simplest_first(D.terms), 10, len(y),
                         time.perf_counter() + 60, 1.0)
    assert all(f[3] > 1e-6 for f in found), found  # only mimics that stay real, if any
    # the same law on the whole box is found
    X = np.random.default_rng(1).uniform(1, 5, (500, 3))
    X[:, 1] = X[:, 1] * 0.2  # x1 - x2 + 1.5 > 0 throughout
    y = X[:, 2] * np.sqrt(X[:, 0] - X[:, 1] + 1.5)
    D = build_dictionary(X, max_columns=3000)
    found = divided_root(D, X, y, range(3), s, simplest_first(D.terms), 10, len(y),
                         time.perf_counter() + 60, 1.0)
    assert found and found[0][3] < 1e-20, found


def _goldstein(n, seed, noise=0.0):
    """q*V + c*sqrt(c**2*m**2 + (p - q*A)**2) on [1, 5]**6, noise ``noise`` times y's RMS."""
    X = np.random.default_rng(seed).uniform(1, 5, (n, 6))
    m, c, p, q, A, V = X.T
    y = q * V + c * np.sqrt(c ** 2 * m ** 2 + (p - q * A) ** 2)
    if noise:
        y = y + noise * np.sqrt(np.mean(y * y)) * np.random.default_rng(seed + 1).standard_normal(n)
    return X, y


G = sympy.symbols("m c p q A V", positive=True)


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_a_root_beside_a_power_law_term(noise):
    """Given the term q*V with a rough coefficient (0.95, as a power-law fit leaves it), the
    root behind c is fitted with the term's coefficient: exact without noise, the four terms
    and within a fraction of the noise at 1%."""
    X, y = _goldstein(600, 0, noise)
    D = build_dictionary(X, max_columns=3000)
    term = (G[3] * G[5], 0.95, X[:, 3] * X[:, 5])
    found = divided_root(D, X, y, range(5), G, simplest_first(D.terms), 10, len(y),
                         time.perf_counter() + 60, 1.0, beside=term)
    four = [f for f in found if f[2] == 5]  # the term and four under the root
    assert four, [f[1] for f in found]
    expr = four[0][0]
    Xf, yf = _goldstein(400, 7)
    rms = float(np.sqrt(np.mean((sympy.lambdify(G, expr, "numpy")(*Xf.T) - yf) ** 2)))
    sd = noise * float(np.sqrt(np.mean(y * y)))
    assert rms < (1e-9 * np.sqrt(np.mean(yf ** 2)) if noise == 0 else 0.3 * sd), (expr, rms)
    g = float(expr.coeff(G[3] * G[5]))
    assert abs(g - 1) < (1e-9 if noise == 0 else 0.02), expr
    # without the term the root alone does not fit (q*V is no part of a root behind c)
    alone = divided_root(D, X, y, range(5), G, simplest_first(D.terms), 10, len(y),
                         time.perf_counter() + 60, 1.0)
    assert all(f[3] > 1e-6 for f in alone)


def test_power_law_fits_offer_their_whole_terms():
    """The power-law sums of Goldstein 8.56 hold q*V beside terms that bend into the root; it
    is listed (integer powers, a coefficient near 1) for the search beside a root."""
    X, y = _goldstein(600, 0, 0.01)
    terms = []
    signomial_sums(X, _transforms(y), G, np.ones(6, dtype=bool),
                   deadline=time.perf_counter() + 30, seconds=2.0, whole_terms=terms)
    qv = [t for t in terms if t[0] == G[3] * G[5]]
    assert qv, [t[0] for t in terms]
    assert abs(qv[0][1] - 1) < 0.1
    assert np.allclose(qv[0][2], X[:, 3] * X[:, 5])
