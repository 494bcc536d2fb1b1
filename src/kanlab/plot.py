"""Figures: the network diagram, single edges, training curves and base-vs-spline shares.

Everything here draws with matplotlib (an optional dependency: ``pip install kanlab[plot]``),
returns the :class:`matplotlib.figure.Figure` and writes a file only when ``path`` is given (the
format follows the suffix: ``.png``, ``.svg``, ``.pdf``). Figures are made with the object API
(no pyplot state), so they work headless and are not shown or kept alive behind the caller's back.

The diagram (:func:`plot_model`, also ``model.plot()``) puts the inputs at the bottom and the
outputs at the top, as pykan does. Between two rows of nodes, every edge i -> j gets a small box
showing its learned curve over the range of its input on the data; the lines node i -> box ->
node j and the curve itself are drawn with opacity ``tanh(beta * importance)``. Numeric edges are
black, symbolic edges red with their function name, edges that are both (mode 'sn') purple.
Multiplication nodes are drawn as squares fed by their sub-nodes.

Each box is placed near the middle of its two end nodes, so its lines stay short. The figure
grows with the widest layer and the depth (boxes keep ``scale`` inches up to a 16-inch-wide
figure, and the rows open up so the figure is never flatter than 3:1). A layer with more than
``max_boxes`` edges (a wide model, e.g. 10 inputs into 21 hidden nodes: 210 edges) boxes only its
most important ones and draws the rest as plain lines faded by importance, saying so under the
figure. The single-edge figure is in :mod:`kanlab.plot_edge`, the training figures in
:mod:`kanlab.plot_history`; all are importable from here.
"""
from __future__ import annotations

import logging
import math
import re

import torch

__all__ = ["plot_model", "plot_edge", "plot_history", "plot_shares", "symbolic_label"]

logger = logging.getLogger(__name__)

_NUMERIC, _SYMBOLIC, _BOTH = "black", "tab:red", "tab:purple"


def _mpl():
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - exercised only without matplotlib
        raise ImportError("plotting needs matplotlib: pip install 'kanlab[plot]' "
                          "(or pip install matplotlib)") from None
    return matplotlib, Figure


def _finish(fig, path, dpi):
    if path is not None:
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return fig


def _edge_data(model, x):
    """Data to draw on: ``x``, the last fit's inputs, or a uniform sample of the grid range."""
    if isinstance(x, dict) or x is not None or getattr(model, "_cache_x", None) is not None:
        return model._check_x(model._data(x, "plot()"))
    lo, hi = model.grid_range
    gen = torch.Generator().manual_seed(0)
    n_in = model.width_in[0]
    u = torch.rand(512, n_in, generator=gen, dtype=torch.float64)
    return (lo + (hi - lo) * u).to(dtype=model.dtype, device=model.device)


@torch.no_grad()
def _curves(model, acts, n_points):
    """For every layer: input grid (in, P) and curves (in, out, P) of the total edge function."""
    out = []
    for l in range(model.depth):
        a = acts[l]
        lo, hi = a.min(0).values, a.max(0).values
        span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
        t = torch.linspace(0, 1, n_points, dtype=a.dtype, device=a.device)
        xs = (lo[:, None] + span[:, None] * t[None, :]).t().contiguous()  # (P, in)
        layer, sym = model.act_fun[l], model.symbolic_fun[l]
        y = layer.activations(xs)  # (P, in, out), masked numeric part
        if sym.is_active():
            y = y + sym.activations(xs)
        out.append((xs.t().cpu(), y.permute(1, 2, 0).cpu()))
    return out


@torch.no_grad()
def _importance(model, data, metric):
    """Per layer (in, out) edge importance, with pykan's meanings (not normalized).

    'backward': the attribution edge scores; 'forward_u': the spread (std) of the edge's output
    on the data; 'forward_n': that spread divided by the spread of the edge's input.
    """
    if metric == "backward":
        model.attribute(x=data)
        return [s.t().detach().cpu() for s in model.edge_scores]
    acts = model.layer_inputs(data)
    res = []
    for l in range(model.depth):
        total = model.act_fun[l].activations(acts[l])
        if model.symbolic_fun[l].is_active():
            total = total + model.symbolic_fun[l].activations(acts[l])
        s = total.std(0).cpu() if total.shape[0] > 1 else torch.zeros(total.shape[1:])
        if metric == "forward_n":
            s = s / acts[l].std(0).cpu().clamp_min(1e-12)[:, None]
        res.append(s)
    return res


