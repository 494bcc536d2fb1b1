"""Architecture edits with pykan's names: swap, expand, perturb, module, interactions.

Edits of the node layout keep the network function: a swap permutes a node's incoming and
outgoing edges together, new nodes and layers start with their edges off, and
``perturb('non-intrusive')`` only switches on edges that cannot reach the outputs. As in pykan
they change the model in place. Node indices follow pykan: in width entry ``l`` sum nodes
first, then products, whose factors are consecutive sub-nodes (outputs of layer ``l - 1``).
"""
from __future__ import annotations

import numbers

import numpy as np
import torch

__all__ = ["EditMixin", "swap", "connection_cost", "auto_swap_l", "auto_swap", "expand_depth",
           "expand_width", "perturb", "module", "node_attribute", "feature_interaction",
           "initialize_from_another_model"]

_SCORES = ("node_scores", "edge_scores", "subnode_scores",
           "node_scores_all", "edge_scores_all", "subnode_scores_all")

# edge types perturb switches on, per mode (pykan's table): the first letter says whether the
# edge's input node is active, the second its output; 'aa' edges split by the edge itself
_PERTURB = {"all": ("aa_a", "aa_i", "ai", "ia", "ii"), "non-intrusive": ("ai", "ii"),
            "minimal": ("aa_a",)}


# ------------------------------------------------------------------------------ helpers
def _is_int(v) -> bool:
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, bool)


def _check_hidden(model, l) -> int:
    if not _is_int(l) or not 1 <= int(l) <= model.depth - 1:
        raise ValueError(f"l must be a hidden width entry in [1, {model.depth - 1}] (the model "
                         f"has {model.depth} layers), got {l!r}")
    return int(l)


def _log(model, name: str, log_history: bool = True) -> None:
    """The history hook: called only when the model keeps one."""
    if log_history and hasattr(model, "_log_history"):
        model._log_history(name)


def _drop_scores(model) -> None:
    """Attribution scores no longer describe the model: recomputed on next use."""
    for name in _SCORES + ("node_attribute_scores",):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)


def _sync_settings(model) -> None:
    """Keep ``mult_arity``, ``grid`` and ``k`` in step with the layers after an edit."""
    ar = model._arity
    if not (_is_int(model.mult_arity) and all(a == model.mult_arity for r in ar for a in r)):
        model.mult_arity = [list(r) for r in ar]
    for name in ("grid", "k"):  # an int while every layer agrees, else one per layer
        vals = [getattr(layer, "num" if name == "grid" else "k") for layer in model.act_fun]
        if isinstance(getattr(model, name), list) or len(set(vals)) > 1:
            setattr(model, name, vals)


def _sub_blocks(model, e: int) -> list[list[int]]:
    """Sub-node indices of every node of width entry e (a sum node has one, a product its factors)."""
    n_sum, ar = model.width[e][0], model._arity[e]
    starts = [n_sum + sum(ar[:q]) for q in range(len(ar))]
    return [[n] for n in range(n_sum)] + [list(range(s, s + a)) for s, a in zip(starts, ar)]


# ------------------------------------------------------------------------------ swap
def _swap_perm(model, l: int, i1, i2) -> list[int]:
    n, n_sum = model.width_in[l], model.width[l][0]
    for name, v in (("i1", i1), ("i2", i2)):
        if not _is_int(v) or not 0 <= int(v) < n:
            raise ValueError(f"{name}={v!r} out of range: width entry {l} has {n} nodes")
    i1, i2 = int(i1), int(i2)
    if (i1 < n_sum) != (i2 < n_sum):
        raise ValueError(f"cannot swap a sum node with a multiplication node (entry {l} has "
                         f"{n_sum} sum nodes first): nodes {i1} and {i2}")
    perm = list(range(n))
    perm[i1], perm[i2] = i2, i1
    return perm


def _sub_perm(model, l: int, perm: list[int]) -> list[int]:
    """The sub-node order that goes with the node order ``perm`` (factor blocks move whole)."""
    return [s for p in perm for s in _sub_blocks(model, l)[p]]


