"""Ablation runs: one task trained across base functions, bias on/off and seeds.

:func:`ablate` runs the same pipeline for every combination of base function, bias setting and
seed, collects one row of measurements per run and returns an :class:`AblationResult` with CSV,
markdown and plot output. One run:

1. **data**     ``create_dataset`` from the task, seeded with the run's seed (float64, cast to
   the model's dtype for training);
2. **train**    ``KAN(width, grid, k, base_fun, bias, seed)`` with LBFGS and sparsity ``lamb``;
   test/train RMSE and the spline share of every layer are measured here;
3. **prune**    ``model.prune()``, then up to ``prune_rounds`` more rounds of sparsity training
   (``steps // 2``) and pruning while the network still loses edges; the active edges left are
   counted;
4. **symbolic** a short retrain (``steps // 2``), ``auto_symbolic``, another short retrain of every
   a, b, c, d, then ``symbolic_formula``. When the symbolic network is near-exact (test RMSE at
   most ``1e-4`` times the label spread) the constants are refitted and snapped to exact values
   with :func:`kanlab.snap_constants`; otherwise the formula is reported with constants rounded to
   4 digits (snapping an approximate formula only dresses up its error);
5. **recovered** the formula is compared with the task's sympy target: it must agree numerically
   on the test inputs (to ``1e-6`` relative), and then either ``sympy.simplify`` proves the
   difference is 0 or, where sympy cannot, the difference evaluates to 0 at 40 significant digits
   on a few test points (so an equivalent form counts and a near-miss constant does not).

Every run executes on one torch thread, in the calling process or in worker processes
(:mod:`concurrent.futures` with the ``forkserver`` or ``spawn`` context, or Ray with
``backend="ray"``), so the numbers of a run depend only on its settings and seed: serial and
parallel runs give identical results (only ``seconds`` differs).
"""
from __future__ import annotations

import csv
import io
import logging
import math
import numbers
import pickle
import statistics
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import sympy
import torch

from .bases import resolve_base_fun
from .datasets import create_dataset
from .inspect import layer_spline_shares
from .model import KAN, _parse_width
from .parallel import (_init_worker, _mp_context, _single_thread_env, _torch_threads,
                       unguarded_main_call)
from .symbolic.formula import ex_round, make_symbols
from .symbolic.library import SYMBOLIC_LIB, default_lib, get_symbolic
from .symbolic.snap import snap_constants

__all__ = ["FIELDS", "TASKS", "AblationResult", "Task", "ablate"]

log = logging.getLogger("kanlab")

#: Columns of a result row, in table order.
FIELDS = (
    "task", "base_fun", "bias", "seed", "test_rmse", "train_rmse", "edges_total",
    "edges_after_prune", "pruned_width", "spline_share", "spline_share_layers",
    "symbolic_test_rmse", "recovered", "formula", "seconds",
)

_NEAR_EXACT = 1e-4      # symbolic test RMSE / label std below which constants are snapped
_SCREEN_RTOL = 1e-6     # numeric screen of a formula against the target
_PROOF_DIGITS = 40      # precision of the numeric fallback when sympy cannot simplify to 0
_SIMPLIFY_MAX_OPS = 200  # larger differences skip sympy.simplify (it can take minutes)
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


# --------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class Task:
    """A regression task: inputs uniform in ``ranges``, labels ``f(x)``.

    Args:
        name: label used in tables and plots.
        f: maps a float tensor ``(n, n_var)`` to labels ``(n, 1)`` (or ``(n,)``). For
            ``workers > 1`` it must be picklable: a function defined at module level, not a
            lambda or a local function.
        n_var: number of input variables.
        ranges: ``(low, high)`` for every variable, or one pair per variable.
        target: the exact formula, as a sympy expression or a string, in the variables
            ``x_1 ... x_{n_var}`` (e.g. ``"exp(sin(pi*x_1) + x_2**2)"``); ``None`` when unknown,
            and then ``recovered`` is ``None`` in the results.
    """

    name: str
    f: Callable[[torch.Tensor], torch.Tensor]
    n_var: int
    ranges: tuple = (-1.0, 1.0)
    target: str | sympy.Expr | None = None

    def symbols(self) -> list[sympy.Symbol]:
        """The input symbols ``x_1 ... x_{n_var}`` (the names ``symbolic_formula`` uses)."""
        return make_symbols(self.n_var)

    def target_expr(self) -> sympy.Expr | None:
        """The target as a sympy expression in :meth:`symbols` (``None`` when unknown)."""
        if self.target is None:
            return None
        syms = self.symbols()
        if isinstance(self.target, sympy.Basic):
            expr = self.target
        else:
            try:
                expr = sympy.sympify(str(self.target), locals={s.name: s for s in syms})
            except (sympy.SympifyError, SyntaxError, TypeError) as err:
                raise ValueError(f"task {self.name!r}: cannot parse target {self.target!r}: {err}") from None
        extra = sorted(s.name for s in expr.free_symbols if s not in set(syms))
        if extra:
            raise ValueError(
                f"task {self.name!r}: target uses {extra}; write it in the variables "
                f"{[s.name for s in syms]}"
            )
        return expr


