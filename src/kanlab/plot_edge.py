"""One edge's learned curve (:func:`plot_edge`, also ``model.plot_edge``); re-exported by
:mod:`kanlab.plot`.

The axes name the variables: a first-layer edge's input is the model's input ``in_vars[i]``, a
last-layer edge's output is a contribution to ``out_vars[j]``, anything else a hidden node.
When the model works on standardized data (``kanlab fit``'s model.kan works on
``(x - x_center) / x_scale`` and predicts ``(y - y_center) / y_scale``), passing those numbers
draws a first-layer input in the data's units and a last-layer output in the target's units;
every other axis says it is in the network's internal units.
"""
from __future__ import annotations

import math
import re

import numpy as np
import torch

__all__ = ["plot_edge", "symbolic_label"]

_MODES = {"n": "numeric", "s": "symbolic", "sn": "numeric + symbolic", "off": "switched off"}


def _num(v: float) -> str:
    """``v`` to 3 significant digits, without a trailing '.0' or a '-0'."""
    s = f"{v:.3g}"
    return "0" if s in ("-0", "0") else s


def _affine(a: float, b: float, var: str, drop: float) -> str:
    """``a*var + b`` as text, ``b`` left out when ``|b| <= drop``."""
    a_s = _num(a)
    dot = "\u00b7" if len(var) > 1 or "e" in a_s else ""  # 2x, but 2·bmi and 1e-05·x
    text = var if a_s == "1" else f"-{var}" if a_s == "-1" else f"{a_s}{dot}{var}"
    if a_s == "0":
        text = ""
    if abs(b) > drop and _num(abs(b)) != "0":
        sign = "-" if b < 0 else "+"
        text = f"{text} {sign} {_num(abs(b))}" if text else _num(b)
    return text or "0"


def symbolic_label(name: str, a: float, b: float, c: float, d: float, var: str = "x",
                   rel: float = 1e-8, x_max: float = 1.0) -> str:
    """``c*f(a*x+b)+d`` as short readable text: 3 significant digits; factors of 1 and offsets
    below ``rel`` relative (``|b| <= rel*|a|*x_max``, ``|d| <= rel*|c|``) left out. E.g.
    ``sin(2x + 1)``, ``-0.5 (x - 1)^2 + 3``, ``3/(2x)``; a linear edge ``c*(a*x+b)+d`` is
    written as the one line ``(c*a)x + (c*b+d)``."""
    if name == "0" or c == 0:
        return _num(d) if abs(d) > 0 else "0"
    x_max = max(abs(x_max), 1e-300)
    if name == "x":
        return _affine(c * a, c * b + d, var, rel * abs(c * a) * x_max)
    inner = _affine(a, b, var, rel * abs(a) * x_max)
    arg = inner if inner in (var, "0") else f"({inner})"
    if re.search(r"(?<![a-z])x(?![a-z])", name):  # a power of x: x^2, 1/x, x^0.5, 1/sqrt(x)
        body = re.sub(r"\(x\)|(?<![a-z])x(?![a-z])",
                      lambda m: f"({inner})" if m.group(0) == "(x)" else arg, name)
    else:
        body = f"{name}({inner})"
    c_s = _num(c)
    if body.startswith("1/") and c_s not in ("1", "-1"):
        text = f"{c_s}/{body[2:]}"
    else:
        text = body if c_s == "1" else f"-{body}" if c_s == "-1" else f"{c_s} {body}"
    if abs(d) > rel * abs(c) and _num(abs(d)) != "0":
        text += f" {'-' if d < 0 else '+'} {_num(abs(d))}"
    return text


def _pick(values, i, what):
    """Entry ``i`` of a per-input sequence (or the scalar itself), as a float."""
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        return float(arr[0])
    if i >= arr.size:
        raise ValueError(f"{what} has {arr.size} entries, fewer than the model's inputs")
    return float(arr[i])