@torch.no_grad()
def permute_nodes(model, l: int, perm: list[int]) -> None:
    """Reorder the nodes of hidden entry l (new node a is old node ``perm[a]``; sums among
    sums, products, with their arities, among products); the function is unchanged and stored
    attribution scores are permuted along."""
    n_sum = model.width[l][0]
    if sorted(perm) != list(range(model.width_in[l])) or \
            any((a < n_sum) != (p < n_sum) for a, p in enumerate(perm)):
        raise ValueError(f"perm must reorder the {n_sum} sum nodes and the products of entry {l} "
                         f"among themselves, got {perm}")
    sp = _sub_perm(model, l, perm)
    p_t, s_t = (torch.tensor(v, dtype=torch.long, device=model.device) for v in (perm, sp))
    below, above = model.act_fun[l - 1], model.act_fun[l]
    sym_b, sym_a = model.symbolic_fun[l - 1], model.symbolic_fun[l]
    # sub-nodes are the outputs of layer l-1 (columns of its numeric tensors, rows of its
    # symbolic ones); nodes are the inputs of layer l (rows numeric, columns symbolic)
    for t in (below.coef, below.scale_base, below.scale_sp, below.mask):
        t.copy_(t[:, s_t])
    for t in (sym_a.affine, sym_a.mask):
        t.copy_(t[:, p_t])
    for t in (above.grid, above.coef, above.scale_base, above.scale_sp, above.mask):
        t.copy_(t[p_t])
    for t in (sym_b.affine, sym_b.mask) + ((below.bias,) if below.bias is not None else ()):
        t.copy_(t[s_t])
    sym_b.funs_name = [list(sym_b.funs_name[q]) for q in sp]
    sym_a.funs_name = [[row[q] for q in perm] for row in sym_a.funs_name]
    below.clear_cache()
    above.clear_cache()
    model._arity[l] = [model._arity[l][q - n_sum] for q in perm[n_sum:]]
    _sync_settings(model)
    _permute_scores(model, l, p_t, s_t)


def _permute_scores(model, l: int, p_t, s_t) -> None:
    """Stored attribution scores follow the nodes (or are dropped when already stale)."""
    if getattr(model, "node_scores", None) is None or getattr(model, "edge_scores", None) is None:
        return _drop_scores(model)
    every = slice(None)
    for name, q, idx in (("node_scores", l, (p_t,)), ("edge_scores", l - 1, (s_t,)),
                         ("edge_scores", l, (every, p_t)), ("subnode_scores", l - 1, (s_t,))):
        getattr(model, name)[q] = getattr(model, name)[q][idx]
        rows = getattr(model, name + "_all", None)  # one row per output: index past it
        if rows is not None:
            rows[q] = rows[q][(every,) + idx]
    model.node_attribute_scores = None


def swap(model, l, i1, i2) -> None:
    """Swap nodes i1 and i2 of hidden width entry l (in place; the function is unchanged)."""
    l = _check_hidden(model, l)
    permute_nodes(model, l, _swap_perm(model, l, i1, i2))


# ------------------------------------------------------------------------------ connection cost
def _layer_cost(t: torch.Tensor) -> torch.Tensor:
    """pykan's wiring length of one layer's (out, in) edge scores: score-weighted distance
    between node positions spread evenly over [0, 1] on both sides."""
    pos = [(torch.arange(n, dtype=t.dtype, device=t.device) + 0.5) / n for n in t.shape]
    return ((pos[0][:, None] - pos[1][None, :]).abs() * t).sum()


def connection_cost(model, x=None) -> torch.Tensor:
    """Sum over layers of edge score times wiring length (scores from attribute(), computed
    on ``x`` or the training data when missing or stale)."""
    if x is not None or getattr(model, "node_scores", None) is None \
            or getattr(model, "edge_scores", None) is None:
        model.attribute(x=x)
    return sum(_layer_cost(t) for t in model.edge_scores)


def _cost_around(model, l: int, perm: list[int]) -> float:
    """Wiring cost of layers l-1 and l if entry l's nodes were reordered by ``perm``."""
    below, above = model.edge_scores[l - 1], model.edge_scores[l]
    s_t = torch.tensor(_sub_perm(model, l, perm), dtype=torch.long, device=below.device)
    p_t = torch.tensor(perm, dtype=torch.long, device=above.device)
    return float(_layer_cost(below[s_t]) + _layer_cost(above[:, p_t]))


