"""Pruning by edge spread: keep the nodes and edges that carry signal on the data.

A minimal, exact-bookkeeping pruner used by the discovery pipeline: an edge's importance is the
standard deviation of its output on the data (what pykan's regularizer drives to zero); a hidden
node survives when its strongest incoming and strongest outgoing edges both matter. Removed
edges are replaced by their mean on the data, folded into the bias of the node they fed, so the
pruned model stays close to the original before any retraining.
"""
from __future__ import annotations

import torch

__all__ = ["subset_model", "prune_by_spread", "edge_spread", "attribute"]


@torch.no_grad()
def edge_spread(model, x: torch.Tensor):
    """Per layer (in, out) std and mean of every edge's total output on ``x``, and layer inputs."""
    acts = model.layer_inputs(x)
    stds, means = [], []
    for l in range(model.depth):
        a = model.act_fun[l].activations(acts[l])
        if model.symbolic_fun[l].is_active():
            a = a + model.symbolic_fun[l].activations(acts[l])
        stds.append(a.std(0))
        means.append(a.mean(0))
    return stds, means, acts


def _subnodes(model, e: int, nodes: list[int]) -> tuple[list[int], list[int]]:
    """Sub-node indices of the kept nodes of width entry e, and the kept products' arities."""
    n_sum = model.width[e][0]
    arity = model._arity[e]
    starts = [n_sum + sum(arity[:q]) for q in range(len(arity))]
    subs, kept_arity = [], []
    for n in nodes:
        if n < n_sum:
            subs.append(n)
        else:
            q = n - n_sum
            subs.extend(range(starts[q], starts[q] + arity[q]))
            kept_arity.append(arity[q])
    return subs, kept_arity


@torch.no_grad()
def subset_model(model, keep: list[list[int]]):
    """A new model keeping, for every width entry, the node indices in ``keep[e]``.

    Node indices count sum nodes first, then multiplication nodes (pykan's order); a kept
    product keeps all its factors. Every setting of the model (grid, k, base function, bias,
    symbolic state, trainability) carries over; the new model has the class of ``model``.
    """
    if len(keep) != model.depth + 1:
        raise ValueError(f"keep needs one list per width entry ({model.depth + 1})")
    if any(len(k) == 0 for k in keep):
        raise ValueError("every layer must keep at least one node")
    keep = [sorted(int(n) for n in k) for k in keep]
    for e, k in enumerate(keep):
        if k[0] < 0 or k[-1] >= model.width_in[e] or len(set(k)) != len(k):
            raise ValueError(f"keep[{e}] must list distinct nodes in [0, {model.width_in[e]})")
    cfg = model.config()
    width, arities, subs = [], [], []
    for e, k in enumerate(keep):
        n_sum = model.width[e][0]
        sub, ar = _subnodes(model, e, k)
        width.append([sum(1 for n in k if n < n_sum), len(ar)])
        arities.append(ar)
        subs.append(sub)
    cfg["width"], cfg["mult_arity"] = width, arities
    cfg.pop("dtype")
    base = model.base_fun if model.base_fun_name == "custom" else model.base_fun_name
    new = type(model)(**{**cfg, "base_fun": base}, dtype=model.dtype, device=model.device)
    for l in range(model.depth):
        new.act_fun[l] = model.act_fun[l].get_subset(keep[l], subs[l + 1])
        new.symbolic_fun[l] = model.symbolic_fun[l].get_subset(keep[l], subs[l + 1])
    new.grid = [layer.num for layer in new.act_fun]
    new._cache_x = None if model._cache_x is None else model._cache_x[:, keep[0]]
    return new


@torch.no_grad()
def prune_by_spread(model, x: torch.Tensor, node_th: float = 1e-2, edge_th: float = 3e-2):
    """Drop hidden nodes and edges whose output spread is small relative to their layer's largest.

    Args:
        model: a KAN without multiplication nodes.
        x: data (batch, n_in) on which spreads are measured.
        node_th: a hidden node stays if its strongest incoming and outgoing edge spreads are both
            at least ``node_th`` times the largest edge spread of their layers.
        edge_th: a remaining edge stays if its spread is at least ``edge_th`` times the largest
            spread of its layer; a removed edge's mean moves into its node's bias.

    Returns:
        A new, smaller model (the original is unchanged).
    """
    stds, means, _ = edge_spread(model, x)
    top = [float(s.max()) if s.numel() else 0.0 for s in stds]
    if any(w[1] for w in model.width):  # products tie sub-nodes together: cut edges only
        new = model.copy()
        ins = [list(range(new.width_in[l])) for l in range(new.depth)]
        outs = [list(range(new.width_out[l + 1])) for l in range(new.depth)]
        _mask_weak(new, stds, means, top, ins, outs, edge_th)
        return new
    keep = [list(range(model.width_in[0]))]
    for l in range(1, model.depth):
        inc = stds[l - 1].max(0).values / max(top[l - 1], 1e-300)  # per node of entry l
        out = stds[l].max(1).values / max(top[l], 1e-300)
        ids = [n for n in range(model.width_in[l]) if inc[n] >= node_th and out[n] >= node_th]
        if not ids:  # keep the strongest node rather than an empty layer
            ids = [int(torch.argmax(torch.minimum(inc, out)))]
        keep.append(ids)
    keep.append(list(range(model.width_in[-1])))
    new = subset_model(model, keep)
    for l in range(model.depth):
        layer = new.act_fun[l]
        dropped = [i for i in range(model.width_in[l]) if i not in keep[l]]
        if dropped and layer.bias is not None:  # a dropped node's edges carry (nearly) constants
            layer.bias += means[l][dropped][:, keep[l + 1]].sum(0).to(layer.bias.dtype)
    _mask_weak(new, stds, means, top, keep[:-1], keep[1:], edge_th)
    return new


