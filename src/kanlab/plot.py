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
"""
from __future__ import annotations

import logging
import math

import torch

__all__ = ["plot_model", "plot_edge", "plot_history", "plot_shares"]

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


def plot_model(model, x=None, beta: float = 3.0, metric: str = "backward", scale: float = 0.5,
               in_vars=None, out_vars=None, title=None, path=None, dpi: int = 150,
               n_points: int = 64, show_off: bool = False, sample: bool = False, tick: bool = False,
               varscale: float = 1.0, folder=None):
    """Draw the network with every edge's learned curve; see the module docstring.

    Args:
        x: data (batch, n_in) or a dataset dict; default the last fit's inputs, else a uniform
            sample of the grid range. Curves are drawn over each edge's input range on it.
        beta: opacity sharpness, ``alpha = tanh(beta * importance)``.
        metric: importance of an edge: 'backward' (attribution scores, pykan's default),
            'forward_u' (spread of the edge's output) or 'forward_n' (that spread over the spread
            of its input); each normalized per layer.
        scale: overall size factor (pykan's meaning: larger draws a bigger figure).
        in_vars, out_vars: names for the inputs and outputs (strings, LaTeX allowed in $...$).
        title: figure title.
        path: save the figure there (format from the suffix).
        show_off: also draw switched-off edges (faint, dashed), default False.
        sample: overlay the data points on each curve.
        tick: draw the input range under each edge box.
        varscale: size factor for the variable names.
        folder: accepted for pykan scripts; kanlab writes no per-edge image files, so it is
            ignored (use ``path``).
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
    w_in, w_out = model.width_in, model.width_out
    # Layout: node rows share one width W. A layer's edge boxes sit in a band between its two
    # node rows, ordered by (i, j); a layer with many edges staggers them over several sub-rows
    # so each box keeps a readable size (width 10 -> 100 edges -> 3 sub-rows of ~34).
    per_row, box_w, box_gap, box_h, sub_gap = 36, 1.0, 0.35, 0.9, 0.3
    n_boxes = [w_in[l] * w_out[l + 1] for l in range(depth)]
    sub_rows = [max(1, math.ceil(n / per_row)) for n in n_boxes]
    W = max(max(min(n, per_row) * (box_w + box_gap) for n in n_boxes), max(w_in) * 1.6, 3.0)
    bands = [r * box_h + (r - 1) * sub_gap for r in sub_rows]
    y_rows = [0.0]
    for l in range(depth):
        y_rows.append(y_rows[-1] + bands[l] + 2.3)
    has_mult = any(model._arity[l + 1] for l in range(depth))

    def node_x(n, count):
        return (n + 0.5) * W / count

    def sub_x(e, j):
        """x of sub-node j of width entry e: under its node (spread around a product node)."""
        arity = model._arity[e]
        n_sum = model.width[e][0]
        if not arity or j < n_sum:
            return node_x(j, w_in[e])
        m = _mult_owner(arity, j - n_sum)
        first = n_sum + sum(arity[:m])
        spacing = min(0.8, W / w_in[e] / (arity[m] + 0.5))
        return node_x(n_sum + m, w_in[e]) + (j - first - (arity[m] - 1) / 2) * spacing

    fig_w, fig_h = W * scale * 1.1, y_rows[-1] * scale * 1.2 + 1.2
    if fig_w > 16:  # keep the aspect, cap the size
        fig_w, fig_h = 16.0, fig_h * 16.0 / fig_w
    fig = Figure(figsize=(max(4.0, fig_w), max(3.0, fig_h)))
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()
    node_kw = dict(s=60 * scale * 2, zorder=5, edgecolors="black", linewidths=0.8)

    for l in range(depth):
        y0 = y_rows[l]
        y_sub = y_rows[l + 1] - (0.55 if has_mult and model._arity[l + 1] else 0.0)
        band_lo = (y0 + y_rows[l + 1]) / 2 - bands[l] / 2
        xs, ys = curves[l]
        modes = _modes(model, l)
        nb, n_sub = n_boxes[l], sub_rows[l]
        if n_sub == 1:
            pitch = box_w + box_gap
            bw = box_w
            x_start = (W - nb * pitch) / 2 + box_gap / 2
        else:
            pitch = W / nb
            bw = min(box_w, n_sub * pitch - 0.15)
            x_start = pitch / 2 - bw / 2
        for i in range(w_in[l]):
            for j in range(w_out[l + 1]):
                mode = modes[i][j]
                k = i * w_out[l + 1] + j
                bx = x_start + k * pitch
                y_box = band_lo + (k % n_sub) * (box_h + sub_gap)
                alpha = math.tanh(beta * float(imp[l][i, j])) if mode != "off" else 0.0
                if mode == "off" and not show_off:
                    continue
                colour = {"n": _NUMERIC, "s": _SYMBOLIC, "sn": _BOTH, "off": "0.6"}[mode]
                a_line = max(alpha, 0.04) if mode != "off" else 0.15
                ls = "--" if mode == "off" else "-"
                xi = node_x(i, w_in[l])
                xj = sub_x(l + 1, j)
                ax.plot([xi, bx + bw / 2], [y0, y_box], color=colour, alpha=a_line, lw=0.8, ls=ls,
                        zorder=1)
                ax.plot([bx + bw / 2, xj], [y_box + box_h, y_sub], color=colour, alpha=a_line,
                        lw=0.8, ls=ls, zorder=1)
                ax.add_patch(_rect(bx, y_box, bw, box_h, colour, a_line))
                cx, cy = xs[i], ys[i, j]
                if mode == "off":
                    # curve of the switched-off edge as it would be: nothing to show, leave empty
                    continue
                px, py = _fit_box(cx, cy, bx, y_box, bw, box_h)
                ax.plot(px, py, color=colour, alpha=max(alpha, 0.08), lw=1.2, zorder=4)
                if sample:
                    sx = acts[l][:, i].cpu()
                    with torch.no_grad():
                        idx = torch.arange(sx.numel())[: min(200, sx.numel())]
                        sv = _edge_at(model, l, i, j, acts[l][idx])
                    qx, qy = _fit_box(cx, cy, bx, y_box, bw, box_h, sx[idx], sv)
                    ax.scatter(qx, qy, s=2, color=colour, alpha=max(alpha, 0.08) * 0.6, zorder=4)
                if mode in ("s", "sn"):
                    name = model.symbolic_fun[l].funs_name[j][i]
                    ax.text(bx + bw / 2, y_box + box_h + 0.08, name, ha="center", va="bottom",
                            fontsize=7 * varscale, color=colour, alpha=max(alpha, 0.3), zorder=6,
                            bbox=dict(facecolor="white", edgecolor="none", pad=0.3))
                if tick:
                    ax.text(bx, y_box - 0.05, f"{float(cx[0]):.2g}", ha="left", va="top", fontsize=5)
                    ax.text(bx + bw, y_box - 0.05, f"{float(cx[-1]):.2g}", ha="right", va="top",
                            fontsize=5)
        # nodes of this row
        for i in range(w_in[l]):
            is_mult = l > 0 and model._arity[l] and i >= model.width[l][0]
            ax.scatter([node_x(i, w_in[l])], [y0], marker="s" if is_mult else "o",
                       c="white" if is_mult else "black", **node_kw)
        # sub-nodes feeding multiplication nodes of the next row
        if has_mult and model._arity[l + 1]:
            n_sum = model.width[l + 1][0]
            y_top = y_rows[l + 1]
            for j in range(w_out[l + 1]):
                xj = sub_x(l + 1, j)
                ax.scatter([xj], [y_sub], s=12 * scale * 2, c="black", zorder=5)
                if j < n_sum:
                    target = j
                else:
                    target = n_sum + _mult_owner(model._arity[l + 1], j - n_sum)
                ax.plot([xj, node_x(target, w_in[l + 1])], [y_sub, y_top], color="black", lw=0.6,
                        alpha=0.6)
    # output row
    y_top = y_rows[-1]
    for j in range(w_in[-1]):
        is_mult = model._arity[depth] and j >= model.width[depth][0]
        ax.scatter([node_x(j, w_in[-1])], [y_top], marker="s" if is_mult else "o",
                   c="white" if is_mult else "black", **node_kw)
    fs = 11 * varscale
    for i, name in enumerate(in_vars):
        ax.text(node_x(i, n_in), -0.45, name, ha="center", va="top", fontsize=fs)
    for j, name in enumerate(out_vars):
        ax.text(node_x(j, n_out), y_top + 0.45, name, ha="center", va="bottom", fontsize=fs)
    if title:
        ax.set_title(title, fontsize=13 * varscale)
    ax.set_xlim(-0.2, W + 0.2)
    ax.set_ylim(-1.2, y_top + 1.2)
    return _finish(fig, path, dpi)


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


def plot_edge(model, l: int, i: int, j: int, x=None, path=None, ax=None, n_points: int = 200,
              dpi: int = 150, show_data: bool = True):
    """One edge's learned curve: its total, base part, spline part and symbolic fit.

    Drawn over the range its input takes on ``x`` (default: the last fit's inputs, else the
    grid range). The base part is ``mask*scale_base*b(x)``, the spline part
    ``mask*scale_sp*spline(x)``; their spreads on the data are in the legend, so an edge whose
    base path dominates shows at a glance. If the edge has a symbolic function (fixed, or
    suggested and stored), ``c*f(a*x+b)+d`` is drawn too. Grid knots are marked on the x axis.

    Returns the Figure (``ax``'s figure when an axes is given).
    """
    _, Figure = _mpl()
    model._check_edge(l, i, j)
    data = _edge_data(model, x)
    a_all = model.layer_inputs(data)[l]
    xi = a_all[:, i]
    lo, hi = float(xi.min()), float(xi.max())
    if hi <= lo:
        lo, hi = lo - 1.0, hi + 1.0
    t = torch.linspace(lo, hi, n_points, dtype=model.dtype, device=model.device)
    layer, sym = model.act_fun[l], model.symbolic_fun[l]
    xs = t[:, None].expand(n_points, layer.in_dim).contiguous()
    with torch.no_grad():
        _, base, spline = layer.activations(xs, parts=True)
        base, spline = base[:, i, j].cpu(), spline[:, i, j].cpu()
        name = sym.funs_name[j][i]
        sym_on = float(sym.mask[j, i]) != 0
        sym_curve = None
        if name != "0":
            from .symbolic.library import get_symbolic

            a, b, c, d = (float(v) for v in sym.affine[j, i].detach())
            fn = get_symbolic(name).safe_fn
            sym_curve = (c * fn(a * t + b) + d).cpu()
        total = base + spline + (sym_curve if sym_on and sym_curve is not None else 0.0)
        _, dbase, dspline = layer.activations(a_all, parts=True)
        sb = float(dbase[:, i, j].std()) if dbase.shape[0] > 1 else 0.0
        ss = float(dspline[:, i, j].std()) if dspline.shape[0] > 1 else 0.0
    fig, ax = _axes(ax, Figure, (5.0, 3.6))
    tt = t.cpu().numpy()
    num_on = float(layer.mask[i, j]) != 0
    ax.plot(tt, total.numpy(), color="black", lw=2.2, label="total")
    if num_on:
        ax.plot(tt, base.numpy(), color="tab:blue", lw=1.3, ls="--",
                label=f"base {layer.base_fun_name}: std {sb:.3g}")
        ax.plot(tt, spline.numpy(), color="tab:orange", lw=1.3, ls="-.",
                label=f"spline: std {ss:.3g}")
    if sym_curve is not None:
        a, b, c, d = (float(v) for v in sym.affine[j, i].detach())
        lab = f"symbolic {name}: {c:.3g}*f({a:.3g}x{b:+.3g}){d:+.3g}"
        if not sym_on:
            lab += " (not active)"
        ax.plot(tt, sym_curve.numpy(), color="tab:red", lw=1.3, ls=":", label=lab)
    if show_data and xi.numel() > 0:
        ax.plot(xi.cpu().numpy(), [0.0] * xi.numel(), "|", color="0.5", alpha=0.3,
                transform=ax.get_xaxis_transform(), ms=6)
    knots = layer.grid[i, layer.k:layer.grid.shape[1] - layer.k].cpu().numpy()
    inside = knots[(knots >= lo) & (knots <= hi)]
    for kn in inside:
        ax.axvline(float(kn), color="0.85", lw=0.6, zorder=0)
    mode = {(True, True): "sn", (True, False): "n", (False, True): "s", (False, False): "off"}[
        (num_on, sym_on)]
    ax.set_title(f"layer {l}, edge {i} -> {j} (mode {mode})", fontsize=10)
    ax.set_xlabel(f"input of edge (layer {l} node {i})")
    ax.set_ylabel("edge output")
    ax.legend(fontsize=7, loc="best")
    return _finish(fig, path, dpi)


def plot_history(history, path=None, ax=None, dpi: int = 150, log: bool = True,
                 show_reg: bool = True):
    """Training curves from a fit history (or a list of histories, drawn one after another).

    Train and test RMSE per step (log scale), and the regularization term on a second axis when
    it was used. A list such as ``[h1, h2]`` from fit, refine, fit is concatenated with the
    stage boundaries marked.
    """
    _, Figure = _mpl()
    hs = history if isinstance(history, (list, tuple)) else [history]
    if not hs or not all(isinstance(h, dict) and "train_loss" in h for h in hs):
        raise ValueError("plot_history needs fit()'s history dict (or a list of them)")
    train, test, reg, bounds = [], [], [], []
    for h in hs:
        train += list(h["train_loss"])
        test += list(h.get("test_loss", []))
        reg += [float("nan") if v is None else float(v) for v in h.get("reg", [])]
        bounds.append(len(train))
    if not train:
        raise ValueError("the history is empty (fit ran 0 steps)")
    fig, ax = _axes(ax, Figure, (5.5, 3.6))
    steps = range(1, len(train) + 1)
    ax.plot(steps, train, label="train RMSE", color="tab:blue")
    if test and len(test) == len(train):
        ax.plot(steps, test, label="test RMSE", color="tab:orange")
    if log and min(train + [v for v in test if v == v]) > 0:
        ax.set_yscale("log")
    for b in bounds[:-1]:
        ax.axvline(b + 0.5, color="0.6", ls=":", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("RMSE")
    if show_reg and reg and any(v == v and v != 0 for v in reg):
        ax2 = ax.twinx()
        ax2.plot(range(1, len(reg) + 1), reg, color="tab:green", lw=1, alpha=0.7,
                 label="regularization")
        ax2.set_ylabel("regularization", color="tab:green")
        lines = ax.get_lines()[:2] + ax2.get_lines()
        ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8)
    else:
        ax.legend(fontsize=8)
    ax.set_title("training", fontsize=10)
    return _finish(fig, path, dpi)


def plot_shares(history, path=None, ax=None, dpi: int = 150, threshold: float | None = 0.1):
    """Spline share of every layer over training (from ``fit(..., track_shares=True)``).

    1 means the spline carries the layer's edges, 0 that the base function does (the layer acts
    like an MLP). ``threshold`` draws the warning level fit() uses. A list of histories is drawn
    one after another with the stage boundaries marked; a layer whose edges are all symbolic has
    no share (NaN) and leaves a gap.
    """
    _, Figure = _mpl()
    hs = history if isinstance(history, (list, tuple)) else [history]
    rows, bounds = [], []
    for h in hs:
        if not isinstance(h, dict) or "spline_share" not in h:
            raise ValueError("the history has no 'spline_share': fit with track_shares=True")
        rows += list(h["spline_share"])
        bounds.append(len(rows))
    if not rows:
        raise ValueError("the history's spline_share is empty (fit ran 0 steps)")
    n_layers = max(len(r) for r in rows)
    fig, ax = _axes(ax, Figure, (5.5, 3.4))
    steps = range(1, len(rows) + 1)
    for l in range(n_layers):
        ax.plot(steps, [r[l] if l < len(r) else float("nan") for r in rows], label=f"layer {l}")
    for b in bounds[:-1]:
        ax.axvline(b + 0.5, color="0.6", ls=":", lw=1)
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", ls=":", lw=1, label=f"warning ({threshold:g})")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("step")
    ax.set_ylabel("spline share")
    ax.set_title("spline vs base share over training", fontsize=10)
    ax.legend(fontsize=8)
    return _finish(fig, path, dpi)
