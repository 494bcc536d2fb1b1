"""Separability, symmetry and the tree of groups (kanlab.hypothesis), on functions whose answer
is known, against pykan's kan.hypothesis, and on kanlab KANs (Hessians by finite differences)."""
import os

import numpy as np
import pytest
import torch
from torch.autograd.function import once_differentiable

from kanlab import KAN
from kanlab import hypothesis as hyp

ADD = lambda x: x[:, [0]] ** 2 + torch.sin(x[:, [1]]) + x[:, [2]]  # noqa: E731
MUL = lambda x: x[:, [0]] * x[:, [1]] * torch.exp(x[:, [2]])  # noqa: E731
SYM = lambda x: (x[:, [0]] + x[:, [1]]) ** 2 + x[:, [2]]  # noqa: E731
MIXED = lambda x: x[:, [0]] ** 2 * x[:, [1]] + torch.sin(x[:, [2]]) * x[:, [0]]  # noqa: E731
TREE4 = lambda x: ((x[:, [0]] ** 2 + x[:, [1]] ** 2) ** 2  # noqa: E731
                   + (x[:, [2]] ** 2 + x[:, [3]] ** 2) ** 2)


def _x(n=3, batch=100, seed=0):
    return torch.randn(batch, n, generator=torch.Generator().manual_seed(seed))


def _hessian_mixed(x):
    """Analytic Hessian of MIXED."""
    x0, x1, x2 = x[:, 0], x[:, 1], x[:, 2]
    h = torch.zeros(x.shape[0], 3, 3, dtype=x.dtype)
    h[:, 0, 0] = 2 * x1
    h[:, 0, 1] = h[:, 1, 0] = 2 * x0
    h[:, 0, 2] = h[:, 2, 0] = torch.cos(x2)
    h[:, 2, 2] = -torch.sin(x2) * x0
    return h


