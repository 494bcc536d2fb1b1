"""A self-contained HTML report of a trained KAN: one file, no network access needed to view it.

The formula is written as presentation MathML (rendered natively by current browsers) with its
LaTeX source and plain text beside it; figures are PNGs embedded as base64 data URIs; tables are
plain HTML. A small inline script records whether every image decoded and the formula has a
rendered size (``<body data-rendered="...">``) and the diagram's shown and natural widths
(``data-diagram``), so a headless browser can check the page.
"""
from __future__ import annotations

import base64
import html
import io
import os
import time

import sympy

from .atomic import atomic_write

__all__ = ["write_report", "render_report"]

_CSS = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.8em;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.muted { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
.formula { font-size: 1.35em; padding: 0.6em 0.8em; background: #fafafa; border: 1px solid #eee;
           overflow-x: auto; }
pre { background: #f6f6f6; padding: 0.5em; overflow-x: auto; font-size: 0.85em; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.figs { display: flex; flex-wrap: wrap; gap: 1em; }
.figs figure { flex: 1 1 0; min-width: 380px; max-width: 660px; margin: 0; }
.figs img { width: 100%; }
figure.diagram { margin: 0.8em 0; }
figure.diagram img { max-width: calc(100vw - 3em); position: relative; left: 50%;
                     transform: translateX(-50%); }
figure.diagram figcaption { text-align: center; }
"""

_CHECK_JS = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var okImgs = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var maths = Array.prototype.slice.call(document.querySelectorAll('math'));
  var okMath = maths.filter(function (m) { var r = m.getBoundingClientRect();
                                           return r.width > 0 && r.height > 0; }).length;
  document.body.setAttribute('data-rendered',
    'images ' + okImgs + '/' + imgs.length + ' formulas ' + okMath + '/' + maths.length);
  var d = document.querySelector('figure.diagram img');  // shown width / natural width
  if (d) document.body.setAttribute('data-diagram',
    d.clientWidth + '/' + d.naturalWidth);
});
"""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _mathml(expr) -> str:
    try:
        body = sympy.printing.mathml(expr, printer="presentation")
    except Exception:  # pragma: no cover - sympy printer gaps
        return f"<code>{html.escape(str(expr))}</code>"
    return f'<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">{body}</math>'


def _short(expr, digits: int = 5):
    """``expr`` with floating-point constants shown to ``digits`` significant digits."""
    try:
        return expr.xreplace({f: sympy.Float(f, digits) for f in expr.atoms(sympy.Float)})
    except AttributeError:
        return expr


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return html.escape(str(v))


def _table(rows, cols, left=()) -> str:
    out = ["<table><tr>" + "".join(f'<th class="{"l" if c in left else ""}">{html.escape(c)}</th>'
                                   for c in cols) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f'<td class="{"l" if c in left else ""}">{_fmt(r.get(c, ""))}</td>'
                                    for c in cols) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


_DIAGRAM_CAPTIONS = {
    "symbolic": "The formula's own network: every edge is the function shown on it "
                "(edge opacity: importance)",
    "surrogate": "A numeric network trained on the data, not the formula: the formula came "
                 "from a stage that needs no network (edge opacity: importance)",
    None: "Network (edge opacity: importance)",
}


def _contribution_part(c) -> str:
    """The base-vs-spline table, or a sentence when no edge is numeric."""
    if all(r["edges"] == 0 for r in c.layers):
        return ("<h2>Base function vs spline</h2><p class='muted'>Every edge is symbolic: no "
                "edge has a base function or spline left to compare.</p>")
    rows = [{**r, "spline_share": "all symbolic"} if r["edges"] == 0 else r for r in c.layers]
    return ("<h2>Base function vs spline</h2><p class='muted'>Share of each layer's edge "
            "spread carried by the spline (1) or the base function (0); near 0 the layer acts "
            "like an MLP. Symbolic edges are not counted.</p>"
            + _table(rows, ["layer", "edges", "base_std", "spline_std", "spline_share"]))


def _figure(cap, data, cls=""):
    return (f'<figure{cls}><img alt="{html.escape(cap)}" src="data:image/png;base64,{data}">'
            f'<figcaption class="muted">{html.escape(cap)}</figcaption></figure>')


def _figures(model, x, in_vars, target_name, model_kind, history, y_scale) -> list:
    """The diagram at its own size (as wide as the window allows, not the text column), then
    the training figures side by side."""
    from .plot import plot_history, plot_shares

    parts = ["<h2>Figures</h2>"]
    try:
        fig = model.plot(x=x, in_vars=in_vars,
                         out_vars=[target_name] if model.width_in[-1] == 1 else None)
        parts.append(_figure(_DIAGRAM_CAPTIONS.get(model_kind, _DIAGRAM_CAPTIONS[None]),
                             _png(fig), ' class="diagram"'))
    except Exception as err:  # a figure that cannot be drawn must not cost the report
        parts.append(f'<p class="muted">network diagram unavailable: {html.escape(str(err))}</p>')
    hs = history if isinstance(history, (list, tuple)) else ([history] if history else [])
    hs = [h for h in hs if h and h.get("train_loss")]
    if not hs:
        return parts
    cap = _HISTORY_CAPTION + (_STAGES_CAPTION if len(hs) > 1 else "")
    if y_scale is not None:
        cap += " The RMSE is in the target's own units, as the scores above."
    figs = [(cap, _png(plot_history(hs, y_scale=y_scale, units=f"data units of {target_name}"
                                    if y_scale is not None else None)))]
    if all("spline_share" in h for h in hs):
        figs.append(("Spline vs base share of each layer over the same steps (below the red "
                     "line a layer acts like an MLP)", _png(plot_shares(hs))))
    parts.append('<div class="figs">' + "".join(_figure(c, d) for c, d in figs) + "</div>")
    return parts


_HISTORY_CAPTION = ("Training curves: RMSE per optimizer step on the rows the network was "
                    "fitted on (train) and on rows held out from that fit (test; kanlab fit "
                    "holds these out of its training rows, so the test rows of the scores "
                    "stay unseen).")
_STAGES_CAPTION = (" Dotted lines separate the stages named at the top: train (fit with "
                   "sparsity), prune (refit after weak nodes are removed), refine (finer "
                   "grid), symbolic (edges snapped to functions), surrogate (a plain fit).")


def render_report(model, *, formula=None, variables=None, target_name="y", history=None,
                  scores=None, formulas=None, x=None, title="kanlab report", data_info=None,
                  in_vars=None, model_kind=None, y_scale=None) -> str:
    """The report as an HTML string (see :func:`write_report` for the arguments)."""
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="muted">kanlab {_version()} &middot; {time.strftime("%Y-%m-%d %H:%M")}'
             f" &middot; KAN width {html.escape(str(_width(model)))}, grid {model.grid}, k {model.k}"
             f"</p>"]
    if data_info:
        parts.append("<h2>Data</h2>" + _table([data_info], list(data_info), left=list(data_info)))
    if scores:
        notes = {k: v for k, v in scores.items() if isinstance(v, str)}
        nums = {k: v for k, v in scores.items() if not isinstance(v, str)}
        parts.append("<h2>Scores</h2>" + _table([nums], list(nums)))
        parts += [f'<p class="warn"><b>{html.escape(k)}:</b> {html.escape(v)}</p>'
                  for k, v in notes.items()]
    exprs = formula if isinstance(formula, (list, tuple)) else ([formula] if formula is not None else [])
    if exprs:
        parts.append("<h2>Formula</h2>")
        names = [target_name] if len(exprs) == 1 else [f"{target_name}_{k}" for k in range(len(exprs))]
        for name, e in zip(names, exprs):
            eq = sympy.Eq(sympy.Symbol(name), _short(e), evaluate=False)
            parts.append(f'<div class="formula">{_mathml(eq)}</div>')
            parts.append(f"<details><summary>LaTeX and plain text</summary><pre>"
                         f"{html.escape(sympy.latex(e))}\n\n{html.escape(str(e))}</pre></details>")
    if formulas is not None and len(formulas):
        cols = [c for c in ("complexity", "loss", "score", "r2_heldout", "equation")
                if c in formulas.columns]
        rows = formulas[cols].to_dict("records")
        parts.append("<h2>Candidate formulas (Pareto front)</h2>" + _table(rows, cols, left=("equation",)))
    parts += _figures(model, x, in_vars, target_name, model_kind, history, y_scale)
    if x is not None or getattr(model, "_cache_x", None) is not None:
        try:
            parts.append(_contribution_part(model.contributions(x)))
        except Exception as err:
            parts.append(f'<p class="muted">contributions unavailable: {html.escape(str(err))}</p>')
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style>"
            f"<script>{_CHECK_JS}</script></head>\n<body>\n{body}\n</body></html>\n")


def write_report(path, model, **kwargs) -> str:
    """Write the HTML report of ``model`` to ``path`` (atomically) and return the path.

    Keyword arguments: ``formula`` (sympy expression or list, one per output), ``target_name``,
    ``history`` (fit history or list of them), ``scores`` (dict of name -> number),
    ``formulas`` (a ``formulas_`` DataFrame), ``x`` (data for the diagram and contributions;
    default the last fit's inputs), ``title``, ``data_info`` (dict), ``in_vars`` (input names),
    ``model_kind`` ("symbolic": the model is the formula's network; "surrogate": a numeric
    network of the data beside a formula found without one), which labels the diagram,
    ``y_scale`` (the model predicts ``(y - y_center) / y_scale``: the training curves are drawn
    in the target's units).
    """
    text = render_report(model, **kwargs)
    path = os.fspath(path)
    atomic_write(path, lambda fh: fh.write(text), keep_mode=False)
    return path


def _width(model):
    return [w[0] if not w[1] else list(w) for w in model.width]


def _version() -> str:
    from . import __version__

    return __version__
