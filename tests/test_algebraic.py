"""The algebraic stage (sparse sums of terms, ratios, monomials) and Pareto-front selection."""
import math

import numpy as np
import pytest
import sympy

from kanlab import discover
from kanlab.discovery.algebraic import Candidate, algebraic_candidates
from kanlab.discovery.prefactor import powerlaw_sum
from kanlab.discovery.select import choose, pareto_front
from kanlab.discovery.sparse import forward_select, prune_support
from kanlab.discovery.terms import FUNCTIONS, build_dictionary, simplest_first


def _exact(res, truth):
    return sympy.simplify(res.formula - truth) == 0


def _stopped_in_algebraic(res):
    """The search ended on an algebraic formula before any network was trained."""
    return all(str(a["hidden"]).startswith("algebraic") for a in res.attempts) and \
        res.stages.get("train", 0.0) == 0.0


@pytest.mark.parametrize("case", ["poly", "sum_of_products", "ratio"])
def test_algebraic_stage_finds_polynomials_and_ratios(case):
    rng = np.random.default_rng(1)
    if case == "poly":
        X = rng.uniform(-2, 2, (500, 2))
        y = X[:, 0] ** 3 - 2 * X[:, 0] * X[:, 1]
        names = ["x1", "x2"]
    elif case == "sum_of_products":
        X = rng.uniform(-1, 1, (500, 4))
        y = X[:, 0] * X[:, 1] + X[:, 2] * X[:, 3]
        names = ["x1", "x2", "x3", "x4"]
    else:
        X = rng.uniform(1, 5, (500, 4))
        y = (X[:, 0] * X[:, 1] + X[:, 2] * X[:, 3]) / (X[:, 0] + X[:, 2])
        names = ["m1", "r1", "m2", "r2"]
    res = discover(X, y, var_names=names, time_budget=30, seed=0)
    s = res.variables
    truth = {"poly": lambda: s[0] ** 3 - 2 * s[0] * s[1],
             "sum_of_products": lambda: s[0] * s[1] + s[2] * s[3],
             "ratio": lambda: (s[0] * s[1] + s[2] * s[3]) / (s[0] + s[2])}[case]()
    assert _exact(res, truth), res.formula
    assert _stopped_in_algebraic(res)
    assert res.model_kind == "surrogate" and res.model is not None
    assert res.r2 > 1 - 1e-12


def test_monomial_with_rational_powers_and_pi():
    """Coulomb's law: the log-log fit gives the powers, snapping gives 1/(4*pi)."""
    rng = np.random.default_rng(2)
    X = rng.uniform(1, 5, (400, 4))
    y = X[:, 0] * X[:, 1] / (4 * np.pi * X[:, 2] * X[:, 3] ** 2)
    res = discover(X, y, var_names=["q1", "q2", "eps", "r"], time_budget=30, seed=0)
    q1, q2, eps, r = res.variables
    assert _exact(res, q1 * q2 / (4 * sympy.pi * eps * r ** 2)), res.formula
    assert _stopped_in_algebraic(res)


def test_candidates_respect_the_function_library():
    rng = np.random.default_rng(3)
    X = rng.uniform(0.5, 2, (300, 2))
    y = X[:, 0] ** 2 + np.sin(X[:, 1])
    s = sympy.symbols("a b")
    free = algebraic_candidates(X, y, s, seed=0)
    assert any(c.expr.has(sympy.sin) for c in free)
    poly = algebraic_candidates(X, y, s, seed=0, allowed=["x", "x^2"])
    assert poly and not any(c.expr.has(sympy.sin, sympy.cos, sympy.log, sympy.exp) for c in poly)


