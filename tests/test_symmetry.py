"""Symmetries that remove a variable, tested on a function and through discover."""
import numpy as np
import pytest
import sympy

from kanlab import discover
from kanlab.discovery.symmetry import find_invariant


@pytest.mark.parametrize("kind, fn", [
    ("diff", lambda X: np.exp(-((X[:, 0] - X[:, 1]) / X[:, 2]) ** 2)),
    ("sum", lambda X: np.sin(X[:, 0] + X[:, 1]) * X[:, 2]),
    ("ratio", lambda X: X[:, 0] / X[:, 1] + np.sin(X[:, 2])),
    ("product", lambda X: np.log(X[:, 0] * X[:, 1]) * X[:, 2]),
])
def test_find_invariant_names_the_pair_and_kind(kind, fn):
    rng = np.random.default_rng(0)
    X = rng.uniform(1, 3, (800, 3))
    found = find_invariant(fn, X, err=1e-3, ysd=float(np.std(fn(X))))
    assert found is not None and found[:3] == (kind, 0, 1)


def test_no_invariant_where_there_is_none():
    rng = np.random.default_rng(1)
    X = rng.uniform(1, 3, (800, 3))
    fn = lambda X: X[:, 0] ** 2 + np.sin(X[:, 1]) * X[:, 2]  # noqa: E731
    assert find_invariant(fn, X, err=1e-3, ysd=float(np.std(fn(X)))) is None
    # a noisy oracle hides small effects, but does not invent a symmetry of large ones
    noisy = lambda X: fn(X) + 1e-3 * np.random.default_rng(2).standard_normal(len(X))  # noqa
    assert find_invariant(noisy, X, err=1e-3, ysd=float(np.std(fn(X)))) is None


def test_discover_reduces_a_difference_then_finds_the_law():
    """A Gaussian in (theta - theta1)/sigma: the surrogate shows the difference symmetry (or
    the scale symmetry of the three, i.e. the groups theta/sigma and theta1/sigma), the reduced
    two-input problem is discovered on the data, and the reduction goes back in."""
    rng = np.random.default_rng(3)
    X = rng.uniform(1, 3, (1000, 3))
    y = np.exp(-((X[:, 0] - X[:, 1]) / X[:, 2]) ** 2 / 2) / X[:, 2]
    res = discover(X, y, var_names=["theta", "theta1", "sigma"], time_budget=60, seed=0,
                   hidden=["separable"])
    t, t1, s = res.variables
    truth = sympy.exp(-((t - t1) / s) ** 2 / 2) / s
    assert sympy.simplify(res.formula - truth) == 0, res.formula
    assert any(str(a["hidden"]).startswith(("reduce(", "groups(")) for a in res.attempts)
    assert res.r2 > 1 - 1e-9


def test_sum_groups_on_a_function():
    from kanlab.discovery.additive import sum_groups

    rng = np.random.default_rng(4)
    X = rng.uniform(1, 3, (800, 4))
    fn = lambda X: np.sin(X[:, 0]) * X[:, 1] + np.exp(X[:, 2]) / X[:, 3]  # noqa: E731
    ysd = float(np.std(fn(X)))
    assert sum_groups(fn, X, 1e-3, ysd, [0, 1, 2, 3]) == ((0, 1), (2, 3))
    prod = lambda X: np.sin(X[:, 0]) * X[:, 1] * np.exp(X[:, 2]) / X[:, 3]  # noqa: E731
    assert sum_groups(prod, X, 1e-3, float(np.std(prod(X))), [0, 1, 2, 3]) is None


def test_discover_splits_a_sum_and_finds_each_term():
    """sin(a)*b + exp(c)/d: the surrogate shows the sum split ab | cd; the first term is read
    off the surrogate, the second is the data minus the first."""
    rng = np.random.default_rng(5)
    X = rng.uniform(1, 3, (1000, 4))
    y = np.sin(X[:, 0]) * X[:, 1] + np.exp(X[:, 2]) / X[:, 3]
    # 180 s is room to spare on a slow, busy machine: the sum attempt is exact after about 33 s
    # alone (the first term's constant and scale come off before the second is searched), and
    # the search stops there
    res = discover(X, y, var_names=["a", "b", "c", "d"], time_budget=180, seed=0,
                   hidden=["separable"])
    a, b, c, d = res.variables
    assert sympy.simplify(res.formula - (sympy.sin(a) * b + sympy.exp(c) / d)) == 0, res.formula
    assert res.r2 > 1 - 1e-9
    assert any(str(a["hidden"]).startswith("sum(") and a["r2"] > 1 - 1e-9 for a in res.attempts)


def test_the_last_term_of_a_sum_is_searched_without_the_found_terms_offsets_and_scales():
    """A term read off the surrogate comes with the surrogate's scale and the constant of its
    centring; the data minus it, as the last term's target, must be that term alone."""
    from kanlab.discovery.additive import _found_part

    rng = np.random.default_rng(0)
    X = rng.uniform(1, 3, (600, 4))
    a, b, c, d = sympy.symbols("a b c d")
    y = np.sin(X[:, 0]) * X[:, 1] + np.exp(X[:, 2]) / X[:, 3] + 2.0
    found = 0.9997 * b * sympy.sin(a) - 1.4928  # as a surrogate's slice gives it
    part = _found_part([found], [a, b, c, d], X, y, [2, 3])
    assert np.allclose(part, np.sin(X[:, 0]) * X[:, 1], rtol=0, atol=1e-4)


