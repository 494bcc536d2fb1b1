"""The kanpiler (kanlab.compiler.expr2kan): formulas compiled into KANs that compute them."""
import math

import numpy as np
import pytest
import sympy as sp
import torch

from kanlab.compiler import expr2kan, kanpiler

x, y, z = sp.symbols("x y z")

# (inputs, expression, input range): ranges keep log, 1/x, sqrt... inside their domains
CASES = [
    ((x, y), sp.exp(sp.sin(sp.pi * x) + y**2), (-1, 1)),
    ((x, y, z), x * y + sp.sin(z), (-1, 1)),
    ((x, y), 3.5 * x * y - 2, (-1, 1)),
    ((x, y, z), (x + 1) * (y - 2) * z, (-1, 1)),
    ((x, y), x / y + sp.sqrt(x) * y ** sp.Rational(3, 2), (0.5, 2)),
    ((x,), sp.sin(x) + sp.cos(x), (-2, 2)),
    ((x,), x**2 + x, (-2, 2)),
    ((x,), x**6 - x ** sp.Rational(1, 4), (0.5, 1.5)),
    ((x, y), 2**x + sp.log(3 * y), (0.5, 2)),
    ((x, y), x**y, (0.5, 2)),
    ((x, y), sp.tanh(2 * x - 1) * sp.cos(y) + sp.Abs(x) + sp.atan(y), (-1, 1)),
    ((x, y), sp.sin(x * y) + x, (-1, 1)),
    ((x, y, z), sp.exp(-(x**2)) * y / (z**2 + 1) + 1 / (x + 3) ** 2, (-1, 1)),
    ((x,), x, (-1, 1)),
    ((x, y), sp.Integer(3), (-1, 1)),
]


def _points(n_in, lo, hi, n=64, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, n_in, generator=g, dtype=dtype) * (hi - lo) + lo


def _reference(inputs, expr, X):
    exprs = expr if isinstance(expr, list) else [expr]
    fn = sp.lambdify(inputs, exprs, "numpy")
    vals = fn(*[X[:, i].numpy() for i in range(X.shape[1])])
    return np.stack([np.broadcast_to(np.asarray(v, dtype=float), (X.shape[0],)) for v in vals], 1)


def _dataset(model, inputs, expr, lo, hi, n=200):
    X = _points(len(inputs), lo, hi, n=n, dtype=model.dtype, seed=1)
    Y = torch.as_tensor(_reference(inputs, expr, X), dtype=model.dtype)
    return dict(train_input=X, train_label=Y, test_input=X, test_label=Y)


@pytest.mark.parametrize("inputs,expr,rng", CASES, ids=[str(c[1]) for c in CASES])
def test_model_computes_the_formula(inputs, expr, rng):
    model = expr2kan(list(inputs), expr, dtype=torch.float64)
    X = _points(len(inputs), *rng)
    out = model(X).detach().numpy()
    np.testing.assert_allclose(out, _reference(inputs, expr, X), rtol=1e-9, atol=1e-12)
    # every used edge is symbolic, nothing numeric is on
    assert all(int((layer.mask != 0).sum()) == 0 for layer in model.act_fun)


def test_float32_and_alias():
    expr = sp.exp(sp.sin(sp.pi * x) + y**2)
    model = kanpiler([x, y], expr)
    assert model.dtype == torch.float32
    X = _points(2, -1, 1, dtype=torch.float32)
    np.testing.assert_allclose(model(X).detach().numpy(), _reference((x, y), expr, X), rtol=1e-5)


@pytest.mark.parametrize("inputs,expr,width", [
    ((x, y), sp.exp(sp.sin(sp.pi * x) + y**2), [[2, 0], [1, 0], [1, 0]]),
    ((x, y, z), x * y + sp.sin(z), [[3, 0], [1, 1], [1, 0]]),
    ((x, y), x * y, [[2, 0], [0, 1]]),
    ((x, y, z), 2 * x * y * z**2, [[3, 0], [0, 1]]),  # one product node of arity 3
    ((x, y), x**2 * y + 1, [[2, 0], [0, 1], [1, 0]]),  # no bias after a product: one more layer
    ((x,), sp.sin(x) + sp.cos(x), [[1, 0], [2, 0], [1, 0]]),  # two functions of one input
    # y and z are summed in layer 0 and carried as one value, beside sin(x)
    ((x, y, z), sp.sin(sp.sin(x)) + y + z, [[3, 0], [2, 0], [1, 0]]),
    ((x, y), x**y, [[2, 0], [0, 1], [1, 0]]),  # exp(y * log(x))
])
def test_width_is_small(inputs, expr, width):
    assert expr2kan(list(inputs), expr).width == width