def test_noisy_data_get_a_short_formula():
    """1% noise on a 3-term polynomial: the chosen formula is that polynomial, not a long
    series that fits the noise, and its error on fresh noise-free points is at the noise level."""
    rng = np.random.default_rng(4)
    X = rng.uniform(-1, 1, (1000, 3))
    f = lambda X: 1 + 2 * X[:, 0] + 0.5 * X[:, 1] ** 2 * X[:, 2]
    y = f(X)
    yn = y + 0.01 * np.sqrt(np.mean(y ** 2)) * rng.standard_normal(len(y))
    res = discover(X, yn, time_budget=20, seed=0, max_attempts=1)
    assert res.complexity <= 15, res.formula
    Xf = rng.uniform(-1, 1, (2000, 3))
    err = np.mean((res.predict(Xf) - f(Xf)) ** 2) / np.var(f(Xf))
    assert err < 1e-3
    # the Pareto table: simplest first, each row more accurate than the one before
    front = res.pareto
    assert front[0]["complexity"] < front[-1]["complexity"]
    assert all(a["loss"] > b["loss"] for a, b in zip(front, front[1:]))


def test_forward_select_recovers_a_sparse_support():
    rng = np.random.default_rng(5)
    X = rng.uniform(-1, 1, (300, 3))
    D = build_dictionary(X, functions=())
    truth = [7, 20, 41]
    coef = np.array([1.5, -2.0, 0.25])
    t = D.columns[:, truth] @ coef
    path = forward_select(D.columns, t, k_max=6)
    sup, rel = path[-1]
    assert rel < 1e-14
    assert sorted(prune_support(D.columns, t, sup, 1e-11)) == truth


def test_a_triple_whose_terms_are_poor_alone():
    """cos(u) + alpha*cos(u)**2 is cos(u) + alpha - alpha*sin(u)**2 in the dictionary's terms:
    alpha and alpha*sin(u)**2 nearly cancel, and forward steps (with a beam) choose other
    columns; the triple search finds the three."""
    rng = np.random.default_rng(0)
    w, t, a = rng.uniform(1, 3, (3, 600))
    u = w * t
    X = np.column_stack([a, u])
    y = np.cos(u) + a * np.cos(u) ** 2
    D = build_dictionary(X)
    truth = sorted(i for i, term in enumerate(D.terms)
                   if term in (((0, 0), ("cos", 1)), ((1, 0), None), ((1, 0), ("sin2", 1))))
    assert len(truth) == 3
    assert all(sorted(sup) != truth for sup, _ in forward_select(D.columns, y, 6)[:3])
    path = forward_select(D.columns, y, 6, triples=True, order=simplest_first(D.terms))
    assert sorted(path[2][0]) == truth and path[2][1] < 1e-20