def _modes(model, l):
    """(in, out) list of 'n', 's', 'sn' or 'off'."""
    num = (model.act_fun[l].mask != 0).cpu()
    sym = (model.symbolic_fun[l].mask != 0).t().cpu()
    n_in, n_out = num.shape
    return [["sn" if num[i, j] and sym[i, j] else "n" if num[i, j] else "s" if sym[i, j] else "off"
             for j in range(n_out)] for i in range(n_in)]


# Diagram layout, in units of one edge box (1 unit = ``scale`` inches, shrunk for a figure wider
# than _MAX_W_IN). A band holds at most _PER_ROW boxes in a row; more stagger over sub-rows.
_PER_ROW, _BOX_W, _BOX_GAP, _BOX_H, _SUB_GAP, _ROW_GAP = 22, 1.0, 0.35, 0.9, 0.3, 2.3
_MAX_W_IN, _MAX_ASPECT = 16.0, 3.0  # widest figure (inches), widest width : height


class _Layout:
    """Where everything of the diagram goes: node rows, edge boxes, sub-nodes, figure size."""

    def __init__(self, model, boxed, scale, title, label_len, varscale, n_notes):
        self.model, self.depth = model, model.depth
        w_in = model.width_in
        self.n_boxes = [len(b) for b in boxed]
        self.sub_rows = [max(1, math.ceil(n / _PER_ROW)) for n in self.n_boxes]
        node_pitch = 1.6 if max(w_in) <= 12 else 1.35
        row = max([math.ceil(n / r) for n, r in zip(self.n_boxes, self.sub_rows)] + [0])
        self.W = max(row * (_BOX_W + _BOX_GAP), max(w_in) * node_pitch, 3.0)
        self.bands = [r * _BOX_H + (r - 1) * _SUB_GAP for r in self.sub_rows]
        self.has_mult = any(model._arity[l + 1] for l in range(self.depth))
        s = scale
        if (self.W + 0.4) * s > _MAX_W_IN:
            s = _MAX_W_IN / (self.W + 0.4)
        self.s = s
        # input names: turned when they would run into each other at this size
        fs, text_w = 11 * varscale, label_len * 11 * varscale * 0.6 / 72  # inches
        self.rotate = text_w > 0.92 * s * self.W / w_in[0]
        label_h = (text_w * 0.57 + fs / 72 * 0.82) if self.rotate else fs * 1.25 / 72
        notes_h = n_notes * 8 * 1.4 / 72 + (0.1 if n_notes else 0.0)
        self.y_lo = min(-1.2, -0.45 - (label_h + notes_h + 0.1) / s)
        gap = _ROW_GAP
        for _ in range(2):  # open the rows up until the figure is no flatter than _MAX_ASPECT
            self.y_rows = [0.0]
            for l in range(self.depth):
                self.y_rows.append(self.y_rows[-1] + self.bands[l] + gap)
            h_units = self.y_rows[-1] + 1.2 - self.y_lo
            want = (self.W + 0.4) / _MAX_ASPECT
            if h_units >= want:
                break
            gap = min(gap + (want - h_units) / self.depth, 3 * _ROW_GAP)
        self.y_hi = self.y_rows[-1] + 1.2
        self.x_lo, self.x_hi = -0.2, self.W + 0.2
        if (self.x_hi - self.x_lo) * s < 4.0:  # a narrow network still gets a 4-inch figure
            pad = (4.0 / s - (self.x_hi - self.x_lo)) / 2
            self.x_lo, self.x_hi = self.x_lo - pad, self.x_hi + pad
        top = 0.45 if title else 0.0
        ax_h = (self.y_hi - self.y_lo) * s
        self.size = ((self.x_hi - self.x_lo) * s, ax_h + top)
        self.rect = (0.0, 0.0, 1.0, ax_h / (ax_h + top))

    def node_x(self, n, count):
        return (n + 0.5) * self.W / count

    def sub_x(self, e, j):
        """x of sub-node j of width entry e: under its node (spread around a product node)."""
        model = self.model
        arity, n_sum, w_in = model._arity[e], model.width[e][0], model.width_in
        if not arity or j < n_sum:
            return self.node_x(j, w_in[e])
        m = _mult_owner(arity, j - n_sum)
        first = n_sum + sum(arity[:m])
        spacing = min(0.8, self.W / w_in[e] / (arity[m] + 0.5))
        return self.node_x(n_sum + m, w_in[e]) + (j - first - (arity[m] - 1) / 2) * spacing

    def y_sub(self, l):
        """Height of the row of sub-nodes that layer l's edges end at."""
        return self.y_rows[l + 1] - (0.55 if self.has_mult and self.model._arity[l + 1] else 0.0)

    def boxes(self, l, boxed):
        """{(i, j): (x, y, width)} of layer l's boxed edges. Each box sits as near the middle
        of its two ends as the others let it (sorted by that middle, at least a box apart in its
        sub-row), so the lines node -> box -> node stay short."""
        nb, n_sub = self.n_boxes[l], self.sub_rows[l]
        if not nb:
            return {}
        w_in = self.model.width_in
        mid = {e: (self.node_x(e[0], w_in[l]) + self.sub_x(l + 1, e[1])) / 2 for e in boxed}
        order = sorted(boxed, key=lambda e: (mid[e], e))
        if n_sub == 1:
            bw, step = _BOX_W, _BOX_W + _BOX_GAP
        else:
            bw = min(_BOX_W, n_sub * self.W / nb - 0.15)
            step = min((bw + _BOX_GAP) / n_sub, self.W / nb)
        lo, hi = bw / 2, self.W - bw / 2
        if (nb - 1) * step > hi - lo:  # no room to spare: even slots over the whole width
            step = (hi - lo) / max(nb - 1, 1)
        want = [mid[e] for e in order]
        push_r = _pack(want, step, lo, hi)  # crowded boxes pushed right, then left ...
        push_l = [-v for v in _pack([-v for v in want[::-1]], step, -hi, -lo)][::-1]
        xc = [(a + b) / 2 for a, b in zip(push_r, push_l)]  # ... and the two averaged
        band_lo = (self.y_rows[l] + self.y_rows[l + 1]) / 2 - self.bands[l] / 2
        return {e: (xc[k] - bw / 2, band_lo + (k % n_sub) * (_BOX_H + _SUB_GAP), bw)
                for k, e in enumerate(order)}