def test_common_subexpressions_share_nodes():
    # x + y appears twice (inside exp(sin(.)) and sin(.)): one node in layer 1 computes it
    expr = sp.exp(sp.sin(x + y)) * sp.sin(x + y)
    model = expr2kan([x, y], expr, dtype=torch.float64)
    assert model.width == [[2, 0], [1, 0], [2, 0], [0, 1]]
    X = _points(2, -1, 1)
    np.testing.assert_allclose(model(X).detach().numpy(), _reference((x, y), expr, X), rtol=1e-9)


def test_several_outputs_in_order():
    exprs = [x * y, x + y, sp.sin(x), sp.sin(x)]
    model = expr2kan([x, y], exprs, dtype=torch.float64)
    assert model.width[-1][0] + model.width[-1][1] == 4
    X = _points(2, -1, 1)
    np.testing.assert_allclose(model(X).detach().numpy(), _reference((x, y), exprs, X), rtol=1e-9)


def test_without_node_biases():
    exprs = [x * y + 2, sp.Integer(-3), sp.sin(x) + 1]
    model = expr2kan([x, y], exprs, bias=False, dtype=torch.float64)
    assert model.act_fun[0].bias is None
    X = _points(2, -1, 1)
    np.testing.assert_allclose(model(X).detach().numpy(), _reference((x, y), exprs, X), rtol=1e-9)


@pytest.mark.parametrize("expr", [
    x * y + sp.sin(z),
    sp.exp(sp.sin(x) + y**2),
    (x + 1) * (y - 2) * z,
    x / (y + 3) + z**3,
    sp.sqrt(x + 2) * sp.cos(y),
])
def test_symbolic_formula_round_trip(expr):
    model = expr2kan([x, y, z], expr, dtype=torch.float64)
    (formula,), syms = model.symbolic_formula(var=["x", "y", "z"], simplify=False)
    assert syms == [x, y, z]
    exact = sp.nsimplify(formula, [sp.pi], rational=True)
    assert sp.simplify(exact - expr) == 0, (formula, expr)


def test_symbolic_formula_with_pi():
    expr = sp.exp(sp.sin(sp.pi * x) + y**2)
    model = expr2kan([x, y], expr, dtype=torch.float64)
    (formula,), _ = model.symbolic_formula(var=["x", "y"], simplify=False)
    pis = {f: sp.pi for f in formula.atoms(sp.Float) if abs(float(f) - math.pi) < 1e-12}
    assert pis and formula.xreplace(pis) == expr


def test_edges_are_fixed_with_library_names():
    model = expr2kan([x, y, z], x * y + sp.sin(z))
    # layer 0: z -> carry node 0 (identity), x and y -> the two factors of the product
    names0 = model.symbolic_fun[0].funs_name
    assert names0[0] == ["0", "0", "x"] and names0[1][0] == "x" and names0[2][1] == "x"
    assert model.symbolic_fun[1].funs_name == [["sin", "x"]]
    # unused edges are off in both branches
    assert int(model.symbolic_fun[0].mask.sum()) == 3
    assert model.n_edge == 0


def test_fit_keeps_the_exact_loss():
    expr = x * y + sp.sin(z)
    model = expr2kan([x, y, z], expr, dtype=torch.float64)
    ds = _dataset(model, (x, y, z), expr, -1, 1)
    assert model.evaluate(ds)["train_loss"] < 1e-12
    model.fit(ds, steps=3)
    assert model.evaluate(ds)["train_loss"] < 1e-9


