"""discover(): data in, exact formula out; pruning by spread."""
import importlib.util
import time
import numpy as np
import pytest
import sympy
import torch

import kanlab
from kanlab import KAN, discover
from kanlab.prune import prune_by_spread, subset_model


def _toy(seed=100, lo=-1.0, hi=1.0, n=1000):
    rng = np.random.default_rng(seed)
    X = rng.uniform(lo, hi, (n, 2))
    return X, rng


def test_discover_toy_exact():
    X, _ = _toy()
    y = np.exp(np.sin(np.pi * X[:, 0]) + X[:, 1] ** 2)
    res = discover(X, y, var_names=["a", "b"], seed=0, time_budget=30)
    a, b = sympy.symbols("a b")
    assert [s.name for s in res.variables] == ["a", "b"]
    assert sympy.simplify(res.formula - sympy.exp(sympy.sin(sympy.pi * a) + b**2)) == 0
    assert res.r2 > 0.999999
    assert res.complexity == kanlab.symbolic.expression_size(res.formula)
    assert set(res.stages) == {"surrogate", "algebraic", "train", "prune", "refine", "symbolic",
                               "formula"}
    assert all(v >= 0 for v in res.stages.values())
    assert res.attempts and res.attempts[-1]["r2"] == pytest.approx(res.r2)
    np.testing.assert_allclose(res.predict(X[:5]), y[:5], rtol=1e-9)
    assert isinstance(res.model, KAN)


def test_discover_raw_scales():
    """Inputs in [1, 5], outputs in the hundreds: the formula comes back in the caller's units."""
    X, _ = _toy(seed=7, lo=1.0, hi=5.0)
    y = 100 * np.exp(np.sin(np.pi * X[:, 0] / 4) + (X[:, 1] / 4) ** 2) + 300
    res = discover(X, y, seed=0, time_budget=30)
    x1, x2 = res.variables
    truth = 100 * sympy.exp(sympy.sin(sympy.pi * x1 / 4) + x2**2 / 16) + 300
    assert sympy.simplify(res.formula - truth) == 0
    assert res.r2 > 0.999999


def test_discover_tensor_input_and_2d_target():
    X, _ = _toy(seed=3)
    y = (2 * X[:, 0] + 3 * X[:, 1] ** 2)[:, None]
    res = discover(torch.tensor(X), torch.tensor(y), seed=0, time_budget=30)
    x1, x2 = res.variables
    assert sympy.simplify(res.formula - (2 * x1 + 3 * x2**2)) == 0


@pytest.mark.parametrize("X,y,msg", [
    (np.full((20, 2), np.nan), np.zeros(20), "finite"),
    (np.zeros((20, 2)), np.zeros(19), "rows"),
    (np.zeros((5, 2)), np.zeros(5), "at least 10"),
    (np.zeros((20, 2, 2)), np.zeros(20), "2-D"),
    (np.zeros((20, 2)), np.zeros((20, 2)), r"\(n,\) or \(n, 1\)"),
    ([["a", "b"]] * 20, np.zeros(20), "numeric"),
])
def test_discover_bad_input(X, y, msg):
    with pytest.raises(ValueError, match=msg):
        discover(X, y)


def test_discover_bad_options():
    X, _ = _toy()
    y = X[:, 0]
    with pytest.raises(ValueError, match="var_names"):
        discover(X, y, var_names=["a"])
    with pytest.raises(ValueError, match="distinct"):
        discover(X, y, var_names=["a", "a"])
    with pytest.raises(ValueError, match="time_budget"):
        discover(X, y, time_budget=0)


def test_discover_constant_target():
    X, _ = _toy()
    res = discover(X, np.full(len(X), 2.5))
    assert res.formula == sympy.Rational(5, 2) and res.r2 == 1.0


