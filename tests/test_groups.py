"""Dimensionless groups (kanlab.discovery.groups) and the univariate curve stage."""
import time

import numpy as np
import pytest
import sympy

from kanlab import discover
from kanlab.discovery.groups import find_groups
from kanlab.discovery.univariate import univariate_candidates


def _groups(X, y, seed=0):
    live = list(range(X.shape[1]))
    zero = np.zeros(X.shape[1])
    return find_groups(None, None, X, y, np.inf, 1.0, live, zero, np.ones_like(zero),
                       np.zeros(X.shape[1], bool), 0.0, None, seed=seed)


def _best_curve(z, y):
    """(label, values at z) of the curve stage's first candidate for y against z."""
    sym = sympy.Symbol("z")
    cands = univariate_candidates(z, y, sym)
    assert cands
    return cands[0][0], sympy.lambdify(sym, cands[0][1], "numpy")(z)


def test_find_groups_reads_one_group_and_the_prefactor():
    rng = np.random.default_rng(0)
    X = rng.uniform(1, 5, (800, 5))
    n0, a, b, c, d = X.T
    y = n0 * np.tanh(a * b / (c * d))
    found = _groups(X, y)
    assert found is not None
    pos, A, m, others = found
    assert pos == [0, 1, 2, 3, 4] and others == []
    assert len(A) == 1
    g = A[0] / A[0][np.flatnonzero(A[0])[0]]
    assert np.allclose(g, [0, 1, 1, -1, -1])
    # the prefactor is n0, or n0 times a power of the group (the group absorbs it)
    rest = m - np.array([1, 0, 0, 0, 0])
    assert np.linalg.matrix_rank(np.vstack([A[0], rest]), tol=1e-9) <= 1


def test_find_groups_two_groups_and_a_prefactor():
    rng = np.random.default_rng(1)
    X = rng.uniform(1, 4, (1000, 4))
    w, v, c, th = X.T
    y = w * (1 + v / c) / (2 + np.cos(th))
    found = _groups(X, y)
    assert found is not None
    pos, A, m, others = found
    assert len(A) == 2  # v/c and theta
    span = np.linalg.svd(A)[2][:2]
    for true in ([0, 1, -1, 0], [0, 0, 0, 1]):
        t = np.array(true, float)
        assert np.linalg.norm(t - span.T @ (span @ t)) < 1e-9


def test_group_basis_is_made_simplest():
    from kanlab.discovery.groups import _simplest_basis

    # beta and beta*omega/omega_0 span the same groups as beta and omega/omega_0
    A = _simplest_basis([[0, 0, 1], [1, -1, 1]])
    assert sorted(map(tuple, A.astype(int))) == [(0, 0, 1), (1, -1, 0)]
    B = _simplest_basis([[1, 2, 0, 0], [1, 2, 1, 0], [0, 1, 1, 1]])
    assert np.linalg.matrix_rank(B) == 3
    assert np.abs(B).sum() < 7  # simpler than the input's 8


def test_find_groups_reads_a_group_of_many_inputs_and_large_powers():
    # seven inputs with powers up to 3: beyond the enumerated candidates, read off the data
    rng = np.random.default_rng(3)
    X = rng.uniform(1, 3, (1000, 7))
    e = np.array([3, 1, -2, -1, -3, -1, 1], float)
    g = np.prod(X ** e, axis=1)
    y = np.log(1 + g)
    found = _groups(X, y)
    assert found is not None
    pos, A, m, others = found
    assert len(A) == 1 and others == []
    assert np.allclose(np.abs(A[0]), np.abs(e)) and np.allclose(A[0] * A[0][0], e * e[0])
    assert np.allclose(m, 0)


def test_other_bases_of_the_same_groups():
    from kanlab.discovery.groups import _integer_vectors, _other_bases

    # inputs (x, c, u, t): u/c with x/(t*u), and u/c with x/(c*t), are bases of one lattice
    A = np.array([[0, -1, 1, 0], [1, 0, -1, -1]], float)
    others = _other_bases(A, _integer_vectors(4, 4), limit=3)
    assert others
    for B in others:
        # the same lattice: each basis is an integer, unimodular combination of the other
        C = B @ np.linalg.pinv(A)
        assert np.allclose(C, np.round(C)) and abs(abs(np.linalg.det(C)) - 1) < 1e-9
        assert {tuple(v) for v in B} != {tuple(v) for v in A}
    as_sets = [{tuple(np.abs(v).astype(int)) for v in B} for B in others]
    assert {(1, 1, 0, 1), (0, 1, 1, 0)} in as_sets  # x/(c*t) beside c/u (or u/c)
    assert _other_bases(A[:1], _integer_vectors(4, 4)) == []  # one group: nothing to choose


def test_find_groups_none_where_no_scaling_symmetry():
    rng = np.random.default_rng(2)
    X = rng.uniform(1, 3, (800, 3))
    y = X[:, 0] + X[:, 1] * X[:, 2] ** 2 + np.exp(X[:, 2])
    assert _groups(X, y) is None


