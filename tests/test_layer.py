"""KANLayer: the math contract, gradients, memory of the fast path."""
import pytest
import torch

from kanlab import KANLayer
from kanlab.bases import resolve_base_fun
from kanlab.splines import bspline_basis


def _layer(n_in=3, n_out=4, G=5, k=3, dtype=torch.float64, nonuniform=False, **kw):
    layer = KANLayer(n_in, n_out, num=G, k=k, dtype=dtype, generator=torch.Generator().manual_seed(0), **kw)
    if nonuniform:
        x = torch.randn(200, n_in, dtype=dtype, generator=torch.Generator().manual_seed(1)) * 0.6
        layer.update_grid_from_samples(x)
        assert not layer.is_uniform()
    with torch.no_grad():  # non-trivial values everywhere
        layer.coef.normal_(generator=torch.Generator().manual_seed(2))
        if layer.bias is not None:
            layer.bias.normal_(generator=torch.Generator().manual_seed(3))
    return layer


def _reference(layer, x):
    """Direct formula of DESIGN.md, with the dense basis."""
    b = layer.base_fun(x)
    B = bspline_basis(x, layer.grid, layer.k)  # (batch, in, P)
    spline = torch.einsum("bip,iop->bio", B, layer.coef)
    phi = layer.mask * (layer.scale_base * b[:, :, None] + layer.scale_sp * spline)
    y = phi.sum(1)
    return y + layer.bias if layer.bias is not None else y


@pytest.mark.parametrize("nonuniform", [False, True])
@pytest.mark.parametrize("base_fun", ["silu", "identity", "zero", torch.tanh])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_forward_matches_formula(nonuniform, base_fun, k):
    layer = _layer(k=k, base_fun=base_fun, nonuniform=nonuniform)
    x = torch.rand(64, 3, dtype=torch.float64) * 3 - 1.5
    torch.testing.assert_close(layer(x), _reference(layer, x), atol=1e-12, rtol=1e-12)
    total = layer.activations(x)
    torch.testing.assert_close(total.sum(1) + layer.bias, layer(x), atol=1e-12, rtol=1e-12)
    tot, base, sp = layer.activations(x, parts=True)
    torch.testing.assert_close(base + sp, tot)


def test_bias_off_and_masks():
    layer = _layer(bias=False)
    assert layer.bias is None
    with torch.no_grad():
        layer.mask[1, 2] = 0.0
    x = torch.rand(20, 3, dtype=torch.float64)
    torch.testing.assert_close(layer(x), _reference(layer, x))
    assert torch.all(layer.activations(x)[:, 1, 2] == 0)


@pytest.mark.parametrize("nonuniform", [False, True])
def test_gradcheck_inputs_and_all_parameters(nonuniform):
    layer = _layer(n_in=2, n_out=3, G=4, nonuniform=nonuniform)
    x = (torch.rand(12, 2, dtype=torch.float64) * 2.4 - 1.2).requires_grad_(True)
    names = ["coef", "scale_base", "scale_sp", "bias"]
    params = [getattr(layer, n).detach().clone().requires_grad_(True) for n in names]

    def f(xx, *ps):
        state = dict(zip(names, ps), grid=layer.grid, mask=layer.mask)
        return torch.func.functional_call(layer, state, (xx,))

    assert torch.autograd.gradcheck(f, (x, *params))


