"""Architecture edits (kanlab.edit): swap, auto_swap, expand, perturb, module, interactions."""
import pytest
import torch

from kanlab.edit import EditMixin
from kanlab.model import KAN
from kanlab.splines import curve2coef


EK = KAN  # the edits are KAN methods (EditMixin)
assert issubclass(KAN, EditMixin)


F64 = torch.float64


def _x(n=200, d=3, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, d, generator=g) * 2 - 1).to(dtype)


def _with_biases(model, seed=3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.act_fun:
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g).to(layer.bias.dtype))
    return model


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}, \
        [[list(r) for r in s.funs_name] for s in model.symbolic_fun]


def _compiled(model, edges):
    """Numeric branch off everywhere, the listed edges symbolic (a compiler-like model)."""
    with torch.no_grad():
        for layer in model.act_fun:
            layer.mask.zero_()
    for l, i, j, f in edges:
        model.fix_symbolic(l, i, j, f, fit_params=False)
    return model


def _compiled_ref(ref, edges):
    """pykan's model made like :func:`_compiled`: numeric masks off, the edges symbolic."""
    ref.symbolic_enabled = True
    with torch.no_grad():
        for layer in ref.act_fun:
            layer.mask.zero_()
    for l, i, j, f in edges:
        ref.fix_symbolic(l, i, j, f, fit_params_bool=False, verbose=False, log_history=False)
    return ref


def _ref(model, tmp_path, width):
    pytest.importorskip("kan")
    from pykan_util import copy_to_pykan

    return copy_to_pykan(model, tmp_path, width)


# ------------------------------------------------------------------------------ swap
def test_swap_keeps_function_and_permutes_every_part():
    m = _with_biases(EK(width=[3, 4, 2], grid=5, k=3, seed=0, dtype=F64))
    m.fix_symbolic(0, 1, 2, "sin", fit_params=False)
    m.fix_symbolic(1, 2, 0, "x^2", fit_params=False)
    x = _x(dtype=F64)
    y0 = m(x)
    before, names = _state(m)
    m.swap(1, 0, 2)
    torch.testing.assert_close(m(x), y0, atol=1e-13, rtol=0)
    a0, a1 = m.act_fun
    assert torch.equal(a0.coef[:, 0], before["act_fun.0.coef"][:, 2])
    assert torch.equal(a0.coef[:, 2], before["act_fun.0.coef"][:, 0])
    assert torch.equal(a1.coef[0], before["act_fun.1.coef"][2])
    assert torch.equal(a1.grid[2], before["act_fun.1.grid"][0])
    assert torch.equal(a0.bias[[0, 2]], before["act_fun.0.bias"][[2, 0]])
    assert torch.equal(a0.mask[:, 0], before["act_fun.0.mask"][:, 2])
    assert m.symbolic_fun[0].funs_name[0][1] == "sin" and m.symbolic_fun[0].mask[0, 1] == 1
    assert m.symbolic_fun[1].funs_name[0][0] == "x^2" and m.symbolic_fun[1].mask[0, 0] == 1
    m.swap(1, 2, 0, log_history=False)  # swapping back restores the exact state
    after, names2 = _state(m)
    assert names2 == names
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_swap_multiplication_nodes_of_different_arity():
    m = _with_biases(EK(width=[2, [2, 2], 1], mult_arity=[[], [2, 3], []], seed=1, dtype=F64))
    x = _x(d=2, dtype=F64)
    y0 = m(x)
    sub_before = m.act_fun[0].coef.detach().clone()
    m.swap(1, 2, 3)  # the two products: blocks of 2 and 3 factors trade places
    assert m._arity[1] == [3, 2] and m.width_out[1] == 7
    torch.testing.assert_close(m(x), y0, atol=1e-13, rtol=0)
    assert torch.equal(m.act_fun[0].coef[:, 2:5], sub_before[:, 4:7])
    assert torch.equal(m.act_fun[0].coef[:, 5:7], sub_before[:, 2:4])
    m.swap(1, 0, 1)
    torch.testing.assert_close(m(x), y0, atol=1e-13, rtol=0)
    with pytest.raises(ValueError, match="sum node with a multiplication"):
        m.swap(1, 0, 3)
    with pytest.raises(ValueError, match="hidden width entry"):
        m.swap(0, 0, 1)
    with pytest.raises(ValueError, match="out of range"):
        m.swap(1, 0, 4)


