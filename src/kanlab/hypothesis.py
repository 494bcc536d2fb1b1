"""Hypothesis tests on a fitted function: separability, symmetry and the tree of groups.

pykan's ``kan.hypothesis`` names, arguments and results. ``model`` is any callable mapping a
(batch, n) tensor to (batch, 1) (a kanlab KAN, an MLP, a lambda); its first output is examined.

Second derivatives come from double backward (kanlab's layers give derivatives of any order).
For a ``model`` whose autograd refuses double backward (a user function with a first-order
custom Function), :func:`batch_hessian` (and :func:`get_dependence`) take central differences of
the first-order gradient instead, in float64 (a float64 copy of a module) with steps of
1e-4 * std of each input; where even first derivatives fail, second differences of values.
``create_graph=True`` needs double backward and raises on such a model.

Unlike pykan, nothing is printed unless ``verbose``, and :func:`plot_tree` returns a new
:class:`matplotlib.figure.Figure` (no ``plt.show()``, no file, no pyplot state).
"""
from __future__ import annotations

import copy
import functools
import itertools

import torch

__all__ = [
    "batch_jacobian", "batch_hessian", "batch_grad_normgrad", "detect_separability",
    "test_separability", "test_general_separability", "get_dependence", "test_symmetry",
    "get_molecule", "get_tree_node", "plot_tree",
]

_NO_DOUBLE_BACKWARD = (
    "{}(create_graph=True) needs second derivatives through autograd, which this "
    "model does not support (its autograd refuses double backward); with "
    "create_graph=False finite differences are used instead")
_FD_ROWS = 1 << 16  # rows per model call in the finite differences


# --- derivatives -------------------------------------------------------------------------------

def _leaf(x, create_graph):
    """x as an input to differentiate: keeps an outer graph only when one is being built."""
    if create_graph and x.requires_grad:
        return x.view_as(x)
    return x.detach().requires_grad_(True)


