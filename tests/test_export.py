"""Export: formulas as LaTeX, numpy, torch and Python source; models through torch.export/ONNX."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import sympy
import torch

from kanlab import KAN, create_dataset
from kanlab.export import (
    FormulaModule,
    InferenceKAN,
    export_onnx,
    export_torch,
    formula_to_latex,
    formula_to_numpy,
    formula_to_python_source,
    formula_to_torch,
    inference_module,
)

x1, x2 = sympy.symbols("x_1 x_2")


def _toy(x):
    return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)


@pytest.fixture(scope="module")
def symbolic_model():
    """A tiny float64 KAN trained on the toy, made fully symbolic, and its formula."""
    torch.set_num_threads(1)
    ds = create_dataset(_toy, n_var=2, train_num=100, test_num=20, seed=0, dtype=torch.float64)
    model = KAN(width=[2, 1, 1], grid=5, seed=0, dtype=torch.float64)
    model.fit(ds, steps=20, progress=False)
    model.auto_symbolic(lib=["x", "x^2", "sin", "exp", "tanh"], verbose=0)
    exprs, syms = model.symbolic_formula()
    return model, exprs, syms


def _trained_numeric(width, dtype=torch.float32, symbolic=(), **kw):
    """A small KAN fitted a few steps (adaptive, non-uniform grid), some edges symbolic."""
    n_in = width[0]
    n_out = width[-1] if isinstance(width[-1], int) else sum(width[-1])

    def f(x):
        return torch.sin(2 * x.sum(1, keepdim=True)).repeat(1, n_out) + x[:, :1] ** 2

    ds = create_dataset(f, n_var=n_in, train_num=80, test_num=20, seed=1, dtype=dtype)
    model = KAN(width=width, grid=4, seed=0, dtype=dtype, **kw)
    model.fit(ds, steps=3, progress=False)
    for l, i, j, name in symbolic:
        model.fix_symbolic(l, i, j, name, verbose=False)
    return model


def _inputs(n_in, n=64, dtype=torch.float32, seed=5):
    gen = torch.Generator().manual_seed(seed)
    # beyond the grid on purpose: extrapolation must match too
    return torch.rand(n, n_in, generator=gen, dtype=dtype) * 3.0 - 1.5


def _close(a, b, rtol):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    scale = b.abs().max().clamp_min(1.0)
    assert torch.all(torch.isfinite(a)) and torch.all(torch.isfinite(b))
    err = float((a - b).abs().max() / scale)
    assert err <= rtol, err


# ------------------------------------------------------------------------------ LaTeX
def test_latex_of_known_formulas():
    assert formula_to_latex(sympy.exp(sympy.sin(sympy.pi * x1) + x2**2)) == (
        r"e^{x_{2}^{2} + \sin{\left(\pi x_{1} \right)}}")
    assert formula_to_latex(sympy.Float(3.14159265) * x1**2 + sympy.Float(2.0000001),
                            precision=3) == r"3.14 x_{1}^{2} + 2"
    # a list gives a list; rationals stay exact while floats are rounded
    assert formula_to_latex([sympy.Rational(1, 3) * x1, sympy.Float(0.123456) * x2], precision=2) == [
        r"\frac{x_{1}}{3}", r"0.12 x_{2}"]
    assert formula_to_latex(sympy.Float(0.123456) * x2, precision=None) == r"0.123456 x_{2}"
    with pytest.raises(ValueError, match="precision"):
        formula_to_latex(x1, precision=0)


# ------------------------------------------------------------------- callables vs model
def test_numpy_torch_and_source_match_the_symbolic_model(symbolic_model):
    model, exprs, syms = symbolic_model
    assert model.n_edge == 0  # fully symbolic: the formula is the model
    X = _inputs(2, n=200, dtype=torch.float64)
    with torch.no_grad():
        y = model(X)
    _close(formula_to_numpy(exprs, syms)(X.numpy()), y, 1e-5)
    _close(formula_to_torch(exprs, syms)(X).detach(), y, 1e-5)
    ns: dict = {}
    exec(compile(formula_to_python_source(exprs, syms, name="toy"), "<kanlab>", "exec"), ns)
    _close(ns["toy"](X.numpy()), y, 1e-5)
    # a bare expression gives (n,), a list (n, n_out)
    assert formula_to_numpy(exprs[0], syms)(X.numpy()).shape == (200,)
    assert formula_to_torch(exprs[0], syms)(X).shape == (200,)
    # float32 input keeps float32
    assert formula_to_torch(exprs, syms)(X.float()).dtype == torch.float32


def test_torch_formula_gradient_equals_model_autograd(symbolic_model):
    model, exprs, syms = symbolic_model
    X = _inputs(2, n=50, dtype=torch.float64).requires_grad_(True)
    (g_model,) = torch.autograd.grad(model(X).sum(), X)
    X2 = X.detach().clone().requires_grad_(True)
    (g_formula,) = torch.autograd.grad(formula_to_torch(exprs, syms)(X2).sum(), X2)
    _close(g_formula, g_model, 1e-6)


def test_torch_formula_gradcheck():
    expr = (sympy.sin(sympy.pi * x1) * sympy.exp(-x2**2) / (1 + x1**2) + sympy.sqrt(x2 + 3)
            + sympy.atan(x1 * x2) - sympy.Rational(3, 2) * sympy.log(x1**2 + 1) + sympy.tanh(x2)
            + sympy.Abs(x1 - 5) + x1 ** sympy.Rational(3, 1) + sympy.asin(x1 / 4) + sympy.E
            + sympy.erf(x2) * sympy.cosh(x1))
    module = formula_to_torch([expr, sympy.cos(x2) * x1], [x1, x2])
    X = (_inputs(2, n=6, dtype=torch.float64) * 0.6).requires_grad_(True)
    assert torch.autograd.gradcheck(module, (X,))
    # and the value is the sympy value
    ref = formula_to_numpy([expr, sympy.cos(x2) * x1], [x1, x2])(X.detach().numpy())
    _close(module(X).detach(), ref, 1e-12)


def test_constants_and_unused_variables_broadcast():
    X = _inputs(2, n=7, dtype=torch.float64)
    f = formula_to_numpy([sympy.Integer(3), sympy.pi * x2], [x1, x2])
    out = f(X.numpy())
    assert out.shape == (7, 2)
    np.testing.assert_allclose(out[:, 0], 3.0)
    np.testing.assert_allclose(out[:, 1], np.pi * X[:, 1].numpy())
    m = formula_to_torch([sympy.Integer(3), sympy.sqrt(2) * x2], [x1, x2])
    res = m(X)
    assert res.shape == (7, 2)
    assert torch.all(res[:, 0] == 3.0)
    _close(res[:, 1], np.sqrt(2) * X[:, 1], 1e-15)
    assert formula_to_numpy(sympy.Float(2.5), [x1])(np.zeros(4)).shape == (4,)


def test_out_of_domain_and_complex_values():
    X = np.array([[4.0], [-1.0]])
    # real evaluation: NaN outside the domain, no warning, no complex dtype
    with np.errstate(all="raise"):
        out = formula_to_numpy(sympy.sqrt(x1), [x1])(X)
    assert out.dtype == np.float64
    assert out[0] == 2.0 and np.isnan(out[1])
    # an expression with I: the real part where the imaginary part vanishes, else NaN
    out = formula_to_numpy(sympy.exp(sympy.I * sympy.pi * x1), [x1])(np.array([[0.0], [2.0], [0.5]]))
    np.testing.assert_allclose(out[:2], [1.0, 1.0])
    assert np.isnan(out[2])
    with pytest.raises(ValueError, match="complex"):
        formula_to_torch(sympy.I * x1, [x1])


def test_clear_errors_for_formulas():
    with pytest.raises(ValueError, match="gamma"):
        formula_to_torch(sympy.gamma(x1), [x1])
    with pytest.raises(ValueError, match="infinite"):
        formula_to_torch(x1 + sympy.oo, [x1])
    with pytest.raises(ValueError, match=r"x_2"):
        formula_to_numpy(x1 + x2, [x1])
    with pytest.raises(ValueError, match="symbols"):
        formula_to_torch(x1, None)
    f = formula_to_numpy([x1 + x2], [x1, x2])
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        f(np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        formula_to_torch([x1 + x2], [x1, x2])(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="identifier"):
        formula_to_python_source(x1, [x1], name="not valid")


def test_python_source_handles_odd_symbol_names():
    a, b = sympy.Symbol("lambda"), sympy.Symbol("rate (1/s)")
    src = formula_to_python_source([a * sympy.exp(-b), sympy.Integer(2)], [a, b])
    assert "numpy" in src and "sympy" not in src.replace("kanlab", "")
    ns: dict = {}
    exec(src, ns)
    X = np.array([[1.0, 0.0], [2.0, 1.0]])
    np.testing.assert_allclose(ns["formula"](X), [[1.0, 2.0], [2 * np.exp(-1.0), 2.0]])


# ---------------------------------------------------------------- numeric inference path
@pytest.mark.parametrize("case", ["numeric", "mult_symbolic", "nobias_identity"])
def test_inference_module_equals_model(case):
    if case == "numeric":
        model = _trained_numeric([2, 3, 1])
    elif case == "mult_symbolic":
        model = _trained_numeric([3, [2, 2], 2], mult_arity=[[], [2, 3], []],
                                 symbolic=[(0, 0, 0, "sin"), (0, 2, 3, "x^2"), (1, 1, 1, "exp")])
    else:
        model = _trained_numeric([2, 4, 1], base_fun="identity", bias=False,
                                 symbolic=[(1, 2, 0, "tanh")])
    # the grid update made the knots non-uniform, and the symbolic edges are on
    assert not model.act_fun[0].is_uniform()
    inf = inference_module(model)
    assert isinstance(inf, InferenceKAN)
    X = _inputs(model.width_in[0], n=300)
    with torch.no_grad():
        _close(inf(X), model(X), 1e-5)
        # the same holds in float64, to float64 precision
        m64 = model.double()
        _close(inference_module(m64)(X.double()), m64(X.double()), 1e-12)


def test_export_torch_dynamic_batch():
    """export_torch goes through InferenceKAN (the fast path's custom autograd node and caches
    do not trace) and accepts any batch size."""
    model = _trained_numeric([2, 3, 1], symbolic=[(0, 1, 2, "sin")])
    X = _inputs(2, n=40)
    program = export_torch(model, X[:5])
    out = program.module()(X)
    with torch.no_grad():
        _close(out, model(X), 1e-5)
    # dynamic batch: other batch sizes, including 1
    for n in (1, 17):
        with torch.no_grad():
            _close(program.module()(X[:n]), model(X[:n]), 1e-5)


def test_export_torch_round_trip_file(tmp_path):
    model = _trained_numeric([2, [1, 1], 1], symbolic=[(0, 0, 1, "x")])
    X = _inputs(2, n=33)
    path = tmp_path / "model.pt2"
    export_torch(model, X[:1], path=path)  # a single-row example still gives a dynamic batch
    loaded = torch.export.load(str(path))
    with torch.no_grad():
        _close(loaded.module()(X), model(X), 1e-5)
        _close(loaded.module()(X[:3]), model(X[:3]), 1e-5)
    fixed = export_torch(model, X[:4], dynamic_batch=False)
    with torch.no_grad():
        _close(fixed.module()(X[:4]), model(X[:4]), 1e-5)
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        export_torch(model, torch.zeros(3, 5))
    with pytest.raises(ValueError, match="folder"):
        export_torch(model, X[:2], path=tmp_path)


def test_export_formula_module(symbolic_model):
    _, exprs, syms = symbolic_model
    module = formula_to_torch(exprs, syms)
    assert isinstance(module, FormulaModule)
    X = _inputs(2, n=20, dtype=torch.float64)
    program = export_torch(module, X[:3])
    _close(program.module()(X), module(X).detach(), 1e-12)


# ------------------------------------------------------------------------------- ONNX
def _onnx_run(path, X):
    onnx = pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (graph.graph.input[0], graph.graph.output[0])]
    return dims, ReferenceEvaluator(graph).run(None, {"x": X.numpy()})[0]


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
@pytest.mark.parametrize("dynamo", [None, False])
def test_export_onnx(tmp_path, dynamo):
    pytest.importorskip("onnx")
    if dynamo is None:
        pytest.importorskip("onnxscript")
    model = _trained_numeric([2, [2, 1], 1], symbolic=[(0, 1, 0, "sin")])
    X = _inputs(2, n=23)
    path = export_onnx(model, X[:4], tmp_path / "model.onnx", dynamo=dynamo)
    assert path.exists()
    dims, out = _onnx_run(path, X)  # another batch size than the example's
    assert dims == [["batch", 2], ["batch", 1]]
    with torch.no_grad():
        _close(torch.from_numpy(out), model(X), 1e-5)


def test_export_onnx_without_onnx_is_a_clear_import_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match="pip install onnx"):
        export_onnx(KAN(width=[2, 1], seed=0), torch.zeros(2, 2), tmp_path / "m.onnx")


def test_kan_export_methods():
    """The thin KAN methods wrap the export functions."""
    import kanlab as _k

    f = lambda x: x[:, [0]] ** 2 + torch.sin(x[:, [1]])  # noqa: E731
    ds = _k.create_dataset(f, 2, train_num=200, seed=0, dtype=torch.float64)
    m = _k.KAN(width=[2, 1], seed=0, dtype=torch.float64)
    m.fit(ds, steps=5)
    x = ds["test_input"][:17]
    ep = m.export(x[:3])
    torch.testing.assert_close(ep.module()(x), m(x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(m.inference_module()(x), m(x), rtol=1e-10, atol=1e-10)
    m.auto_symbolic(verbose=0)
    assert "sin" in m.formula_latex()[0]
    np.testing.assert_allclose(m.formula_numpy()(x.numpy()), m(x).detach().numpy()[:, 0],
                               rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(m.formula_torch()(x), m(x)[:, 0], rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="at least 2 samples"):
        m.attribute(x=x[:1])
