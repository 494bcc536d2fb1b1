"""Laws affine in a function of one input: y = A(rest) + B(rest) * g(x_j)."""
import numpy as np
import sympy
import torch

from kanlab.discovery.affine import _bare, _parts, affine_attempt, affine_input
from kanlab.discovery.result import _evaluate


def _law(X):
    x0, x1, x2 = X[:, 0], X[:, 1], X[:, 2]
    return x0 * x1 + (x0 + x1 ** 2) * np.cos(x2)


def _box(n, seed):
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(1, 3, n), rng.uniform(1, 3, n), rng.uniform(0, 6, n)])


def test_the_test_finds_the_input_the_law_is_affine_in():
    X = _box(600, 0)
    y = _law(X)
    # x2 (A + B*cos(x2)) and x0 (linear) are affine inputs; x1 (x0*x1 + x1**2*cos(x2)) is not
    assert affine_input(_law, X, 1e-3, float(np.std(y)), [0, 1, 2]) in (0, 2)
    assert affine_input(_law, X, 1e-3, float(np.std(y)), [1, 2]) == 2
    assert affine_input(_law, X, 1e-3, float(np.std(y)), [1]) is None


def test_the_test_rejects_a_law_affine_in_no_input():
    X = np.random.default_rng(1).uniform(1, 2, (600, 3))

    def f(Z):
        return np.exp(Z[:, 0] * Z[:, 1] * Z[:, 2])

    assert affine_input(f, X, 1e-3, float(np.std(f(X))), [0, 1, 2]) is None


def test_bare_drops_the_offset_and_scale_of_the_curve():
    x = sympy.Symbol("x")
    assert _bare(0.5 * sympy.cos(x) + 0.1) == sympy.cos(x)
    assert _bare(-2.0 * x) == x
    assert _bare(sympy.Float(3.0)) == 3.0  # a constant stays what it is


def test_parts_fits_a_and_b_on_the_data():
    X = _box(800, 2)
    g = np.cos(X[:, 2])
    A, B = X[:, 0] * X[:, 1], X[:, 0] + X[:, 1] ** 2
    a, b = _parts(X[:, :2], g, A + B * g, seed=0, deadline=float("inf"))
    assert np.sqrt(np.mean((a - A) ** 2)) < 0.02 * np.std(A)
    assert np.sqrt(np.mean((b - B) ** 2)) < 0.02 * np.std(B)


class _Exact(torch.nn.Module):
    """The law itself as the oracle, on the standardized scale of a surrogate."""

    def __init__(self, xc, xs, yc, ysd):
        super().__init__()
        self.xc, self.xs, self.yc, self.ysd = xc, xs, yc, ysd

    def forward(self, z):
        X = z.double() * torch.as_tensor(self.xs) + torch.as_tensor(self.xc)
        x0, x1, x2 = X[:, 0], X[:, 1], X[:, 2]
        y = x0 * x1 + (x0 + x1 ** 2) * torch.cos(x2)
        return ((y - self.yc) / self.ysd)[:, None]


def test_the_attempt_finds_each_part_and_the_whole_law():
    import time

    X, Xte = _box(800, 3), _box(300, 4)
    y, yte = _law(X), _law(Xte)
    xc, xs = X.mean(0), X.std(0)
    yc, ysd = float(y.mean()), float(y.std())
    oracle = _Exact(xc, xs, yc, ysd)
    scaling = (xc, xs, np.zeros(3, dtype=bool), ysd, yc, torch.float64)
    symbols = sympy.symbols("x0 x1 x2")
    stages = {k: 0.0 for k in ("train", "prune", "refine", "symbolic", "formula")}
    res = affine_attempt(("affine", 2, oracle, [], scaling), 0, stages, list(symbols), X, y, Xte,
                         yte, True, time.perf_counter() + 40.0, {})
    x0, x1, x2 = symbols
    truth = x0 * x1 + (x0 + x1 ** 2) * sympy.cos(x2)
    assert res["hidden"] == "affine(x2)"
    assert sympy.simplify(res["expr"] - truth) == 0, res["expr"]
    got = _evaluate(res["expr"], list(symbols), Xte)
    assert np.max(np.abs(got - yte)) < 1e-8 * np.max(np.abs(yte))


def test_the_structure_tests_offer_it_only_as_a_last_resort():
    """Offered where neither a sum nor a product shows, and not at all once a formula reaches
    the search's R2 target (a sub-search's algebraic fit awaiting its exact form)."""
    from kanlab.discovery.loop import _structures
    from kanlab.discovery.prepared import Prepared

    X = _box(600, 5)
    prep = Prepared(X, _law(X), 0, 0.2, torch.float64)
    oracle = _Exact(prep.xc, prep.xs, prep.yc, prep.ysd)
    args = (prep.dataset, 3, prep.const_cols, prep.ysd, prep.yc, 0, prep.Xtr, prep.ytr, prep.xc,
            prep.xs, torch.float64, (oracle, [], 1e-3), float("inf"))
    kinds = [h[0] for h in _structures(*args)]
    assert "affine" in kinds and "sum" not in kinds and "factors" not in kinds
    assert "affine" not in [h[0] for h in _structures(*args, affine=False)]