def _mask_weak(new, stds, means, top, ins, outs, edge_th):
    """Mask edges below ``edge_th`` of their layer's largest spread; fold their means into biases.

    ``ins[l]`` / ``outs[l]``: original indices of layer l's inputs / outputs kept in ``new``.
    """
    for l in range(new.depth):
        layer = new.act_fun[l]
        s = stds[l][ins[l]][:, outs[l]]
        m = means[l][ins[l]][:, outs[l]]
        weak = (s < edge_th * max(top[l], 1e-300)) & (layer.mask != 0)
        if not bool(weak.any()):
            continue
        if layer.bias is not None:
            layer.bias += (m * weak).sum(0).to(layer.bias.dtype)
        layer.mask[weak] = 0.0
        new.symbolic_fun[l].mask[weak.t()] = 0.0


@torch.no_grad()
def attribute(model, x: torch.Tensor, l: int | None = None, out_score=None):
    """pykan's backward attribution on data ``x``.

    Scores flow from the outputs (score 1 each, or ``out_score``) back to the inputs: an edge's
    score is its output spread over the spread of the sub-node it feeds, times that sub-node's
    score; a node's score is the sum of its outgoing edges' scores; a product passes its score
    to each factor. With ``l`` the flow starts at width entry ``l`` instead of the outputs.

    Returns ``(node_scores_all, edge_scores_all, subnode_scores_all)``: per entry (k, nodes),
    per layer (k, out, in) and per layer (k, subnodes), k indexing the starting nodes.
    """
    if x.shape[0] < 2:
        raise ValueError(f"attribution needs at least 2 samples (scores are spreads over the "
                         f"data), got {x.shape[0]}")
    acts = model.layer_inputs(x)
    edge_scale, sub_scale = [], []
    for q in range(model.depth):
        a = model.act_fun[q].activations(acts[q])
        sub = model.act_fun[q](acts[q])
        if model.symbolic_fun[q].is_active():
            a = a + model.symbolic_fun[q].activations(acts[q])
            sub = sub + model.symbolic_fun[q](acts[q])
        edge_scale.append(a.std(0).t())  # (out, in)
        sub_scale.append(sub.std(0))
    l_end = model.depth if l is None else int(l)
    dim = model.width_in[l_end]
    dev, dt = acts[0].device, acts[0].dtype
    if out_score is None:
        score = torch.eye(dim, device=dev, dtype=dt)
    else:
        score = torch.diag(torch.as_tensor(out_score, device=dev, dtype=dt).reshape(-1))
        if score.shape[0] != dim:
            raise ValueError(f"out_score needs {dim} entries, got {score.shape[0]}")
    nodes, edges, subs = [score], [], []
    for q in range(l_end, 0, -1):
        n_sum = model.width[q][0]
        parts = [score[:, :n_sum]]
        for m, a in enumerate(model._arity[q]):
            parts.append(score[:, n_sum + m : n_sum + m + 1].expand(-1, a))
        sub_score = torch.cat(parts, 1)
        edge = edge_scale[q - 1][None] * (sub_score / (sub_scale[q - 1] + 1e-4))[:, :, None]
        score = edge.sum(1)
        subs.append(sub_score)
        edges.append(edge)
        nodes.append(score)
    return nodes[::-1], edges[::-1], subs[::-1]