def test_prune_by_spread_keeps_function():
    f = lambda x: torch.sin(torch.pi * x[:, [0]]) + 0.0 * x[:, [1]]  # noqa: E731
    ds = kanlab.create_dataset(f, n_var=2, train_num=400, test_num=100, seed=0, dtype=torch.float64)
    model = KAN(width=[2, 4, 1], grid=5, seed=0, dtype=torch.float64)
    model.fit(ds, steps=30, lamb=0.01, progress=False)
    small = prune_by_spread(model, ds["train_input"])
    assert small.width[1][0] < 4
    assert small.act_fun[0].mask[1].sum() == 0  # the unused input is cut off
    with torch.no_grad():
        full = model(ds["test_input"])
        cut = small(ds["test_input"])
    # dropped edges carried (almost) constants, folded into the biases
    assert torch.sqrt(torch.mean((full - cut) ** 2)) < 0.05 * full.std()
    path_model = small.copy()
    assert path_model.width == small.width


def test_subset_model_exact():
    model = KAN(width=[3, 4, 2], grid=4, seed=0, dtype=torch.float64)
    sub = subset_model(model, [[0, 1, 2], [0, 1, 2, 3], [1]])
    x = torch.rand(10, 3, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(sub(x)[:, 0], model(x)[:, 1])
    with pytest.raises(ValueError, match="at least one node"):
        subset_model(model, [[0], [], [0]])


def test_discover_mult_shape_and_pruning_of_mult_models():
    rng = np.random.default_rng(1)
    X = rng.uniform(1, 3, (600, 2))
    y = X[:, 0] * X[:, 1]
    res = discover(X, y, hidden=["mult"], max_attempts=1, seed=0, time_budget=30, algebraic=False)
    assert res.model.width[1] == [0, 1]
    assert res.r2 > 0.99
    model = KAN(width=[2, [1, 1], 1], grid=3, seed=0, dtype=torch.float64)
    x = torch.rand(100, 2, dtype=torch.float64)
    with torch.no_grad():
        model.act_fun[0].coef[1] = 0.0
        model.act_fun[0].scale_base[1] = 0.0  # input 1 feeds nothing
    pruned = prune_by_spread(model, x)
    assert pruned.width == model.width and (pruned.act_fun[0].mask[1] == 0).all()
    with torch.no_grad():  # only (nearly) constant edges went, their means kept in the biases
        a, b = pruned(x), model(x)
    assert torch.sqrt(torch.mean((a - b) ** 2)) < 0.05 * b.std()


def test_discover_tiny_budget_still_returns_a_formula():
    X, _ = _toy(seed=11)
    y = np.exp(np.sin(np.pi * X[:, 0]) + X[:, 1] ** 2)
    res = discover(X, y, seed=0, time_budget=0.5)
    networks = [a for a in res.attempts if not str(a["hidden"]).startswith("algebraic")]
    assert len(networks) <= 1  # the deadline cut the first network attempt short; no second
    assert isinstance(res.formula, sympy.Expr) and np.isfinite(res.r2)


def test_discover_parallel_attempts_equal_serial():
    """workers=2 runs attempts in two processes and chooses exactly what the serial loop does."""
    from sweep_cases import parallel_discover_case

    X, y, kw = parallel_discover_case()
    serial = kanlab.discover(X, y, **kw)
    par = kanlab.discover(X, y, workers=2, **kw)
    assert [a["formula"] for a in par.attempts] == [a["formula"] for a in serial.attempts]
    assert [a["r2"] for a in par.attempts] == [a["r2"] for a in serial.attempts]
    assert str(par.formula) == str(serial.formula) and par.r2 == serial.r2
    with pytest.raises(ValueError, match="workers"):
        kanlab.discover(X, y, workers=0)
    with pytest.raises((ImportError, ValueError), match="ray|backend"):
        kanlab.discover(X, y, backend="ray" if importlib.util.find_spec("ray") is None else "x")


def _standardized(X, y):
    from kanlab.discovery.result import minmax_scaling

    xc, xs, const = minmax_scaling(X)
    yc, ysd = float(y.mean()), float(y.std())
    t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    z = t((X - xc) / xs)
    return dict(train_input=z[:500], train_label=t((y[:500] - yc) / ysd)[:, None],
                test_input=z[500:], test_label=t((y[500:] - yc) / ysd)[:, None]), const, yc, ysd


@pytest.mark.parametrize("case", ["partial", "none", "sum"])
def test_product_groups(case):
    """The separability test finds the finest product grouping, and none in a non-product."""
    from kanlab.discovery.structure import _product_groups

    rng = np.random.default_rng(3)
    X = rng.uniform(1, 5, (700, 3))
    if case == "partial":
        y, want = X[:, 0] * (X[:, 1] ** 2 + X[:, 2] ** 2) / 2, [[0], [1, 2]]
    elif case == "none":
        y, want = X[:, 0] + X[:, 1] * X[:, 2], None
    else:  # a sum is no product, shifted or not (its least-squares shift is huge noise)
        y, want = X[:, 0] + X[:, 1] + X[:, 2] + 3, None
    data, const, yc, ysd = _standardized(X, y)
    found = _product_groups(data, 3, const, ysd, yc, seed=0)
    if want is None:
        assert found is None
    else:
        kind, groups, surrogate, delta, transform, hists = found
        assert (kind, [list(g) for g in groups], delta, transform) == ("factors", want, 0.0, "id")
        assert isinstance(surrogate, KAN) and len(hists) == 2


@pytest.mark.parametrize("law", ["product", "sum"])
def test_product_groups_where_the_surrogate_error_is_the_noise(law):
    """Noise at 5% of y's spread leaves the surrogate's held-out error over the 3% under which
    a split is tested at all. Told that this error is the data's noise (``noisy``), the test
    still finds a plain product, with a tighter ratio that a sum does not pass."""
    from kanlab.discovery.structure import _SEP_MAX_NOISY, _SEP_MAX_RMSE, _product_groups, \
        _surrogate

    rng = np.random.default_rng(7)
    X = rng.uniform([1, 0], [4, 3], (1000, 2))
    y = X[:, 0] * np.exp(-X[:, 1]) if law == "product" else X[:, 0] + 3 * np.exp(-X[:, 1])
    y = y + 0.05 * y.std() * rng.normal(size=len(y))
    data, const, yc, ysd = _standardized(X, y)
    sur = _surrogate(data, 2, 0)
    assert _SEP_MAX_RMSE <= sur[2] < _SEP_MAX_NOISY  # the case the noisy mode is for
    assert _product_groups(data, 2, const, ysd, yc, seed=0, surrogate=sur) is None
    found = _product_groups(data, 2, const, ysd, yc, seed=0, surrogate=sur, noisy=True)
    if law == "sum":
        assert found is None
    else:
        kind, groups, _, delta, transform, _ = found
        assert (kind, [list(g) for g in groups], delta, transform) == \
            ("factors", [[0], [1]], 0.0, "id")


@pytest.mark.parametrize("case", ["inverse_shifted_product", "inverse_square_sum"])
def test_product_groups_under_transforms(case):
    """1/y = 1 - v/c is a constant plus a product; 1/y**2 = 1/v**2 - 1/c**2 is a sum."""
    from kanlab.discovery.structure import _product_groups

    rng = np.random.default_rng(5)
    X = np.column_stack([rng.uniform(1, 2, 700), rng.uniform(3, 10, 700)])
    v, c = X[:, 0], X[:, 1]
    if case == "inverse_shifted_product":
        y = 1 / (1 - v / c)
    else:
        y = 1 / np.sqrt(1 / v ** 2 - 1 / c ** 2)
    data, const, yc, ysd = _standardized(X, y)
    kind, groups, surrogate, delta, transform, hists = _product_groups(data, 2, const, ysd,
                                                                       yc, seed=0)
    assert isinstance(surrogate, KAN)
    if case == "inverse_shifted_product":
        assert (kind, transform, [list(g) for g in groups]) == ("factors", "inv", [[0], [1]])
        assert delta == pytest.approx(1.0, abs=0.05)
    else:
        assert (kind, transform) == ("transform", "inv2")


def test_discover_divides_and_conquers_a_sign_changing_product():
    """x1*cos(x2) on x2 in [1, 5] changes sign, so no exp-of-logs route exists; the factors
    attempt reads each factor off a surrogate, discovers it alone and snaps the product.
    (m is negative here: with two positive inputs the dimensionless-group test would divide
    m off first, see tests/test_groups.py.)"""
    rng = np.random.default_rng(4)
    X = np.column_stack([rng.uniform(-3, -1, 800), rng.uniform(1, 5, 800)])
    y = -X[:, 0] * np.cos(X[:, 1])
    res = discover(X, y, var_names=["m", "theta"], hidden=["separable"], max_attempts=1,
                   seed=0, time_budget=60, algebraic=False)
    assert res.attempts[0]["hidden"] == "factors(m | theta)"
    m, theta = res.variables
    assert sympy.simplify(res.formula - (-m * sympy.cos(theta))) == 0
    assert res.r2 > 1 - 1e-9
    assert res.predict(X) == pytest.approx(y, rel=1e-9, abs=1e-9)
    # the result's model is the surrogate the factors were read from, with its fit history
    assert [h["stage"] for h in res.history] == ["surrogate", "surrogate_refine"]
    z = torch.as_tensor((X - res.x_center) / res.x_scale, dtype=res.model.dtype)
    with torch.no_grad():
        pred = res.model(z)[:, 0].double().numpy() * res.y_scale + res.y_center
    assert 1 - np.mean((pred - y) ** 2) / np.var(y) > 0.999


def test_formulas_with_spikes_or_nan_between_the_data_are_flagged():
    from kanlab.discovery.result import _evaluate, _finite_between, _r2

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.uniform(1, 2, 300), rng.uniform(3, 4, 300)])[:, None]
    x = sympy.Symbol("x")
    good = 1 / (x + 1)
    y = 1 / (X[:, 0] + 1)
    assert _finite_between(good, [x], X, y)
    # equal to y on both clusters (to 1e-6), but a spike or a NaN gap between them
    spike = good + 10**4 * sympy.exp(-((x - sympy.Rational(5, 2)) * 10) ** 2)
    p = (x - 2) * (x - 3)  # negative between the clusters only
    gap = good + sympy.sqrt(p) - sympy.sqrt(sympy.Abs(p))
    for bad in (spike, gap):
        assert _r2(_evaluate(bad, [x], X), y) > 1 - 1e-6  # the rows themselves cannot tell
        assert not _finite_between(bad, [x], X, y)