def _toy(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)


def _sin_plus_square(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2


def _squares(x: torch.Tensor) -> torch.Tensor:
    return x[:, [0]] ** 2 + x[:, [1]] ** 2


def _sum3(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(x[:, [0]]) + torch.sin(torch.pi * x[:, [1]]) + x[:, [2]] ** 2


#: Built-in tasks by name, all on ``[-1, 1]^n_var``.
TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("toy", _toy, 2, (-1.0, 1.0), "exp(sin(pi*x_1) + x_2**2)"),
        Task("sin_square", _sin_plus_square, 2, (-1.0, 1.0), "sin(pi*x_1) + x_2**2"),
        Task("squares", _squares, 2, (-1.0, 1.0), "x_1**2 + x_2**2"),
        Task("sum3", _sum3, 3, (-1.0, 1.0), "exp(x_1) + sin(pi*x_2) + x_3**2"),
    )
}


# --------------------------------------------------------------------------- one run
@dataclass(frozen=True)
class _RunSpec:
    """Everything one run needs (picklable when the task and base function are)."""

    task: Task
    base_fun: str | Callable
    base_label: str
    bias: bool
    seed: int
    width: tuple
    grid: int
    k: int
    steps: int
    lamb: float
    prune_rounds: int
    train_num: int
    test_num: int
    dtype: str
    snap_seconds: float
    lib: tuple


def _run_one(spec: _RunSpec) -> dict:
    """One run on one torch thread (see the module doc); returns its result row."""
    missing = [name for name in spec.lib if name not in SYMBOLIC_LIB]
    if missing:  # only possible in a worker process
        raise ValueError(
            f"symbolic functions {missing} are not registered in this worker process: functions "
            "added with kanlab.add_symbolic exist only in the process that added them; use workers=1"
        )
    with _torch_threads(1):
        return _run(spec)


def _finite_mean(values) -> float:
    vals = [v for v in values if math.isfinite(v)]
    return float(sum(vals) / len(vals)) if vals else math.nan


