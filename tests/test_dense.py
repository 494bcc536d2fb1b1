"""Whole low-degree polynomials pruned backward (discovery/dense.py), plain and behind a prefactor."""
import math
import time
from math import comb

import numpy as np
import sympy

from kanlab.discovery.algebraic import algebraic_candidates
from kanlab.discovery.dense import _backward_path, dense_polynomials, polynomial_basis
from kanlab.discovery.prefactor import dense_behind


def _positions(n, pairs, seed):
    """Inputs like SRBench I.9.18's: a in [3, 4], b in [1, 2] per pair (nearly parallel
    monomials), and 1/y the sum of the squared differences."""
    rng = np.random.default_rng(seed)
    cols = []
    for _ in range(pairs):
        cols += [rng.uniform(3, 4, n), rng.uniform(1, 2, n)]
    X = np.column_stack(cols)
    S = sum((X[:, 2 * k] - X[:, 2 * k + 1]) ** 2 for k in range(pairs))
    return X, S


def _truth_inverse(s, pairs):
    return sum((s[2 * k] - s[2 * k + 1]) ** 2 for k in range(pairs))


def test_the_basis_holds_every_monomial_up_to_the_degree():
    rng = np.random.default_rng(0)
    for d, deg in ((2, 3), (6, 3), (7, 2), (12, 2)):
        X = rng.uniform(1, 2, (50, d))
        D, ends = polynomial_basis(X, np.ones(d, bool))
        assert ends == [comb(d + k, k) for k in range(1, deg + 1)]
        assert len(D.terms) == ends[-1] == D.columns.shape[1]
        for j in rng.choice(len(D.terms), 5, replace=False):
            v = np.array(D.terms[j][0])
            assert v.min() >= 0 and v.sum() <= deg
            np.testing.assert_allclose(D.columns[:, j], np.prod(X ** v, axis=1))
    # a dead input takes no part; thirteen live ones are too many
    X = rng.uniform(1, 2, (50, 3))
    X[:, 1] = 1.5
    D, _ = polynomial_basis(X, np.array([True, False, True]))
    assert all(v[1] == 0 for v, _ in D.terms)
    assert polynomial_basis(rng.uniform(1, 2, (50, 13)), np.ones(13, bool))[1] == []


def test_the_backward_path_matches_least_squares_on_each_support():
    """Every step's residual is the least-squares residual of its support (computed in the
    small R-space), and it never falls when a column is dropped."""
    X, S = _positions(400, 2, seed=1)
    D, ends = polynomial_basis(X, np.ones(4, bool))
    A = D.columns / np.linalg.norm(D.columns, axis=0)
    t = 1 / S + np.random.default_rng(2).normal(0, 1e-3, len(S))
    path = _backward_path(A, t)
    assert [len(s) for s, _ in path] == list(range(1, A.shape[1] + 1))
    rels = [r for _, r in path]
    assert all(a >= b - 1e-12 for a, b in zip(rels, rels[1:]))
    for sup, rel in path[::7]:
        coef, *_ = np.linalg.lstsq(A[:, sup], t, rcond=None)
        res = A[:, sup] @ coef - t
        assert abs(float(res @ res) / float(t @ t) - rel) < 1e-10


def test_nine_correlated_terms_that_forward_selection_misses():
    """1/y = (x1 - x2)**2 + (y1 - y2)**2 + (z1 - z2)**2: nine nearly parallel monomials (a
    ten-column forward path of :func:`.sparse.forward_select` ends near 1e-4 here); the whole
    degree-2 basis pruned backward ends on the nine terms, exactly."""
    X, S = _positions(600, 3, seed=3)
    s = sympy.symbols("x1 x2 y1 y2 z1 z2")
    found = dense_polynomials(X, [("1/y", S, lambda e: 1 / e)], s, np.ones(6, bool), 600, 10)
    best = min(found, key=lambda f: f[3])  # degree 1 first (no exact fit), then degree 2
    assert best[2] == 9 and best[3] < 1e-24 and found[-1] is best
    f = sympy.lambdify(s, 1 / best[0] - _truth_inverse(s, 3))
    assert np.max(np.abs(f(*X.T))) < 1e-9