class PruneMixin:
    """pykan's attribution and pruning API on :class:`kanlab.KAN`.

    Scores are computed on ``x`` or, by default, the training inputs of the last fit. Pruning
    never changes the model it is called on: ``prune``/``prune_node``/``prune_input`` return a
    new, smaller model computing what the original computes with the removed parts masked.
    """

    def _prune_data(self, x):
        return self._check_x(self._data(x, "attribution"))

    def attribute(self, l: int | None = None, i: int | None = None, out_score=None,
                  plot: bool = False, x=None):
        """Fill ``node_scores``, ``edge_scores``, ``subnode_scores`` (pykan's meaning).

        ``node_scores[e]`` (nodes of width entry e), ``edge_scores[l]`` (out, in) and
        ``subnode_scores[l]`` are averaged over the outputs; the ``*_all`` lists keep one row per
        output. With ``l`` the scores of width entry ``l``'s nodes (each starting from its own
        score) are traced back to the inputs and returned, one row per node (``[i]`` for node
        i); ``plot`` draws that row as bars.
        """
        data = self._prune_data(x)
        if l is not None:
            if not isinstance(l, int) or not 0 <= l <= self.depth:
                raise ValueError(f"l must be a width entry index in [0, {self.depth}], got {l!r}")
        if l is not None:  # as pykan: start from the nodes' own (output-traced) scores
            full = attribute(self, data)[0]
            out_score = full[l].mean(0)
        nodes, edges, subs = attribute(self, data, l=l, out_score=out_score)
        if l is not None:
            res = nodes[0] if i is None else nodes[0][i]
            if plot and i is not None:
                import matplotlib.pyplot as plt

                fig, ax = plt.subplots(figsize=(max(2, self.width_in[0]), 3))
                ax.bar(range(self.width_in[0]), res.cpu().numpy())
                ax.set_xticks(range(self.width_in[0]))
                ax.set_title(f"attribution of node {i} of entry {l}")
            return res
        self.node_scores_all, self.edge_scores_all, self.subnode_scores_all = nodes, edges, subs
        self.node_scores = [s.mean(0) for s in nodes]
        self.edge_scores = [s.mean(0) for s in edges]
        self.subnode_scores = [s.mean(0) for s in subs]
        return None

    @property
    def feature_score(self) -> torch.Tensor:
        """Attribution score of every input (computed on demand)."""
        if getattr(self, "node_scores", None) is None:
            self.attribute()
        return self.node_scores[0]

    def remove_edge(self, l: int, i: int, j: int, log_history: bool = True) -> None:
        """Switch off edge i -> j of layer l (numeric and symbolic branch)."""
        self._check_edge(l, i, j)
        with torch.no_grad():
            self.act_fun[l].mask[i, j] = 0.0
            self.symbolic_fun[l].mask[j, i] = 0.0
        self.node_scores = None

    def remove_node(self, l: int, i: int, mode: str = "all", log_history: bool = True) -> None:
        """Switch off the edges of node i of width entry l: ``"up"`` its outgoing edges (i is a
        node), ``"down"`` its incoming edges (i is a sub-node), ``"all"`` both."""
        if mode not in ("all", "up", "down"):
            raise ValueError(f"mode must be 'all', 'up' or 'down', got {mode!r}")
        with torch.no_grad():
            if mode in ("down", "all") and l >= 1:
                self.act_fun[l - 1].mask[:, i] = 0.0
                self.symbolic_fun[l - 1].mask[i, :] = 0.0
            if mode in ("up", "all") and l < self.depth:
                self.act_fun[l].mask[i, :] = 0.0
                self.symbolic_fun[l].mask[:, i] = 0.0
        self.node_scores = None

    def prune_edge(self, threshold: float = 3e-2, log_history: bool = True, x=None) -> None:
        """Switch off (in place) every edge whose attribution score is below ``threshold``."""
        self.attribute(x=x)
        with torch.no_grad():
            for l in range(self.depth):
                weak = (self.edge_scores[l] < threshold).t()  # (in, out)
                self.act_fun[l].mask[weak] = 0.0
                self.symbolic_fun[l].mask[weak.t()] = 0.0
        self.node_scores = None

    def prune_node(self, threshold: float = 1e-2, mode: str = "auto", active_neurons_id=None,
                   log_history: bool = True, x=None):
        """A new model without the hidden nodes scoring below ``threshold`` (or, with
        ``active_neurons_id``, keeping exactly the listed nodes of each hidden entry)."""
        if active_neurons_id is not None:
            mode = "manual"
        if mode not in ("auto", "manual"):
            raise ValueError(f"mode must be 'auto' or 'manual', got {mode!r}")
        keep = [list(range(self.width_in[0]))]
        if mode == "auto":
            self.attribute(x=x)
            for e in range(1, self.depth):
                ids = (self.node_scores[e] > threshold).nonzero().flatten().tolist()
                keep.append(ids or [int(torch.argmax(self.node_scores[e]))])
        else:
            if len(active_neurons_id) != self.depth - 1:
                raise ValueError(f"active_neurons_id needs one list per hidden entry ({self.depth - 1})")
            keep += [list(ids) for ids in active_neurons_id]
        keep.append(list(range(self.width_in[-1])))
        return subset_model(self, keep)

    def prune_input(self, threshold: float = 1e-2, active_inputs=None, log_history: bool = True,
                    x=None):
        """A new model without the inputs whose attribution score is below ``threshold`` (or
        keeping exactly ``active_inputs``)."""
        if active_inputs is None:
            self.attribute(x=x)
            ids = (self.node_scores[0] > threshold).nonzero().flatten().tolist()
            ids = ids or [int(torch.argmax(self.node_scores[0]))]
        else:
            ids = [int(v) for v in active_inputs]
        keep = [ids] + [list(range(n)) for n in self.width_in[1:]]
        return subset_model(self, keep)

    def prune(self, node_th: float = 1e-2, edge_th: float = 3e-2, x=None):
        """pykan's prune: drop weak hidden nodes, then switch off weak edges of the result."""
        data = self._prune_data(x)
        new = self.prune_node(node_th, x=data)
        new.prune_edge(edge_th, x=data)
        return new