def _run(spec: _RunSpec) -> dict:
    t0 = time.perf_counter()
    task = spec.task
    dtype = _DTYPES[spec.dtype]
    data64 = create_dataset(task.f, n_var=task.n_var, ranges=task.ranges, train_num=spec.train_num,
                            test_num=spec.test_num, seed=spec.seed, dtype=torch.float64)
    data = {key: v.to(dtype) for key, v in data64.items()}
    x_train = data["train_input"]

    model = KAN(width=list(spec.width), grid=spec.grid, k=spec.k, base_fun=spec.base_fun,
                bias=spec.bias, seed=spec.seed, dtype=dtype)
    model.fit(data, opt="LBFGS", steps=spec.steps, lamb=spec.lamb, progress=False)
    rmse = model.evaluate(data)
    shares = layer_spline_shares(model, x_train)
    edges_total = model.n_edge

    half = max(spec.steps // 2, 1)
    pruned = model.prune(x=x_train)
    for _ in range(spec.prune_rounds):
        before = pruned.n_edge
        if before == 0:
            break
        pruned.fit(data, opt="LBFGS", steps=half, lamb=spec.lamb, update_grid=False, progress=False)
        pruned = pruned.prune(x=x_train)
        if pruned.n_edge == before:
            break
    edges_after = pruned.n_edge
    pruned_width = [w[0] + w[1] for w in pruned.width]

    try:
        formula, sym_rmse, recovered = _symbolic_stage(pruned, data, data64, spec, half)
    except (RuntimeError, ValueError, ArithmeticError) as err:  # report it, keep the ablation going
        log.warning("ablate: symbolic stage of %s/%s/bias=%s/seed=%d failed: %s", task.name,
                    spec.base_label, spec.bias, spec.seed, err)
        formula, sym_rmse = f"(symbolic stage failed: {err})", math.nan
        recovered = None if task.target is None else False

    return dict(
        task=task.name, base_fun=spec.base_label, bias=spec.bias, seed=spec.seed,
        test_rmse=float(rmse["test_loss"]), train_rmse=float(rmse["train_loss"]),
        edges_total=int(edges_total), edges_after_prune=int(edges_after),
        pruned_width=pruned_width, spline_share=_finite_mean(shares),
        spline_share_layers=[float(s) for s in shares], symbolic_test_rmse=float(sym_rmse),
        recovered=recovered, formula=formula, seconds=time.perf_counter() - t0,
    )


def _symbolic_stage(model: KAN, data: dict, data64: dict, spec: _RunSpec, steps: int):
    """Retrain, make every edge symbolic, retrain, read and clean the formula; judge it."""
    model.fit(data, opt="LBFGS", steps=steps, update_grid=False, progress=False)
    model.auto_symbolic(lib=list(spec.lib), verbose=0, x=data["train_input"])
    model.fit(data, opt="LBFGS", steps=steps, update_grid=False, progress=False)
    sym_rmse = float(model.evaluate(data)["test_loss"])
    symbols = spec.task.symbols()
    # no sympy.simplify here: on a large approximate formula it can take many seconds, and
    # snap_constants simplifies the near-exact ones
    (expr,), _ = model.symbolic_formula(var=symbols, simplify=False)
    X = data64["train_input"].numpy()
    y = data64["train_label"].numpy()[:, 0]
    spread = float(np.std(y))
    if math.isfinite(sym_rmse) and sym_rmse <= _NEAR_EXACT * max(spread, 1e-12):
        expr = snap_constants(expr, symbols, X, y, deadline=time.perf_counter() + spec.snap_seconds)
    else:
        expr = ex_round(expr, 4)
    target = spec.task.target_expr()
    recovered = None
    if target is not None:
        recovered = _same_function(expr, target, symbols, data64["test_input"].numpy())
    return str(expr), sym_rmse, recovered


def _evaluate(expr, symbols, X: np.ndarray) -> np.ndarray:
    fn = sympy.lambdify(symbols, expr, modules="numpy", dummify=True)
    with np.errstate(all="ignore"):
        out = np.asarray(fn(*[X[:, i] for i in range(X.shape[1])]))
    if np.iscomplexobj(out):
        out = np.where(np.abs(out.imag) <= 1e-12 * (1 + np.abs(out.real)), out.real, np.nan)
    return np.broadcast_to(out.astype(np.float64), (X.shape[0],))


def _same_function(expr, target, symbols, X: np.ndarray) -> bool:
    """Whether ``expr`` is exactly ``target`` (see the module doc, step 5)."""
    pred, true = _evaluate(expr, symbols, X), _evaluate(target, symbols, X)
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(true))):
        return False
    scale = 1.0 + float(np.max(np.abs(true)))
    if float(np.max(np.abs(pred - true))) > _SCREEN_RTOL * scale:
        return False
    diff = expr - target
    try:
        if sympy.count_ops(diff) <= _SIMPLIFY_MAX_OPS and sympy.simplify(diff) == 0:
            return True
    except Exception as err:  # noqa: BLE001 - sympy internals; the numeric check decides
        log.debug("ablate: sympy.simplify failed (%s); using the numeric check", err)
    # sympy could not prove it: evaluate the difference at high precision on a few points
    rows = np.linspace(0, X.shape[0] - 1, min(8, X.shape[0])).astype(int)
    for r in rows:
        point = {s: sympy.Float(float(X[r, i]), _PROOF_DIGITS) for i, s in enumerate(symbols)}
        val = sympy.N(diff.subs(point), _PROOF_DIGITS)
        tv = sympy.N(target.subs(point), _PROOF_DIGITS)
        try:
            if abs(complex(val)) > 10.0 ** (10 - _PROOF_DIGITS) * (1 + abs(complex(tv))):
                return False
        except TypeError:  # not a number (zoo, nan)
            return False
    return True


# --------------------------------------------------------------------------- result
def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}g}"
    if isinstance(v, (list, tuple)):
        return ";".join(_fmt(x) for x in v)
    return str(v)


def _median(rows: list, key: str) -> float:
    """Median of the finite values of ``key`` over ``rows`` (NaN when there are none)."""
    vals = [r[key] for r in rows if isinstance(r[key], (int, float)) and math.isfinite(r[key])]
    return float(statistics.median(vals)) if vals else math.nan


