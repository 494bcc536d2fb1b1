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