def auto_swap_l(model, l, x=None) -> None:
    """Greedy reordering of hidden entry l: for each node in turn, swap it with the node of
    the same kind whose exchange lowers the connection cost most (no swap unless it is lower)."""
    l = _check_hidden(model, l)
    model.attribute(x=x)
    n, n_sum = model.width_in[l], model.width[l][0]
    for i in range(n):
        best_j, best = i, _cost_around(model, l, list(range(n)))
        for j in (range(n_sum) if i < n_sum else range(n_sum, n)):
            if j == i:
                continue
            c = _cost_around(model, l, _swap_perm(model, l, i, j))
            if c < best - 1e-12 * max(1.0, abs(best)):
                best_j, best = j, c
        if best_j != i:
            swap(model, l, i, best_j)


def auto_swap(model, x=None) -> None:
    """auto_swap_l on every hidden entry, first to last."""
    for l in range(1, model.depth):
        auto_swap_l(model, l, x=x)


# ------------------------------------------------------------------------------ expand
def _fresh_layer(model, template, n_in: int, n_out: int):
    """A layer shaped (n_in, n_out) like ``template``, random splines, every edge off.

    The splines come from a private generator seeded by the model's seed and the shape, so
    edits are reproducible and the global RNG is untouched.
    """
    from .layer import KANLayer

    gen = torch.Generator().manual_seed(
        (model.seed + 7919 * len(model.act_fun) + 104729 * (1000 * n_in + n_out)) % 2**63)
    layer = KANLayer(
        n_in, n_out, num=template.num, k=template.k, noise_scale=model.noise_scale,
        scale_base_mu=model.scale_base_mu, scale_base_sigma=model.scale_base_sigma,
        base_fun=template._base_spec(), grid_eps=template.grid_eps,
        grid_range=tuple(model.grid_range), sp_trainable=template.scale_sp.requires_grad,
        sb_trainable=template.scale_base.requires_grad, bias=template.bias is not None,
        generator=gen, dtype=template.grid.dtype, device=template.grid.device)
    layer.mask.zero_()
    if "use_triton" in template.__dict__:
        layer.use_triton = template.use_triton
    return layer


@torch.no_grad()
def _remap(model, q: int, n_in: int, n_out: int, in_pos=None, out_pos=None) -> None:
    """Replace layer q (numeric and symbolic) by a larger one holding the old edges at rows
    ``in_pos`` and columns ``out_pos`` (default: the first ones); new edges are off."""
    from .symbolic.layer import SymbolicLayer

    old, old_s = model.act_fun[q], model.symbolic_fun[q]
    in_pos = list(range(old.in_dim)) if in_pos is None else in_pos
    out_pos = list(range(old.out_dim)) if out_pos is None else out_pos
    ii, oo = (torch.tensor(v, dtype=torch.long, device=old.grid.device) for v in (in_pos, out_pos))
    new = _fresh_layer(model, old, n_in, n_out)
    new.grid[ii] = old.grid
    for name in ("coef", "scale_base", "scale_sp", "mask"):
        getattr(new, name)[ii[:, None], oo[None, :]] = getattr(old, name)
    if old.bias is not None:
        new.bias[oo] = old.bias
    new_s = SymbolicLayer(n_in, n_out, dtype=old_s.affine.dtype, device=old_s.affine.device,
                          trainable=old_s.affine.requires_grad)
    for j, row in zip(out_pos, old_s.funs_name):
        for i, name in zip(in_pos, row):
            new_s.funs_name[j][i] = name
    new_s.affine[oo[:, None], ii[None, :]] = old_s.affine
    new_s.mask[oo[:, None], ii[None, :]] = old_s.mask
    model.act_fun[q], model.symbolic_fun[q] = new, new_s


