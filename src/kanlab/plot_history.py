"""Figures over training: the RMSE curves of a fit history and the spline-vs-base shares.

Both take one history dict from ``fit()`` or a list of them (a run of several stages, such as
train, prune, refine, symbolic) and draw the stages one after another, each boundary a dotted
line and each stage named at the top of its span. A history dict may name its stage itself
(``h["stage"]``, as :func:`kanlab.discover`'s surrogate fits do); ``stages=`` names them
otherwise. Re-exported by :mod:`kanlab.plot`.
"""
from __future__ import annotations

__all__ = ["plot_history", "plot_shares"]


def _stage_names(hs, stages):
    """One label per history: ``stages``, else each history's 'stage' key, else 'fit k'."""
    if stages is not None:
        names = [str(s) for s in stages]
        if len(names) != len(hs):
            raise ValueError(f"stages has {len(names)} names but there are {len(hs)} histories")
        return names
    return [str(h.get("stage") or f"fit {k + 1}").replace("_", " ") for k, h in enumerate(hs)]


def _mark_stages(ax, bounds, names):
    """Dotted lines between the stages (one legend entry), every other stage lightly shaded,
    and each stage's name over its span: above the axes when it fits there, else written
    upwards inside at the top. Returns the boundary line handle (None for one stage)."""
    if len(bounds) < 2:
        return None
    line = None
    for b in bounds[:-1]:
        ln = ax.axvline(b + 0.5, color="0.55", ls=":", lw=1)
        if line is None:
            ln.set_label("stage boundary")
            line = ln
    fig = ax.figure
    inches_per_step = ax.get_position().width * fig.get_figwidth() / (bounds[-1] * 1.1)
    start = 0
    for k, (b, name) in enumerate(zip(bounds, names)):
        if b > start:
            if k % 2:
                ax.axvspan(start + 0.5, b + 0.5, color="0.5", alpha=0.07, lw=0, zorder=0)
            if len(name) * 7 * 0.6 / 72 <= 0.95 * (b - start) * inches_per_step:
                ax.text((start + b + 1) / 2, 1.01, name, ha="center", va="bottom", fontsize=7,
                        color="0.3", transform=ax.get_xaxis_transform())
            else:
                ax.text(start + 0.5, 0.98, f" {name}", rotation=90, ha="left", va="top",
                        fontsize=7, color="0.3", transform=ax.get_xaxis_transform())
        start = b
    return line


def plot_history(history, path=None, ax=None, dpi: int = 150, log: bool = True,
                 show_reg: bool = True, y_scale: float | None = None, units: str | None = None,
                 stages=None):
    """Training curves from a fit history (or a list of histories, drawn one after another).

    Train and test RMSE per step (log scale), and the regularization term on a second axis when
    it was used. A list such as ``[h1, h2]`` from fit, refine, fit is concatenated with the
    stage boundaries marked and each stage named (``stages``, else each history's 'stage' key).

    Args:
        y_scale: the model was trained on ``(y - y_center) / y_scale``: the RMSE is multiplied
            by it, so the curves are in the target's own units (the units of a report's scores).
        units: what the RMSE is measured in, written on the y axis: e.g. "standardized target",
            or with ``y_scale`` the target's name (default "data units" then; nothing without).
        stages: a name for each history, overriding their 'stage' keys.
    """
    from .plot import _axes, _finish, _mpl

    _, Figure = _mpl()
    hs = history if isinstance(history, (list, tuple)) else [history]
    if not hs or not all(isinstance(h, dict) and "train_loss" in h for h in hs):
        raise ValueError("plot_history needs fit()'s history dict (or a list of them)")
    if y_scale is not None and not y_scale > 0:
        raise ValueError(f"y_scale must be > 0, got {y_scale}")
    names = _stage_names(hs, stages)
    f = 1.0 if y_scale is None else float(y_scale)
    train, test, reg, bounds = [], [], [], []
    for h in hs:
        train += [float(v) * f for v in h["train_loss"]]
        test += [float(v) * f for v in h.get("test_loss", [])]
        reg += [float("nan") if v is None else float(v) for v in h.get("reg", [])]
        bounds.append(len(train))
    if not train:
        raise ValueError("the history is empty (fit ran 0 steps)")
    fig, ax = _axes(ax, Figure, (6.0, 3.8))
    steps = range(1, len(train) + 1)
    ax.plot(steps, train, label="train RMSE", color="tab:blue")
    if test and len(test) == len(train):
        ax.plot(steps, test, label="test RMSE", color="tab:orange")
    vals = [v for v in train + test if v == v and abs(v) != float("inf")]
    if log and vals and min(vals) > 0:
        ax.set_yscale("log")
        if max(vals) / min(vals) < 100:  # under two decades: label 2x and 5x too, not 1-2 ticks
            from matplotlib.ticker import FuncFormatter, LogLocator

            ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
            ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    boundary = _mark_stages(ax, bounds, names)
    ax.set_xlabel("optimizer step")
    unit = units if units else ("data units" if y_scale is not None else None)
    ax.set_ylabel(f"RMSE ({unit})" if unit else "RMSE")
    handles = [ln for ln in ax.get_lines() if ln.get_label() in ("train RMSE", "test RMSE")]
    if show_reg and reg and any(v == v and v != 0 for v in reg):
        ax2 = ax.twinx()
        ax2.plot(range(1, len(reg) + 1), reg, color="tab:green", lw=1, alpha=0.7,
                 label="regularization")
        ax2.set_ylabel("regularization", color="tab:green")
        handles += ax2.get_lines()
    if boundary is not None:
        handles.append(boundary)
    ax.legend(handles, [ln.get_label() for ln in handles], fontsize=8.5)
    ax.set_title("training curves", fontsize=10, pad=14 if boundary is not None else 6)
    return _finish(fig, path, dpi)


def plot_shares(history, path=None, ax=None, dpi: int = 150, threshold: float | None = 0.1,
                stages=None):
    """Spline share of every layer over training (from ``fit(..., track_shares=True)``).

    1 means the spline carries the layer's edges, 0 that the base function does (the layer acts
    like an MLP). ``threshold`` draws the warning level fit() uses. A list of histories is drawn
    one after another with the stage boundaries marked and named (``stages``, else each
    history's 'stage' key); a layer whose edges are all symbolic has no share (NaN) and leaves
    a gap.
    """
    from .plot import _axes, _finish, _mpl

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
    names = _stage_names(hs, stages)
    n_layers = max(len(r) for r in rows)
    fig, ax = _axes(ax, Figure, (6.0, 3.6))
    steps = range(1, len(rows) + 1)
    for l in range(n_layers):
        ax.plot(steps, [r[l] if l < len(r) else float("nan") for r in rows], label=f"layer {l}")
    boundary = _mark_stages(ax, bounds, names)
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", ls=":", lw=1, label=f"warning ({threshold:g})")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("spline share (0 base, 1 spline)")
    ax.set_title("spline vs base share over training", fontsize=10,
                 pad=14 if boundary is not None else 6)
    ax.legend(fontsize=8)
    return _finish(fig, path, dpi)