def _csv_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return ";".join(_csv_value(x) for x in v)
    return str(v)


@dataclass
class AblationResult:
    """The rows of an ablation run and ways to show them.

    Attributes:
        rows: one dict per run, keys :data:`FIELDS`, in configuration order (base function,
            then bias, then seed): ``test_rmse``/``train_rmse`` of the trained model before
            pruning; ``edges_total`` active edges before pruning and ``edges_after_prune``
            after; ``pruned_width`` nodes per layer after pruning; ``spline_share`` the mean
            over layers of each layer's spline share (:func:`kanlab.inspect.layer_spline_shares`
            after training, 0 = the base function does the work, 1 = the spline does) and
            ``spline_share_layers`` the per-layer values; ``symbolic_test_rmse`` of the
            symbolic network; ``formula`` its sympy formula as text; ``recovered`` whether it is
            the task's formula exactly (``None`` without a target); ``seconds`` wall time.
        task: the :class:`Task`.
        settings: the shared settings of the runs (width, grid, k, steps, lamb, ...).
    """

    rows: list
    task: Task
    settings: dict = field(default_factory=dict)

    def summary(self) -> list[dict]:
        """One row per configuration (base function, bias): medians and counts over seeds."""
        groups: dict = {}
        for r in self.rows:
            groups.setdefault((r["base_fun"], r["bias"]), []).append(r)
        out = []
        for (base, bias), rs in groups.items():
            rec = [r["recovered"] for r in rs if r["recovered"] is not None]
            out.append(dict(
                base_fun=base, bias=bias, runs=len(rs), median_test_rmse=_median(rs, "test_rmse"),
                median_edges_after_prune=_median(rs, "edges_after_prune"),
                median_spline_share=_median(rs, "spline_share"),
                recovered=f"{sum(rec)}/{len(rec)}" if rec else None,
                median_seconds=_median(rs, "seconds"),
            ))
        return out

    def to_csv(self, path=None) -> str:
        """CSV text of :attr:`rows` (lists joined with ``;``); also written to ``path`` if given."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(FIELDS)
        for r in self.rows:
            w.writerow([_csv_value(r[f]) for f in FIELDS])
        text = buf.getvalue()
        if path is not None:
            with open(path, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
        return text

    def to_markdown(self, table: str = "runs", formula_width: int = 48) -> str:
        """Markdown table of the runs (default) or of :meth:`summary` (``table="summary"``).

        Formulas longer than ``formula_width`` characters are cut (the CSV keeps them whole).
        """
        if table == "summary":
            cols = [("base_fun", "base"), ("bias", "bias"), ("runs", "runs"),
                    ("median_test_rmse", "median test RMSE"),
                    ("median_edges_after_prune", "median edges after prune"),
                    ("median_spline_share", "median spline share"), ("recovered", "recovered"),
                    ("median_seconds", "median s")]
            rows = self.summary()
        elif table == "runs":
            cols = [("base_fun", "base"), ("bias", "bias"), ("seed", "seed"),
                    ("test_rmse", "test RMSE"), ("train_rmse", "train RMSE"),
                    ("edges_total", "edges"), ("edges_after_prune", "after prune"),
                    ("spline_share", "spline share"), ("recovered", "recovered"),
                    ("seconds", "s"), ("formula", "formula")]
            rows = self.rows
        else:
            raise ValueError(f"table must be 'runs' or 'summary', got {table!r}")
        lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + " --- |" * len(cols)]
        for r in rows:
            cells = []
            for key, _ in cols:
                v = r[key]
                if key == "seconds" or key == "median_seconds":
                    text = "nan" if not math.isfinite(v) else f"{v:.1f}"
                elif key == "formula":
                    text = v if len(v) <= formula_width else v[: formula_width - 3] + "..."
                    text = "`" + text.replace("|", "\\|") + "`"
                else:
                    text = _fmt(v)
                cells.append(text)
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def report(self) -> str:
        """Markdown document: the task and settings, the runs table and the summary table."""
        target = self.task.target if self.task.target is not None else "unknown"
        settings = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        return "\n".join([
            f"# kanlab ablation: task `{self.task.name}`",
            "",
            f"Target: `{target}`; {len(self.rows)} runs; {settings}.",
            "",
            "## Runs",
            "",
            self.to_markdown("runs"),
            "",
            "## Per configuration (over seeds)",
            "",
            self.to_markdown("summary"),
            "",
        ])

    def plot(self, path=None):
        """Figure: test RMSE (log), spline share and edges after pruning per configuration.

        One marker per seed (colour and offset per seed); a filled marker means the formula was
        recovered, a hollow one that it was not (filled everywhere when the task has no target).
        Uses matplotlib's Agg canvas (no display, pyplot's state untouched); saves to ``path``
        if given and returns the :class:`matplotlib.figure.Figure`.
        """
        _need_matplotlib()
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D

        configs = []
        for r in self.rows:
            key = (r["base_fun"], r["bias"])
            if key not in configs:
                configs.append(key)
        seeds = sorted({r["seed"] for r in self.rows})
        xpos = {c: i for i, c in enumerate(configs)}
        width = 0.5
        offs = {s: (q - (len(seeds) - 1) / 2) * (width / max(len(seeds), 1)) for q, s in enumerate(seeds)}
        colors = {s: f"C{q % 10}" for q, s in enumerate(seeds)}
        has_target = any(r["recovered"] is not None for r in self.rows)

        fig = Figure(figsize=(max(11.0, 1.7 * len(configs) * 3 / 2), 4.6), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 3)
        panels = [("test_rmse", "test RMSE (before pruning)", True),
                  ("spline_share", "spline share (mean over layers)", False),
                  ("edges_after_prune", "active edges after pruning", False)]
        for ax, (key, title, logy) in zip(axes, panels):
            for r in self.rows:
                v = r[key]
                if not (isinstance(v, (int, float)) and math.isfinite(v)) or (logy and v <= 0):
                    continue
                c = colors[r["seed"]]
                filled = r["recovered"] is not False
                ax.plot(xpos[(r["base_fun"], r["bias"])] + offs[r["seed"]], v, "o", ms=8,
                        mec=c, mew=1.8, mfc=c if filled else "none")
            if logy:
                ax.set_yscale("log")
                _log_ticks(ax)
            for q in range(1, len(configs)):  # separate the base functions
                if configs[q][0] != configs[q - 1][0]:
                    ax.axvline(q - 0.5, color="0.85", lw=1)
            if key == "spline_share":
                ax.set_ylim(-0.05, 1.05)
            if key == "edges_after_prune":
                totals = sorted({r["edges_total"] for r in self.rows})
                for t in totals:
                    ax.axhline(t, color="0.6", ls="--", lw=1)
                ax.set_ylim(bottom=-0.5, top=max(totals + [1]) * 1.1)
                ax.text(0.99, max(totals) if totals else 0, "before pruning", ha="right",
                        va="bottom", fontsize=8, color="0.4", transform=ax.get_yaxis_transform())
                ax.yaxis.get_major_locator().set_params(integer=True)
            ax.set_title(title, fontsize=11)
            ax.set_xticks(range(len(configs)))
            ax.set_xticklabels([f"{b}\n{'bias' if on else 'no bias'}" for b, on in configs],
                               fontsize=9)
            ax.set_xlim(-0.6, len(configs) - 0.4)
            ax.grid(axis="y", alpha=0.3)
        handles = [Line2D([], [], ls="", marker="o", ms=8, color=colors[s], label=f"seed {s}")
                   for s in seeds]
        if has_target:
            handles += [Line2D([], [], ls="", marker="o", ms=8, color="0.3", label="formula recovered"),
                        Line2D([], [], ls="", marker="o", ms=8, mfc="none", mec="0.3", mew=1.8,
                               label="not recovered")]
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9,
                   frameon=False)
        target = f": {self.task.target}" if self.task.target is not None else ""
        fig.suptitle(f"kanlab ablation, task {self.task.name}{target}  "
                     f"({len(self.rows)} runs, width {self.settings.get('width')}, "
                     f"{self.settings.get('steps')} steps)", fontsize=12)
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig

    def save(self, out_dir, plot: bool = True) -> dict:
        """Write ``results.csv``, ``results.md`` and (with ``plot``) ``ablation.png`` into
        ``out_dir`` (created if missing); returns ``{kind: path}``."""
        folder = Path(out_dir)
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"out_dir {folder} exists and is not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"csv": folder / "results.csv", "markdown": folder / "results.md"}
        self.to_csv(paths["csv"])
        paths["markdown"].write_text(self.report(), encoding="utf-8")
        if plot:
            paths["plot"] = folder / "ablation.png"
            self.plot(paths["plot"])
        return paths

    def __repr__(self) -> str:
        return f"AblationResult(task={self.task.name!r}, runs={len(self.rows)})\n" + self.to_markdown()


def _log_ticks(ax) -> None:
    """Readable log axis: plain numbers (0.05, 0.1, 1), with 2 and 5 labelled over few decades."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = ax.get_ylim()
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    if lo > 0 and math.log10(hi / lo) <= 3:
        ax.yaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
        ax.yaxis.set_minor_formatter(plain)
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())