def test_a_prefactor_of_every_term_is_divided_out():
    """x1*(cos(u) + alpha*cos(u)**2): the prefactor x1 moves every term out of the simplest
    columns, so the plain triple search misses it; dividing by x1 finds the three terms, and the
    candidate is exact with x1 put back."""
    rng = np.random.default_rng(0)
    x1, w, t, a = rng.uniform(1, 3, (4, 800))
    u = w * t
    X = np.column_stack([x1, u, a])
    y = x1 * (np.cos(u) + a * np.cos(u) ** 2)
    s = sympy.symbols("x1 u alpha", positive=True)
    cands = algebraic_candidates(X, y, s)
    plain = [c for c in cands if c.label.endswith("terms of y")]
    assert plain and min(c.train_rel_rss for c in plain) > 1e-6  # out of the plain sums' reach
    best = min(cands, key=lambda c: c.train_rel_rss)
    assert best.label.startswith(("x1**1 times", "x1**-1 times")) and best.train_rel_rss < 1e-20
    truth = s[0] * (sympy.cos(s[1]) + s[2] * sympy.cos(s[1]) ** 2)
    f = sympy.lambdify(s, best.expr - truth)
    assert np.max(np.abs(f(*X.T))) < 1e-9


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_a_power_law_prefactor_is_divided_out(noise):
    """G**4*(m1*m2)**2*(m1 + m2)/(c*r)**5 (SRBench test_9): terms of degree 19, out of any
    dictionary's reach; the inputs with near-integer exponents in a power-law fit of |y| (G, c,
    r) make the prefactor, and (m1 + m2)*(m1*m2)**2 is a sum of two terms in the other two. On
    1% noise the fit is made on y itself (dividing by c**-5*r**-5 would blow up the noise of
    some rows), and the two-term sum is still a candidate."""
    rng = np.random.default_rng(0)
    G, c, r = rng.uniform(1, 2, (3, 800))
    m1, m2 = rng.uniform(1, 5, (2, 800))
    X = np.column_stack([G, c, r, m1, m2])
    y = -32 / 5 * G**4 * (m1 * m2) ** 2 * (m1 + m2) / (c * r) ** 5
    y = y + rng.normal(0, noise * np.sqrt(np.mean(y * y)), len(y))
    s = sympy.symbols("G c r m1 m2", positive=True)
    # the prefactor stage itself (the whole stage finds this law earlier, as a sum of two power
    # laws, and stops there on exact data)
    found = powerlaw_sum(X, y, range(5), np.ones(5, dtype=bool), s, 10, len(y), math.inf,
                         FUNCTIONS, 1.0)
    cands = [Candidate(*f) for f in found if f[1].startswith("G**4/(c**5*r**5)")]
    assert cands
    two = [c for c in cands if c.n_terms == 2]
    assert two and two[0].train_rel_rss < (1e-20 if noise == 0 else 2e-4)
    truth = -sympy.Rational(32, 5) * s[0]**4 * (s[3] * s[4])**2 * (s[3] + s[4]) / (s[1] * s[2])**5
    f = sympy.lambdify(s, two[0].expr / truth - 1)
    assert np.max(np.abs(f(*X.T))) < (1e-9 if noise == 0 else 0.02)


def test_a_power_law_over_a_sum():
    """m1**2*m2**3/(x1**2 + x1*x2 + 3*x2**2): m1 and m2 are factors of their own (exponents 2
    and 3 in the power-law fit), and y = P / S with S a sum of three terms in x1, x2 (1/y is a
    sum of terms of degree 7, past the plain dictionary)."""
    rng = np.random.default_rng(1)
    m1, m2, x1, x2 = rng.uniform(1, 3, (4, 600))
    X = np.column_stack([m1, m2, x1, x2])
    y = m1**2 * m2**3 / (x1**2 + x1 * x2 + 3 * x2**2)
    s = sympy.symbols("m1 m2 x1 x2", positive=True)
    # the prefactor stage itself (the whole stage finds this one as three power laws of 1/y)
    found = powerlaw_sum(X, y, range(4), np.ones(4, dtype=bool), s, 10, len(y), math.inf,
                         FUNCTIONS, 1.0)
    best = min((Candidate(*f) for f in found), key=lambda c: c.train_rel_rss)
    assert best.label == "m1**2*m2**3 over a sum of 3 terms" and best.train_rel_rss < 1e-20
    whole = min(algebraic_candidates(X, y, s, rational=False), key=lambda c: c.train_rel_rss)
    assert whole.train_rel_rss < 1e-20
    f = sympy.lambdify(s, best.expr - s[0]**2 * s[1]**3 / (s[2]**2 + s[2] * s[3] + 3 * s[3]**2))
    assert np.max(np.abs(f(*X.T))) < 1e-9


def test_square_roots_of_positive_inputs_in_a_small_dictionary():
    """sqrt(a*b)*cos(d) + a - 2*b: a root of a product of two positive inputs is a term; the
    terms' constants come out exact."""
    rng = np.random.default_rng(1)
    a, b, d = rng.uniform(1, 5, (3, 700))
    y = np.sqrt(a * b) * np.cos(d) + a - 2 * b
    s = sympy.symbols("a b d", positive=True)
    best = min(algebraic_candidates(np.column_stack([a, b, d]), y, s),
               key=lambda c: c.train_rel_rss)
    assert best.train_rel_rss < 1e-20 and best.n_terms == 3
    snapped = sympy.nsimplify(best.expr, tolerance=1e-9, rational=True)
    truth = sympy.sqrt(s[0] * s[1]) * sympy.cos(s[2]) + s[0] - 2 * s[1]
    assert sympy.simplify(snapped - truth) == 0