def test_swap_and_connection_cost_match_pykan(tmp_path):
    m = EK(width=[3, 5, 1], grid=5, k=3, seed=0)
    ref = _ref(m, tmp_path, [3, 5, 1])
    x = _x(300)
    m.swap(1, 1, 4)
    ref.swap(1, 1, 4, log_history=False)
    for a, b in zip(m.act_fun, ref.act_fun):
        assert torch.equal(a.coef, b.coef.data) and torch.equal(a.grid, b.grid)
        assert torch.equal(a.scale_base, b.scale_base.data)
    m.attribute(x=x)
    ref(x)
    ref.attribute(plot=False)
    torch.testing.assert_close(m.connection_cost, ref.connection_cost.detach(), rtol=1e-5, atol=0)


def test_auto_swap_matches_pykan_and_keeps_function(tmp_path):
    m = EK(width=[3, 5, 1], grid=5, k=3, seed=0)
    ref = _ref(m, tmp_path, [3, 5, 1])
    x = _x(300)
    y0 = m(x)
    m.attribute(x=x)
    c0 = float(m.connection_cost)
    m.auto_swap(x=x)
    ref(x)
    ref.auto_swap()
    assert float(m.connection_cost) < c0
    torch.testing.assert_close(m.connection_cost, ref.connection_cost.detach(), rtol=1e-5, atol=0)
    for a, b in zip(m.act_fun, ref.act_fun):  # the same greedy choices
        assert torch.equal(a.coef, b.coef.data)
    torch.testing.assert_close(m(x), y0, atol=1e-6, rtol=1e-6)


def test_auto_swap_deeper_model_and_kept_scores():
    m = _with_biases(EK(width=[3, 4, 5, 2], grid=4, k=3, seed=4, dtype=F64))
    x = _x(dtype=F64)
    y0 = m(x)
    m.attribute(x=x)
    c0 = float(m.connection_cost)
    m.auto_swap(x=x)
    kept = [t.clone() for t in m.edge_scores]  # permuted along with the swaps
    m.attribute(x=x)  # recomputed on the swapped model
    for a, b in zip(kept, m.edge_scores):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-9)
    assert float(m.connection_cost) <= c0 + 1e-12
    torch.testing.assert_close(m(x), y0, atol=1e-12, rtol=0)


# ------------------------------------------------------------------------------ expand
def test_expand_depth_is_identity_and_matches_pykan(tmp_path):
    m = _with_biases(EK(width=[2, 3, 2], grid=5, k=3, seed=0, dtype=F64))
    x = _x(d=2, dtype=F64)
    y0 = m(x)
    assert m.expand_depth() is None  # in place, as pykan
    assert m.depth == 3 and m.width == [[2, 0], [3, 0], [2, 0], [2, 0]]
    assert len(m.act_fun) == len(m.symbolic_fun) == 3 and m.config()["grid"] == [5, 5, 5]
    torch.testing.assert_close(m(x), y0, atol=1e-14, rtol=0)
    assert torch.equal(m.act_fun[2].mask, torch.zeros(2, 2, dtype=F64))
    ref = _ref(EK(width=[2, 3, 2], grid=5, k=3, seed=0), tmp_path, [2, 3, 2])
    ref.mult_arity = [[] for _ in ref.width]  # pykan's expand_depth needs a list here
    ref.mult_homo = False
    ref.symbolic_enabled = True
    ref.expand_depth()
    mine = EK(width=[2, 3, 2], grid=5, k=3, seed=0)
    with torch.no_grad():
        for layer in mine.act_fun:
            layer.bias.zero_()
    mine.expand_depth()
    xf = _x(d=2)
    torch.testing.assert_close(mine(xf), ref(xf), atol=1e-5, rtol=1e-5)


def test_expand_width_sum_and_mult_nodes_keep_function():
    m = _with_biases(EK(width=[3, 4, 2], grid=5, k=3, seed=0, dtype=F64))
    x = _x(dtype=F64)
    y0 = m(x)
    old0, old1 = m.act_fun[0].coef.detach().clone(), m.act_fun[1].coef.detach().clone()
    m.expand_width(1, 2)  # sum nodes go first, as pykan
    assert m.width == [[3, 0], [6, 0], [2, 0]]
    assert m.act_fun[0].coef.shape[1] == 6 and m.act_fun[1].coef.shape[0] == 6
    assert torch.equal(m.act_fun[0].coef[:, 2:], old0) and torch.equal(m.act_fun[1].coef[2:], old1)
    assert (m.act_fun[0].mask[:, :2] == 0).all() and (m.act_fun[1].mask[:2] == 0).all()
    torch.testing.assert_close(m(x), y0, atol=1e-14, rtol=0)
    m.expand_width(1, 2, sum_bool=False, mult_arity=[2, 3])  # products go last
    assert m.width == [[3, 0], [6, 2], [2, 0]] and m._arity[1] == [2, 3]
    assert m.width_out[1] == 11 and m.width_in[1] == 8 and m.mult_arity == [[], [2, 3], []]
    torch.testing.assert_close(m(x), y0, atol=1e-14, rtol=0)
    m.perturb(0.5)  # new nodes are unused downstream: non-intrusive keeps the function
    torch.testing.assert_close(m(x), y0, atol=1e-14, rtol=0)
    assert (m.act_fun[0].mask[:, :2] == 0.5).all() and (m.act_fun[0].mask[:, 6:] == 0.5).all()
    with pytest.raises(ValueError):
        m.expand_width(2, 1)
    with pytest.raises(ValueError):
        m.expand_width(1, 2, sum_bool=False, mult_arity=[2])