@pytest.mark.parametrize("nonuniform", [False, True])
def test_edge_std_exact_and_gradcheck(nonuniform):
    layer = _layer(n_in=2, n_out=3, G=4, nonuniform=nonuniform)
    x = (torch.rand(30, 2, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    std = layer.edge_std(x)
    torch.testing.assert_close(std, layer.activations(x).std(0), atol=1e-12, rtol=1e-10)
    assert torch.autograd.gradcheck(lambda xx: layer.edge_std(xx), (x,))
    # parameter gradient of the spread equals autograd through the explicit activations
    layer.zero_grad()
    layer.edge_std(x.detach()).sum().backward()
    g_fast = layer.coef.grad.clone()
    layer.zero_grad()
    layer.activations(x.detach()).std(0).sum().backward()
    torch.testing.assert_close(g_fast, layer.coef.grad, atol=1e-10, rtol=1e-8)


def test_masked_edge_has_zero_spread_and_finite_gradient():
    layer = _layer(n_in=2, n_out=2)
    with torch.no_grad():
        layer.mask[0, 1] = 0
    x = torch.rand(40, 2, dtype=torch.float64).requires_grad_(True)
    s = layer.edge_std(x)
    assert s[0, 1] == 0
    s.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(layer.coef.grad).all()


def test_no_large_tensor_saved_for_backward():
    batch, n, G, k = 256, 16, 5, 3
    layer = KANLayer(n, n, num=G, k=k)
    x = torch.rand(batch, n, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = layer(x)
        s = layer.edge_std(x)
    big = {batch * n * n, batch * n * (G + k), batch * n * (G + k + 1)}
    for shape in saved:
        numel = 1
        for d in shape:
            numel *= d
        assert numel not in big, f"saved a {shape} tensor for backward"
        assert numel <= batch * n, f"saved a {shape} tensor for backward"
    (y.sum() + s.sum()).backward()


def test_float32_matches_float64():
    l64 = _layer(dtype=torch.float64, nonuniform=True)
    l32 = _layer(dtype=torch.float32)
    l32.load_state_dict({k: v.float() for k, v in l64.state_dict().items()})
    l32.coef.data.copy_(l64.coef.float())
    x = torch.rand(100, 3, dtype=torch.float64) * 2 - 1
    torch.testing.assert_close(l32(x.float()).double(), l64(x), atol=1e-5, rtol=1e-4)


def test_trainable_flags():
    layer = KANLayer(2, 2, sb_trainable=False, sp_trainable=False)
    assert not layer.scale_base.requires_grad and not layer.scale_sp.requires_grad
    assert layer.coef.requires_grad


def test_unknown_base_function():
    with pytest.raises(ValueError, match="unknown base function"):
        resolve_base_fun("swishy")


def test_grid_update_preserves_function():
    layer = _layer(n_in=2, n_out=2, G=5)
    x = torch.rand(500, 2, dtype=torch.float64) * 1.6 - 0.8
    before = layer(x)
    layer.update_grid_from_samples(x)
    after = layer(x)
    rel = (after - before).norm() / before.norm()
    assert rel < 2e-2
    assert layer.grid[:, 3].min() >= x.min() - 1e-9  # first interior knot at the data


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    layer = _layer(nonuniform=True)
    x = torch.rand(64, 3, dtype=torch.float64)
    ref = layer(x)
    torch.testing.assert_close(layer.cuda()(x.cuda()).cpu(), ref)


@pytest.mark.parametrize("nonuniform", [False, True])
def test_cached_features_give_same_values_and_gradients(nonuniform):
    layer = _layer(n_in=3, n_out=2, nonuniform=nonuniform)
    x = torch.rand(40, 3, dtype=torch.float64) * 2 - 1

    def run():
        layer.zero_grad()
        y, var = layer.forward_with_var(x)
        (y.square().sum() + var.sum()).backward()
        return y.detach(), var.detach(), [p.grad.clone() for p in layer.parameters()]

    layer.feature_cache_limit = 0  # computed from scratch
    ref = run()
    ref = run()
    assert layer._feat_cache is None
    del layer.feature_cache_limit  # back to the class default
    run()  # x becomes a cache candidate
    got = run()  # served from the cache
    assert layer._feat_cache is not None and layer._feat_cache.x is x
    for a, b in zip(ref[:2], got[:2]):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    for a, b in zip(ref[2], got[2]):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    # the cache follows in-place edits of the data and grid changes
    with torch.no_grad():
        x.mul_(0.5)
    torch.testing.assert_close(layer(x), _reference(layer, x))
    layer.update_grid_from_samples(x)
    torch.testing.assert_close(layer(x), _reference(layer, x))
    layer.clear_cache()
    assert layer._feat_cache is None and layer._feat_cache_candidate is None


@pytest.mark.parametrize("cached", [False, True])
def test_bfloat16_autocast_forward_and_backward(cached):
    """Under torch.autocast the layer's product runs in bfloat16; backward takes the bfloat16
    output gradient and returns float32 gradients close to the float32 ones."""
    torch.manual_seed(0)
    layer = KANLayer(6, 5, num=5, k=3, noise_scale=0.3)
    x = torch.rand(200, 6) * 2 - 1
    x.requires_grad_(not cached)  # an input without gradient takes the cached-features path

    def grads(autocast):
        layer.zero_grad()
        x.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = layer(x)
        # backward outside the autocast region, as autograd's device threads run it on a GPU
        y.float().square().sum().backward()
        return y, [p.grad.clone() for p in (layer.coef, layer.scale_base, layer.scale_sp)]

    y32, ref = grads(False)
    y16, got = grads(True)
    assert y16.dtype == torch.bfloat16 and y32.dtype == torch.float32
    assert float((y16.detach().float() - y32.detach()).norm() / y32.detach().norm()) < 2e-2
    for a, b in zip(got, ref):
        assert a.dtype == torch.float32
        assert float((a - b).norm() / b.norm()) < 5e-2