def _pack(want, step, lo, hi):
    """Positions as near ``want`` (sorted) as they can be while at least ``step`` apart and in
    [lo, hi]: each pushed right past the one before, then the last ones pulled back inside."""
    x = []
    for v in want:
        x.append(max(v, lo, x[-1] + step if x else lo))
    for k in range(len(x) - 1, -1, -1):
        x[k] = min(x[k], hi if k == len(x) - 1 else x[k + 1] - step)
    return x


def _select(model, l, alpha, modes, show_off, max_boxes):
    """(edges drawn with their curve, edges drawn as a plain line) of layer l: every edge when
    there are at most ``max_boxes``, else the ``max_boxes`` most important ones."""
    edges = [(i, j) for i in range(model.width_in[l]) for j in range(model.width_out[l + 1])
             if show_off or modes[i][j] != "off"]
    if max_boxes is None or len(edges) <= max_boxes:
        return edges, []
    ranked = sorted(edges, key=lambda e: (-alpha[e[0]][e[1]], e))
    keep = set(ranked[:max_boxes])
    return [e for e in edges if e in keep], [e for e in edges if e not in keep]


def plot_model(model, x=None, beta: float = 3.0, metric: str = "backward", scale: float = 0.5,
               in_vars=None, out_vars=None, title=None, path=None, dpi: int = 150,
               n_points: int = 64, show_off: bool = False, sample: bool = False, tick: bool = False,
               varscale: float = 1.0, folder=None, max_boxes: int | None = 44):
    """Draw the network with every edge's learned curve; see the module docstring.

    Args:
        x: data (batch, n_in) or a dataset dict; default the last fit's inputs, else a uniform
            sample of the grid range. Curves are drawn over each edge's input range on it.
        beta: opacity sharpness, ``alpha = tanh(beta * importance)``.
        metric: importance of an edge: 'backward' (attribution scores, pykan's default),
            'forward_u' (spread of the edge's output) or 'forward_n' (that spread over the spread
            of its input).
        scale: inches per edge box (pykan's meaning: larger draws a bigger figure); a figure
            wider than 16 inches is drawn smaller.
        in_vars, out_vars: names for the inputs and outputs (strings, LaTeX allowed in $...$).
        title: figure title.
        path: save the figure there (format from the suffix).
        show_off: also draw switched-off edges (faint, dashed), default False.
        sample: overlay the data points on each curve.
        tick: draw the input range under each edge box.
        varscale: size factor for the variable names.
        folder: accepted for pykan scripts; kanlab writes no per-edge image files, so it is
            ignored (use ``path``).
        max_boxes: a layer with more edges draws only its ``max_boxes`` most important ones
            with their curve and the others as plain lines i -> j (faded by importance, the
            faintest left out), with a note under the figure; None draws every box.
    Returns:
        The matplotlib Figure.
    """
    _, Figure = _mpl()
    if metric not in ("backward", "forward_u", "forward_n"):
        raise ValueError(f"metric must be 'backward', 'forward_u' or 'forward_n', got {metric!r}")
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    if max_boxes is not None and max_boxes < 1:
        raise ValueError(f"max_boxes must be >= 1 or None, got {max_boxes}")
    if folder is not None:
        logger.info("plot(folder=...) is ignored: kanlab writes no per-edge images; use path=")
    n_in, n_out = model.width_in[0], model.width_in[-1]
    in_vars = _names(in_vars, n_in, "x", "in_vars")
    out_vars = _names(out_vars, n_out, "y", "out_vars")

    data = _edge_data(model, x)
    acts = model.layer_inputs(data)
    curves = _curves(model, acts, n_points)
    imp = _importance(model, data, metric)
    depth = model.depth
    modes = [_modes(model, l) for l in range(depth)]
    alpha = [[[math.tanh(beta * float(imp[l][i, j])) if modes[l][i][j] != "off" else 0.0
               for j in range(model.width_out[l + 1])] for i in range(model.width_in[l])]
             for l in range(depth)]
    picked = [_select(model, l, alpha[l], modes[l], show_off, max_boxes) for l in range(depth)]
    notes = [f"layer {l}: the {len(b)} most important of {len(b) + len(ln)} edges are drawn "
             "with their curve, the others as plain lines (opacity: importance)"
             for l, (b, ln) in enumerate(picked) if ln]
    lay = _Layout(model, [b for b, _ in picked], scale, title,
                  max(len(_plain(v)) for v in in_vars), varscale, len(notes))
    fig = Figure(figsize=lay.size)
    ax = fig.add_axes(lay.rect)
    ax.set_axis_off()
    opts = dict(sample=sample, tick=tick, varscale=varscale, scale=scale)
    for l in range(depth):
        _draw_layer(ax, model, l, lay, picked[l], alpha[l], modes[l], curves[l], acts[l], opts)
    _draw_labels(ax, model, lay, in_vars, out_vars, varscale, notes)
    if title:
        ax.set_title(title, fontsize=13 * varscale)
    ax.set_xlim(lay.x_lo, lay.x_hi)
    ax.set_ylim(lay.y_lo, lay.y_hi)
    return _finish(fig, path, dpi)