@pytest.mark.parametrize("seed", [0, 8])
def test_a_ratio_for_y_squared_on_any_sample(seed):
    # y = (1 - g1**2*g2)/sqrt(1 - g1**2), the reduced Lorentz time: y**2 = P/Q with five terms.
    # A beam of 6 took a column outside P and Q first on seed 8's rows and ended 1e-7 away
    rng = np.random.default_rng(seed)
    x, c, u, t = (rng.uniform(lo, hi, 640) for lo, hi in ((1, 5), (3, 10), (1, 2), (1, 5)))
    g1, g2 = u / c, x / (t * u)
    y = (1 - g1 ** 2 * g2) / np.sqrt(1 - g1 ** 2)
    cands = algebraic_candidates(np.column_stack([g1, g2]), y, sympy.symbols("g1 g2"))
    best = min(cands, key=lambda c: c.train_rel_rss)
    assert best.train_rel_rss < 1e-24 and best.label == "ratio P/Q of 5 terms for y^2"


def test_a_small_dictionary_enters_the_ratios_with_its_functions():
    # y**2 = (x**2 - 1)/(x + cos(theta))**2: Q holds x*cos(theta) and cos(theta)**2
    rng = np.random.default_rng(0)
    th, x = rng.uniform(0, 6, 640), rng.uniform(5 / 3, 20, 640)
    y = np.sqrt(x ** 2 - 1) / (x + np.cos(th))
    cands = algebraic_candidates(np.column_stack([th, x]), y, sympy.symbols("theta x"))
    best = min(cands, key=lambda c: c.train_rel_rss)
    assert best.train_rel_rss < 1e-24 and best.label.startswith("ratio P/Q")


def test_a_power_law_spanning_decades_under_noise():
    # -m*q**4/(h**2*n**2*eps**2)/8 spans seven decades: with noise of 1% of RMS(y) most rows are
    # noise, a few even flip sign; the large rows still fix the powers
    rng = np.random.default_rng(0)
    X = rng.uniform(1, 5, (1000, 5))
    m, q, h, n, e = X.T
    y = -m * q ** 4 / (8 * h ** 2 * n ** 2 * e ** 2)
    y = y + 0.01 * np.sqrt(np.mean(y ** 2)) * rng.standard_normal(len(y))
    syms = sympy.symbols("m q h n e")
    cands = algebraic_candidates(X, y, syms)
    mono = [c for c in cands if c.label == "monomial"]
    assert mono  # the sign flips of the small rows no longer rule the power law out
    powers = mono[0].expr.as_powers_dict()
    for s, p in zip(syms, (1, 4, -2, -2, -2)):
        assert abs(float(powers[s]) - p) < 0.03  # close enough for the refit to snap them
    # the whole search then reads the law exactly
    res = discover(X, y, var_names=list("mqhne"), time_budget=30, seed=0)
    assert sympy.simplify(res.formula / (-syms[0] * syms[1] ** 4 / (syms[2] * syms[3] * syms[4]) ** 2
                                          / 8)) == 1