def _axis_units(model, l, i, j, in_vars, out_vars, x_center, x_scale, y_scale):
    """(x label, y label, (x shift, x factor), y factor, variable name for the legend)."""
    last = l == model.depth - 1
    if l == 0:
        name = str(in_vars[i]) if in_vars is not None else f"x_{i + 1}"
        xs = _pick(x_scale, i, "x_scale")
        xc = _pick(x_center, i, "x_center") or 0.0
        if xs is not None:
            x_label, x_map = f"{name} (data units)", (xc, xs)
        else:
            x_label, x_map = name, (0.0, 1.0)
        var = name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,9}", name) else "x"
    else:
        x_label, x_map, var = f"hidden node {i} of layer {l} (internal units)", (0.0, 1.0), "x"
    if last:
        target = str(out_vars[j]) if out_vars is not None else f"y_{j + 1}"
        if y_scale is not None:
            y_label, y_f = f"contribution to {target} (data units)", float(y_scale)
        else:
            y_label, y_f = f"contribution to {target}", 1.0
    else:
        y_label, y_f = f"contribution to hidden node {j} of layer {l + 1} (internal units)", 1.0
    return x_label, y_label, x_map, y_f, var


@torch.no_grad()
def _edge_curves(model, l, i, j, t, a_all):
    """Edge i -> j of layer l on the points ``t``: total, base part, spline part, symbolic
    curve (None without a function), and the spreads of the base and spline parts on the
    layer inputs ``a_all``."""
    layer, sym = model.act_fun[l], model.symbolic_fun[l]
    xs = t[:, None].expand(t.shape[0], layer.in_dim).contiguous()
    _, base, spline = layer.activations(xs, parts=True)
    base, spline = base[:, i, j].cpu(), spline[:, i, j].cpu()
    name = sym.funs_name[j][i]
    sym_curve = None
    if name != "0":
        from .symbolic.library import get_symbolic

        a, b, c, d = (float(v) for v in sym.affine[j, i].detach())
        sym_curve = (c * get_symbolic(name).safe_fn(a * t + b) + d).cpu()
    sym_on = float(sym.mask[j, i]) != 0
    total = base + spline + (sym_curve if sym_on and sym_curve is not None else 0.0)
    _, dbase, dspline = layer.activations(a_all, parts=True)
    sb = float(dbase[:, i, j].std()) if dbase.shape[0] > 1 else 0.0
    ss = float(dspline[:, i, j].std()) if dspline.shape[0] > 1 else 0.0
    return total, base, spline, sym_curve, sb, ss


