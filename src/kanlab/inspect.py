"""How much of each edge is the base function and how much the spline.

Edge i -> j of layer l computes ``base + spline`` with ``base = mask*scale_base*b(x_i)`` and
``spline = mask*scale_sp*spline(x_i)``. On data, each part's spread (standard deviation over the
samples) says how much of the edge's variation it carries; ``spline_share = std(spline) /
(std(base) + std(spline))`` is 0 when the base path does everything (the edge is an MLP unit) and
1 when the spline does. A layer's share weighs its edges by their spreads.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import torch

__all__ = ["Contributions", "contributions", "layer_spline_shares"]

_FIELDS = ["layer", "i", "j", "mode", "base_std", "spline_std", "total_std", "spline_share",
           "base_share"]
_LAYER_FIELDS = ["layer", "edges", "base_std", "spline_std", "spline_share", "base_share"]


@dataclass
class Contributions:
    """Tidy tables of base vs spline contributions.

    Attributes:
        edges: one dict per edge with keys layer, i, j, mode ('n', 's', 'sn' or 'off'),
            base_std, spline_std, total_std, spline_share, base_share (shares are NaN for
            edges that are off or purely symbolic, or whose parts are both constant).
        layers: one dict per layer: layer, edges (numeric edges counted), base_std and
            spline_std (sums over those edges), spline_share, base_share.
    """

    edges: list
    layers: list

    def to_csv(self, path=None, table: str = "edges") -> str:
        """CSV text of the ``edges`` or ``layers`` table; also written to ``path`` if given."""
        rows, fields = (self.edges, _FIELDS) if table == "edges" else (self.layers, _LAYER_FIELDS)
        if table not in ("edges", "layers"):
            raise ValueError(f"table must be 'edges' or 'layers', got {table!r}")
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        text = buf.getvalue()
        if path is not None:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        return text

    def to_markdown(self, table: str = "layers") -> str:
        """Markdown table of ``layers`` (default) or ``edges``."""
        if table not in ("edges", "layers"):
            raise ValueError(f"table must be 'edges' or 'layers', got {table!r}")
        rows, fields = (self.edges, _FIELDS) if table == "edges" else (self.layers, _LAYER_FIELDS)
        out = ["| " + " | ".join(fields) + " |", "|" + " --- |" * len(fields)]
        for r in rows:
            out.append("| " + " | ".join(_fmt(r[f]) for f in fields) + " |")
        return "\n".join(out)

    def __repr__(self) -> str:
        return self.to_markdown("layers")


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def _share(a: float, b: float) -> float:
    s = a + b
    return b / s if s > 0 else math.nan


@torch.no_grad()
def contributions(model, x) -> Contributions:
    """Base vs spline spread of every edge of ``model`` on data ``x`` (batch, n_in)."""
    x = model._check_x(x)
    if x.shape[0] < 2:
        raise ValueError("contributions() needs at least 2 samples to measure spreads")
    edges, layers = [], []
    acts = model.layer_inputs(x)
    for l, layer in enumerate(model.act_fun):
        _, base, spline = layer.activations(acts[l], parts=True)
        bstd = base.std(0).double().cpu()
        sstd = spline.std(0).double().cpu()
        nmask = (layer.mask != 0).cpu()
        smask = (model.symbolic_fun[l].mask != 0).t().cpu()
        tb = ts = 0.0
        count = 0
        for i in range(layer.in_dim):
            for j in range(layer.out_dim):
                n_on, s_on = bool(nmask[i, j]), bool(smask[i, j])
                mode = "sn" if n_on and s_on else "n" if n_on else "s" if s_on else "off"
                b, s = float(bstd[i, j]), float(sstd[i, j])
                if not n_on:
                    b = s = 0.0
                share = _share(b, s) if n_on else math.nan
                edges.append(dict(layer=l, i=i, j=j, mode=mode, base_std=b, spline_std=s,
                                  total_std=float((base[:, i, j] + spline[:, i, j]).std()) if n_on else 0.0,
                                  spline_share=share,
                                  base_share=1 - share if not math.isnan(share) else math.nan))
                if n_on:
                    tb, ts, count = tb + b, ts + s, count + 1
        share = _share(tb, ts)
        layers.append(dict(layer=l, edges=count, base_std=tb, spline_std=ts, spline_share=share,
                           base_share=1 - share if not math.isnan(share) else math.nan))
    return Contributions(edges, layers)


@torch.no_grad()
def layer_spline_shares(model, x) -> list[float]:
    """Spline share of every layer on ``x`` (cheap: no per-edge Python loop)."""
    acts = model.layer_inputs(x)
    out = []
    for l, layer in enumerate(model.act_fun):
        _, base, spline = layer.activations(acts[l], parts=True)
        on = layer.mask != 0
        b = float(base.std(0)[on].sum())
        s = float(spline.std(0)[on].sum())
        out.append(_share(b, s))
    return out