def test_pareto_front_and_rules():
    rows = [{"complexity": 1, "loss": 1.0}, {"complexity": 5, "loss": 0.01},
            {"complexity": 7, "loss": 0.02},  # dominated: more complex and worse
            {"complexity": 20, "loss": 0.0099}, {"complexity": 3, "loss": float("nan")}]
    front = pareto_front(rows)
    assert [r["complexity"] for r in front] == [1, 5, 20]
    assert front[1]["score"] == pytest.approx(math.log(100) / 4)
    assert front[choose(front, "best")]["complexity"] == 5  # 20 is barely better
    assert front[choose(front, "accuracy")]["complexity"] == 20
    assert front[choose(front, "score")]["complexity"] == 5
    # exact formulas tie at the float floor: the simplest exact one wins
    tied = pareto_front([{"complexity": 9, "loss": 1e-31}, {"complexity": 4, "loss": 3e-29},
                         {"complexity": 1, "loss": 2.0}], variance=2.0)
    assert front and tied[choose(tied, "best")]["complexity"] == 4
    # a fitted float costs one more: at equal loss, the exact law one node longer than its
    # two-float mimic wins (Planck's curve against a shifted cosh)
    from kanlab.discovery.select import _select
    z = sympy.Symbol("z")
    law = 1 / (2 * sympy.pi * (sympy.exp(z / (2 * sympy.pi)) - 1))
    mimic = sympy.Float(502.19) / (sympy.cosh(z / (2 * sympy.pi) + sympy.Rational(35, 4))
                                   - sympy.Float(3155.34))
    attempts = [{"expr": e, "formula": str(e), "hidden": h, "r2": 1.0, "complexity": c}
                for e, h, c in ((mimic, "cosh", 15), (law, "exp", 16))]
    chosen, table = _select(attempts, 1.0, "best")
    assert chosen["hidden"] == "exp" and [r["cost"] for r in table] == [16]
    # the lowest held-out loss with every constant exact is taken over a shorter within-noise
    # mimic that PySR's score prefers (II.24.17 at noise 0.01); with a fitted float it is not
    near = [{"complexity": 18, "cost": 20, "loss": 1.14},
            {"complexity": 20, "cost": 21, "loss": 1.06},
            {"complexity": 25, "cost": 25, "loss": 0.925}]
    assert pareto_front(near)[choose(pareto_front(near), "best")]["complexity"] == 25
    near[2]["cost"] = 26
    assert pareto_front(near)[choose(pareto_front(near), "best")]["complexity"] == 20
    with pytest.raises(ValueError, match="model_selection"):
        choose(front, "shortest")
    with pytest.raises(ValueError, match="model_selection"):
        discover(np.random.default_rng(0).uniform(size=(20, 1)), np.arange(20.0),
                 model_selection="shortest")


def test_sums_of_every_transform_come_before_the_ratios():
    # exp(-u**2/(2*s**2))/s is a two-term sum of log y, but the ratios P/Q of y and y**2 take
    # about 2 s on one thread: with them first, a 2-4 s deadline (a sub-search's share) ended
    # the stage before log y was reached and kept an 11-term ratio (tests/test_symmetry.py
    # failed 2 runs in 4 on that timing)
    import time

    import torch

    rng = np.random.default_rng(3)
    X = rng.uniform(1, 3, (800, 3))
    Z = np.column_stack([X[:, 2], X[:, 0] - X[:, 1]])
    y = np.exp(-(Z[:, 1] / Z[:, 0]) ** 2 / 2) / Z[:, 0]
    s, u = sympy.symbols("s u")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t = time.perf_counter()
        cands = algebraic_candidates(Z, y, [s, u], deadline=t + 3.0)
    finally:
        torch.set_num_threads(n)
    best = min(cands, key=lambda c: c.train_rel_rss)
    assert best.label == "sum of 2 terms of log y" and best.train_rel_rss < 1e-20
    fit = sympy.lambdify([s, u], best.expr, "numpy")(Z[:, 0], Z[:, 1])
    np.testing.assert_allclose(fit, y, rtol=1e-9)