def _need_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError(
            "plotting needs matplotlib: pip install matplotlib (or kanlab[plot]); pass "
            "plot=False to write only the CSV and markdown files"
        ) from None


# --------------------------------------------------------------------------- validation
def _as_list(values, name: str) -> list:
    if isinstance(values, (str, bytes)) or callable(values) or isinstance(values, bool):
        values = [values]
    try:
        out = list(values)
    except TypeError:
        raise ValueError(f"{name} must be a list, got {values!r}") from None
    if not out:
        raise ValueError(f"{name} is empty: give at least one value")
    return out


def _resolve_task(task) -> Task:
    if isinstance(task, Task):
        t = task
    elif isinstance(task, str):
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}: use one of {sorted(TASKS)} or pass a kanlab.ablate.Task")
        t = TASKS[task]
    else:
        raise ValueError(f"task must be a name {sorted(TASKS)} or a kanlab.ablate.Task, got {task!r}")
    if not callable(t.f):
        raise ValueError(f"task {t.name!r}: f must be callable")
    if isinstance(t.n_var, bool) or not isinstance(t.n_var, numbers.Integral) or t.n_var < 1:
        raise ValueError(f"task {t.name!r}: n_var must be a positive integer, got {t.n_var!r}")
    t.target_expr()  # parse now: a bad target fails before any training
    return t


