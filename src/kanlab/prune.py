"""Pruning by edge spread: keep the nodes and edges that carry signal on the data.

A minimal, exact-bookkeeping pruner used by the discovery pipeline: an edge's importance is the
standard deviation of its output on the data (what pykan's regularizer drives to zero); a hidden
node survives when its strongest incoming and strongest outgoing edges both matter. Removed
edges are replaced by their mean on the data, folded into the bias of the node they fed, so the
pruned model stays close to the original before any retraining.
"""
from __future__ import annotations

import torch

__all__ = ["subset_model", "prune_by_spread", "edge_spread"]


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


@torch.no_grad()
def subset_model(model, keep: list[list[int]]):
    """A new model keeping, for every width entry, the node indices in ``keep[l]``.

    Only models without multiplication nodes can be cut this way (products tie sub-nodes
    together); inputs and outputs may be cut too.
    """
    from .model import KAN

    if any(w[1] for w in model.width):
        raise ValueError("subset_model() does not cut models with multiplication nodes")
    if len(keep) != model.depth + 1:
        raise ValueError(f"keep needs one list per width entry ({model.depth + 1})")
    cfg = model.config()
    cfg["width"] = [[len(k), 0] for k in keep]
    if any(len(k) == 0 for k in keep):
        raise ValueError("every layer must keep at least one node")
    cfg["mult_arity"] = [[] for _ in keep]
    cfg.pop("dtype")
    base = model.base_fun if model.base_fun_name == "custom" else model.base_fun_name
    new = KAN(**{**cfg, "base_fun": base}, dtype=model.dtype, device=model.device)
    for l in range(model.depth):
        new.act_fun[l] = model.act_fun[l].get_subset(keep[l], keep[l + 1])
        new.symbolic_fun[l] = model.symbolic_fun[l].get_subset(keep[l], keep[l + 1])
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