def test_candidates_after_the_first_are_finished_after_the_share(monkeypatch):
    """When the search for candidates uses the whole share, the best one is finished, and so
    are the next two that keep at most three floats (II.13.23 at noise 0.01: its law, two power
    laws of 1/y**2, came second behind a ratio of three terms and was never snapped); a fourth,
    or one with more floats, is not."""
    import time

    from kanlab.discovery import candidates as cmod

    rng = np.random.default_rng(3)
    X = np.column_stack([rng.uniform(1, 5, 400), rng.uniform(1, 2, 400), rng.uniform(3, 10, 400)])
    rho, v, c = X.T
    y = rho / np.sqrt(1 - v**2 / c**2)
    s = sympy.symbols("rho v c", positive=True)
    F = sympy.Float
    cands = [Candidate(F(1.02) * s[0], "a", 1, 1e-3),
             Candidate(F(1.01) * s[0] + F(0.05) * s[1] ** 2, "b", 2, 1e-3),
             Candidate(F(1.0) * s[0] + F(0.3) * s[1] ** 2 / s[2], "c", 2, 1e-3),
             Candidate(F(0.9) * s[0] + F(0.1) * s[1] + F(0.1) * s[2] + F(0.2) * s[1] * s[2]
                       + F(0.01), "d", 5, 1e-3)]

    def slow_search(*args, deadline, **kwargs):
        time.sleep(max(deadline - time.perf_counter(), 0.0) + 0.05)
        return cands

    monkeypatch.setattr(cmod, "algebraic_candidates", slow_search)
    monkeypatch.setattr(cmod, "_curves", lambda *args: [])
    cmod._finish(cands[1].expr, True, s, X, y, True, time.perf_counter() + 5)  # imports, compiles
    recs, _ = cmod.algebraic_attempts(X[:300], y[:300], X[300:], y[300:], s, seed=0, snap=True,
                                      deadline=time.perf_counter() + 2.0)
    assert 2 <= len(recs) <= 3
    assert not any(r["hidden"] == "algebraic(d)" for r in recs)


def test_small_ratios_fit_a_two_term_denominator_to_the_noise():
    """x1*x2/(x1 + x2) + x3 at 1% noise: no pair of the denominator's monomials fits exactly,
    and the linear form's own residual prefers a wrong P (y sits on both of its sides). Ranked
    by the error of P/Q, the candidate follows the law to within the noise on fresh points."""
    from kanlab.discovery.algebraic import small_ratios
    from kanlab.discovery.terms import Dictionary

    rng = np.random.default_rng(3)

    def law(X):
        return X[:, 0] * X[:, 1] / (X[:, 0] + X[:, 1]) + X[:, 2]

    X = rng.uniform(1, 5, (600, 3))
    sd = 0.01 * float(np.sqrt(np.mean(law(X) ** 2)))
    y = law(X) + sd * rng.normal(size=600)
    syms = sympy.symbols("x1 x2 x3", positive=True)
    D = build_dictionary(X, max_columns=3000)
    mono = [j for j, (v, fn) in enumerate(D.terms)
            if fn is None and all(e == int(e) for e in v)]
    Dm = Dictionary([D.terms[j] for j in mono], D.columns[:, mono])
    (cand,) = small_ratios(Dm, y, "y", lambda e: e, syms, math.inf)
    assert cand.n_terms <= 5, cand.expr  # three terms in P, two in Q
    Xf = rng.uniform(1, 5, (2000, 3))
    pred = sympy.lambdify(syms, cand.expr, "numpy")(*Xf.T)
    assert np.sqrt(np.mean((pred - law(Xf)) ** 2)) < 0.5 * sd, cand.expr