def _resolve_bases(base_funs) -> list[tuple[str | Callable, str]]:
    out, labels = [], []
    for b in _as_list(base_funs, "base_funs"):
        if isinstance(b, str):
            name, _ = resolve_base_fun(b)  # ValueError naming the valid names
            out.append((name, name))
            labels.append(name)
        elif callable(b):
            label = getattr(b, "__name__", type(b).__name__)
            out.append((b, label))
            labels.append(label)
        else:
            raise ValueError(f"base function must be a name or a callable, got {b!r}")
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ValueError(f"base_funs has repeated names {dup}: give each base function once")
    return out


def _int_list(values, name: str, minimum: int) -> list[int]:
    out = []
    for v in _as_list(values, name):
        if isinstance(v, bool) or not isinstance(v, (numbers.Integral, np.integer)) or v < minimum:
            raise ValueError(f"{name} must hold integers >= {minimum}, got {v!r}")
        out.append(int(v))
    if len(set(out)) != len(out):
        raise ValueError(f"{name} has repeated values {out}")
    return out


def _positive_int(v, name: str, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (numbers.Integral, np.integer)) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _check_picklable(obj, what: str) -> None:
    try:
        pickle.dumps(obj)
    except Exception as err:  # noqa: BLE001 - pickle raises several types
        raise ValueError(
            f"{what} cannot be sent to worker processes ({type(err).__name__}: {err}); define it "
            "at module level (not a lambda or a local function), or use workers=1"
        ) from None


# --------------------------------------------------------------------------- execution
def _execute(specs: list[_RunSpec], workers: int, backend: str, callback) -> list[dict]:
    """Run every spec (here, in a process pool or on Ray); rows come back in spec order."""
    rows: list = [None] * len(specs)

    def done(i, row):
        rows[i] = row
        log.info("ablate: %s bias=%s seed=%d: test RMSE %.3e, %d edges after pruning, "
                 "recovered=%s (%.1fs)", row["base_fun"], row["bias"], row["seed"],
                 row["test_rmse"], row["edges_after_prune"], row["recovered"], row["seconds"])
        if callback is not None:
            callback(row)

    if backend == "ray":
        import ray

        started = not ray.is_initialized()
        if started:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        try:
            remote = ray.remote(num_cpus=1)(_run_one)
            refs = [remote.remote(s) for s in specs]
            index = {ref: i for i, ref in enumerate(refs)}
            pending = list(refs)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                done(index[ready[0]], ray.get(ready[0]))
        finally:
            if started:
                ray.shutdown()
        return rows

    where = unguarded_main_call() if workers > 1 and len(specs) > 1 else None
    if where:
        warnings.warn(f"ablate(workers={workers}) is called at {where}, outside an `if __name__ "
                      "== \"__main__\":` block: worker processes would run that line again, so "
                      "the runs go one at a time in this process. Put the call under the guard "
                      "to use several workers.", RuntimeWarning, stacklevel=3)
    if workers == 1 or len(specs) == 1 or where:
        for i, spec in enumerate(specs):
            done(i, _run_one(spec))
        return rows

    with _single_thread_env():
        ctx = _mp_context()
        pool = ProcessPoolExecutor(max_workers=min(workers, len(specs)), mp_context=ctx,
                                   initializer=_init_worker)
        try:
            futures = {pool.submit(_run_one, spec): i for i, spec in enumerate(specs)}
            for fut in as_completed(futures):
                done(futures[fut], fut.result())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    return rows


