"""kanlab's L-BFGS: convergence, parity with torch's on a smooth problem, parameter views."""
import torch

from kanlab.optim import LBFGS


def rosenbrock(p):
    x, y = p[0], p[1]
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def test_minimizes_rosenbrock_like_torch():
    """Same algorithm and settings as torch.optim.LBFGS: same iterates and evaluation counts."""
    results, evals = {}, {}
    for name in ("kanlab", "torch"):
        p = torch.nn.Parameter(torch.tensor([-1.5, 2.0], dtype=torch.float64))
        if name == "kanlab":
            opt = LBFGS([p], lr=1, history_size=10, line_search_fn="strong_wolfe")
        else:
            opt = torch.optim.LBFGS([p], lr=1, history_size=10, line_search_fn="strong_wolfe")

        evals[name] = 0

        def closure():
            evals[name] += 1
            if name == "torch":
                opt.zero_grad()
            loss = rosenbrock(p)
            loss.backward()
            return loss

        for _ in range(10):
            opt.step(closure)
        if name == "kanlab":
            opt.release()
        results[name] = p.detach().clone()
    assert rosenbrock(results["kanlab"]) < 1e-9
    torch.testing.assert_close(results["kanlab"], torch.tensor([1.0, 1.0], dtype=torch.float64),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(results["torch"], results["kanlab"], atol=1e-7, rtol=0)
    assert evals["kanlab"] == evals["torch"]


def test_quadratic_in_few_iterations_and_views():
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(20, 20, dtype=torch.float64, generator=gen)
    A = A @ A.t() + 20 * torch.eye(20, dtype=torch.float64)
    b = torch.randn(20, dtype=torch.float64, generator=gen)
    w = torch.nn.Parameter(torch.zeros(10, dtype=torch.float64))
    v = torch.nn.Parameter(torch.zeros(2, 5, dtype=torch.float64))
    opt = LBFGS([w, v], history_size=10, tolerance_grad=1e-12, tolerance_change=1e-14)
    # while optimizing, parameters and grads are views into the flat buffers
    assert w.data_ptr() == opt.flat.data_ptr()

    def closure():
        z = torch.cat([w, v.reshape(-1)])
        loss = 0.5 * z @ A @ z - b @ z
        loss.backward()
        return loss

    opt.step(closure)
    opt.release()
    assert w.data_ptr() != opt.flat.data_ptr()
    z = torch.cat([w, v.reshape(-1)]).detach()
    torch.testing.assert_close(z, torch.linalg.solve(A, b), atol=1e-8, rtol=0)
    assert opt.func_evals <= 25


def test_fit_leaves_parameters_with_their_own_storage():
    from kanlab import KAN, create_dataset

    ds = create_dataset(lambda x: x[:, [0]] * x[:, [1]], n_var=2, train_num=50, test_num=50)
    model = KAN([2, 2, 1], grid=3, seed=0)
    model.fit(ds, steps=2, progress=False)
    ptrs = {p.data_ptr() for p in model.parameters()}
    assert len(ptrs) == len(list(model.parameters()))
    assert all(p.grad is None or p.grad.data_ptr() not in ptrs for p in model.parameters())


def _rosenbrock_run(scale, use_scales, steps=3):
    """Rosenbrock in (x, y) where y = scale * v: either L-BFGS on v, or L-BFGS on y with the
    preconditioner factor ``scale`` (the same iterates in exact arithmetic)."""
    if use_scales:
        y0 = torch.tensor([2.0], dtype=torch.float64)
        x = torch.nn.Parameter(torch.tensor([-1.5], dtype=torch.float64))
        y = torch.nn.Parameter(y0.clone())
        opt = LBFGS([x, y], lr=1, history_size=5, scales={y: scale})
        param = lambda: torch.cat([x, y])  # noqa: E731
    else:
        x = torch.nn.Parameter(torch.tensor([-1.5], dtype=torch.float64))
        v = torch.nn.Parameter(torch.tensor([2.0 / scale], dtype=torch.float64))
        opt = LBFGS([x, v], lr=1, history_size=5)
        param = lambda: torch.cat([x, v * scale])  # noqa: E731

    def closure():
        loss = rosenbrock(param())
        loss.backward()
        return loss

    losses = [opt.step(closure) for _ in range(steps)]
    opt.release()
    return losses, param().detach(), opt.func_evals


def test_scales_are_a_change_of_variables():
    """scales={p: c} runs L-BFGS on p / c: the same losses, iterates and evaluation counts as
    plain L-BFGS on the rescaled variable, and a different path from no scaling."""
    for c in (0.1, 3.0):
        l_scaled, p_scaled, e_scaled = _rosenbrock_run(c, use_scales=True)
        l_var, p_var, e_var = _rosenbrock_run(c, use_scales=False)
        # (the last loss is ~1e-7: rounding of the two parametrizations shows at 1e-12)
        torch.testing.assert_close(torch.tensor(l_scaled), torch.tensor(l_var), rtol=1e-9,
                                   atol=1e-10)
        torch.testing.assert_close(p_scaled, p_var, rtol=0, atol=1e-6)
        assert e_scaled == e_var
        l_plain, _, _ = _rosenbrock_run(1.0, use_scales=True)
        assert abs(l_plain[1] - l_scaled[1]) > 1e-6


def test_scales_validation_and_frozen_parameters():
    import pytest

    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    frozen = torch.zeros(2, dtype=torch.float64)  # not optimized: its factor is ignored
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="scales must be finite and > 0"):
            LBFGS([p], scales={p: bad})
    opt = LBFGS([p, frozen], scales={frozen: 0.5})
    assert opt.scale is None  # every optimized factor is 1: no preconditioner at all
    opt = LBFGS([p], scales={p: 0.5})
    torch.testing.assert_close(opt.scale, torch.full((3,), 0.5, dtype=torch.float64))
    opt.release()


def test_fit_bias_scale_argument():
    import pytest

    from kanlab import KAN, create_dataset

    ds = create_dataset(lambda x: x[:, [0]] * x[:, [1]], n_var=2, train_num=60, test_num=20)
    for bad in (0, -0.1, float("nan"), "0.1", True):
        with pytest.raises(ValueError, match="lbfgs_bias_scale"):
            KAN([2, 2, 1], grid=3, seed=0).fit(ds, steps=1, progress=False, lbfgs_bias_scale=bad)
    # 1 is plain L-BFGS; other factors take other paths; Adam ignores the argument
    ends = {}
    for c in (1.0, 0.1):
        for native_obj in (False, None):
            m = KAN([2, 2, 1], grid=3, seed=0, dtype=torch.float64)
            h = m.fit(ds, steps=3, progress=False, lbfgs_bias_scale=c,
                      use_native_objective=native_obj)
            ends[c, native_obj] = h["train_loss"][-1]
    assert abs(ends[1.0, False] - ends[0.1, False]) > 1e-9 * ends[1.0, False]
    # the native whole-step L-BFGS applies the same preconditioner
    assert ends[0.1, None] == pytest.approx(ends[0.1, False], rel=1e-6)
    assert ends[1.0, None] == pytest.approx(ends[1.0, False], rel=1e-6)
    m = KAN([2, 2, 1], grid=3, seed=0)
    m.fit(ds, steps=2, opt="Adam", progress=False, lbfgs_bias_scale=5.0)