def test_sum_groups_that_share_an_input():
    """sqrt((p - q*A)**2*c**2 + m**2*c**4) + q*V (Goldstein 8.56): no disjoint split, but V
    meets only q; without q the inputs fall in two pieces, each a group with q."""
    from kanlab.discovery.additive import sum_groups

    rng = np.random.default_rng(2)
    X = rng.uniform(1, 5, (800, 6))  # m, c, p, q, A, V

    def fn(X):
        m, c, p, q, A, V = X.T
        return np.sqrt((p - q * A) ** 2 * c ** 2 + m ** 2 * c ** 4) + q * V

    ysd = float(np.std(fn(X)))
    assert sum_groups(fn, X, 1e-4, ysd, list(range(6))) == ((0, 1, 2, 3, 4), (3, 5))
    # every pair interacts in a product, so nothing is shared
    prod = lambda X: X[:, 0] * X[:, 1] * np.sin(X[:, 2]) * X[:, 3]  # noqa: E731
    assert sum_groups(prod, X[:, :4], 1e-4, float(np.std(prod(X))), [0, 1, 2, 3]) is None
    # a chain x0 - x1 - x2 is in pieces without x1: x0*x1 + x1*x2**2
    chain = lambda X: X[:, 0] * X[:, 1] + X[:, 1] * X[:, 2] ** 2  # noqa: E731
    assert sum_groups(chain, X[:, :3], 1e-4, float(np.std(chain(X))), [0, 1, 2]) == \
        ((0, 1), (1, 2))


def test_a_shared_term_is_read_as_a_difference_and_keeps_its_own_part():
    from kanlab.discovery.additive import _own_part, _read_term

    rng = np.random.default_rng(3)
    X = rng.uniform(1, 3, (300, 3))  # y = g(x0, x1) + h(x1, x2), x1 shared
    f = lambda X: np.exp(X[:, 0]) * X[:, 1] + X[:, 1] * np.sin(X[:, 2])  # noqa: E731
    refs = X[:8]
    got = _read_term(f, X, refs, [1, 2], [2])
    want = X[:, 1] * (np.sin(X[:, 2]) - np.sin(refs[0, 2]))
    assert np.allclose(got, want, rtol=0, atol=1e-12)
    q, V = sympy.symbols("q V")
    assert _own_part(1.0002 * q * V - 2.98 * q, [V]) == 1.0002 * q * V
    assert _own_part(q * (V - 2.98) + 0.5, [V]) == q * V
    # nothing to drop: the term as it is
    assert _own_part(sympy.sin(q * V), [V]) == sympy.sin(q * V)


def test_a_sum_with_a_shared_input_is_assembled_exactly(monkeypatch):
    """The sum attempt on an exact oracle: the small group's term read as a difference off
    it, its own part kept, the large group's term found on the data minus it."""
    from kanlab.discovery import symmetry
    from kanlab.discovery.additive import sum_attempt

    rng = np.random.default_rng(4)
    X = rng.uniform(1, 4, (600, 4))  # a, b, q, V

    def law(X):
        a, b, q, V = X.T
        return a ** 2 * b / q + q * V

    monkeypatch.setattr(symmetry, "surrogate_function", lambda *args: law)
    S = sympy.symbols("a b q V", positive=True)
    y = law(X)
    Xte = rng.uniform(1, 4, (300, 4))
    stages = {k: 0.0 for k in ("train", "prune", "refine", "symbolic", "formula")}
    h = ("sum", ((0, 1, 2), (2, 3)), None, [], ())
    import time
    res = sum_attempt(h, 0, stages, list(S), X, y, Xte, law(Xte), True,
                      time.perf_counter() + 20, dict(algebraic=True))
    assert res["hidden"] == "sum(a,b,q + q,V)"
    a, b, q, V = S
    assert sympy.simplify(res["expr"] - (a ** 2 * b / q + q * V)) == 0, res["expr"]


@pytest.mark.parametrize("c, groups", [(0.0, ((0, 1), (1, 2), (1, 3))),
                                       (0.1, None),  # x0*x2 neither clearly there nor absent
                                       (0.2, ((0, 1, 2), (1, 3)))])
def test_shared_groups_need_a_clear_gap_between_pairs_apart_and_pairs_that_interact(c, groups):
    from kanlab.discovery.additive import _shared_groups

    X = np.random.default_rng(2).uniform(1, 5, (800, 4))

    def fn(X):
        return X[:, 0] * X[:, 1] + X[:, 1] * np.sin(X[:, 2]) + c * X[:, 0] * X[:, 2] \
            + 0.3 * X[:, 1] * X[:, 3]

    spread = float(np.std(fn(X)))  # a rough oracle: only the 5% of y's spread and the gap
    assert _shared_groups(fn, X, spread, spread, [0, 1, 2, 3], np.random.default_rng(0),
                          256) == groups