def test_expand_width_matches_pykan_on_a_compiled_model(tmp_path):
    edges = [(0, 0, 0, "x"), (0, 1, 1, "sin"), (1, 0, 0, "x"), (1, 1, 0, "x^2")]
    m = _compiled(EK(width=[2, 2, 1], grid=5, k=3, seed=0), edges)
    ref = _compiled_ref(_ref(m, tmp_path, [2, 2, 1]), edges)
    x = _x(d=2)
    m.expand_width(1, 2)
    ref.expand_width(1, 2)
    assert m.width == ref.width
    for a, b in zip(m.symbolic_fun, ref.symbolic_fun):
        assert a.funs_name == b.funs_name
    torch.testing.assert_close(m(x), ref(x), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------ perturb
@pytest.mark.parametrize("mode", ["all", "non-intrusive", "minimal"])
def test_perturb_matches_pykan(mode, tmp_path):
    edges = [(0, 0, 0, "x"), (0, 1, 1, "sin"), (1, 0, 0, "x"), (1, 1, 0, "x^2")]
    m = EK(width=[2, 3, 1], grid=5, k=3, seed=0)
    ref = _compiled_ref(_ref(m, tmp_path, [2, 3, 1]), edges)
    _compiled(m, edges)
    x = _x(d=2)
    y0 = m(x)
    torch.testing.assert_close(y0, ref(x), atol=1e-6, rtol=1e-6)
    m.perturb(0.3, mode)
    ref.perturb(0.3, mode)
    for a, b in zip(m.act_fun, ref.act_fun):
        assert torch.equal(a.mask, b.mask.data)
        assert torch.equal(a.scale_base, b.scale_base.data)
        assert torch.equal(a.scale_sp, b.scale_sp.data)
    torch.testing.assert_close(m(x), ref(x), atol=1e-5, rtol=1e-5)
    delta = float((m(x) - y0).detach().abs().max())
    assert (delta == 0.0) if mode == "non-intrusive" else (delta > 1e-2)


def test_perturb_numeric_model_sets_masks_and_keeps_pruned_edges():
    m = _with_biases(EK(width=[3, 4, 2], grid=5, k=3, seed=0, dtype=F64))
    m.remove_edge(0, 0, 1)  # between live nodes: stays off
    m.remove_node(1, 3)  # a dead hidden node
    x = _x(dtype=F64)
    y0 = m(x)
    m.perturb(mag=0.25, mode="non-intrusive")
    torch.testing.assert_close(m(x), y0, atol=1e-14, rtol=0)
    mask0 = m.act_fun[0].mask
    assert mask0[0, 1] == 0 and (mask0[:, 3] == 0.25).all()
    assert (mask0[:, [0, 2]] == 1).all() and mask0[1, 1] == 1 and mask0[2, 1] == 1
    last = m.act_fun[1]  # last layer: off edges on with zero scales
    assert (last.mask == 1).all() and (last.scale_sp[3] == 0).all() and (last.scale_base[3] == 0).all()
    m.perturb(mag=0.5, mode="all")
    assert all((layer.mask == 0.5).all() for layer in m.act_fun)
    assert float((m(x) - y0).detach().abs().max()) > 1e-2
    with pytest.raises(ValueError, match="mode"):
        m.perturb(mode="gentle")


# ------------------------------------------------------------------------------ module, interactions
def test_module_cuts_blocks_and_feature_interaction_sees_them():
    m = EK(width=[4, 4, 1], grid=5, k=3, seed=2, dtype=F64)
    m.module(0, "[0,1]->[0,1]")
    m.module(0, "[-2,-1]->[2,3]")  # negative indices count from the end
    mask = m.act_fun[0].mask
    assert (mask[:2, 2:] == 0).all() and (mask[2:, :2] == 0).all()
    assert (mask[:2, :2] == 1).all() and (mask[2:, 2:] == 1).all()
    x = _x(300, 4, dtype=F64)
    assert m.feature_interaction(1, x=x) == {(0, 1): 2, (2, 3): 2}
    assert m.feature_interaction(1, neuron_th=1e9, x=x) == {}
    with pytest.raises(ValueError):
        m.module(0, "[0]->[1]->[2]")
    with pytest.raises(ValueError, match="out of range"):
        m.module(0, "[0,7]->[0]")
    with pytest.raises(ValueError, match="must look like"):
        m.module(0, "[a]->[0]")


def test_feature_interaction_and_node_attribute_match_pykan(tmp_path):
    m = EK(width=[3, 5, 2], grid=5, k=3, seed=0)
    with torch.no_grad():
        m.act_fun[0].mask[2] = 0.0  # input 2 is cut off: it interacts with nothing
        m.act_fun[0].mask[0, 1] = 0.0
    ref = _ref(m, tmp_path, [3, 5, 2])
    with torch.no_grad():
        for a, b in zip(m.act_fun, ref.act_fun):
            b.mask.data.copy_(a.mask)
    x = _x(300)
    ref(x)
    fi = m.feature_interaction(1, x=x)
    assert fi == ref.feature_interaction(1)
    assert sum(fi.values()) == 5 and all(2 not in k for k in fi) and (1,) in fi
    assert m.feature_interaction(2, x=x) == ref.feature_interaction(2) == {(0, 1): 2}
    assert m.node_attribute(x=x) is None
    ref.node_attribute()
    for a, b in zip(m.node_attribute_scores, ref.node_attribute_scores):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b.detach(), atol=1e-5, rtol=1e-4)
    assert all((s[:, 2] == 0).all() for s in m.node_attribute_scores)