def test_fit_repairs_perturbed_constants():
    expr = sp.exp(sp.sin(sp.pi * x) + y**2) + x * y
    model = expr2kan([x, y], expr, dtype=torch.float64)
    ds = _dataset(model, (x, y), expr, -1, 1)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for sym in model.symbolic_fun:
            sym.affine.add_(0.03 * torch.randn(sym.affine.shape, generator=g, dtype=sym.affine.dtype)
                            * (sym.mask != 0)[..., None])
    before = model.evaluate(ds)["train_loss"]
    assert before > 1e-3
    model.fit(ds, steps=5)
    assert model.evaluate(ds)["train_loss"] < 0.1 * before


def test_unfixed_edge_trains_numerically():
    expr = x * y + sp.sin(z)
    model = expr2kan([x, y, z], expr, dtype=torch.float64)
    ds = _dataset(model, (x, y, z), expr, -1, 1)
    model.unfix_symbolic(1, 0, 0)  # the sin edge of the carried z becomes a spline
    assert model.symbolic_fun[1].funs_name[0][0] == "0" and model.n_edge == 1
    before = model.evaluate(ds)["train_loss"]
    model.fit(ds, steps=10)
    after = model.evaluate(ds)["train_loss"]
    assert after < 0.1 * before and after < 1e-3


@pytest.mark.parametrize("inputs,expr,match", [
    ([x, y], sp.sinh(x) + y, r"sinh\(x\).*not in kanlab's symbolic library"),
    ([x, y], x + z, r"symbol\(s\) z not in input_variables"),
    ([x], x ** sp.Rational(1, 3), r"x\*\*\(1/3\).*exponent 1/3"),
    ([x], sp.I * x, r"I is not a real number"),
    ([x], sp.oo * x, r"not finite"),
    ([x, y], sp.Max(x, y), r"Max\(x, y\)"),
    ([x], sp.Function("f")(x) + 1, r"f\(x\)"),
    ([x], 1 / (x**2 - 2) ** sp.Rational(1, 3), r"exponent -1/3"),
    ([x], (-2) ** x, r"positive base"),
    ([x, y], sp.Eq(x, y), r"not a scalar"),
    ([], x, r"non-empty list of sympy Symbols"),
    ([x, x], x, r"repeated"),
    (["x"], x, r"sympy Symbols"),
    ([x], [], r"non-empty list"),
])
def test_bad_input_raises_clearly(inputs, expr, match):
    with pytest.raises(ValueError, match=match):
        expr2kan(inputs, expr)


def test_rejects_width_argument():
    with pytest.raises(ValueError, match="width"):
        expr2kan([x], x, width=[1, 1])


def test_auto_save_is_ignored(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    expr2kan([x], sp.sin(x), auto_save=True)
    assert list(tmp_path.iterdir()) == []


def test_width_against_pykan(tmp_path, monkeypatch):
    """pykan's expr2kan gives the same widths where both apply. Differences (documented):
    pykan has a scale and bias after every product, so ``3*x*y + 2`` is one layer there and two
    here; and pykan keys edges by (layer, from, to), so two functions of one input in one sum
    (``sin(x) + cos(x)``, ``x**2 + x``) overwrite each other there (a wrong model of width
    [1, 1]), while kanlab routes the second through a node of its own (width [1, 2, 1])."""
    pytest.importorskip("kan")
    from kan.compiler import expr2kan as pykan_expr2kan

    monkeypatch.chdir(tmp_path)
    for inputs, expr in [((x, y), sp.exp(sp.sin(sp.pi * x) + y**2)),
                         ((x, y, z), x * y + sp.sin(z))]:
        ours = expr2kan(list(inputs), expr).width
        theirs = pykan_expr2kan(list(inputs), expr).width
        assert ours == [list(w) for w in theirs]
    assert pykan_expr2kan([x, y], 3 * x * y + 2).width == [[2, 0], [0, 1]]
    assert expr2kan([x, y], 3 * x * y + 2).width == [[2, 0], [0, 1], [1, 0]]


def test_mixed_arity_model_saves_and_loads(tmp_path):
    from kanlab import KAN

    model = expr2kan([x, y, z], x * y * z + sp.sin(x) * y, dtype=torch.float64)
    assert model.width == [[3, 0], [0, 2], [1, 0]] and model._arity[1] == [2, 3]
    model.save(tmp_path / "m.pt")
    X = _points(3, -1, 1)
    with torch.no_grad():
        assert torch.equal(KAN.load(tmp_path / "m.pt")(X), model(X))
