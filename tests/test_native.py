"""The native CPU kernels (kanlab/_native.cpp) against scipy and the pure-PyTorch path."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline

from kanlab import KAN, native
from kanlab.basis import BasisPlan
from kanlab.functional import fused_features
from kanlab.layer import KANLayer
from kanlab.splines import make_grid


@pytest.fixture(autouse=True)
def _restore_switch():
    yield
    native.set_enabled(True)


def test_library_is_built():
    # the install builds it (setup.py); a silent build failure would leave every run on the
    # slower path, so the suite insists unless it was switched off on purpose
    if os.environ.get("KANLAB_NATIVE", "1") == "0":
        pytest.skip("KANLAB_NATIVE=0")
    assert native.available(), native.load_error()


needs_native = pytest.mark.skipif(not native.available(), reason="native library not built")


def _grid(n_in, G, k, uniform, dtype, seed=0):
    g = make_grid(n_in, G, k, (-1.0, 1.0), dtype=dtype)
    if not uniform:
        gen = torch.Generator().manual_seed(seed)
        inner = torch.sort(torch.rand(n_in, G + 1, generator=gen, dtype=torch.float64) * 2 - 1, 1)[0]
        inner[:, 0], inner[:, -1] = -1.0, 1.0
        from kanlab.basis import extend_grid

        g = extend_grid(inner, k).to(dtype)
    return g


def _inputs(grid, batch, dtype, seed=1):
    gen = torch.Generator().manual_seed(seed)
    lo, hi = grid[:, 0].to(torch.float64), grid[:, -1].to(torch.float64)
    span = hi - lo
    x = lo + (torch.rand(batch, grid.shape[0], generator=gen, dtype=torch.float64) * 1.2 - 0.1) * span
    x = x.to(dtype)
    x[0] = grid[:, 0]  # first knot
    x[1] = grid[:, -1]  # last knot: outside (half-open spans)
    x[2] = grid[:, grid.shape[1] // 2]  # an interior knot
    return x


@needs_native
@pytest.mark.parametrize("k", [1, 2, 3, 5, 7])
@pytest.mark.parametrize("uniform", [True, False])
def test_features_match_scipy(k, uniform):
    """Every B-spline column against scipy.interpolate.BSpline to 1e-12 (float64)."""
    G, n_in = 6, 3
    grid = _grid(n_in, G, k, uniform, torch.float64)
    x = _inputs(grid, 400, torch.float64)
    base = torch.randn(x.shape, dtype=torch.float64)
    plan = BasisPlan(grid, k)
    feat = native.features(x, base, plan.native_tables())
    P = G + k
    W = 1 + P
    for i in range(n_in):
        t = grid[i].numpy()
        assert torch.equal(feat[:, i * W], base[:, i])
        for m in range(P):
            be = BSpline.basis_element(t[m : m + k + 2], extrapolate=False)
            ref = np.nan_to_num(be(x[:, i].numpy()))  # NaN outside its support: 0
            np.testing.assert_allclose(feat[:, i * W + 1 + m].numpy(), ref, atol=1e-12, rtol=0)
    assert torch.all(feat[:, -1] == 0)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [1, 3, 4, 6])
@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("G", [5, 70])  # 70 intervals: bisection instead of the linear count
def test_features_and_derivatives_match_torch_path(dtype, k, uniform, G):
    n_in = 4
    grid = _grid(n_in, G, k, uniform, dtype)
    x = _inputs(grid, 333, dtype)
    base = torch.randn(x.shape, dtype=dtype)
    plan = BasisPlan(grid, k)
    assert plan.uniform == uniform
    ref, cols, der_ref = fused_features(x, base, plan, need_deriv=True)
    feat, der, spans = native.features(x, base, plan.native_tables(), with_der=True)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    # the dummy column (weight 0) collects junk on the PyTorch path and is 0 here
    torch.testing.assert_close(feat[:, :-1], ref[:, :-1], atol=tol, rtol=0)
    assert torch.all(feat[:, -1] == 0)
    # the input gradient of sum(gfeat * feat) over the spline columns
    gfeat = torch.randn(ref.shape, dtype=dtype)
    gfeat[:, -1] = 0
    picked = torch.gather(gfeat, 1, cols.reshape(x.shape[0], -1)).view_as(der_ref)
    gx_ref = (picked * der_ref).sum(-1)
    gx, gbase = native.gather(gfeat, der, spans, plan.native_tables(), want_gx=True, want_gbase=True)
    torch.testing.assert_close(gx, gx_ref, atol=tol * 10 * G, rtol=tol * 10)
    assert torch.equal(gbase, gfeat[:, 0 : plan.dummy : plan.width])


@needs_native
@pytest.mark.parametrize("uniform", [True, False])
def test_nan_input_propagates_like_the_torch_path(uniform):
    grid = _grid(3, 5, 3, uniform, torch.float64)
    lay = KANLayer(3, 2, num=5, k=3, dtype=torch.float64)
    lay.set_grid(grid)
    x = _inputs(grid, 10, torch.float64)
    x[4, 1] = float("nan")
    outs = {}
    for flag in (True, False):
        native.set_enabled(flag)
        xx = x.clone().requires_grad_(True)
        y = lay(xx)
        y.sum().backward()
        outs[flag] = (y.detach(), xx.grad)
    for a, b in zip(outs[True], outs[False]):
        assert torch.equal(torch.isnan(a), torch.isnan(b))
        torch.testing.assert_close(a.nan_to_num(), b.nan_to_num(), atol=1e-12, rtol=0)
    assert torch.isnan(outs[True][0][4]).all() and not torch.isnan(outs[True][0][3]).any()


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("uniform", [True, False])
def test_layer_native_equals_torch_path(dtype, uniform):
    torch.manual_seed(0)
    lay = KANLayer(7, 5, num=6, k=3, dtype=dtype)
    x = torch.rand(300, 7, dtype=dtype) * 2.6 - 1.3
    if not uniform:
        lay.update_grid_from_samples(x)
    assert lay.is_uniform() == uniform
    res = {}
    for flag in (True, False):
        native.set_enabled(flag)
        lay.zero_grad()
        xx = x.clone().requires_grad_(True)
        y, var = lay.forward_with_var(xx)
        (y.sin().sum() + var.sum()).backward()
        res[flag] = [y.detach(), var.detach(), xx.grad] + [p.grad.clone() for p in lay.parameters()]
    tol = 1e-12 if dtype == torch.float64 else 3e-5
    for a, b in zip(res[True], res[False]):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)


@needs_native
@pytest.mark.parametrize("uniform", [True, False])
def test_gradcheck_native(uniform):
    torch.manual_seed(0)
    lay = KANLayer(3, 2, num=4, k=3, dtype=torch.float64)
    x = torch.rand(20, 3, dtype=torch.float64) * 2 - 1
    if not uniform:
        lay.update_grid_from_samples(x)
    from kanlab.functional import kan_layer

    plan = lay.plan()
    assert plan.native_tables() is not None

    def f(x, sb, sp, coef, bias):
        y, var = kan_layer(x, torch.nn.functional.silu(x), sb, sp, coef, lay.mask, bias, plan,
                           want_var=True)
        return y, var

    args = [x.clone().requires_grad_(True)] + [t.detach().clone().requires_grad_(True) for t in
                                               (lay.scale_base, lay.scale_sp, lay.coef, lay.bias)]
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-8)


@needs_native
def test_switching_off_gives_the_same_training():
    from kanlab import create_dataset

    ds = create_dataset(lambda x: torch.sin(x[:, [0]]) * x[:, [1]], n_var=2, train_num=200,
                        test_num=50, seed=0)
    ds = {k: v.double() for k, v in ds.items()}
    hist = {}
    for flag in (True, False):
        native.set_enabled(flag)
        m = KAN(width=[2, 3, 1], grid=4, k=3, seed=0, dtype=torch.float64)
        # Adam: smooth in the parameters (an L-BFGS line search amplifies 1e-16 differences)
        hist[flag] = m.fit(ds, opt="Adam", lr=0.02, steps=10, lamb=0.01, update_grid=True)["train_loss"]
    np.testing.assert_allclose(hist[True], hist[False], rtol=1e-7)


def test_env_switch_turns_it_off():
    code = "from kanlab import native; print(native.enabled())"
    env = dict(os.environ, KANLAB_NATIVE="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------ the native training objective
def _autograd_objective(m, x, y, hyp, reg_metric="edge_forward_spline_n"):
    from kanlab.train import regularization

    pred, acts, var = m.forward_with_stats(x)
    obj = torch.mean((pred - y) ** 2)
    if hyp["lamb"] > 0:
        obj = obj + hyp["lamb"] * regularization(m, acts, var, hyp["lamb_l1"], hyp["lamb_entropy"],
                                                 hyp["lamb_coef"], hyp["lamb_coefdiff"], reg_metric)
    m.zero_grad()
    obj.backward()
    return float(obj.detach()), pred.detach(), {n: p.grad.clone() for n, p in m.named_parameters()
                                       if p.grad is not None}


CASES = [
    # width, base, uniform grid, bias, scale_base trainable, reg metric, lamb, lamb_coef(diff)
    ([2, 5, 1], "silu", True, True, True, "edge_forward_spline_n", 0.01, 0.0),
    ([3, 4, 2], "identity", False, True, True, "edge_forward_spline_u", 0.01, 0.1),
    ([2, 3, 3, 1], "zero", True, False, True, "edge_forward_sum", 0.05, 0.2),
    ([4, 2], "silu", False, True, False, "edge_forward_spline_n", 0.0, 0.0),
    ([1, 70, 1], "silu", True, True, True, "edge_forward_spline_n", 0.01, 0.0),  # > 64 rows' block
]


@needs_native
@pytest.mark.parametrize("case", range(len(CASES)))
def test_native_objective_matches_autograd(case):
    width, base, uniform, bias, sb_train, metric, lamb, lcoef = CASES[case]
    m = KAN(width=width, grid=4, k=3, seed=1, base_fun=base, bias=bias, dtype=torch.float64,
            sb_trainable=sb_train)
    gen = torch.Generator().manual_seed(case)
    x = torch.rand(150, width[0], generator=gen, dtype=torch.float64) * 2.4 - 1.2  # some outside
    y = torch.sin(3 * x.sum(1, keepdim=True)).repeat(1, width[-1])
    if not uniform:
        m.update_grid_from_samples(x[:100])
    with torch.no_grad():  # non-zero biases and a switched-off edge
        for layer in m.act_fun:
            if layer.bias is not None:
                layer.bias.uniform_(-0.3, 0.3, generator=gen)
        m.act_fun[0].mask[0, 0] = 0.0
    hyp = dict(lamb=lamb, lamb_l1=1.0, lamb_entropy=2.0, lamb_coef=lcoef, lamb_coefdiff=lcoef / 2)
    ref_obj, ref_pred, ref_grads = _autograd_objective(m, x, y, hyp, metric)
    obj = native.KANObjective(m, x, y, reg_metric=metric, **hyp)
    m.zero_grad()
    val = obj.objective()
    assert val == pytest.approx(ref_obj, rel=1e-12)
    torch.testing.assert_close(obj.predict(x), ref_pred, atol=1e-13, rtol=0)
    n_checked = 0
    for name, p in m.act_fun.named_parameters():
        name = "act_fun." + name
        if not p.requires_grad:
            assert name not in ref_grads
            continue
        scale = float(ref_grads[name].abs().max()) + 1e-12
        torch.testing.assert_close(p.grad / scale, ref_grads[name] / scale, atol=1e-9, rtol=0,
                                   msg=name)
        n_checked += 1
    assert n_checked >= 3 * len(m.act_fun)


@needs_native
def test_native_objective_float32_and_nonfinite():
    m = KAN(width=[2, 3, 1], grid=5, k=3, seed=0)
    x = torch.rand(64, 2) * 2 - 1
    y = x[:, :1] * x[:, 1:]
    ref_obj, _, ref_grads = _autograd_objective(
        m, x, y, dict(lamb=0.01, lamb_l1=1.0, lamb_entropy=2.0, lamb_coef=0.0, lamb_coefdiff=0.0))
    obj = native.KANObjective(m, x, y, lamb=0.01)
    m.zero_grad()
    assert obj.objective() == pytest.approx(ref_obj, rel=1e-5)
    for name, p in m.act_fun.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads["act_fun." + name], atol=1e-5, rtol=1e-3)
    with torch.no_grad():
        m.act_fun[0].coef[0, 0, 2] = float("nan")
    assert np.isnan(obj.objective())


@needs_native
def test_fit_uses_native_objective_and_matches_autograd():
    from kanlab import create_dataset

    ds = create_dataset(lambda x: torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2),
                        n_var=2, train_num=300, test_num=100, seed=0)
    ds = {k: v.double() for k, v in ds.items()}
    hist = {}
    for flag in (True, False):
        m = KAN(width=[2, 5, 1], grid=5, k=3, seed=0, dtype=torch.float64)
        hist[flag] = m.fit(ds, opt="Adam", lr=0.01, steps=15, lamb=0.01, update_grid=True,
                           grid_update_num=3, stop_grid_update_step=10, use_native_objective=flag)
    for key in ("train_loss", "test_loss", "reg"):
        np.testing.assert_allclose(hist[True][key], hist[False][key], rtol=1e-8, err_msg=key)
    # L-BFGS: the same run until the line search has amplified rounding (each step is 20
    # iterations; from the fourth step on the two runs part, as any two summation orders do)
    m = KAN(width=[2, 5, 1], grid=5, k=3, seed=0, dtype=torch.float64)
    h = m.fit(ds, steps=10, lamb=0.001, use_native_objective=True)
    m2 = KAN(width=[2, 5, 1], grid=5, k=3, seed=0, dtype=torch.float64)
    h2 = m2.fit(ds, steps=10, lamb=0.001, use_native_objective=False)
    np.testing.assert_allclose(h["train_loss"][:3], h2["train_loss"][:3], rtol=1e-7)
    assert max(h["train_loss"][3:]) < 0.5 * h["train_loss"][0]
    assert max(h2["train_loss"][3:]) < 0.5 * h2["train_loss"][0]


@needs_native
def test_use_native_objective_true_says_why_not():
    from kanlab import create_dataset

    ds = create_dataset(lambda x: x[:, [0]] * x[:, [1]], n_var=2, train_num=50, test_num=20, seed=0)
    m = KAN(width=[2, 2, 1], grid=3, k=3, seed=0, base_fun=torch.tanh)
    with pytest.raises(ValueError, match="base function"):
        m.fit(ds, steps=1, use_native_objective=True)
    m = KAN(width=[2, 2, 1], grid=3, k=3, seed=0)
    with pytest.raises(ValueError, match="full-batch"):
        m.fit(ds, steps=1, batch=10, use_native_objective=True)
    m.fit(ds, steps=1, batch=10)  # the default falls back to autograd quietly


@needs_native
@pytest.mark.parametrize("lamb,bias_scale", [(0.0, None), (0.01, None), (0.0, 0.1)])
def test_native_lbfgs_step_matches_python_step(lamb, bias_scale):
    """LBFGS.step with the native objective as closure vs the whole step run natively
    (also with the biases preconditioned, as fit does)."""
    from kanlab.optim import LBFGS

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(200, 2, generator=gen, dtype=torch.float64) * 2 - 1
    y = torch.exp(torch.sin(torch.pi * x[:, :1]) + x[:, 1:] ** 2)
    runs = {}
    for how in ("python", "native"):
        m = KAN(width=[2, 4, 1], grid=5, k=3, seed=0, dtype=torch.float64)
        params = [p for p in m.parameters() if p.requires_grad]
        scales = {l.bias: bias_scale for l in m.act_fun} if bias_scale else None
        opt = LBFGS(params, lr=1.0, history_size=10, line_search_fn="strong_wolfe",
                    tolerance_grad=1e-32, tolerance_change=1e-32, tolerance_ys=1e-32,
                    scales=scales)
        obj = native.KANObjective(m, x, y, lamb=lamb)
        losses = []
        for _ in range(4):
            losses.append(opt.step(obj.objective) if how == "python" else obj.lbfgs_step(opt))
        runs[how] = (losses, opt.flat.clone(), opt.func_evals, opt.n_iter)
        opt.release()
    (lp, fp, ep, ip), (ln, fn, en, i_n) = runs["python"], runs["native"]
    # same losses, evaluation and iteration counts; the parameters agree to the rounding that
    # 80 iterations amplify along the loss's flat directions
    # (with the regularizer, rounding grows faster: later steps agree to 1e-3)
    np.testing.assert_allclose(ln[:2], lp[:2], rtol=1e-8)
    np.testing.assert_allclose(ln, lp, rtol=1e-3)
    if lamb == 0:
        assert (ep, ip) == (en, i_n)
        torch.testing.assert_close(fn, fp, atol=1e-4, rtol=0)
    else:
        assert abs(en - ep) <= 0.1 * ep
    assert ln[-1] < 0.2 * ln[0]


@needs_native
def test_native_objective_guards_and_stale_pointers():
    """Review findings: inputs of another dtype/width, empty data, replaced or unfrozen
    gradients between calls, and mixing Python and native L-BFGS steps."""
    from kanlab.optim import LBFGS

    m = KAN(width=[2, 3, 2], grid=4, k=3, seed=0, dtype=torch.float64)
    x = torch.rand(50, 2, dtype=torch.float64) * 2 - 1
    y = torch.cat([x[:, :1] * x[:, 1:], x[:, :1]], 1)
    obj = native.KANObjective(m, x, y, lamb=0.01)
    ref = m(x).detach()
    torch.testing.assert_close(obj.predict(x.float()), ref, atol=1e-6, rtol=0)  # cast, not misread
    with pytest.raises(ValueError, match="x must be"):
        obj.predict(x[:, :1])
    assert obj.predict(x[:0]).shape == (0, 2)
    with pytest.raises(ValueError, match="batch >= 1"):
        native.KANObjective(m, x[:0], y[:0], lamb=0.01)
    with pytest.raises(ValueError, match="cannot evaluate"):
        native.KANObjective(m, x.float(), y.float())
    # gradients replaced between calls (zero_grad(set_to_none=True)) and a parameter unfrozen
    m.act_fun[1].scale_base.requires_grad_(False)
    obj.objective()
    m.zero_grad(set_to_none=True)
    m.act_fun[1].scale_base.requires_grad_(True)
    obj.objective()
    _, _, ref_grads = _autograd_objective(
        m, x, y, dict(lamb=0.01, lamb_l1=1.0, lamb_entropy=2.0, lamb_coef=0.0, lamb_coefdiff=0.0))
    m.zero_grad(set_to_none=True)
    obj.objective()
    for name, p in m.act_fun.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads["act_fun." + name], atol=1e-10, rtol=1e-8)
    # one kind of step per optimizer
    params = [p for p in m.parameters() if p.requires_grad]
    opt = LBFGS(params, history_size=10)
    obj.lbfgs_step(opt)
    with pytest.raises(RuntimeError, match="native steps"):
        opt.step(obj.objective)
    opt.release()
    opt = LBFGS(params, history_size=10)
    opt.step(obj.objective)
    with pytest.raises(RuntimeError, match="Python steps"):
        obj.lbfgs_step(opt)
    opt.release()
    with pytest.raises(ValueError, match="history_size"):
        LBFGS(params, history_size=0)