def test_on_noisy_data_the_law_keeps_its_terms_and_no_more():
    """At 1% noise on y, the rows are weighed as fits of y (the noise of 1/y is largest where
    y is smallest) and BIC stops at the law's six terms, coefficients near 1 and -2."""
    X, S = _positions(1000, 2, seed=4)
    y = 1 / S
    y = y + np.random.default_rng(5).normal(0, 0.01 * np.sqrt(np.mean(y * y)), len(y))
    s = sympy.symbols("x1 x2 y1 y2")
    found = dense_polynomials(X, [("1/y", 1 / y, lambda e: 1 / e)], s, np.ones(4, bool),
                              1000, 10)
    best = min(found, key=lambda f: f[3])
    assert best[2] == 6
    inv = sympy.Poly(sympy.expand(1 / best[0]), *s)
    want = sympy.Poly(sympy.expand(_truth_inverse(s, 2)), *s)
    assert set(inv.monoms()) == set(want.monoms())
    for m, c in zip(want.monoms(), want.coeffs()):
        assert abs(float(inv.coeff_monomial(m)) - float(c)) < 0.05 * abs(float(c))


def test_a_law_that_is_no_polynomial_gives_no_candidate():
    """Where even the whole cubic basis leaves more than 1% of T(y) unexplained (relative
    residuals 0.09, 0.89 and 0.02 here), no polynomial is offered: a ten-term series would only
    crowd the candidates."""
    rng = np.random.default_rng(6)
    s = sympy.symbols("a b")
    for f in (lambda X: np.exp(X[:, 0]) * np.sin(2 * X[:, 1]) + 3,
              lambda X: np.sin(3 * X[:, 0]) * np.cos(2 * X[:, 1]),
              lambda X: np.exp(-X[:, 0] ** 2 - X[:, 1] ** 2)):
        X = rng.uniform(0, 3, (500, 2))
        assert dense_polynomials(X, [("y", f(X), lambda e: e)], s, np.ones(2, bool), 500,
                                 10) == []


def test_behind_a_prefactor_with_integer_powers():
    """G*m1*m2/((x1 - x2)**2 + (y1 - y2)**2 + (z1 - z2)**2) (SRBench I.9.18): the power-law fit
    gives G, m1 and m2 exponent 1, and the rest is the whole polynomial of 1/y; the algebraic
    stage ends on it, within seconds (on 1% noise the fit is as close as the noise allows)."""
    for noise in (0.0, 0.01):
        X, S = _positions(800, 3, seed=7)
        rng = np.random.default_rng(8)
        M = rng.uniform(1, 2, (800, 3))
        X = np.column_stack([M, X])
        y = M[:, 0] * M[:, 1] * M[:, 2] / S
        y = y + rng.normal(0, noise * np.sqrt(np.mean(y * y)), len(y))
        s = sympy.symbols("G m1 m2 x1 x2 y1 y2 z1 z2", positive=True)
        truth = s[0] * s[1] * s[2] / _truth_inverse(s[3:], 3)
        found = dense_behind(X, y, range(9), np.ones(9, bool), s, 10, 800, math.inf)
        assert found and found[0][1] == "G*m1*m2 times a polynomial of 9 terms of 1/y"
        f = sympy.lambdify(s, found[0][0] / truth - 1)
        assert np.max(np.abs(f(*X.T))) < (1e-9 if noise == 0 else 0.05)
        if noise == 0:  # the whole stage stops there: exact
            t0 = time.perf_counter()
            cands = algebraic_candidates(X, y, s, deadline=time.perf_counter() + 20)
            assert time.perf_counter() - t0 < 20
            best = min(cands, key=lambda c: c.train_rel_rss)
            assert best.label.startswith("G*m1*m2 times a polynomial of 9 terms")
            assert best.train_rel_rss < 1e-24