# ------------------------------------------------------------------------------ initialize
def _smooth_parent(x):
    """A grid-10 model whose splines are smooth curves over grids fitted to its layer inputs."""
    p = _with_biases(EK(width=[2, 3, 1], grid=10, k=3, seed=0, dtype=F64, grid_eps=1.0))
    p.fix_symbolic(1, 2, 0, "sin", fit_params=False)
    with torch.no_grad():
        for l, layer in enumerate(p.act_fun):
            layer.update_grid_from_samples(p.layer_inputs(x)[l])
            lo, hi = layer.grid[:, layer.k], layer.grid[:, -1 - layer.k]
            pts = lo + (hi - lo) * torch.linspace(0, 1, 60, dtype=F64)[:, None]
            freq = 2 * torch.rand(layer.in_dim, layer.out_dim, dtype=F64,
                                  generator=torch.Generator().manual_seed(l))
            layer.coef.copy_(curve2coef(pts, torch.sin(freq * pts[:, :, None]), layer.grid, layer.k))
    return p


def test_initialize_from_another_model_finer_and_coarser():
    x = _x(300, 2, dtype=F64)
    coarse = _with_biases(EK(width=[2, 3, 1], grid=3, k=3, seed=0, dtype=F64))
    fine = EK(width=[2, 3, 1], grid=10, k=3, seed=1, dtype=F64)
    assert fine.initialize_from_another_model(coarse, x) is fine
    scale = float(coarse(x).detach().std())
    torch.testing.assert_close(fine(x), coarse(x), atol=1e-5 * scale, rtol=0)
    assert fine.act_fun[0].num == 10
    parent = _smooth_parent(x)
    scale = float(parent(x).detach().std())
    for g, k, tol in [(5, 3, 2e-3), (8, 2, 5e-3), (20, 3, 1e-5)]:
        child = EK(width=[2, 3, 1], grid=g, k=k, seed=1, dtype=F64)
        far = float((child(x) - parent(x)).detach().abs().max())
        child.initialize_from_another_model(parent, x)
        err = float((child(x) - parent(x)).detach().abs().max())
        assert err < tol * scale < far
        assert child.symbolic_fun[1].funs_name[0][2] == "sin"
        assert torch.equal(child.act_fun[1].bias, parent.act_fun[1].bias)
    with pytest.raises(ValueError, match="widths differ"):
        EK(width=[2, 4, 1]).initialize_from_another_model(parent, x)


def test_history_hook_called_when_present():
    class Logged(EK):
        def _log_history(self, name):
            self.logged.append(name)

    m = Logged(width=[2, 3, 1], seed=0)
    m.logged = []
    m.swap(1, 0, 1)
    m.swap(1, 0, 1, log_history=False)
    m.expand_width(1, 1)
    m.expand_depth()
    m.perturb()
    m.module(0, "[0]->[0]")
    assert m.logged == ["swap", "expand_width", "expand_depth", "perturb", "module"]
    EK(width=[2, 3, 1]).swap(1, 0, 2)  # no hook: nothing to call