def test_univariate_stage_finds_planck_curve():
    rng = np.random.default_rng(3)
    z = rng.uniform(1, 5, 600) * rng.uniform(1, 5, 600) / rng.uniform(1, 5, 600)
    y = 1 / (np.exp(z / (2 * np.pi)) - 1)
    label, best = _best_curve(z, y)
    assert np.max(np.abs(best - y) / np.abs(y)) < 1e-6
    assert "exp" in label


def test_univariate_stage_finds_a_steep_decay_over_a_long_tailed_group():
    """exp(-u) with u = m*g*x/(kb*T) from 0.2 to 77 (I.40.1's group) is exp(-38.7*s) on the
    standardized argument s, beyond the default scan of |a| <= 10; with 1% noise y goes
    negative in the tail, so there is no log y to fit a line to either."""
    rng = np.random.default_rng(0)
    X = rng.uniform(1, 5, (800, 5))
    z = X[:, 0] * X[:, 1] * X[:, 2] / (X[:, 3] * X[:, 4])
    y = np.exp(-z)
    y = y + 0.01 * np.sqrt(np.mean(y * y)) * np.random.default_rng(1).normal(size=len(y))
    label, best = _best_curve(z, y)
    assert label == "curve exp of y"
    assert np.sqrt(np.mean((best - np.exp(-z)) ** 2)) < 0.003 * np.sqrt(np.mean(y * y))


def test_univariate_stage_finds_a_power_of_a_curve():
    """Rutherford's 1/sin(theta/2)**4 is (1 - cos(theta))**-2 up to a constant: a cosine of
    the target's inverse square root."""
    rng = np.random.default_rng(5)
    th = rng.uniform(1, 3, 600)
    y = 0.3 / np.sin(th / 2) ** 4
    label, best = _best_curve(th, y)
    assert np.max(np.abs(best - y) / np.abs(y)) < 1e-6
    assert "cos" in label and "1/sqrt y" in label


def test_discover_reads_a_law_through_its_group():
    """A Shockley-diode-like law: y = I0 * (exp(q*V/(k*T)) - 1). Four of the five inputs enter
    through one group; the reduced problem is one curve."""
    rng = np.random.default_rng(4)
    X = rng.uniform(1, 5, (1000, 5))
    y = X[:, 0] * (np.exp(X[:, 1] * X[:, 2] / (X[:, 3] * X[:, 4])) - 1)
    res = discover(X, y, var_names=["I0", "q", "V", "k", "T"], time_budget=60, seed=0)
    i0, q, v, k, t = res.variables
    assert sympy.simplify(res.formula - i0 * (sympy.exp(q * v / (k * t)) - 1)) == 0, res.formula
    assert any(str(a["hidden"]).startswith("groups(") for a in res.attempts)


def test_univariate_stage_has_cosh_for_two_level_populations():
    rng = np.random.default_rng(5)
    z = rng.uniform(0.1, 3.0, 500)
    y = 1 / (np.exp(z) + np.exp(-z))
    label, best = _best_curve(z, y)
    assert np.max(np.abs(best - y) / np.abs(y)) < 1e-6
    assert "cosh" in label


def test_settled_needs_exact_constants_and_the_noise_floor():
    from kanlab.discovery.search import _settled

    x = sympy.Symbol("x")
    exact = {"expr": 2 * x, "r2": 0.999, "between_ok": True}
    fitted = {"expr": sympy.Float(2.013) * x, "r2": 0.9995, "between_ok": True}
    # variance 1: held-out squared errors 1e-3 (exact) and 5e-4 (fitted)
    assert _settled([exact], 2e-3, 1.0, True)
    assert not _settled([exact], 2e-3, 1.0, False)  # too early: clean data may still go exact
    assert not _settled([exact], 5e-4, 1.0, True)  # worse than the surrogate
    assert not _settled([fitted], 2e-3, 1.0, True)  # a float left
    assert not _settled([exact], None, 1.0, True)
    # at once, before a third of the budget, when its residuals are noise
    assert _settled([dict(exact)], 2e-3, 1.0, False, white=lambda a: True)
    assert not _settled([dict(exact)], 2e-3, 1.0, False, white=lambda a: False)


def test_white_residuals_tells_noise_from_a_missed_term():
    from kanlab.discovery.select import white_residuals

    rng = np.random.default_rng(8)
    Z = rng.uniform(-1, 1, (800, 3))
    noise = rng.standard_normal(800)
    assert white_residuals(noise, Z)
    # a missed smooth term, even one well below the noise, is shared by neighbours
    assert not white_residuals(noise + 3 * np.sin(2 * Z[:, 1]), Z)
    assert not white_residuals(0.05 * Z[:, 0] * Z[:, 2], Z)  # clean data, wrong formula
    assert not white_residuals(np.zeros(800), Z)