def plot_edge(model, l: int, i: int, j: int, x=None, path=None, ax=None, n_points: int = 200,
              dpi: int = 150, show_data: bool = True, in_vars=None, out_vars=None,
              x_center=None, x_scale=None, y_scale=None):
    """One edge's learned curve: its total, base part, spline part and symbolic fit.

    Drawn over the range its input takes on ``x`` (default: the last fit's inputs, else the
    grid range). The base part is ``mask*scale_base*b(x)``, the spline part
    ``mask*scale_sp*spline(x)``; their spreads on the data are in the legend, so an edge whose
    base path dominates shows at a glance. If the edge has a symbolic function (fixed, or
    suggested and stored), ``c*f(a*x+b)+d`` is drawn too, its constants in the legend to 3
    digits. Grid knots are marked as light vertical lines, the data as ticks on the x axis.

    Args:
        in_vars, out_vars: names of the model's inputs and outputs (as ``plot()`` takes them):
            they label a first-layer input and a last-layer output.
        x_center, x_scale: the model's inputs are ``(x - x_center) / x_scale`` (per input, or
            one number): a first-layer edge is drawn over x in the data's units.
        y_scale: the model predicts ``(y - y_center) / y_scale``: a last-layer edge's output
            is drawn times ``y_scale``, its contribution to y in the target's units.

    Returns the Figure (``ax``'s figure when an axes is given).
    """
    from matplotlib.ticker import MaxNLocator

    from .plot import _axes, _edge_data, _finish, _mpl, _names

    _, Figure = _mpl()
    model._check_edge(l, i, j)
    if in_vars is not None:
        in_vars = _names(in_vars, model.width_in[0], "x", "in_vars")
    if out_vars is not None:
        out_vars = _names(out_vars, model.width_in[-1], "y", "out_vars")
    data = _edge_data(model, x)
    a_all = model.layer_inputs(data)[l]
    xi = a_all[:, i]
    lo, hi = float(xi.min()), float(xi.max())
    if hi <= lo:
        lo, hi = lo - 1.0, hi + 1.0
    t = torch.linspace(lo, hi, n_points, dtype=model.dtype, device=model.device)
    layer, sym = model.act_fun[l], model.symbolic_fun[l]
    name, sym_on = sym.funs_name[j][i], float(sym.mask[j, i]) != 0
    total, base, spline, sym_curve, sb, ss = _edge_curves(model, l, i, j, t, a_all)
    x_label, y_label, (xc, xsc), yf, var = _axis_units(model, l, i, j, in_vars, out_vars,
                                                       x_center, x_scale, y_scale)

    def tx(v):  # the network's input -> the axis' units
        return xc + xsc * np.asarray(v, dtype=np.float64)

    fig, ax = _axes(ax, Figure, (5.6, 3.8))
    tt = tx(t.cpu().numpy())
    num_on = float(layer.mask[i, j]) != 0
    ax.plot(tt, total.numpy() * yf, color="black", lw=2.2, label="total")
    if num_on:
        ax.plot(tt, base.numpy() * yf, color="tab:blue", lw=1.3, ls="--",
                label=f"base {layer.base_fun_name}: spread {_num(sb * yf)}")
        ax.plot(tt, spline.numpy() * yf, color="tab:orange", lw=1.3, ls="-.",
                label=f"spline: spread {_num(ss * yf)}")
    if sym_curve is not None:
        a, b, c, d = (float(v) for v in sym.affine[j, i].detach())
        # the same curve in the axis' units: z = (x - xc) / xsc, output times yf
        a2, b2 = a / xsc, b - a * xc / xsc
        lab = f"symbolic {name}: " + symbolic_label(name, a2, b2, c * yf, d * yf, var=var,
                                                    x_max=max(abs(tt[0]), abs(tt[-1])))
        if not sym_on:
            lab += " (not active)"
        ax.plot(tt, sym_curve.numpy() * yf, color="tab:red", lw=1.3, ls=":", label=lab)
    if show_data and xi.numel() > 0:
        ax.plot(tx(xi.cpu().numpy()), [0.0] * xi.numel(), "|", color="0.5", alpha=0.3,
                transform=ax.get_xaxis_transform(), ms=6)
    knots = layer.grid[i, layer.k:layer.grid.shape[1] - layer.k].cpu().numpy()
    for kn in knots[(knots >= lo) & (knots <= hi)] if num_on else []:  # the spline's knots
        ax.axvline(float(tx(kn)), color="0.85", lw=0.6, zorder=0)
    mode = {(True, True): "sn", (True, False): "n", (False, True): "s", (False, False): "off"}[
        (num_on, sym_on)]
    src = x_label.split(" (")[0]
    dst = y_label.split(" (")[0].replace("contribution to ", "")
    ax.set_title(f"edge {src} \u2192 {dst}\n(layer {l}, edge {i} \u2192 {j}, {_MODES[mode]})",
                 fontsize=10)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label, fontsize=9 if len(y_label) > 40 else 10)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.legend(fontsize=7, loc="best")
    if not math.isfinite(float(total.abs().max())):
        ax.text(0.5, 0.5, "the curve is not finite on this range", transform=ax.transAxes,
                ha="center")
    return _finish(fig, path, dpi)