def test_functions_of_a_product_of_two_inputs_enter_small_dictionaries():
    # sin, cos and sin**2 of x_j*x_k, where the product sweeps half a period or more; each
    # column is the value of its term's expression
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(1, 5, 200), rng.uniform(1, 5, 200)])
    syms = sympy.symbols("a b")
    D = build_dictionary(X)
    pairs = [t for t in D.terms if t[1] is not None and not isinstance(t[1][1], int)]
    assert {t[1][0] for t in pairs} == {"sin", "cos", "sin2"}
    from kanlab.discovery.terms import term_expr
    for j in [D.terms.index(t) for t in pairs[:12]]:
        f = sympy.lambdify(syms, term_expr(D.terms[j], syms))
        np.testing.assert_allclose(f(X[:, 0], X[:, 1]), D.columns[:, j], rtol=1e-12)
    # a product that sweeps less than half a period (sin(z) ~ z) brings none
    small = build_dictionary(X * 0.3)
    assert not any(t[1] is not None and not isinstance(t[1][1], int) for t in small.terms)


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_a_ratio_of_cosines_of_a_product_of_inputs(noise):
    # sin(n*theta/2)**2/sin(theta/2)**2 (Feynman I.30.3) is (1 - cos(n*theta))/(1 - cos(theta)):
    # three terms of the ratio's linear form, once cos(n*theta) is a column
    rng = np.random.default_rng(0)
    th, n = rng.uniform(1, 5, 800), rng.uniform(1, 5, 800)
    y = 1.7 * np.sin(n * th / 2) ** 2 / np.sin(th / 2) ** 2
    y = y + noise * np.sqrt(np.mean(y ** 2)) * rng.normal(size=y.size)
    s_th, s_n = sympy.symbols("theta n", positive=True)
    cands = algebraic_candidates(np.column_stack([th, n]), y, [s_th, s_n])
    best = min(cands, key=lambda c: c.train_rel_rss)
    assert best.label == "ratio P/Q of 4 terms for y"
    assert best.expr.has(sympy.cos(s_n * s_th)) and best.expr.has(sympy.cos(s_th))
    f = sympy.lambdify([s_th, s_n], best.expr)
    truth = 1.7 * np.sin(n * th / 2) ** 2 / np.sin(th / 2) ** 2
    assert np.sqrt(np.mean((f(th, n) - truth) ** 2)) < (1e-9 if noise == 0 else 0.5 * noise) * \
        np.sqrt(np.mean(truth ** 2))


def test_a_ratio_behind_a_prefactor_of_one_input():
    # Int_0*sin(n*theta/2)**2/sin(theta/2)**2: the power-law fit reads Int_0's exponent as
    # 0.87 (rows near the zeros weigh little), near enough 1 to divide it out and fit the ratio
    from kanlab.discovery.prefactor import powerlaw_ratio
    rng = np.random.default_rng(0)
    X = rng.uniform(1, 5, (600, 3))
    y = X[:, 0] * np.sin(X[:, 2] * X[:, 1] / 2) ** 2 / np.sin(X[:, 1] / 2) ** 2
    syms = sympy.symbols("I0 theta n", positive=True)
    (expr, label, _, rel), *_ = powerlaw_ratio(X, y, [0, 1, 2], np.ones(3, bool), syms, 10,
                                                600, math.inf, FUNCTIONS, 1.0)
    assert label.startswith("I0 times a ratio") and rel < 1e-20
    assert expr.has(sympy.cos(syms[1] * syms[2])) and len(expr.atoms(sympy.Float)) <= 4
    f = sympy.lambdify(syms, expr)
    np.testing.assert_allclose(f(*X.T), y, rtol=1e-9)
    # the whole stage reaches it too
    best = min(algebraic_candidates(X, y, syms), key=lambda c: c.train_rel_rss)
    assert best.train_rel_rss < 1e-20


def test_a_short_candidate_is_finished_however_late(monkeypatch):
    # a sub-search's share can be spent before its candidates are finished; the best one is
    # finished all the same, and so is any with at most two floats (a line behind wiggly
    # curves: the factor x1 of x1*exp(-u), read off a surrogate), but no other long one
    import time

    import kanlab.discovery.candidates as cmod

    rng = np.random.default_rng(0)
    x = rng.uniform(1, 4, (400, 1))
    y = 2 * x[:, 0] + 1 + 0.3 * np.sin(3 * x[:, 0])
    s = sympy.Symbol("x1", positive=True)
    F = sympy.Float
    cands = [Candidate(F(2.0) * s + F(1.0) + F(a) * sympy.sin(F(b) * s), f"wiggle{k}", 3, 1e-3)
             for k, (a, b) in enumerate([(0.3, 3.0), (0.29, 3.0), (0.28, 3.01)])]
    cands.append(Candidate(F(2.0) * s + F(1.0), "line", 2, 1e-2))

    def slow_search(*args, deadline, **kwargs):  # far past the deadline and its quarter share
        time.sleep(max(deadline - time.perf_counter(), 0.0) + 0.5)
        return cands

    monkeypatch.setattr(cmod, "algebraic_candidates", slow_search)
    monkeypatch.setattr(cmod, "_curves", lambda *args: [])
    recs, _ = cmod.algebraic_attempts(x[:300], y[:300], x[300:], y[300:], [s], seed=0, snap=True,
                                      deadline=time.perf_counter() + 0.2)
    assert [r["hidden"] for r in recs] == ["algebraic(wiggle0)", "algebraic(line)"]
    line = recs[1]["expr"]
    assert line.free_symbols == {s} and sympy.degree(line, s) == 1