# --------------------------------------------------------------------------- API
def ablate(
    task="toy",
    base_funs=("silu", "identity", "zero"),
    biases=(True, False),
    seeds=(0, 1),
    *,
    width=None,
    grid: int = 5,
    k: int = 3,
    steps: int = 40,
    lamb: float = 0.005,
    prune_rounds: int = 1,
    train_num: int = 1000,
    test_num: int = 1000,
    dtype: str = "float32",
    workers: int = 1,
    backend: str = "process",
    out_dir=None,
    plot: bool = True,
    lib=None,
    snap_seconds: float = 10.0,
    callback: Callable[[dict], None] | None = None,
) -> AblationResult:
    """Train one task across base functions, bias on/off and seeds; tabulate and plot.

    Args:
        task: a built-in task name (:data:`TASKS`: ``"toy"`` = exp(sin(pi*x_1) + x_2**2),
            ``"sin_square"``, ``"squares"``, ``"sum3"``) or a :class:`Task`.
        base_funs: base functions by name (``"silu"``, ``"identity"``, ``"zero"``, ``"tanh"``,
            ``"gelu"``, ``"relu"``) or callables (labelled by their ``__name__``).
        biases: bias settings to try (``True``: a trainable bias on every node).
        seeds: seeds (each seeds both the data set and the model), or a count n for 0..n-1.
        width: network width (default ``[n_var, 2*n_var + 1, 1]``).
        grid, k: grid intervals and spline order.
        steps: LBFGS steps of the sparsity training; the extra pruning rounds and the two
            short retrains of the symbolic stage take ``steps // 2`` each.
        lamb: sparsity regularization strength.
        prune_rounds: extra rounds of sparsity training + pruning while edges still go away.
        train_num, test_num: samples per split.
        dtype: ``"float32"`` (faster) or ``"float64"`` for the network; data, formulas and the
            recovery check are float64 either way.
        workers: processes running configurations at once (1: in this process). Each run uses
            one torch thread, so results do not depend on ``workers``.
        backend: ``"process"`` (:class:`concurrent.futures.ProcessPoolExecutor` with the
            ``forkserver`` context where available, else ``spawn``; a script calling it needs
            the ``if __name__ == "__main__":`` guard) or
            ``"ray"`` (needs ``ray`` installed; uses a running Ray instance or starts one with
            ``workers`` CPUs).
        out_dir: if given, the folder (created if missing) receives ``results.csv``,
            ``results.md`` and ``ablation.png``; nothing is written otherwise.
        plot: write ``ablation.png`` into ``out_dir``.
        lib: candidate function names for ``auto_symbolic`` (default: the whole library as
            registered in this process; functions added with :func:`kanlab.add_symbolic` need
            ``workers=1``).
        snap_seconds: time limit of the constant snapping of one formula.
        callback: called in this process with each finished row (completion order).

    Returns:
        :class:`AblationResult`; ``rows`` in configuration order (base function, bias, seed).

    Raises:
        ValueError: unknown task or base function, an empty or repeated list, bad numbers,
            ``workers < 1``, a task or base function that cannot be pickled for workers,
            ``out_dir`` naming a file, or ``plot`` without matplotlib.
        ImportError: ``backend="ray"`` without ray installed.
    """
    plan = _plan(task, base_funs, biases, seeds, width=width, grid=grid, k=k, steps=steps,
                 lamb=lamb, prune_rounds=prune_rounds, train_num=train_num, test_num=test_num,
                 dtype=dtype, workers=workers, backend=backend, out_dir=out_dir, plot=plot,
                 lib=lib, snap_seconds=snap_seconds)
    return _run_plan(plan, callback)


@dataclass
class _Plan:
    """A validated ablation: the runs to do and where the results go."""

    task: Task
    specs: list
    settings: dict
    workers: int
    backend: str
    out_dir: object
    plot: bool