class _FirstOrderOnly(torch.autograd.Function):
    """MIXED with a backward that refuses to be differentiated, as kanlab's layers do."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return MIXED(x)

    @staticmethod
    def backward(ctx, g):
        if torch.is_grad_enabled():
            raise RuntimeError("first derivatives only")
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            return torch.autograd.grad(MIXED(xx), xx, g)[0]


class _OnceDifferentiable(_FirstOrderOnly):
    """MIXED whose backward builds no graph: double backward fails at the second pass."""

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            return torch.autograd.grad(MIXED(xx), xx, g)[0]


def _sets(groups):
    return {frozenset(int(v) for v in g) for g in groups}


# --- derivatives -------------------------------------------------------------------------------

def test_batch_jacobian_scalar_and_vector():
    x = _x()
    f = lambda x: torch.cat([MIXED(x), x[:, [1]] * x[:, [2]]], 1)  # noqa: E731
    jac = hyp.batch_jacobian(f, x, mode='vector')
    assert jac.shape == (100, 2, 3)
    want0 = torch.stack([2 * x[:, 0] * x[:, 1] + torch.sin(x[:, 2]), x[:, 0] ** 2,
                         torch.cos(x[:, 2]) * x[:, 0]], 1)
    torch.testing.assert_close(jac[:, 0], want0)
    torch.testing.assert_close(jac[:, 1], torch.stack([0 * x[:, 0], x[:, 2], x[:, 1]], 1))
    torch.testing.assert_close(hyp.batch_jacobian(f, x), want0)
    assert not hyp.batch_jacobian(f, x).requires_grad
    with pytest.raises(ValueError):
        hyp.batch_jacobian(f, x, mode='matrix')


def test_batch_hessian_autograd_matches_analytic():
    x = _x()
    hess = hyp.batch_hessian(MIXED, x)
    assert hess.shape == (100, 3, 3) and hess.dtype == torch.float32
    torch.testing.assert_close(hess, _hessian_mixed(x), atol=1e-5, rtol=1e-5)
    # create_graph=True keeps a graph through the Hessian (third derivatives)
    xr = x.clone().requires_grad_(True)
    h = hyp.batch_hessian(MIXED, xr, create_graph=True)
    (g,) = torch.autograd.grad(h[:, 2, 2].sum(), xr)
    torch.testing.assert_close(g[:, 2], -torch.cos(x[:, 2]) * x[:, 0], atol=1e-5, rtol=1e-5)


def test_batch_hessian_of_a_linear_function_is_zero():
    x = _x()
    f = lambda x: x[:, [0]] + 2 * x[:, [1]] - x[:, [2]]  # noqa: E731
    assert torch.count_nonzero(hyp.batch_hessian(f, x)) == 0
    assert torch.count_nonzero(hyp.batch_hessian(f, x, create_graph=True)) == 0


@pytest.mark.parametrize("fn", [_FirstOrderOnly.apply, _OnceDifferentiable.apply])
def test_finite_difference_fallback_matches_autograd(fn):
    x = _x()
    with pytest.raises(RuntimeError):  # double backward really is refused
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(xr).sum(), xr, create_graph=True)
        torch.autograd.grad(g.sum(), xr)
    hess = hyp.batch_hessian(fn, x)
    assert hess.dtype == torch.float32
    torch.testing.assert_close(hess, hyp.batch_hessian(MIXED, x), atol=1e-5, rtol=1e-5)
    with pytest.raises(RuntimeError, match="create_graph"):
        hyp.batch_hessian(fn, x, create_graph=True)


def test_fallback_in_the_model_dtype_and_from_values():
    x = _x()
    w = torch.tensor([[1.0], [0.5], [-2.0]])  # float32: the function refuses float64 inputs
    f32 = lambda x: torch.tanh(_FirstOrderOnly.apply(x) + x @ w)  # noqa: E731
    ref = hyp.batch_hessian(lambda x: torch.tanh(MIXED(x) + x @ w), x)
    torch.testing.assert_close(hyp.batch_hessian(f32, x), ref, atol=2e-3, rtol=2e-3)
    # no autograd at all: second differences of values (in float64)
    numpy_fn = lambda x: torch.from_numpy(MIXED(x.detach().double()).numpy())  # noqa: E731
    torch.testing.assert_close(hyp.batch_hessian(numpy_fn, x), _hessian_mixed(x),
                               atol=1e-5, rtol=1e-5)


def test_kan_hessian_by_double_backward_matches_pykan(tmp_path):
    pytest.importorskip("kan")
    from pykan_util import copy_to_pykan

    model = KAN(width=[3, 2, 1], grid=5, k=3, seed=0)
    x = _x()
    ours = hyp.batch_hessian(model, x)
    torch.testing.assert_close(hyp.batch_hessian(model, x, create_graph=True).detach(), ours)
    ref = copy_to_pykan(model, tmp_path, [3, 2, 1])
    theirs = hyp.batch_hessian(ref, x)  # pykan's model: by autograd
    torch.testing.assert_close(model(x), ref(x), atol=1e-5, rtol=1e-5)
    assert theirs.abs().max() > 1e-2
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-3)
    assert model.dtype == torch.float32  # the float64 evaluation used a copy


# --- separability ------------------------------------------------------------------------------

@pytest.mark.parametrize("fn, mode, groups", [
    (ADD, 'add', [[0], [1], [2]]),
    (ADD, 'mul', [[0, 1, 2]]),
    (MUL, 'mul', [[0], [1], [2]]),
    (MUL, 'add', [[0, 1, 2]]),
    (SYM, 'add', [[0, 1], [2]]),
])
def test_detect_separability_known_groups(fn, mode, groups, capsys):
    res = hyp.detect_separability(fn, _x(), mode=mode)
    assert res['groups'] == groups and res['n_groups'] == len(groups)
    assert res['labels'] == [next(i for i, g in enumerate(groups) if v in g) for v in range(3)]
    assert res['hessian'].shape == (3, 3)
    assert capsys.readouterr().out == ""  # quiet unless verbose
    kan_hyp = pytest.importorskip("kan.hypothesis")
    theirs = kan_hyp.detect_separability(fn, _x(), mode=mode)
    assert _sets(theirs['groups']) == _sets(groups)
    torch.testing.assert_close(res['hessian'], theirs['hessian'])


def test_detect_separability_options():
    x = _x()
    res = hyp.detect_separability(ADD, x, n_clusters=2)  # asked for 2 groups: any 2 pass
    assert res['n_groups'] == 2 and sorted(v for g in res['groups'] for v in g) == [0, 1, 2]
    res = hyp.detect_separability(SYM, x, n_clusters=[3, 3])  # 3 groups do not separate SYM
    assert res['groups'] == [[0, 1, 2]]
    lin = lambda x: x.sum(1, keepdim=True)  # noqa: E731
    assert hyp.detect_separability(lin, x)['groups'] == [[0], [1], [2]]
    with pytest.raises(ValueError):
        hyp.detect_separability(ADD, x, mode='sub')


def test_separability_true_and_false():
    x = _x()
    f = lambda x: x[:, [0]] ** 2 * (x[:, [1]] + x[:, [2]])  # noqa: E731
    cases = [(ADD, [[0], [1], [2]], 'add', True), (ADD, [[0], [1]], 'add', True),
             (MUL, [[0], [1, 2]], 'mul', True), (MUL, [[0], [1, 2]], 'add', False),
             (f, [[0], [1, 2]], 'mul', True), (f, [[0], [1, 2]], 'add', False),
             (f, [[1], [0, 2]], 'mul', False), (SYM, [[0, 1], [2]], 'add', True),
             (SYM, [[0], [1, 2]], 'add', False)]
    kan_hyp = pytest.importorskip("kan.hypothesis")
    for fn, groups, mode, want in cases:
        got = hyp.test_separability(fn, x, groups, mode=mode)
        assert got is want, (groups, mode)
        assert bool(kan_hyp.test_separability(fn, x, groups, mode=mode)) is want


def test_general_separability():
    x = _x()
    f = lambda x: x[:, [0]] ** 2 * (x[:, [1]] ** 2 + x[:, [2]] ** 2) ** 2  # noqa: E731
    assert hyp.test_general_separability(f, x, [[0], [1, 2]]) is True
    assert hyp.test_general_separability(f, x, [[1], [0, 2]]) is False
    g = lambda x: torch.sin(x[:, [0]] * x[:, [1]]) * torch.exp(x[:, [2]])  # noqa: E731
    assert hyp.test_general_separability(g, x, [[0, 1], [2]]) is True
    kan_hyp = pytest.importorskip("kan.hypothesis")
    assert bool(kan_hyp.test_general_separability(f, x, [[0], [1, 2]]))
    assert not bool(kan_hyp.test_general_separability(f, x, [[1], [0, 2]]))


def test_kan_without_hidden_layer_is_additively_separable():
    model = KAN(width=[3, 1], grid=5, k=3, seed=0)
    x = _x()
    res = hyp.detect_separability(model, x)
    assert res['groups'] == [[0], [1], [2]]
    off = res['hessian'] - torch.diag(torch.diag(res['hessian']))
    assert off.abs().max() < 1e-6 < torch.diag(res['hessian']).min()
    assert hyp.test_separability(model, x, [[0], [1], [2]]) is True
    # gradient ratios of a KAN need second differences of values (no double backward)
    assert hyp.test_general_separability(model, x, [[0], [1], [2]]) is True
    hidden = KAN(width=[3, 3, 1], grid=5, k=3, seed=0)
    assert hyp.detect_separability(hidden, x)['groups'] == [[0, 1, 2]]


# --- symmetry and the tree ---------------------------------------------------------------------

def test_symmetry():
    x = _x()
    assert hyp.test_symmetry(SYM, x, [0, 1]) is True
    assert hyp.test_symmetry(SYM, x, [0, 2]) is False
    assert hyp.test_symmetry(SYM, x, [1, 2]) is False
    assert hyp.test_symmetry(SYM, x, [0, 1, 2]) is True and hyp.test_symmetry(SYM, x, []) is True
    dep = hyp.get_dependence(SYM, x, [0, 2])
    assert dep.shape == (2, 1) and dep.max() > 1e-2
    f = lambda x: x[:, [0]] * x[:, [2]] ** 2 + torch.sin(x[:, [1]])  # noqa: E731
    assert hyp.test_symmetry(f, x, [0, 2]) is True and hyp.test_symmetry(f, x, [0, 1]) is False
    kan_hyp = pytest.importorskip("kan.hypothesis")
    torch.testing.assert_close(dep, kan_hyp.get_dependence(SYM, x, [0, 2]))
    assert bool(kan_hyp.test_symmetry(SYM, x, [0, 1])) and not kan_hyp.test_symmetry(SYM, x, [0, 2])


def test_dependence_fallback_on_first_order_model():
    x = _x()
    ours = hyp.get_dependence(_FirstOrderOnly.apply, x, [0, 1])
    torch.testing.assert_close(ours, hyp.get_dependence(MIXED, x, [0, 1]), atol=1e-5, rtol=1e-4)


def test_molecule_and_tree_nodes():
    x = _x(4)
    levels = hyp.get_molecule(TREE4, x, verbose=False)
    assert levels == [[[0], [1], [2], [3]], [[0, 1], [2, 3]], [[0, 1, 2, 3]]]
    arities, props = hyp.get_tree_node(TREE4, x, levels, skip_test=False)
    assert arities == [[2, 2], [2]] and props == [['GS', 'GS'], ['Add']]
    assert hyp.get_tree_node(TREE4, x, levels)[1] == [['', ''], ['']]  # skip_test by default
    kan_hyp = pytest.importorskip("kan.hypothesis")
    assert kan_hyp.get_molecule(TREE4, x, verbose=False) == levels
    assert kan_hyp.get_tree_node(TREE4, x, levels, skip_test=False) == (arities, props)
    mul = lambda x: (x[:, [0]] ** 2 + x[:, [1]] ** 2) * (x[:, [2]] ** 2 + x[:, [3]] ** 2)  # noqa
    assert hyp.get_molecule(mul, x, verbose=False) == levels
    assert hyp.get_tree_node(mul, x, levels, skip_test=False) == (arities, [['GS', 'GS'], ['Mul']])
    # every group of an additive function is symmetric: all inputs join at the first level
    assert hyp.get_molecule(ADD, _x(), verbose=False) == [[[0], [1], [2]], [[0, 1, 2]]]


def test_plot_tree_draws_without_showing_or_writing(tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    before = plt.get_fignums()
    fig = hyp.plot_tree(TREE4, _x(4))
    assert isinstance(fig, Figure) and plt.get_fignums() == before
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count('+') == 1 and {'$x_{1}$', '$x_{4}$'} <= set(texts)
    fig = hyp.plot_tree(KAN(width=[3, 1], grid=5, k=3, seed=0), _x(), in_var=['a', 'b', 'c'],
                        style='box')
    assert {'$a$', '$b$', '$c$', 'Add'} <= {t.get_text() for t in fig.axes[0].texts}
    with pytest.raises(ValueError):
        hyp.plot_tree(TREE4, _x(4), style='circle')
    assert os.listdir(tmp_path) == []


def test_groups_and_labels_are_python_ints():
    res = hyp.detect_separability(ADD, _x())
    assert all(type(v) is int for g in res['groups'] for v in g)
    assert not isinstance(res['labels'][0], np.integer)
