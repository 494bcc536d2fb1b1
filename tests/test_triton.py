"""The fused Triton kernel: compiled on a CUDA GPU when there is one, else run in Triton's
interpreter on the CPU (TRITON_INTERPRET=1)."""
import os

import pytest
import torch

# conftest.py sets TRITON_INTERPRET=1 on machines without CUDA, before triton is imported
pytest.importorskip("triton")
if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("no GPU and Triton's interpreter is off", allow_module_level=True)
from kanlab import KAN, KANLayer  # noqa: E402
from kanlab import triton_spline as ts  # noqa: E402
from kernel_spy import kernel_calls  # noqa: E402

# compiled on a GPU when there is one, else interpreted on the CPU
DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _layer(n_in, n_out, k, base, uniform, seed=0):
    torch.manual_seed(seed)
    layer = KANLayer(n_in, n_out, num=5, k=k, base_fun=base, noise_scale=0.5)
    if not uniform:  # knots from skewed samples: a non-uniform grid
        layer.update_grid_from_samples(torch.randn(300, n_in) ** 3 * 0.4)
    return layer.to(DEV)


def _grads(y, layer, x, g):
    return torch.autograd.grad(y, [x, layer.coef, layer.scale_base, layer.scale_sp], g)


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("base", ["silu", "identity", "zero"])
@pytest.mark.parametrize("uniform", [True, False])
def test_kernel_matches_pytorch_fp32(k, base, uniform):
    layer = _layer(5, 7, k, base, uniform)
    # 70 rows (not a multiple of the block), some outside the grid on both sides
    x = (torch.rand(70, 5, generator=torch.Generator().manual_seed(1)) * 3.0 - 1.5).to(DEV)
    x.requires_grad_(True)
    ref = layer(x)
    tables = ts.SplineTables(layer.grid, layer.k)
    y = ts.kan_layer_triton(x, tables, layer.scale_base, layer.scale_sp, layer.coef, layer.mask,
                            layer.bias, base_fun=base)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y)
    for a, b in zip(_grads(y, layer, x, g), _grads(ref, layer, x, g)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()) + 1e-6)


def _check_fp32(layer, x, base, precision="fp32"):
    x.requires_grad_(True)
    ref = layer(x)
    tables = ts.SplineTables(layer.grid, layer.k)
    y = ts.kan_layer_triton(x, tables, layer.scale_base, layer.scale_sp, layer.coef, layer.mask,
                            layer.bias, base_fun=base, precision=precision)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y)
    for a, b in zip(_grads(y, layer, x, g), _grads(ref, layer, x, g)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()) + 1e-6)


# (k, base, n_in, forced blocks): k=2 (P=7) puts b(x) in column 0 of each input; k=3 (P=8)
# gives it a product of its own, which needs BLOCK_I >= 16. Small forced blocks give several
# input blocks (the last one partial), output tiles, batch tiles and dW batch parts, the last
# part running past the batch.
@pytest.mark.parametrize("k,base,n_in,blocks", [
    (2, "silu", 13, dict(BLOCK_B=32, BLOCK_I=4, BLOCK_O=32, dx_o=16, parts=2)),
    (3, "identity", 21, dict(BLOCK_B=32, BLOCK_I=16, BLOCK_O=32, dx_o=16, parts=3)),
    (3, "zero", 21, dict(BLOCK_B=32, BLOCK_I=16, BLOCK_O=32, dx_o=16, parts=3)),
])
def test_kernel_input_blocks_and_tiles(monkeypatch, k, base, n_in, blocks):
    orig = ts._launch_cfg

    def forced(*args):
        cfg = orig(*args)
        for name in ("fwd", "dw", "dx"):
            cfg[name].update(BLOCK_B=blocks["BLOCK_B"], BLOCK_I=blocks["BLOCK_I"],
                             BLOCK_O=blocks["dx_o"] if name == "dx" else blocks["BLOCK_O"])
        cfg["dw_parts"] = blocks["parts"]
        return cfg

    monkeypatch.setattr(ts, "_launch_cfg", forced)
    layer = _layer(n_in, 70, k, base, False)
    x = (torch.rand(70, n_in, generator=torch.Generator().manual_seed(2)) * 3.0 - 1.5).to(DEV)
    _check_fp32(layer, x, base)


def test_kernel_default_blocks_partial_input_block():
    """in=13 with the default launch: k=1 (P=6) gives 8 inputs per block, so two blocks, the
    second partial."""
    layer = _layer(13, 70, 1, "silu", True)
    x = (torch.rand(70, 13, generator=torch.Generator().manual_seed(3)) * 3.0 - 1.5).to(DEV)
    _check_fp32(layer, x, "silu")