def test_noise_floor_needs_an_algebraic_formula_as_close_as_the_surrogate():
    """The surrogate's error reads as the data's noise only when an algebraic formula (another
    kind of model) stops at about the same held-out error: clearly better says the surrogate is
    rough, clearly worse says nothing."""
    from types import SimpleNamespace

    from kanlab.discovery.loop import SearchLoop

    rng = np.random.default_rng(0)
    yte = rng.normal(size=400)
    prep = SimpleNamespace(yte=yte, ysd=float(np.std(yte)))
    loop = SearchLoop(prep, [], (None, [], 0.05), None, None, [2], seed=0, time_budget=10.0,
                      t_start=0.0, r2_target=0.999, max_attempts=None, stages={})
    assert not loop.at_noise_floor()  # no algebraic formula yet
    for rmse, want in [(0.05, True), (0.045, True), (0.06, True), (0.03, False), (0.08, False)]:
        loop.attempts = [{"hidden": "algebraic(sum of 3 terms of y)", "r2": 1 - rmse ** 2},
                         {"hidden": 4, "r2": 0.99999}]  # a network's score does not count
        assert loop.at_noise_floor() is want, rmse


def test_last_factor_is_read_off_the_data_once_the_others_are_known():
    # y = x0 * (1 - cos(x1*x2))/(1 - cos(x1)): with the factor x0 known, the last factor's
    # values are y / x0 itself (up to scale), not a surrogate's rendering of them
    from kanlab.discovery.structure import _last_factor

    rng = np.random.default_rng(0)
    X = rng.uniform(1, 5, (300, 3))
    ratio = (1 - np.cos(X[:, 1] * X[:, 2])) / (1 - np.cos(X[:, 1]))
    y = X[:, 0] * ratio
    ysd = float(np.std(y))
    floor = (0.01 * ysd) ** 2  # the surrogate's error: 1% of y's spread
    f = _last_factor([2.0 * X[:, 0]], [0.99999], y, 0.0, floor, ysd)
    c = float(np.dot(f, ratio) / np.dot(ratio, ratio))
    np.testing.assert_allclose(f, c * ratio, rtol=1e-12)
    # not when the known factor misses its reading by more than the surrogate's error allows,
    # nor when it comes near zero (it divides), nor without a surrogate error to judge by
    assert _last_factor([X[:, 0]], [0.99], y, 0.0, floor, ysd) is None
    assert _last_factor([X[:, 0] - 1], [0.99999], y, 0.0, floor, ysd) is None
    assert _last_factor([X[:, 0]], [0.99999], y, 0.0, None, ysd) is None
    # three power laws of inputs in [1, 3] span 1/27: still far enough from zero to divide by
    Z = rng.uniform(1, 3, (300, 3))
    p = Z[:, 0] * Z[:, 1] / Z[:, 2]
    assert _last_factor([p], [0.99999], p * ratio, 0.0, floor, ysd) is not None
    # but not a divisor that changes sign, however far from zero it stays
    gap = np.where(X[:, 0] > 3, X[:, 0], -X[:, 0])
    assert _last_factor([gap], [0.99999], gap * ratio, 0.0, floor, ysd) is None