@torch.no_grad()
def expand_depth(model) -> None:
    """Append a layer computing the identity (symbolic ``x`` on the diagonal, numeric branch
    off with random splines under the mask, as pykan's), in place."""
    from .symbolic.layer import SymbolicLayer

    d = model.width_in[-1]
    model.act_fun.append(_fresh_layer(model, model.act_fun[-1], d, d))
    sym = SymbolicLayer(d, d, dtype=model.dtype, device=model.device,
                        trainable=model.affine_trainable)
    for j in range(d):
        sym.set_edge(j, j, "x", [1.0, 0.0, 1.0, 0.0])
        sym.mask[j, j] = 1.0
    model.symbolic_fun.append(sym)
    model.width.append([d, 0])
    model._arity.append([])
    model.depth += 1
    _sync_settings(model)
    _drop_scores(model)


@torch.no_grad()
def expand_width(model, layer_id, n_added_nodes, sum_bool: bool = True, mult_arity=2) -> None:
    """Add ``n_added_nodes`` nodes to hidden width entry ``layer_id``, in place.

    As pykan: sum nodes go first (the old nodes' indices shift up), multiplication nodes of
    arity ``mult_arity`` (an int, or one per node) go last. The new nodes' incoming and
    outgoing edges are off (mask 0, random splines under it), so the function is unchanged;
    unlike pykan, the existing numeric edges of both layers are kept.
    """
    l = _check_hidden(model, layer_id)
    if not _is_int(n_added_nodes) or n_added_nodes < 1:
        raise ValueError(f"n_added_nodes must be an integer >= 1, got {n_added_nodes!r}")
    n = int(n_added_nodes)
    arity = [] if sum_bool else [mult_arity] * n if _is_int(mult_arity) else list(mult_arity)
    if not sum_bool and (len(arity) != n or not all(_is_int(a) and a >= 2 for a in arity)):
        raise ValueError(f"mult_arity must be an integer >= 2 or {n} of them, got {mult_arity!r}")
    arity = [int(a) for a in arity]
    n_in, n_sub = model.width_in[l], model.width_out[l]
    shift = n if sum_bool else 0  # new sum nodes first (the old ones shift up), products last
    node_pos = [a + shift for a in range(n_in)]
    sub_pos = [s + shift for s in range(n_sub)]
    new_in, new_sub = n_in + n, n_sub + (n if sum_bool else sum(arity))
    _remap(model, l - 1, model.width_in[l - 1], new_sub, out_pos=sub_pos)
    _remap(model, l, new_in, model.width_out[l + 1], in_pos=node_pos)
    if sum_bool:
        model.width[l][0] += n
    else:
        model.width[l][1] += n
        model._arity[l] = model._arity[l] + arity
    _sync_settings(model)
    _drop_scores(model)


# ------------------------------------------------------------------------------ perturb, module
def _live(model) -> list[torch.Tensor]:
    """Per layer (in, out): whether the edge carries signal (numeric or symbolic branch)."""
    out = []
    for layer, sym in zip(model.act_fun, model.symbolic_fun):
        named = torch.tensor([[n != "0" for n in row] for row in sym.funs_name],
                             dtype=torch.bool, device=sym.mask.device).reshape(sym.mask.shape)
        out.append((layer.mask != 0) | ((sym.mask != 0) & named).t())
    return out


@torch.no_grad()
def perturb(model, mag: float = 1.0, mode: str = "non-intrusive") -> None:
    """pykan's perturb: switch on numeric edges with mask ``mag`` by edge type (in place).

    A sub-node is active when an edge into it carries signal or (below the last layer) its
    node has a live outgoing edge; an input node is active when it has a live outgoing edge.
    ``'all'`` sets every edge's numeric mask to ``mag``; ``'minimal'`` only live edges between
    active nodes; ``'non-intrusive'`` only edges into inactive sub-nodes, and in the last layer
    switches on every numeric edge that is off with mask 1 and zero scales, so the network
    function is unchanged.
    """
    if mode not in _PERTURB:
        raise ValueError(f"mode must be one of {sorted(_PERTURB)}, got {mode!r}")
    live = _live(model)
    for l, layer in enumerate(model.act_fun):
        last = l == model.depth - 1
        if last and mode == "non-intrusive":
            off = layer.mask == 0
            for t, v in ((layer.scale_base, 0.0), (layer.scale_sp, 0.0), (layer.mask, 1.0)):
                t[off] = v
            continue
        e = live[l]
        in_a = e.any(1)[:, None]
        out_a = e.any(0)
        if not last:
            used = live[l + 1].any(1)
            owner = [q for q, block in enumerate(_sub_blocks(model, l + 1)) for _ in block]
            out_a = out_a | used[torch.tensor(owner, dtype=torch.long, device=used.device)]
        out_a = out_a[None, :]
        kinds = dict(aa_a=in_a & out_a & e, aa_i=in_a & out_a & ~e, ai=in_a & ~out_a,
                     ia=~in_a & out_a, ii=~in_a & ~out_a)
        sel = torch.stack([kinds[kind] for kind in _PERTURB[mode]]).any(0)
        layer.mask[sel] = float(mag)
    _drop_scores(model)