@pytest.mark.parametrize("noise", [0.0, 0.01])
@pytest.mark.parametrize("two", [False, True])
def test_a_sum_over_a_monomial_that_vanishes_on_the_data(noise, two):
    # t*sin(u*t/2)**2/(u*t/2)**2 (Feynman III.9.52 once u = omega - omega_0 is an input) is
    # (2 - 2*cos(u*t))/(u**2*t): u changes sign, so 1/u**2 is no column and no ratio's
    # denominator (those hold a constant); y*u**2*t is a sum of two terms. One input: the
    # sinc squared of z, (2 - 2*cos(z))/z**2.
    from kanlab.discovery.prefactor import cleared_sum
    rng = np.random.default_rng(0)
    t, u = rng.uniform(1, 3, 800), rng.uniform(1, 5, 800) - rng.uniform(1, 5, 800)
    z = u * t
    truth = (t if two else 1.0) * np.sin(z / 2) ** 2 / (z / 2) ** 2
    y = truth + noise * np.sqrt(np.mean(truth ** 2)) * rng.normal(size=t.size)
    syms = sympy.symbols("t u") if two else [sympy.Symbol("z")]
    X = np.column_stack([t, u]) if two else z[:, None]
    cands = [c for c in algebraic_candidates(X, y, syms) if "terms over" in c.label]
    assert len(cands) == 1
    assert cands[0].n_terms == 2 and cands[0].expr.has(sympy.cos(sympy.Mul(*syms)))
    f = sympy.lambdify(syms, cands[0].expr)
    err = np.sqrt(np.mean((f(*X.T) - truth) ** 2)) / np.sqrt(np.mean(truth ** 2))
    assert err < (1e-9 if noise == 0 else 0.2 * noise)
    # nothing where every input keeps one sign: the plain ratios hold such denominators
    D = build_dictionary(np.abs(X) + 1)
    assert cleared_sum(D, np.abs(X) + 1, y, np.ones(X.shape[1], bool),
                       np.ones(X.shape[1], bool), syms, simplest_first(D.terms), 10, 600,
                       math.inf, (1.0, 0)) == []



def test_roots_of_sums_enter_the_stage_where_the_library_has_sqrt():
    """Goldstein 8.56, q*V + c*sqrt(c**2*m**2 + (p - q*A)**2): the stage hands the power-law
    fits' term q*V to the search beside a root, and the candidate is exact; with a library
    that has no square root no candidate holds one."""
    X = np.random.default_rng(0).uniform(1, 5, (600, 6))
    m, c, p, q, A, V = X.T
    y = q * V + c * np.sqrt(c ** 2 * m ** 2 + (p - q * A) ** 2)
    s = sympy.symbols("m c p q A V", positive=True)
    cands = algebraic_candidates(X, y, s, seed=0)
    beside = [k for k in cands if k.label.startswith("a power law beside the root")]
    assert beside and min(k.train_rel_rss for k in beside) < 1e-20, [k.label for k in cands]
    no_root = algebraic_candidates(X, y, s, seed=0, allowed=["x", "x^2", "sin", "cos"])
    assert no_root and not any("root" in k.label for k in no_root)