def _plain(name: str) -> str:
    """A label's visible characters, roughly: LaTeX commands and braces left out."""
    return re.sub(r"\\[A-Za-z]+|[{}$^_]", "", name) or name


def _draw_layer(ax, model, l, lay, picked, alpha, modes, curve, act, opts):
    """Layer l's edges (boxes with their curve, or plain lines), its input nodes and the
    sub-nodes that feed the next row's product nodes."""
    boxed, lined = picked
    y0, y_sub = lay.y_rows[l], lay.y_sub(l)
    w_in = model.width_in
    for i, j in lined:  # the less important edges of a wide layer: node -> node, faded
        a = 0.5 * alpha[i][j]
        if a >= 0.03:
            colour = {"n": "0.3", "s": _SYMBOLIC, "sn": _BOTH, "off": "0.6"}[modes[i][j]]
            ax.plot([lay.node_x(i, w_in[l]), lay.sub_x(l + 1, j)], [y0, y_sub], color=colour,
                    alpha=a, lw=0.6, zorder=1)
    xs, ys = curve
    where = lay.boxes(l, boxed)
    for i, j in boxed:
        mode = modes[i][j]
        bx, y_box, bw = where[(i, j)]
        colour = {"n": _NUMERIC, "s": _SYMBOLIC, "sn": _BOTH, "off": "0.6"}[mode]
        a_line = max(alpha[i][j], 0.04) if mode != "off" else 0.15
        ls = "--" if mode == "off" else "-"
        ax.plot([lay.node_x(i, w_in[l]), bx + bw / 2], [y0, y_box], color=colour, alpha=a_line,
                lw=0.8, ls=ls, zorder=1)
        ax.plot([bx + bw / 2, lay.sub_x(l + 1, j)], [y_box + _BOX_H, y_sub], color=colour,
                alpha=a_line, lw=0.8, ls=ls, zorder=1)
        ax.add_patch(_rect(bx, y_box, bw, _BOX_H, colour, a_line))
        if mode == "off":  # a switched-off edge has no curve to show: the box stays empty
            continue
        cx, cy = xs[i], ys[i, j]
        px, py = _fit_box(cx, cy, bx, y_box, bw, _BOX_H)
        a_curve = max(alpha[i][j], 0.08)
        ax.plot(px, py, color=colour, alpha=a_curve, lw=1.2, zorder=4)
        if opts["sample"]:
            idx = torch.arange(act.shape[0])[: min(200, act.shape[0])]
            qx, qy = _fit_box(cx, cy, bx, y_box, bw, _BOX_H, act[idx, i].cpu(),
                              _edge_at(model, l, i, j, act[idx]))
            ax.scatter(qx, qy, s=2, color=colour, alpha=a_curve * 0.6, zorder=4)
        if mode in ("s", "sn"):
            ax.text(bx + bw / 2, y_box + _BOX_H + 0.08, model.symbolic_fun[l].funs_name[j][i],
                    ha="center", va="bottom", fontsize=7 * opts["varscale"], color=colour,
                    alpha=max(alpha[i][j], 0.3), zorder=6,
                    bbox=dict(facecolor="white", edgecolor="none", pad=0.3))
        if opts["tick"]:
            ax.text(bx, y_box - 0.05, f"{float(cx[0]):.2g}", ha="left", va="top", fontsize=5)
            ax.text(bx + bw, y_box - 0.05, f"{float(cx[-1]):.2g}", ha="right", va="top",
                    fontsize=5)
    node_kw = dict(s=60 * opts["scale"] * 2, zorder=5, edgecolors="black", linewidths=0.8)
    for i in range(w_in[l]):
        is_mult = l > 0 and model._arity[l] and i >= model.width[l][0]
        ax.scatter([lay.node_x(i, w_in[l])], [y0], marker="s" if is_mult else "o",
                   c="white" if is_mult else "black", **node_kw)
    if lay.has_mult and model._arity[l + 1]:  # sub-nodes feeding the next row's products
        n_sum = model.width[l + 1][0]
        for j in range(model.width_out[l + 1]):
            xj = lay.sub_x(l + 1, j)
            ax.scatter([xj], [y_sub], s=12 * opts["scale"] * 2, c="black", zorder=5)
            target = j if j < n_sum else n_sum + _mult_owner(model._arity[l + 1], j - n_sum)
            ax.plot([xj, lay.node_x(target, w_in[l + 1])], [y_sub, lay.y_rows[l + 1]],
                    color="black", lw=0.6, alpha=0.6)
    if l == model.depth - 1:  # the output row
        for j in range(w_in[-1]):
            is_mult = model._arity[l + 1] and j >= model.width[l + 1][0]
            ax.scatter([lay.node_x(j, w_in[-1])], [lay.y_rows[-1]], marker="s" if is_mult else "o",
                       c="white" if is_mult else "black", **node_kw)