def _parse_ids(text: str, n: int, what: str) -> list[int]:
    s = text.strip()
    try:
        ids = [int(v) for v in s[1:-1].split(",") if v.strip()] if s[:1] + s[-1:] == "[]" else None
    except ValueError:
        ids = None
    if ids is None:
        raise ValueError(f"module chain: {what} must look like [0,1], got {text!r}")
    bad = [v for v in ids if not -n <= v < n]
    if bad:
        raise ValueError(f"module chain: {what} index {bad[0]} out of range (there are {n})")
    return sorted({v % n for v in ids})


@torch.no_grad()
def module(model, start_layer, chain: str) -> None:
    """pykan's block constraint: ``chain = '[in]->[out]->[in]->[out]...'`` names, for layers
    ``start_layer, start_layer + 1, ...``, the input nodes and output sub-nodes of a module;
    every edge between the module and the rest of those layers is switched off (in place).
    Negative indices count from the end."""
    groups = chain.split("->")
    if len(groups) < 2 or len(groups) % 2:
        raise ValueError(f"module chain needs pairs '[in]->[out]', got {chain!r}")
    if not _is_int(start_layer) or not 0 <= start_layer <= model.depth - len(groups) // 2:
        raise ValueError(f"start_layer={start_layer!r}: the chain spans {len(groups) // 2} "
                         f"layers of {model.depth}")
    for q in range(len(groups) // 2):
        l = int(start_layer) + q
        n_in, n_out = model.width_in[l], model.width_out[l + 1]
        ins = _parse_ids(groups[2 * q], n_in, f"layer {l} inputs")
        outs = _parse_ids(groups[2 * q + 1], n_out, f"layer {l} outputs")
        rest_in = [i for i in range(n_in) if i not in ins]
        rest_out = [j for j in range(n_out) if j not in outs]
        num, sym = model.act_fun[l].mask, model.symbolic_fun[l].mask
        for a, b in ((rest_in, outs), (ins, rest_out)):
            if a and b:
                ia = torch.tensor(a, dtype=torch.long, device=num.device)
                ib = torch.tensor(b, dtype=torch.long, device=num.device)
                num[ia[:, None], ib[None, :]] = 0.0
                sym[ib[:, None], ia[None, :]] = 0.0
    _drop_scores(model)


# ------------------------------------------------------------------------------ attribution
def node_attribute(model, x=None) -> None:
    """``node_attribute_scores[l - 1]``: attribution of every node of entry l (rows) to the
    inputs (columns), for l = 1..depth (pykan's layout)."""
    model.node_attribute_scores = [model.attribute(l, x=x) for l in range(1, model.depth + 1)]


def feature_interaction(model, l, neuron_th: float = 1e-2, feature_th: float = 1e-2,
                        x=None) -> dict:
    """Which groups of inputs the nodes of width entry l depend on: for each node whose top
    input attribution exceeds ``neuron_th``, the inputs above ``feature_th`` times that top
    form a tuple; returns ``{tuple: number of nodes}``."""
    if not _is_int(l) or not 0 <= l <= model.depth:
        raise ValueError(f"l must be a width entry index in [0, {model.depth}], got {l!r}")
    rows = model.attribute(int(l), x=x)
    dic: dict = {}
    for score in rows:
        top = float(score.max())
        if top > neuron_th:
            feats = tuple(int(v) for v in torch.where(score > top * feature_th)[0].tolist())
            dic[feats] = dic.get(feats, 0) + 1
    return dic


# ------------------------------------------------------------------------------ refit
@torch.no_grad()
def initialize_from_another_model(model, another_model, x):
    """Refit ``model``'s splines so it computes what ``another_model`` computes on ``x``.

    The widths (and product arities) must match; grids and spline orders may differ. Knots
    follow the other model's (see :func:`kanlab.grid.interpolate_grid`), coefficients are
    least squares on the layer inputs of ``x`` plus dense points over the grid; scales, masks,
    biases and symbolic edges are copied. Returns ``model``.
    """
    from .grid import refit_layer

    if another_model.width != model.width or another_model._arity != model._arity:
        raise ValueError(f"widths differ: {model.width} (arities {model._arity}) here, "
                         f"{another_model.width} (arities {another_model._arity}) there")
    src = another_model
    if src.dtype != model.dtype or src.device != model.device:
        src = another_model.copy().to(device=model.device, dtype=model.dtype)
    x = model._data(x, "initialize_from_another_model()")
    if isinstance(x, torch.Tensor):
        x = x.detach().to(model.device, model.dtype)
    acts = src.layer_inputs(x)
    for l in range(model.depth):
        dst = model.act_fun[l]
        refit_layer(dst, src.act_fun[l], acts[l])
        dst.clear_cache()
        s_src, s_dst = src.symbolic_fun[l], model.symbolic_fun[l]
        s_dst.funs_name = [list(row) for row in s_src.funs_name]
        s_dst.affine.copy_(s_src.affine)
        s_dst.mask.copy_(s_src.mask)
    _drop_scores(model)
    return model


# ------------------------------------------------------------------------------ mixin
class EditMixin:
    """pykan's architecture-editing methods on :class:`kanlab.KAN` (see :mod:`kanlab.edit`)."""

    def swap(self, l, i1, i2, log_history: bool = True) -> None:
        """Swap nodes i1 and i2 of hidden width entry l; the function is unchanged."""
        swap(self, l, i1, i2)
        _log(self, "swap", log_history)

    @property
    def connection_cost(self) -> torch.Tensor:
        """Score-weighted wiring length of the network (pykan's property)."""
        return connection_cost(self)

    def auto_swap_l(self, l, x=None) -> None:
        """Greedy node swaps in hidden entry l that lower the connection cost."""
        auto_swap_l(self, l, x=x)

    def auto_swap(self, x=None) -> None:
        """Greedy node swaps in every hidden entry that lower the connection cost."""
        auto_swap(self, x=x)
        _log(self, "auto_swap")

    def expand_depth(self) -> None:
        """Append an identity layer (in place; the function is unchanged)."""
        expand_depth(self)
        _log(self, "expand_depth")

    def expand_width(self, layer_id, n_added_nodes, sum_bool: bool = True, mult_arity=2) -> None:
        """Add nodes with switched-off edges to hidden entry ``layer_id`` (in place)."""
        expand_width(self, layer_id, n_added_nodes, sum_bool=sum_bool, mult_arity=mult_arity)
        _log(self, "expand_width")

    def perturb(self, mag: float = 1.0, mode: str = "non-intrusive") -> None:
        """Switch on numeric edges with mask ``mag`` ('all', 'non-intrusive', 'minimal')."""
        perturb(self, mag=mag, mode=mode)
        _log(self, "perturb")

    def module(self, start_layer, chain: str) -> None:
        """Cut every edge between the module named by ``chain`` and the rest."""
        module(self, start_layer, chain)
        _log(self, "module")

    def node_attribute(self, x=None) -> None:
        """Fill ``node_attribute_scores`` (each entry's nodes traced back to the inputs)."""
        node_attribute(self, x=x)

    def feature_interaction(self, l, neuron_th: float = 1e-2, feature_th: float = 1e-2,
                            x=None) -> dict:
        """``{tuple of inputs: number of nodes of entry l depending on exactly them}``."""
        return feature_interaction(self, l, neuron_th=neuron_th, feature_th=feature_th, x=x)

    def initialize_from_another_model(self, another_model, x):
        """Refit this model to compute what ``another_model`` computes on ``x``; returns self."""
        return initialize_from_another_model(self, another_model, x)
