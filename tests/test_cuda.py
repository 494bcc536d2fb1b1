"""The whole workflow on a CUDA device: forward and gradients against the CPU, training, grid
refinement, symbolic fitting, save/load across devices, and the automatic choice of the fused
Triton kernel. Skipped on machines without CUDA (CI); run on a GPU machine."""
import pytest
import sympy
import torch

if not torch.cuda.is_available():
    pytest.skip("needs CUDA", allow_module_level=True)

from kanlab import KAN, create_dataset  # noqa: E402
from kernel_spy import kernel_calls  # noqa: E402


def _toy(x):
    return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)


@pytest.fixture(autouse=True)
def _exact_matmuls():
    """TF32 would make CUDA float32 matmuls differ from the CPU by ~1e-3."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_and_gradients_match_cpu(dtype):
    cpu = KAN(width=[3, [4, 2], 2], grid=5, seed=0, dtype=dtype)
    gpu = KAN(width=[3, [4, 2], 2], grid=5, seed=0, dtype=dtype, device="cuda")
    gpu.load_state_dict(cpu.state_dict())
    x = torch.rand(257, 3, dtype=dtype, generator=torch.Generator().manual_seed(0)) * 2.4 - 1.2
    y_cpu, y_gpu = cpu(x), gpu(x.cuda())
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, **tol)
    y_cpu.square().sum().backward()
    y_gpu.square().sum().backward()
    for (name, p), q in zip(cpu.named_parameters(), gpu.parameters()):
        if p.grad is None:
            assert q.grad is None, name
            continue
        scale = float(p.grad.abs().max()) + 1e-12
        torch.testing.assert_close(q.grad.cpu(), p.grad, rtol=tol["rtol"] * 10,
                                   atol=tol["atol"] * 10 * scale, msg=name)


def test_automatic_mode_runs_the_fused_kernel():
    pytest.importorskip("triton")
    from kanlab import triton_spline as ts

    model = KAN(width=[2, 5, 1], grid=5, seed=0, device="cuda")
    x = torch.rand(100, 2, device="cuda") * 2 - 1
    with kernel_calls() as calls:
        y = model(x)
    assert ts.auto_ok(x.device) is True
    assert len(calls) == 2  # both layers
    for layer in model.act_fun:
        layer.use_triton = False
    torch.testing.assert_close(y, model(x), rtol=1e-5, atol=1e-5)


def test_fit_refine_save_load(tmp_path):
    data = create_dataset(_toy, n_var=2, train_num=1000, test_num=1000, seed=0, device="cuda")
    assert data["train_input"].is_cuda
    model = KAN(width=[2, 5, 1], grid=3, k=3, seed=1, device="cuda")
    h = model.fit(data, opt="LBFGS", steps=30, lamb=0.001)
    assert all(torch.isfinite(torch.tensor(h["train_loss"])))
    assert h["test_loss"][-1] < 0.1
    x = data["test_input"]
    fine = model.refine(10)
    assert fine.device.type == "cuda"
    with torch.no_grad():
        a, b = model(x), fine(x)
    assert float((a - b).norm() / a.norm()) < 1e-3
    h2 = fine.fit(data, opt="LBFGS", steps=30)
    assert h2["test_loss"][-1] < h["test_loss"][-1]
    path = tmp_path / "toy.kan"
    fine.save(path)
    on_cpu = KAN.load(path)
    on_gpu = KAN.load(path, map_location="cuda")
    assert on_gpu.device.type == "cuda" and on_cpu.device.type == "cpu"
    with torch.no_grad():
        ref = fine(x)
        torch.testing.assert_close(on_gpu(x), ref, rtol=0, atol=0)
        torch.testing.assert_close(on_cpu(x.cpu()), ref.cpu(), rtol=1e-5, atol=1e-5)


def test_symbolic_formula_matches_forward_on_cuda():
    data = create_dataset(_toy, n_var=2, train_num=1000, test_num=200, seed=0, device="cuda",
                          dtype=torch.float64)
    model = KAN(width=[2, 5, 1], grid=5, seed=1, device="cuda", dtype=torch.float64)
    model.fit(data, opt="LBFGS", steps=40, lamb=0.001)
    model = model.prune()
    model.auto_symbolic(lib=["x", "x^2", "sin", "exp"])
    model.fit(data, opt="LBFGS", steps=30, update_grid=False)
    (expr,), syms = model.symbolic_formula()
    f = sympy.lambdify(syms, expr, "numpy")
    x = data["test_input"]
    got = torch.as_tensor(f(*x.cpu().T.numpy()), dtype=torch.float64).reshape(-1)
    with torch.no_grad():
        want = model(x).cpu().reshape(-1)
    assert float((got - want).norm() / want.norm()) < 1e-6


def test_automatic_mode_keeps_large_float32_layers_on_pytorch():
    pytest.importorskip("triton")
    from kanlab import KANLayer

    layer = KANLayer(256, 256, num=5, device="cuda")
    x = torch.rand(2048, 256, device="cuda")  # 2048*256*256 > TRITON_AUTO_MAX_WORK
    with kernel_calls() as calls:
        layer(x)
        layer(x[:64])  # small: the kernel
    assert calls == [1]