def _plan(task="toy", base_funs=("silu", "identity", "zero"), biases=(True, False), seeds=(0, 1), *,
          width=None, grid=5, k=3, steps=40, lamb=0.005, prune_rounds=1, train_num=1000,
          test_num=1000, dtype="float32", workers=1, backend="process", out_dir=None, plot=True,
          lib=None, snap_seconds=10.0) -> _Plan:
    """Check every argument of :func:`ablate` (same defaults; ValueError naming the problem) and
    list the runs; nothing is trained or written."""
    t = _resolve_task(task)
    bases = _resolve_bases(base_funs)
    bias_list = _as_list(biases, "biases")
    for b in bias_list:
        if not isinstance(b, (bool, np.bool_)):
            raise ValueError(f"biases must hold True/False, got {b!r}")
    bias_list = [bool(b) for b in bias_list]
    if len(set(bias_list)) != len(bias_list):
        raise ValueError(f"biases has repeated values {bias_list}")
    if isinstance(seeds, (numbers.Integral, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds as a count must be >= 1, got {seeds}")
        seeds = range(int(seeds))
    seed_list = _int_list(seeds, "seeds", 0)
    workers = _positive_int(workers, "workers")
    grid = _positive_int(grid, "grid")
    k = _positive_int(k, "k")
    steps = _positive_int(steps, "steps")
    prune_rounds = _positive_int(prune_rounds, "prune_rounds", 0)
    train_num = _positive_int(train_num, "train_num", 2)
    test_num = _positive_int(test_num, "test_num", 2)
    if isinstance(lamb, bool) or not isinstance(lamb, numbers.Real) or not (math.isfinite(lamb) and lamb >= 0):
        raise ValueError(f"lamb must be a finite number >= 0, got {lamb!r}")
    if not (isinstance(snap_seconds, numbers.Real) and snap_seconds > 0):
        raise ValueError(f"snap_seconds must be a positive number, got {snap_seconds!r}")
    lib_setting = "all" if lib is None else list(_as_list(lib, "lib"))
    lib = tuple(default_lib()) if lib is None else tuple(lib_setting)
    for name in lib:
        get_symbolic(name)  # ValueError naming the known functions
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    if backend not in ("process", "ray"):
        raise ValueError(f"backend must be 'process' or 'ray', got {backend!r}")
    if width is None:
        width = [t.n_var, 2 * t.n_var + 1, 1]
    parsed = _parse_width(width)  # the model's own check: ValueError naming the problem
    if parsed[0] != [t.n_var, 0] or parsed[-1] != [1, 0]:
        raise ValueError(
            f"width must start with the task's {t.n_var} inputs and end with 1 output, got {list(width)}"
        )
    width = [w[0] if w[1] == 0 else list(w) for w in parsed]
    if out_dir is not None:
        if Path(out_dir).exists() and not Path(out_dir).is_dir():
            raise ValueError(f"out_dir {out_dir} exists and is not a folder")
        if plot:
            _need_matplotlib()
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ImportError(
                "backend='ray' needs the ray package (pip install ray); or use the default "
                "backend='process'"
            ) from None
    elif workers > 1:
        _check_picklable(t, f"task {t.name!r} (its function f)")
        for fn, label in bases:
            if callable(fn):
                _check_picklable(fn, f"base function {label!r}")

    specs = [
        _RunSpec(task=t, base_fun=fn, base_label=label, bias=b, seed=s, width=tuple(width),
                 grid=grid, k=k, steps=steps, lamb=float(lamb), prune_rounds=prune_rounds,
                 train_num=train_num, test_num=test_num, dtype=dtype,
                 snap_seconds=float(snap_seconds), lib=lib)
        for fn, label in bases for b in bias_list for s in seed_list
    ]
    settings = dict(width=width, grid=grid, k=k, steps=steps, lamb=lamb, prune_rounds=prune_rounds,
                    train_num=train_num, test_num=test_num, dtype=dtype, lib=lib_setting)
    return _Plan(t, specs, settings, workers, backend, out_dir, plot)


def _run_plan(plan: _Plan, callback=None) -> AblationResult:
    """Execute a plan, then write its files when it has an ``out_dir``."""
    log.info("ablate: %d runs of task %s on %d %s worker(s)", len(plan.specs), plan.task.name,
             plan.workers, plan.backend)
    rows = _execute(plan.specs, plan.workers, plan.backend, callback)
    result = AblationResult(rows=rows, task=plan.task, settings=plan.settings)
    if plan.out_dir is not None:
        result.save(plan.out_dir, plot=plan.plot)
    return result