def _draw_labels(ax, model, lay, in_vars, out_vars, varscale, notes):
    """Input names under the bottom row (turned when they would collide), output names above
    the top row, and the notes on boxes left out at the very bottom."""
    fs = 11 * varscale
    n_in, n_out = model.width_in[0], model.width_in[-1]
    rot = dict(rotation=35, ha="right", rotation_mode="anchor") if lay.rotate else dict(ha="center")
    for i, name in enumerate(in_vars):
        ax.text(lay.node_x(i, n_in), -0.45, name, va="top", fontsize=fs, **rot)
    for j, name in enumerate(out_vars):
        ax.text(lay.node_x(j, n_out), lay.y_rows[-1] + 0.45, name, ha="center", va="bottom",
                fontsize=fs)
    if notes:
        ax.text(lay.x_lo + 0.1, lay.y_lo + 0.05, "\n".join(notes), ha="left", va="bottom",
                fontsize=8, color="0.35")


def _axes(ax, Figure, size):
    """(figure, axes): a new figure of ``size`` inches, or the given axes and its figure."""
    if ax is None:
        fig = Figure(figsize=size)
        return fig, fig.add_subplot(1, 1, 1)
    return ax.figure, ax


def _names(names, n, prefix, what):
    if names is None:
        return [f"${prefix}_{{{i + 1}}}$" for i in range(n)]
    names = [str(v) for v in names]
    if len(names) != n:
        raise ValueError(f"{what} has {len(names)} names but the model has {n}")
    return names