def test_the_largest_factor_comes_last_and_is_read_off_the_data(monkeypatch):
    # y = x0 * x2**2 / x3 * (1 - cos(x1*x4))/x4**2, the groups as the split test lists them,
    # (x1, x4) second: the one-input factors are found first, so that the pair's factor is
    # the data divided by them, not the surrogate's rendering of it
    from kanlab.discovery import structure
    from kanlab.discovery.oracle import Oracle

    rng = np.random.default_rng(1)
    X = rng.uniform(1, 3, (400, 5))
    pair = (1 - np.cos(X[:, 1] * X[:, 4])) / X[:, 4] ** 2
    y = X[:, 0] * X[:, 2] ** 2 / X[:, 3] * pair

    class Law(torch.nn.Module):
        def forward(self, z):  # the surrogate, exact: raw inputs in, raw y out
            z = z.double()
            return (z[:, 0] * z[:, 2] ** 2 / z[:, 3] * (1 - torch.cos(z[:, 1] * z[:, 4]))
                    / z[:, 4] ** 2)[:, None]

    sur = Oracle(Law(), KAN(width=[5, 1], grid=3, k=3, seed=0))
    x = sympy.symbols("x_0:5")
    truth = {(0,): x[0], (2,): x[2] ** 2, (3,): 1 / x[3],
             (1, 4): (1 - sympy.cos(x[1] * x[4])) / x[4] ** 2}
    calls = []

    def sub(Xs, f, names, budget, seed, separable, opts, read=True):
        cols = tuple(int(n[2:]) for n in names)
        calls.append((cols, read, f))
        syms = [sympy.Symbol(n) for n in names]
        e = truth[cols].xreplace({x[i]: s for i, s in zip(cols, syms)})
        v = sympy.lambdify(syms, e)(*Xs.T)  # found as a search would: with f's scale
        return sympy.Float(float(np.dot(v, f) / np.dot(v, v))) * e, syms

    monkeypatch.setattr(structure, "_sub_discover", sub)
    data = {"train_input": torch.as_tensor(X)}
    h = ("factors", ((0,), (1, 4), (2,), (3,)), sur, 0.0, "id", [])
    stages = {k: 0.0 for k in ("train", "formula")}
    res = structure._structured_attempt(data, h, 0, stages, list(x), 1.0, 0.0, X, y, X, y,
                                        False, time.perf_counter() + 30, {}, floor=1e-6)
    assert [c for c, _, _ in calls] == [(0,), (2,), (3,), (1, 4)]
    assert [r for _, r, _ in calls] == [True, True, True, False]
    f = calls[-1][2]  # the pair's target: the data over the other factors, up to scale
    np.testing.assert_allclose(f, np.dot(f, pair) / np.dot(pair, pair) * pair, rtol=1e-9)
    assert res["r2"] > 1 - 1e-12
