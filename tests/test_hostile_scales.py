"""Data at scales and with names that break naive pipelines: inputs near 1e8 with a spread of 1,
magnitudes from 1e-30 to 1e200, variables called pi or E, complex or constant targets. Every
public entry point (discover, KANRegressor, kanlab fit) must give a formula that is right in the
caller's units, or a clear error."""
from __future__ import annotations

import numpy as np
import pytest
import sympy
import torch

import kanlab
from kanlab.cli import main
from kanlab.discovery.conditioning import Conditioning
from kanlab.symbolic.formula import make_symbols

RNG = np.random.default_rng(0)
X0 = RNG.uniform(1, 2, (300, 2))
XF = RNG.uniform(1, 2, (500, 2))  # fresh points, in the law's own units


def law(X):
    return X[:, 0] ** 2 * X[:, 1]


def r2(pred, y):
    return 1 - float(np.sum((pred - y) ** 2)) / float(np.sum((y - y.mean()) ** 2))


def test_conditioning_keeps_offsets_inside_and_scales_by_powers_of_ten():
    syms = make_symbols(3, ["a", "b", "pi"])
    X = np.column_stack([X0[:, 0] + 1e8, X0[:, 1] * 1e-30, X0[:, 0]])
    c = Conditioning.of(X, law(X0) * 1e200, syms)
    assert c.rescales
    assert float(c.offsets[0]) == pytest.approx(1e8 + 1.5, abs=0.02) and c.offsets[1:] == [0, 0]
    assert c.xexp == [0, -31, 0] and c.yexp == 200
    assert [s.name for s in c.inner] == ["a", "b", "x_3"]  # pi would be read as the constant
    U, v = c.data(X, law(X0) * 1e200)
    assert np.abs(U[:, 0]).max() <= 1 and 1 <= np.abs(U[:, 1]).max() <= 100
    expr = c.expr(c.inner[0] ** 2 + c.inner[1] * c.inner[2])
    assert expr.free_symbols == set(syms)
    assert "**2" in str(expr) and str(c.offsets[0]) in str(expr)  # (a - offset)**2, unexpanded
    f = sympy.lambdify(syms, expr, dummify=True)
    want = 1e200 * ((X[:, 0] - float(c.offsets[0])) ** 2 + X[:, 1] * 1e31 * X[:, 2])
    np.testing.assert_allclose(f(*X.T), want, rtol=1e-12)
    assert not Conditioning.of(X0, law(X0), make_symbols(2)).rescales


@pytest.mark.parametrize("case", ["x_offset_1e8", "x_1e-30", "x_1e30", "y_1e200", "y_1e-30",
                                  "y_offset_1e8"])
def test_discover_at_hostile_scales_is_right_in_the_callers_units(case):
    sx, ox, sy, oy = {"x_offset_1e8": (1, 1e8, 1, 0), "x_1e-30": (1e-30, 0, 1, 0),
                      "x_1e30": (1e30, 0, 1, 0), "y_1e200": (1, 0, 1e200, 0),
                      "y_1e-30": (1, 0, 1e-30, 0), "y_offset_1e8": (1, 0, 1, 1e8)}[case]
    res = kanlab.discover(X0 * sx + ox, law(X0) * sy + oy, time_budget=10, max_attempts=1)
    pred = res.predict(XF * sx + ox)
    assert np.all(np.isfinite(pred))
    assert r2((pred - oy) / sy, law(XF)) > 1 - 1e-6, res.formula
    assert res.r2 > 1 - 1e-6
    # the model's standardization is in the caller's units too
    z = (XF * sx + ox - res.x_center) / res.x_scale
    assert np.abs(z).max() < 1.5


def test_regressor_on_offset_inputs():
    X = X0 + 1e8
    m = kanlab.KANRegressor(time_budget=10, max_attempts=1).fit(X, law(X0))
    assert m.score(XF + 1e8, law(XF)) > 1 - 1e-6


def test_variables_named_like_constants_are_variables():
    y = X0[:, 0] * X0[:, 1] + X0[:, 1] ** 2
    res = kanlab.discover(X0, y, var_names=["pi", "E"], time_budget=10, max_attempts=1)
    assert {s.name for s in res.formula.free_symbols} <= {"pi", "E"}
    assert not res.formula.has(sympy.pi) and not res.formula.has(sympy.E)
    assert r2(res.predict(XF), XF[:, 0] * XF[:, 1] + XF[:, 1] ** 2) > 1 - 1e-9


def test_complex_inputs_and_control_characters_in_names_are_refused():
    with pytest.raises(ValueError, match="complex"):
        kanlab.discover(X0 + 1j, law(X0), time_budget=5)
    res = kanlab.discover(X0.astype(complex), law(X0), time_budget=5, max_attempts=1)
    assert res.r2 > 0.999  # a zero imaginary part is a real number
    with pytest.raises(ValueError, match="newline"):
        kanlab.discover(X0, law(X0), var_names=["a", "b\nc"], time_budget=5)


def test_constant_target_model_is_the_constant(tmp_path, capsys):
    res = kanlab.discover(X0, np.full(300, 3.25), time_budget=5)
    assert float(res.formula) == 3.25
    z = torch.as_tensor((XF - res.x_center) / res.x_scale, dtype=res.model.dtype)
    out = res.y_center + res.y_scale * res.model(z).detach().numpy()[:, 0]
    np.testing.assert_allclose(out, 3.25, rtol=1e-6)


def test_cli_fit_at_1e30_and_near_float32_overflow(tmp_path, capsys):
    for name, sx, sy in [("big", 1e30, 1e30), ("f32", 1e39, 1.0)]:
        path = tmp_path / f"{name}.csv"
        np.savetxt(path, np.c_[X0 * sx, law(X0) * sy], delimiter=",", header="a,b,y",
                   comments="")
        out = tmp_path / name
        assert main(["fit", str(path), "--target", "y", "--time-budget", "5", "--out",
                     str(out)]) == 0
        text = capsys.readouterr().out
        test_line = next(line for line in text.splitlines() if line.startswith("test"))
        assert float(test_line.split("R2")[1].split()[0]) > 1 - 1e-6, text


def test_tiny_budget_still_gives_the_exact_polynomial():
    """The algebraic stage scores its best candidate even when finding candidates used its
    whole share of the budget, and a formula with few floats is snapped even past the deadline."""
    X = RNG.uniform(-1, 1, (200, 2))
    for budget in (0.5, 5.0):
        res = kanlab.discover(X, X[:, 0] * X[:, 1] + 1, time_budget=budget)
        x1, x2 = res.variables
        assert res.formula == x1 * x2 + 1, (budget, res.formula)


UNGUARDED = """
import warnings, numpy as np, kanlab
rng = np.random.default_rng(0)
X = rng.uniform(-1, 1, (100, 2))
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    res = kanlab.discover(X, X[:, 0] * X[:, 1] + 1, workers=2, time_budget=3, max_attempts=1)
print("WARNED", any("__main__" in str(m.message) for m in w))
print("FORMULA", res.formula)
"""


def test_parallel_discover_without_a_main_guard_runs_serially(tmp_path):
    """A script calling discover(workers=2) at its top level (no __main__ guard) would break
    the process pool; it runs serially and says how to fix it."""
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text(UNGUARDED)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "WARNED True" in out.stdout and "FORMULA x_1*x_2 + 1" in out.stdout, out.stdout
    assert "BrokenProcessPool" not in out.stderr