def _mult_owner(arity, k):
    """Index of the multiplication node that sub-node k (counted among mult sub-nodes) feeds."""
    start = 0
    for m, a in enumerate(arity):
        if k < start + a:
            return m
        start += a
    raise IndexError(k)


def _rect(x, y, w, h, colour, alpha):
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Rectangle

    # white face hides the lines of other edges running behind the box
    return Rectangle((x, y), w, h, facecolor="white", edgecolor=(*to_rgb(colour), min(1.0, alpha + 0.1)),
                     lw=0.6, zorder=3)


def _fit_box(cx, cy, bx, by, bw, bh, qx=None, qy=None):
    """Map curve points (and optional extra points) into the box, with a small margin."""
    x0, x1 = float(cx.min()), float(cx.max())
    y0, y1 = float(cy.min()), float(cy.max())
    sx = (x1 - x0) or 1.0
    sy = (y1 - y0) or 1.0
    m = 0.1
    def tx(v):
        return bx + bw * (m + (1 - 2 * m) * (v - x0) / sx)

    def ty(v):
        if y1 == y0:
            return by + bh / 2 + 0 * v
        return by + bh * (m + (1 - 2 * m) * (v - y0) / sy)

    if qx is None:
        return tx(cx.numpy()), ty(cy.numpy())
    return tx(qx.numpy()), ty(qy.numpy())


@torch.no_grad()
def _edge_at(model, l, i, j, a):
    """Total output of edge i -> j of layer l on layer inputs ``a`` (batch, in): (batch,)."""
    layer, sym = model.act_fun[l], model.symbolic_fun[l]
    ii = torch.tensor([i], device=a.device)
    jj = torch.tensor([j], device=a.device)
    v = layer.edge_values(a, ii, jj)[:, 0]
    if sym.is_active() and float(sym.mask[j, i]) != 0:
        v = v + sym.activations(a)[:, i, j]
    return v.cpu()


# the single-edge and training figures live in their own modules; importable from here too
from .plot_edge import plot_edge, symbolic_label  # noqa: E402
from .plot_history import plot_history, plot_shares  # noqa: E402