def test_kernel_tf32_within_one_percent():
    layer = _layer(13, 20, 3, "silu", False)
    x = (torch.rand(50, 13, generator=torch.Generator().manual_seed(4)) * 2 - 1).to(DEV)
    x.requires_grad_(True)
    tables = ts.SplineTables(layer.grid, layer.k)
    ref = layer(x)
    y = ts.kan_layer_triton(x, tables, layer.scale_base, layer.scale_sp, layer.coef, layer.mask,
                            layer.bias, precision="tf32")
    assert (y - ref).norm() / ref.norm() < 1e-2
    g = torch.randn_like(y)
    for a, b in zip(_grads(y, layer, x, g), _grads(ref, layer, x, g)):
        assert (a - b).norm() / b.norm() < 1e-2


def test_kernel_bf16_within_one_percent():
    layer = _layer(16, 20, 3, "silu", False)
    x = (torch.rand(64, 16) * 2 - 1).to(DEV)
    x.requires_grad_(True)
    tables = ts.SplineTables(layer.grid, layer.k)
    ref = layer(x)
    y = ts.kan_layer_triton(x, tables, layer.scale_base, layer.scale_sp, layer.coef, layer.mask,
                            layer.bias, precision="bf16")
    rel = (y - ref).norm() / ref.norm()
    assert rel < 1e-2
    g = torch.randn_like(y)
    for a, b in zip(_grads(y, layer, x, g), _grads(ref, layer, x, g)):
        assert (a - b).norm() / b.norm() < 1e-2


def test_layer_and_model_select_kernel():
    model = KAN(width=[3, 4, 2], grid=4, seed=0, device=DEV)
    x = (torch.rand(40, 3) * 2 - 1).to(DEV)
    for layer in model.act_fun:
        layer.use_triton = False
    ref = model(x)  # the PyTorch path
    for layer in model.act_fun:
        layer.use_triton = True  # on CUDA this is automatic; on a CPU the interpreter runs it
    with kernel_calls() as calls:
        y = model(x)
        h = model.fit({"train_input": x, "train_label": ref.detach(), "test_input": x,
                       "test_label": ref.detach()}, steps=1, update_grid=False)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)
    assert calls and h["train_loss"][0] < 1e-5


def test_kernel_errors():
    layer = _layer(2, 2, 3, "silu", True)
    tables = ts.SplineTables(layer.grid, layer.k)
    with pytest.raises(ValueError, match="base functions"):
        ts.kan_layer_triton(torch.rand(4, 2, device=DEV), tables, layer.scale_base, layer.scale_sp,
                            layer.coef, layer.mask, base_fun="tanh")
    with pytest.raises(ValueError, match="precision"):
        ts.kan_layer_triton(torch.rand(4, 2, device=DEV), tables, layer.scale_base, layer.scale_sp,
                            layer.coef, layer.mask, precision="fp8")


def test_automatic_choice_checks_the_kernel_first(monkeypatch, caplog):
    """Auto mode runs the kernel only after it matched the PyTorch path once on the device; a
    kernel that fails there leaves the PyTorch path in charge, with a warning."""
    monkeypatch.setattr(ts, "_AUTO_OK", {})
    assert ts.auto_ok(DEV) is True  # the interpreter's kernel agrees
    monkeypatch.setattr(ts, "_AUTO_OK", {})

    def broken(*a, **k):
        raise RuntimeError("no kernel today")

    monkeypatch.setattr(ts, "kan_layer_triton", broken)
    with caplog.at_level("WARNING", logger="kanlab"):
        assert ts.auto_ok(DEV) is False
    assert "no kernel today" in caplog.text


def test_automatic_choice_by_size():
    """Automatic mode keeps large float32 layers on the PyTorch path (cuBLAS won there on an
    H100) and takes the kernel for small ones and for bfloat16."""
    layer = KANLayer(64, 64, num=5)
    small = torch.empty(1024, 64)
    assert layer._triton_auto_size(small)
    assert not KANLayer(1024, 1024, num=5)._triton_auto_size(torch.empty(8192, 1024))
    assert KANLayer(1024, 1024, num=5)._triton_auto_size(
        torch.empty(8192, 1024, dtype=torch.bfloat16))
    layer.TRITON_AUTO_MAX_WORK = 1000  # per layer, adjustable
    assert not layer._triton_auto_size(small)