def _grad(out, x, create_graph):
    g, = torch.autograd.grad(out, x, retain_graph=True, create_graph=create_graph,
                             allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def _first_column(y, batch):
    return y if y.dim() == 1 else y.reshape(batch, -1)[:, 0]


def batch_jacobian(func, x, create_graph=False, mode='scalar'):
    """Per-sample input gradient of ``func`` at ``x`` (batch, n).

    mode 'scalar': gradient of the first output, (batch, n); 'vector': all outputs,
    (batch, n_out, n). An output that does not depend on ``x`` has a zero gradient.
    """
    if mode not in ('scalar', 'vector'):
        raise ValueError(f"mode must be 'scalar' or 'vector', not {mode!r}")
    with torch.enable_grad():
        xi = _leaf(x, create_graph)
        y = func(xi)
        y = y[:, None] if y.dim() == 1 else y.reshape(x.shape[0], -1)
        cols = [0] if mode == 'scalar' else range(y.shape[1])
        rows = [_grad(y[:, c].sum(), xi, create_graph) if y.requires_grad else torch.zeros_like(x)
                for c in cols]
    return rows[0] if mode == 'scalar' else torch.stack(rows, 1)


def _gradient(model, z, create_graph):
    """Input gradient of the first output; raises when the output has no autograd graph."""
    with torch.enable_grad():
        zi = _leaf(z, create_graph)
        y = _first_column(model(zi), z.shape[0])
        if not y.requires_grad:
            raise RuntimeError("the model's output is not differentiable with respect to x")
        return _grad(y.sum(), zi, create_graph)


def _normalized_gradient(model, z, create_graph, group):
    g = _gradient(model, z, create_graph)[:, group]
    return g / (torch.norm(g, dim=1, keepdim=True) + 1e-6)


class _NoGraph(RuntimeError):
    """The first derivatives came back without a graph (constant, or computed off autograd)."""


def _derivative_autograd(vfunc, model, x, cols, create_graph):
    """d vfunc(model, x) / d x[:, cols], (batch, m, len(cols)), by double backward."""
    with torch.enable_grad():
        xi = _leaf(x, create_graph)
        v = vfunc(model, xi, True)
        if not v.requires_grad:
            raise _NoGraph("no graph through the first derivatives")
        rows = [_grad(v[:, a].sum(), xi, create_graph)[:, cols] for a in range(v.shape[1])]
    return torch.stack(rows, 1)


class _Composite(functools.partial):
    """``fn(model, x)`` as a function of x, which the float64 conversion can see through."""


def _as_float64(model):
    if isinstance(model, _Composite):
        return _Composite(model.func, _as_float64(model.args[0]), **model.keywords)
    if isinstance(model, torch.nn.Module):
        tensors = list(model.parameters()) + list(model.buffers())
        if any(t.is_floating_point() and t.dtype != torch.float64 for t in tensors):
            return copy.deepcopy(model).to(torch.float64)
    return model


def _fd_setup(model, x, order):
    """(model, inputs, steps per input): float64 where the model accepts it, else x's dtype with
    steps suited to its precision (order 1: differences of gradients, 2: of values)."""
    if x.dtype != torch.float64:
        try:
            m64, x64 = _as_float64(model), x.detach().to(torch.float64)
            with torch.no_grad():
                m64(x64[:2])
            model, x = m64, x64
        except (RuntimeError, TypeError, ValueError):
            pass
    x = x.detach()
    scale = torch.std(x, dim=0) if x.shape[0] > 1 else torch.zeros_like(x[0])
    scale = torch.where(torch.isfinite(scale) & (scale > 0), scale, torch.ones_like(scale))
    return model, x, max(torch.finfo(x.dtype).eps ** (1.0 / (order + 2)), 1e-4) * scale


def _at_offsets(fn, x, h, offsets):
    """fn at x + offsets[k] * h for every k, as (K, batch, m), in chunks of rows."""
    batch, n = x.shape
    per = max(1, _FD_ROWS // max(batch, 1))
    out = []
    for s in range(0, offsets.shape[0], per):
        off = offsets[s:s + per]
        z = (x[None] + off[:, None, :] * h).reshape(-1, n)
        out.append(fn(z).reshape(off.shape[0], batch, -1))
    return torch.cat(out, 0)


def _derivative_fd(vfunc, model, x, cols):
    """d vfunc(model, x) / d x[:, cols] by central differences of vfunc (first order only)."""
    fm, z, h = _fd_setup(model, x, 1)
    offsets = torch.zeros(2 * len(cols), z.shape[1], dtype=z.dtype, device=z.device)
    for k, j in enumerate(cols):
        offsets[2 * k, j], offsets[2 * k + 1, j] = 1.0, -1.0
    v = _at_offsets(lambda t: vfunc(fm, t, False).detach(), z, h, offsets)
    d = (v[0::2] - v[1::2]) / (2 * h[cols])[:, None, None]
    return d.permute(1, 2, 0)


def _hessian_values_fd(model, x):
    """Hessian of the first output by second differences of its values."""
    fm, z, h = _fd_setup(model, x, 2)
    n = z.shape[1]
    eye = torch.eye(n, dtype=z.dtype, device=z.device)
    pairs = [(i, j) for i in range(n) for j in range(i, n)]  # (i, i): steps of 2 h_i
    rows = [si * eye[i] + sj * eye[j] for i, j in pairs for si, sj in ((1, 1), (1, -1), (-1, 1),
                                                                       (-1, -1))]
    with torch.no_grad():
        f = _at_offsets(lambda t: _first_column(fm(t), t.shape[0]), z, h, torch.stack(rows))[..., 0]
    d, hess = f[0::4] - f[1::4] - f[2::4] + f[3::4], z.new_zeros(z.shape[0], n, n)
    for p, (i, j) in enumerate(pairs):
        hess[:, i, j] = hess[:, j, i] = d[p] / (4 * h[i] * h[j])
    return hess


def _second_order(vfunc, model, x, cols, create_graph, name):
    """By autograd; None where the caller should take finite differences instead."""
    try:
        return _derivative_autograd(vfunc, model, x, cols, create_graph)
    except _NoGraph as err:
        if not create_graph:
            return None
        fd = _derivative_fd(vfunc, model, x, cols)
        if torch.count_nonzero(fd) == 0:  # first derivatives truly constant (a linear model)
            return fd.to(dtype=x.dtype, device=x.device)
        raise RuntimeError(_NO_DOUBLE_BACKWARD.format(name)) from err
    except RuntimeError as err:
        if create_graph:
            raise RuntimeError(_NO_DOUBLE_BACKWARD.format(name)) from err
    return None


def batch_hessian(model, x, create_graph=False):
    """Per-sample Hessian of the first output of ``model`` at ``x``: (batch, n, n).

    Autograd when the model supports double backward; otherwise (a kanlab KAN) central
    differences of the first-order gradient in float64. ``create_graph=True`` needs the
    autograd path and raises a RuntimeError on a model without it.
    """
    cols = list(range(x.shape[1]))
    hess = _second_order(_gradient, model, x, cols, create_graph, 'batch_hessian')
    if hess is not None:
        return hess
    try:
        hess = _derivative_fd(_gradient, model, x, cols)
    except RuntimeError:  # not even first derivatives: differences of values
        hess = _hessian_values_fd(model, x)
    return (0.5 * (hess + hess.transpose(1, 2))).to(dtype=x.dtype, device=x.device)


def batch_grad_normgrad(model, x, group, create_graph=False):
    """d (g_A / |g_A|) / d x_B per sample, (batch, |A|, |B|), g_A the gradient over ``group``."""
    group_b = sorted(set(range(x.shape[1])) - set(group))
    vfunc = functools.partial(_normalized_gradient, group=list(group))
    out = _second_order(vfunc, model, x, group_b, create_graph, 'batch_grad_normgrad')
    if out is None:
        out = _derivative_fd(vfunc, model, x, group_b).to(dtype=x.dtype, device=x.device)
    return out


# --- separability ------------------------------------------------------------------------------

def _log_abs(model, x, bias):
    return torch.log(torch.abs(model(x) + bias))


def _score_matrix(model, x, mode, bias):
    """Median over the batch of |Hessian| scaled by the inputs' spreads, (n, n)."""
    if mode == 'mul':
        model = _Composite(_log_abs, model, bias=bias)
    elif mode != 'add':
        raise ValueError(f"mode must be 'add' or 'mul', not {mode!r}")
    hess = batch_hessian(model, x)
    std = torch.std(x, dim=0)
    return torch.median(torch.abs(hess * std[None, :] * std[:, None]), dim=0)[0]


def _complete_linkage(dist):
    """Partitions of range(n) by complete linkage on ``dist``: {number of clusters: groups}."""
    n = dist.shape[0]
    clusters, d = [[i] for i in range(n)], dist.double().cpu().fill_diagonal_(1e300)
    parts = {n: [list(c) for c in clusters]}
    while len(clusters) > 1:
        a, b = sorted(divmod(int(torch.argmin(d)), len(clusters)))
        clusters[a] = sorted(clusters[a] + clusters[b])
        del clusters[b]
        d[a], d[:, a] = torch.maximum(d[a], d[b]), torch.maximum(d[a], d[b])
        d[a, a] = 1e300
        keep = [i for i in range(d.shape[0]) if i != b]
        d = d[keep][:, keep]
        parts[len(clusters)] = sorted((list(c) for c in clusters), key=min)
    return parts


def detect_separability(model, x, mode='add', score_th=1e-2, res_th=1e-2, n_clusters=None,
                        bias=0., verbose=False):
    """Groups of inputs in which the function is additively (``mode='add'``) or
    multiplicatively (``'mul'``, of ``model + bias``) separable.

    Returns a dict: 'hessian' (the (n, n) score matrix), 'n_groups', 'labels' (a group index per
    input) and 'groups' (lists of input indices, ordered by their first member): the finest
    partition of complete linkage on ``score < score_th`` whose off-block share of the scores is
    under ``res_th``. ``n_clusters`` (int, or [lo, hi]) limits the numbers of groups tried; when
    none of them qualifies, all inputs form one group.
    """
    score = _score_matrix(model, x, mode, bias)
    results = {'hessian': score}
    n = x.shape[1]
    lo, hi = ((n_clusters, n_clusters) if isinstance(n_clusters, int) else
              (1, n) if n_clusters is None else tuple(n_clusters))
    parts = _complete_linkage((score < score_th).float())
    total = torch.sum(score)
    best = [list(range(n))]
    for k in range(max(lo, 1), min(hi, n) + 1):
        groups = parts[k]
        inside = sum(torch.sum(score[g][:, g]) for g in groups)
        ratio = (total - inside) / total if total > 0 else torch.zeros(())
        if verbose:
            print(f'n_group={k}, residual_ratio={float(ratio)}')
        if ratio < res_th:
            best = groups
    labels = [next(i for i, g in enumerate(best) if v in g) for v in range(n)]
    results.update(n_groups=len(best), labels=labels, groups=best)
    if verbose:
        print(f"{mode} separability {'detected' if len(best) > 1 else 'not detected'}")
    return results


def test_separability(model, x, groups, mode='add', threshold=1e-2, bias=0):
    """Whether no score between two of ``groups`` (nor between the grouped inputs and the
    rest) reaches ``threshold``: the function separates over these groups."""
    score = _score_matrix(model, x, mode, bias)
    ok = True
    for ga, gb in itertools.combinations(groups, 2):
        ok &= bool(torch.max(score[ga][:, gb]) < threshold)
    inside = [v for g in groups for v in g]
    outside = sorted(set(range(x.shape[1])) - set(inside))
    if inside and outside:
        ok &= bool(torch.max(score[inside][:, outside]) < threshold)
    return ok


def _gradient_ratio(model, x, num, den):
    """d f / d x_num over d f / d x_den (a graph through it only where one is being built)."""
    g = batch_jacobian(model, x, create_graph=torch.is_grad_enabled())
    return g[:, [num]] / g[:, [den]]


def test_general_separability(model, x, groups, threshold=1e-2):
    """Generalized separability f = F(g_1(x_A), g_2(x_B), ...): for members a, b of different
    groups, the gradient ratio (df/dx_b)/(df/dx_a) must separate multiplicatively."""
    ok = True
    for ga, gb in itertools.combinations(groups, 2):
        for a, b in itertools.product(ga, gb):
            ratio = _Composite(_gradient_ratio, model, num=b, den=a)
            ok &= test_separability(ratio, x, groups, mode='mul', threshold=threshold)
    return ok


# --- symmetry and the tree ---------------------------------------------------------------------

def get_dependence(model, x, group):
    """How much the direction of the gradient over ``group`` changes with each other input:
    (|group|, n - |group|), scaled by the inputs' spreads, median over the batch."""
    rest = sorted(set(range(x.shape[1])) - set(group))
    std = torch.std(x, dim=0)
    dep = batch_grad_normgrad(model, x, group) * std[None, list(group), None] * std[rest]
    return torch.median(torch.abs(dep), dim=0)[0]


def test_symmetry(model, x, group, dependence_th=1e-3):
    """Whether ``group`` enters only through one combination h(x_group) (the direction of the
    gradient over the group does not depend on the other inputs)."""
    if len(group) == 0 or len(group) == x.shape[1]:
        return True
    return bool(torch.max(get_dependence(model, x, group)) < dependence_th)


def _pieces(molecule, parts):
    """Split ``molecule`` into consecutive runs that are members of ``parts``."""
    out, start = [], 0
    for end in range(1, len(molecule) + 1):
        if molecule[start:end] in parts:
            out.append(molecule[start:end])
            start = end
    return out


def _assemble(model, x, atoms, sym_th, layer, full_used, verbose):
    """One level of get_molecule: greedy merging of atoms into symmetric molecules."""
    n = x.shape[1]
    atoms, molecules, n_used = list(atoms), [], 0
    while atoms:
        current, taken, closed = list(atoms[0]), [atoms[0]], False
        n_used += 1
        for atom in atoms[1:]:
            if verbose:
                print(current, atom)
            if not full_used and layer > 0 and n_used > 1 and len(current) + len(atom) == n:
                full_used, closed = True, True  # never join the last two pieces into the whole
                molecules += [current, atom]
                taken.append(atom)
                break
            if test_symmetry(model, x, current + atom, dependence_th=sym_th):
                current = current + atom
                taken.append(atom)
                n_used += 1
        if not closed:
            molecules.append(current)
        for atom in taken:
            atoms.remove(atom)
    return molecules, full_used


def get_molecule(model, x, sym_th=1e-3, verbose=True):
    """How the inputs combine hierarchically: a list of levels, from the single inputs up to
    one group of all, each a list of groups (input indices) ordered like the level above."""
    n = x.shape[1]
    atoms = [[i] for i in range(n)]
    levels, full_used, layer, last = [copy.deepcopy(atoms)], False, 0, n
    while True:
        molecules, full_used = _assemble(model, x, atoms, sym_th, layer, full_used, verbose)
        if len(molecules) == last:  # no progress: put everything together
            levels.append([[v for m in molecules for v in m]])
            break
        levels.append(copy.deepcopy(molecules))
        last = len(molecules)
        if len(molecules) == 1:
            break
        atoms, layer = molecules, layer + 1
    for lvl in range(len(levels) - 1, 0, -1):
        levels[lvl - 1] = [p for m in levels[lvl] for p in _pieces(m, levels[lvl - 1])]
    return levels


def get_tree_node(model, x, moleculess, sep_th=1e-2, skip_test=True):
    """Arity and property of every node of the tree from :func:`get_molecule`: per level, lists
    of arities and of properties ('Id', 'GS' generalized separable, 'Add', 'Mul' at the top, or
    '' unknown / untested)."""
    arities, properties = [], []
    depth = len(moleculess) - 1
    for lvl in range(depth):
        arity_l, prop_l = [], []
        for molecule in moleculess[lvl + 1]:
            groups = _pieces(molecule, moleculess[lvl])
            arity_l.append(len(groups))
            prop = 'Id' if len(groups) == 1 else ''
            if len(groups) > 1 and not skip_test:
                if test_general_separability(model, x, groups, threshold=sep_th):
                    prop = 'GS'
                if lvl == depth - 1:
                    if test_separability(model, x, groups, mode='add', threshold=sep_th):
                        prop = 'Add'
                    if test_separability(model, x, groups, mode='mul', threshold=sep_th):
                        prop = 'Mul'
            prop_l.append(prop)
        arities.append(arity_l)
        properties.append(prop_l)
    return arities, properties


def plot_tree(model, x, in_var=None, style='tree', sym_th=1e-3, sep_th=1e-1, skip_sep_test=False,
              verbose=False):
    """Draw the tree of :func:`get_molecule` with the node properties of :func:`get_tree_node`.

    style 'tree': separable nodes as lines joining their children ('+' / '*' marked at the top),
    others as boxes; 'box': every node a box labelled with its property. Returns the
    matplotlib Figure (not shown, not saved)."""
    if style not in ('tree', 'box'):
        raise ValueError(f"style must be 'tree' or 'box', not {style!r}")
    from matplotlib.figure import Figure

    levels = get_molecule(model, x, sym_th=sym_th, verbose=verbose)
    arities, properties = get_tree_node(model, x, levels, sep_th=sep_th, skip_test=skip_sep_test)
    n, depth = x.shape[1], len(levels)
    import sympy

    syms = [sympy.Symbol(f'x_{i}') for i in range(1, n + 1)] if in_var is None else [
        v if isinstance(v, sympy.Basic) else sympy.Symbol(str(v)) for v in in_var]
    labels = [f'${sympy.latex(v)}$' for v in syms]
    fig = Figure(figsize=(max(4.0, 0.8 * n), 1.2 + 1.3 * depth))
    ax = fig.add_subplot()
    delta, a, b, y0 = 1.0 / n, 0.3, 0.15, 0.5

    def box(cx, cy, wx):
        ax.plot([cx - wx / 2, cx + wx / 2, cx + wx / 2, cx - wx / 2, cx - wx / 2],
                [cy - b, cy - b, cy + b, cy + b, cy - b], color='k')

    below = [(i + 0.5) * delta for i in range(n)]  # x positions of the level below
    for lvl in range(depth - 1):
        centers, start, child = [], 0, 0
        for i, molecule in enumerate(levels[lvl + 1]):
            end = start + len(molecule)
            cx, cy = (start + end) / 2 * delta, (lvl + 0.5) * y0
            wx, prop, arity = (end - start - 1 + 2 * a) * delta, properties[lvl][i], arities[lvl][i]
            if style == 'box':
                box(cx, cy, wx)
                ax.text(cx, cy, prop, fontsize=15, ha='center', va='center')
            elif prop in ('GS', 'Add', 'Mul'):
                for j in range(arity):
                    ax.plot([below[child + j], cx], [cy - b, cy + b], color='blue')
                if prop != 'GS':
                    ax.text(cx, cy + b, '+' if prop == 'Add' else '*', ha='center', va='center',
                            color='red', fontsize=40)
            elif prop == 'Id':
                ax.plot([cx, cx], [cy - b, cy + b], color='k')
            else:
                box(cx, cy, wx)
            ax.plot([cx, cx], [cy + b, cy + y0 - b], color='k')  # up to the next level
            centers.append(cx)
            start, child = end, child + arity
        below = centers
    for i in range(n):
        xi = (i + 0.5) * delta
        ax.plot([xi, xi], [0, y0 / 2 - b], color='k')
        ax.text(xi, -0.05 * (depth - 1), labels[levels[0][i][0]], fontsize=20, ha='center')
    ax.set_xlim(0, 1)
    ax.axis('off')
    return fig