def test_paired_gain_needs_more_than_the_noise():
    from kanlab.discovery.select import paired_gain

    rng = np.random.default_rng(9)
    e = rng.standard_normal(200)
    # an extra term that fitted training noise: on held-out rows it is a random change
    assert not paired_gain(e, e - 0.05 * rng.standard_normal(200))
    assert paired_gain(e, 1e-9 * e)  # exact against a constant: a clear gain on few rows
    assert paired_gain(e[:20] + 1.0, e[:20])  # a missed offset
    assert not paired_gain(e, 2 * e)


def test_noisy_law_ends_the_search_at_the_noise_floor():
    rng = np.random.default_rng(6)
    X = rng.uniform(1, 3, (1000, 2))
    y = X[:, 0] * X[:, 1] ** 2
    y = y + 0.01 * np.sqrt(np.mean(y ** 2)) * rng.standard_normal(len(y))
    res = discover(X, y, var_names=["a", "b"], time_budget=30, seed=0)
    a, b = res.variables
    assert sympy.simplify(res.formula - a * b ** 2) == 0, res.formula
    # stopped once the law was in hand (its residuals are noise), not at a third of the
    # budget nor at its end: the attempts' own seconds
    spent = sum(t.get("seconds", 0.0) for t in res.attempts)
    assert spent < 10.0, res.attempts


def test_discover_divides_a_power_prefactor_off_a_sign_changing_law():
    """y changes sign (cos on [1, 3]), so the oracle is the surrogate of y itself; one group
    (theta alone) with the prefactor a/r**3 divided off on the data leaves a curve."""
    rng = np.random.default_rng(7)
    X = rng.uniform(1, 3, (1000, 3))
    y = 3 * X[:, 0] * np.sin(X[:, 2]) * np.cos(X[:, 2]) / (4 * np.pi * X[:, 1] ** 3)
    # 120 s: with one thread (the suite's setting) the factor split (p | r | theta) spends 31 s
    # on a long series and, at 60 s, leaves no time for the groups attempt that finds the law
    # (this failed at d85dd43 too, depending on the machine's speed); it finishes in about 40 s
    res = discover(X, y, var_names=["p", "r", "theta"], time_budget=120, seed=0)
    p, r, theta = res.variables
    truth = 3 * p * sympy.sin(theta) * sympy.cos(theta) / (4 * sympy.pi * r ** 3)
    assert sympy.simplify(res.formula - truth) == 0, res.formula


def test_univariate_stage_takes_the_argument_inverted():
    """A group may come out upside down (T*kb/(B*mom) for B*mom/(T*kb)): the curve stage also
    fits functions of 1/x."""
    rng = np.random.default_rng(8)
    z = rng.uniform(0.3, 4.0, 500)
    y = 1 / np.cosh(1 / z)
    label, best = _best_curve(z, y)
    assert np.max(np.abs(best - y) / np.abs(y)) < 1e-6
    assert "in 1/x" in label


def test_a_formula_with_fewer_fitted_constants_earns_its_length():
    from kanlab.discovery.select import earns_its_length

    x = sympy.Symbol("x")
    rng = np.random.default_rng(10)
    noise = {}

    def residuals(e):  # both within the same noise: no paired gain either way
        return noise.setdefault(str(e), rng.standard_normal(200))

    fitted = sympy.Float(1.025) * x / (x - sympy.Float(0.819))
    exact = sympy.sqrt(x + 1) / sympy.sqrt(x - 1)
    assert earns_its_length(fitted, exact, residuals)  # no floats against two
    assert not earns_its_length(x, fitted, residuals)  # floats and no gain


def test_curve_stage_at_its_deadline_still_fits_y_and_its_reciprocal_and_log():
    """A curve stage whose deadline passes during its first fit goes on with 1/y and log y
    and stops there (Planck's
    1/(exp(z) - 1) is a curve of 1/y), and its formulas carry no radicals made of the data's
    midpoint: the argument is standardized with floats."""
    z = np.linspace(0.5, 4.0, 400)
    sym = sympy.Symbol("z")
    y = 1 / (np.exp(z) - 1)
    late = univariate_candidates(z, y, sym, deadline=time.perf_counter() + 0.02)
    labels = [label for label, _ in late]
    assert labels and all(lab.split(" of ")[1].split(" in ")[0].split(" *")[0]
                          in ("y", "1/y", "log y") for lab in labels), labels
    assert any("exp of 1/y" in lab for lab in labels), labels
    label, expr = late[labels.index(next(lab for lab in labels if "exp of 1/y" in lab))]
    vals = sympy.lambdify(sym, expr, "numpy")(z)
    assert np.max(np.abs(vals - y)) < 1e-6 * np.max(np.abs(y))
    assert not any(isinstance(a, sympy.Pow) and a.base.is_Integer and a.exp.is_Rational
                   and not a.exp.is_Integer for a in expr.atoms(sympy.Pow)), expr
    # with time, the other transforms are fitted too
    labels_all = [label for label, _ in univariate_candidates(z, y, sym, keep=100)]
    assert any(lab.split(" of ")[1].split(" in ")[0].split(" *")[0] not in ("y", "1/y", "log y")
               for lab in labels_all), labels_all
