#!/usr/bin/env python
"""SRBench's Feynman ground-truth benchmark of ``kanlab.discover`` (with Operon and pykan beside it).

The 120 equations of SRBench / AI Feynman (100 Feynman, 20 bonus; read by
``feynman_equations.py`` from ``../shared/feynman``), or the original 36-equation quick table
(``--subset quick``), are sampled with seeded numpy Generators and handed to ``kanlab.discover``
at every noise level of ``--noise`` (default 0, 0.001, 0.01). SRBench's rules:

* noise: Gaussian, standard deviation ``level * RMS(y)`` (RMS = sqrt(mean(y**2)) of the training
  target), added to the training target only; the inputs are the same at every level;
* exact recovery (``is_exact``): ``found - truth`` simplifies to a constant, or ``found / truth``
  to a nonzero constant, with symbols positive where the range is (and nonnegative where it
  starts at 0), after floats in ``found`` are rounded to 3 digits (floats below 1e-4 set to 0);
* R2 of the returned formula on fresh, noise-free points, computed here (not the R2 a library
  reports).

``--operon`` runs Operon (``pyoperon``'s ``SymbolicRegressor``, ``max_time`` = the budget) and
``--pykan`` pykan's tutorial recipe (no time limit) on the same data, scored the same way.

Run from the repository root:

    python benchmarks/bench_feynman.py                       # 120 equations x 3 levels, 60 s each
    python benchmarks/bench_feynman.py --operon              # ... with Operon beside it
    python benchmarks/bench_feynman.py --subset quick --noise 0   # the 36-equation table
    python benchmarks/bench_feynman.py --only I.12.1,II.6.15a --noise 0,0.01 --budget 5 --no-write
    python benchmarks/bench_feynman.py --self-test           # data + exact checker only
    python benchmarks/bench_feynman.py --list                # the equation table

See benchmarks/README.md ("Feynman symbolic-regression benchmark").
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import math
import multiprocessing
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # feynman_equations, also in workers

KANLAB_IMPORT_ERROR = None
try:
    import kanlab
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(ROOT / "src"))
    try:
        import kanlab
    except Exception as _exc:  # a broken tree still allows --self-test, --list and --no-kanlab
        kanlab = None
        KANLAB_IMPORT_ERROR = f"{type(_exc).__name__}: {_exc}"

import numpy as np
import sympy
import torch
from sympy.parsing.sympy_parser import convert_xor, parse_expr, standard_transformations

from feynman_equations import DEFAULT_DIR, FUNCTIONS, QUICK_EQUATIONS, SUBSETS, Equation, equations

METHODS = (("kanlab", "kanlab.discover"), ("operon", "Operon (pyoperon)"), ("pykan", "pykan recipe"))

# Exact-recovery rates published for the Feynman problems (SRBench 2021, La Cava et al.; its
# runs had hours per problem), and the best figure we know of. None: not published here.
PUBLISHED = (
    ("AI Feynman", {0.0: 55.8, 0.001: 1.5}, "SRBench 2021"),
    ("GP-GOMEA", {0.0: 26.8}, "SRBench 2021"),
    ("Operon", {0.0: 16.6}, "SRBench 2021"),
    ("gplearn", {0.0: 16.3}, "SRBench 2021"),
    ("QDSR", {0.0: 91.6}, "2025; best published figure known"),
)


# =========================================================================== data
def equation_rng(eq: Equation, seed: int, *stream: int) -> np.random.Generator:
    """A Generator that depends only on (seed, equation name, stream), not on --only/--limit."""
    return np.random.default_rng([int(seed), zlib.crc32(eq.name.encode()), *map(int, stream)])


def sample_inputs(eq: Equation, n: int, rng: np.random.Generator) -> np.ndarray:
    lows = np.array([lo for _, lo, _ in eq.ranges], dtype=np.float64)
    highs = np.array([hi for _, _, hi in eq.ranges], dtype=np.float64)
    return rng.uniform(lows, highs, size=(n, len(eq.ranges)))


def _lambdify(expr: sympy.Expr, syms: list[sympy.Symbol]):
    return sympy.lambdify(syms, expr, modules="numpy")


def evaluate(expr: sympy.Expr, syms: list[sympy.Symbol], X: np.ndarray) -> np.ndarray:
    """expr at the rows of X, as a float64 vector (complex results with imaginary parts -> nan)."""
    fn = _lambdify(expr, syms)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fn(*[X[:, i] for i in range(X.shape[1])])
    out = np.asarray(out)
    if np.iscomplexobj(out):
        imag_bad = np.abs(out.imag) > 1e-12 * np.maximum(1.0, np.abs(out.real))
        out = np.where(imag_bad, np.nan, out.real)
    out = np.broadcast_to(out.astype(np.float64, copy=False), (X.shape[0],))
    return np.array(out, dtype=np.float64)


def make_data(eq: Equation, n: int, seed: int):
    """(X, y) for discovery without noise: n points, y = f(X); the same X at every noise level."""
    X = sample_inputs(eq, n, equation_rng(eq, seed, 0))
    y = evaluate(eq.sympy_expr(), eq.symbols(), X)
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{eq.name}: non-finite target values on the sampling ranges")
    return X, y


def add_noise(eq: Equation, y: np.ndarray, level: float, seed: int) -> np.ndarray:
    """SRBench's noise: y + N(0, (level * RMS(y))**2), RMS(y) = sqrt(mean(y**2)).

    The noise has a Generator of its own per (seed, equation, level), so the inputs and the
    noise-free target are the same at every level and a level's noise does not depend on
    which other levels run.
    """
    if level <= 0:
        return y.copy()
    rng = equation_rng(eq, seed, 2, zlib.crc32(repr(float(level)).encode()))
    rms = float(np.sqrt(np.mean(y ** 2)))
    return y + level * rms * rng.standard_normal(len(y))


def make_test_data(eq: Equation, n: int, seed: int):
    """Fresh noise-free points (another stream of the same Generator family) for R2."""
    X = sample_inputs(eq, n, equation_rng(eq, seed, 1))
    return X, evaluate(eq.sympy_expr(), eq.symbols(), X)


# =========================================================================== formulas
def as_expr(found, syms: list[sympy.Symbol]) -> sympy.Expr:
    """found (sympy expression or text) with its symbols replaced, by name, by ``syms``.

    A library may build Symbol('x') without assumptions while the truth uses
    Symbol('x', positive=True); sympy treats those as different symbols.
    """
    by_name = {s.name: s for s in syms}
    if isinstance(found, str):
        found = parse_expr(found, local_dict=dict(by_name))
    found = sympy.sympify(found)
    swap = {s: by_name[s.name] for s in found.free_symbols
            if isinstance(s, sympy.Symbol) and s.name in by_name and s != by_name[s.name]}
    return found.xreplace(swap) if swap else found


def parse_model(text: str, syms: list[sympy.Symbol]) -> sympy.Expr:
    """A model string of another library (Operon's infix: ``^`` for powers) as sympy.

    Variables are matched by name (so ``I``, ``E_n``, ``beta`` ... stay plain Symbols); the
    functions are those of the equation files plus Operon's ``square``, ``cbrt``, ``aq``,
    ``logabs`` and ``sqrtabs``. Unknown names become Symbols, which exact_check reports.
    """
    local = dict(FUNCTIONS)
    local.update(square=lambda a: a ** 2, cbrt=sympy.cbrt, aq=lambda a, b: a / sympy.sqrt(1 + b ** 2),
                 logabs=lambda a: sympy.log(sympy.Abs(a)), sqrtabs=lambda a: sympy.sqrt(sympy.Abs(a)),
                 pow=lambda a, b: a ** b, powabs=lambda a, b: sympy.Abs(a) ** b,
                 log1p=lambda a: sympy.log(1 + a), fmin=sympy.Min, fmax=sympy.Max,
                 ceil=sympy.ceiling, floor=sympy.floor)
    local.update({s.name: s for s in syms})
    return parse_expr(text, local_dict=local, transformations=standard_transformations + (convert_xor,))


def round_floats(expr: sympy.Expr, digits: int = 3, zero_below: float = 1e-4) -> sympy.Expr:
    """SRBench-style clean-up: floats below ``zero_below`` in magnitude -> 0, others rounded to
    ``digits`` decimals. The rounded values are stored as exact decimal Rationals (0.5 -> 1/2,
    2.0 -> 2), which have the same value but let sympy see that x**2.0 is x**2."""
    swap = {}
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Float):
            v = float(node)
            swap[node] = sympy.Integer(0) if abs(v) < zero_below else sympy.Rational(repr(round(v, digits)))
    return expr.xreplace(swap) if swap else expr


def floats_to_rationals(expr: sympy.Expr) -> sympy.Expr:
    """Every Float replaced by the Rational of its printed decimal value (no rounding)."""
    swap = {node: sympy.Rational(str(node)) for node in sympy.preorder_traversal(expr)
            if isinstance(node, sympy.Float)}
    return expr.xreplace(swap) if swap else expr


def tree_size(expr) -> int | None:
    """Number of nodes of the sympy expression tree (a library-neutral complexity)."""
    try:
        return sum(1 for _ in sympy.preorder_traversal(sympy.sympify(expr)))
    except Exception:
        return None


class _SimplifyTimeout(BaseException):
    """Raised by the alarm; a BaseException so that sympy's ``except Exception`` cannot eat it."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    """SIGALRM-based limit; a no-op off the main thread or where SIGALRM does not exist."""
    usable = (seconds and seconds > 0 and hasattr(signal, "SIGALRM")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def _raise(signum, frame):
        raise _SimplifyTimeout()

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _check_points(syms, ranges, n, seed):
    rng = np.random.default_rng([int(seed), 7])
    if ranges is None:
        ranges = [(s.name, 1.0, 5.0) for s in syms]
    lows = np.array([lo for _, lo, _ in ranges], dtype=np.float64)
    highs = np.array([hi for _, _, hi in ranges], dtype=np.float64)
    return rng.uniform(lows, highs, size=(n, len(syms)))


def _numeric_verdict(f: np.ndarray, t: np.ndarray, tol: float) -> tuple[bool, bool]:
    """(difference looks constant, ratio looks like a nonzero constant) at the check points."""
    ok = np.isfinite(f) & np.isfinite(t)
    if ok.sum() < max(3, len(t) // 2):
        return False, False
    f, t = f[ok], t[ok]
    scale = 1.0 + float(np.max(np.abs(t)))
    d = f - t
    diff_const = float(np.max(d) - np.min(d)) <= tol * (scale + float(np.max(np.abs(f))))
    ratio_const = False
    nz = np.abs(t) > 1e-12 * scale
    if nz.sum() >= 3:
        r = f[nz] / t[nz]
        rmax = float(np.max(np.abs(r)))
        ratio_const = rmax > 1e-12 and float(np.max(r) - np.min(r)) <= tol * rmax
    return diff_const, ratio_const


def exact_check(found, truth, symbols, ranges=None, *, digits: int = 3, n_points: int = 64,
                tol: float = 1e-6, timeout_s: float = 30.0, seed: int = 0) -> tuple[bool, str]:
    """SRBench's exact-recovery rule, with the reason for the verdict.

    Recovered when sympy simplifies ``found - truth`` to a constant, or ``found / truth`` to a
    nonzero constant (with trigonometric functions also after writing them in exponentials). ``found`` is tried as given, with its floats written as exact rationals
    (same values; sympy handles x**(1/2) better than x**0.5), and with its floats rounded to
    ``digits`` decimals (floats below 1e-4 in magnitude set to 0), as SRBench does. Before any
    ``simplify`` a numeric test on ``n_points`` random points in ``ranges`` (default U(1,5))
    rejects expressions whose difference and ratio are both clearly non-constant, so simplify
    only ever sees near-equal pairs; simplify itself runs under a ``timeout_s`` alarm (main
    thread only). Any exception counts as not recovered.

    ``symbols`` carry the assumptions (``Equation.symbols()``: positive where the range's low
    end is > 0, nonnegative where it is 0); symbols of ``found`` are matched to them by name.
    """
    try:
        syms = list(symbols)
        truth = as_expr(truth, syms)
        found = as_expr(found, syms)
    except Exception as exc:
        return False, f"parse error: {type(exc).__name__}: {exc}"
    extra = {s.name for s in found.free_symbols} - {s.name for s in syms}
    if extra:
        return False, f"unknown symbols {sorted(extra)}"
    try:
        X = _check_points(syms, ranges, n_points, seed)
        t_vals = evaluate(truth, syms, X)
    except Exception as exc:
        return False, f"truth not evaluable: {type(exc).__name__}: {exc}"

    candidates = [("as given", found)]
    if found.has(sympy.Float):
        candidates.append(("floats as exact rationals", floats_to_rationals(found)))
        candidates.append((f"floats rounded to {digits} digits", round_floats(found, digits)))

    reasons = []
    for label, cand in candidates:
        try:
            f_vals = evaluate(cand, syms, X)
        except Exception as exc:
            reasons.append(f"{label}: not evaluable ({type(exc).__name__})")
            continue
        diff_like, ratio_like = _numeric_verdict(f_vals, t_vals, tol)
        if not (diff_like or ratio_like):
            reasons.append(f"{label}: numerically different")
            continue
        try:
            with _time_limit(timeout_s):
                if diff_like:
                    d = _simplified(cand - truth)
                    if not d.free_symbols and d.is_finite is not False:
                        return True, f"{label}: found - truth = {d}"
                if ratio_like:
                    q = _simplified(cand / truth)
                    if not q.free_symbols and q.is_finite is not False and q != 0:
                        return True, f"{label}: found / truth = {q}"
            reasons.append(f"{label}: numerically equal up to a constant but sympy could not show it")
        except _SimplifyTimeout:
            reasons.append(f"{label}: simplify timed out after {timeout_s:g} s")
        except Exception as exc:
            reasons.append(f"{label}: {type(exc).__name__}: {exc}")
    return False, "; ".join(reasons)


def _simplified(expr):
    """``sympy.simplify(expr)``; where that keeps symbols and expr has trigonometric functions,
    simplify of expr written in exponentials too (``sin(t)**2 + 2*cos(t) - 2`` against
    ``-4*sin(t/2)**4``: simplify alone misses the half angle)."""
    out = sympy.simplify(expr)
    if out.free_symbols and expr.has(sympy.sin, sympy.cos, sympy.tan):
        alt = sympy.simplify(expr.rewrite(sympy.exp))
        if not alt.free_symbols:
            return alt
    return out


def is_exact(found, truth, symbols, ranges=None, **kw) -> bool:
    """True when ``found`` is ``truth`` up to an additive or a (nonzero) multiplicative constant."""
    return exact_check(found, truth, symbols, ranges, **kw)[0]


def r2_score(expr, syms, X: np.ndarray, y: np.ndarray) -> float:
    """R2 of expr on (X, y); any non-finite prediction (or an evaluation error) -> -inf."""
    try:
        pred = evaluate(as_expr(expr, syms), syms, X)
    except Exception:
        return float("-inf")
    if not np.all(np.isfinite(pred)):
        return float("-inf")
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - np.mean(y)) ** 2))
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else float("-inf")
    r2 = 1.0 - ss_res / ss_tot
    return r2 if math.isfinite(r2) else float("-inf")


# =========================================================================== runners
def _score(rec: dict, formula, eq: Equation, Xt, yt) -> dict:
    """Exactness, R2 on the fresh points and tree size of a returned formula, into rec."""
    syms, truth = eq.symbols(), eq.sympy_expr()
    rec.update(ok=True, formula=str(formula), tree_size=tree_size(formula))
    rec["exact"], rec["exact_reason"] = exact_check(formula, truth, syms, eq.ranges)
    rec["r2"] = r2_score(formula, syms, Xt, yt)
    rec["outcome"] = "exact" if rec["exact"] else "not exact"
    return rec


def _crash(rec: dict, exc: BaseException, t0: float, **extra) -> dict:
    rec.update(time_s=time.perf_counter() - t0, outcome=f"crash: {type(exc).__name__}: {exc}",
               traceback=traceback.format_exc(limit=8), **extra)
    return rec


def run_kanlab(eq: Equation, X, y, Xt, yt, budget: float, seed: int, workers: int = 1) -> dict:
    rec: dict = {"ok": False}
    t0 = time.perf_counter()
    try:
        res = kanlab.discover(X, y, var_names=eq.var_names, time_budget=budget, seed=seed,
                              workers=workers)
    except Exception as exc:
        return _crash(rec, exc, t0)
    rec["time_s"] = time.perf_counter() - t0
    formula = getattr(res, "formula", None)
    rec.update(formula=str(formula), r2_reported=_float(getattr(res, "r2", None)),
               complexity=_int(getattr(res, "complexity", None)),
               stages={k: _float(v) for k, v in (getattr(res, "stages", None) or {}).items()})
    if formula is None:
        rec["outcome"] = "no formula"
        return rec
    return _score(rec, formula, eq, Xt, yt)


def operon_error() -> str | None:
    """Why pyoperon cannot be used here, or None."""
    try:
        import importlib
        importlib.import_module("pyoperon.sklearn")
    except Exception as exc:
        return (f"pyoperon is not importable ({type(exc).__name__}: {exc}); install it with "
                "`.venv/bin/pip install pyoperon` (or the `bench` extra)")
    return None


def operon_max_time(budget: float) -> int:
    """pyoperon's max_time is whole seconds: the budget rounded, at least 1 s."""
    return max(1, int(round(budget)))


def run_operon(eq: Equation, X, y, Xt, yt, args) -> dict:
    """Operon's SymbolicRegressor on the same data, wall time limited to the budget."""
    rec: dict = {"ok": False}
    from pyoperon.sklearn import SymbolicRegressor  # imported before the clock starts

    t0 = time.perf_counter()
    try:
        est = SymbolicRegressor(allowed_symbols=args.operon_symbols,
                                max_time=operon_max_time(args.budget),
                                max_evaluations=int(args.operon_evaluations),
                                generations=int(args.operon_generations),
                                n_threads=args.operon_threads, random_state=args.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
        rec["time_s"] = time.perf_counter() - t0
        text = est.get_model_string(est.model_, 12, eq.var_names)
        stats = getattr(est, "stats_", {}) or {}
        rec.update(model_string=text, complexity=_int(stats.get("model_complexity")),
                   length=_int(stats.get("model_length")), generations=_int(stats.get("generations")),
                   evaluations=_int(stats.get("evaluation_count")))
        formula = parse_model(text, eq.symbols())
    except Exception as exc:
        fit_s = rec.get("time_s")
        _crash(rec, exc, t0)
        if fit_s is not None:  # fitted, but its model string did not parse
            rec.update(time_s=fit_s, outcome=f"unparsable model: {type(exc).__name__}: {exc}")
        return rec
    return _score(rec, formula, eq, Xt, yt)


@contextlib.contextmanager
def _inside(path: str):
    """chdir into path for the block (pykan writes relative paths in places)."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def run_pykan(eq: Equation, X, y, Xt, yt, args) -> dict:
    """pykan's tutorial recipe on the same data; crashes are the recorded outcome."""
    syms = eq.symbols()
    rec: dict = {"ok": False, "stages": {}}
    log = io.StringIO()
    t0 = time.perf_counter()
    stage_t = t0

    def mark(name):
        nonlocal stage_t
        now = time.perf_counter()
        rec["stages"][name] = now - stage_t
        stage_t = now

    try:
        from kan import KAN as PyKAN
        from kan.utils import ex_round

        n_train = int(round(0.8 * len(X)))
        f32 = torch.float32
        dataset = {
            "train_input": torch.tensor(X[:n_train], dtype=f32),
            "train_label": torch.tensor(y[:n_train, None], dtype=f32),
            "test_input": torch.tensor(X[n_train:], dtype=f32),
            "test_label": torch.tensor(y[n_train:, None], dtype=f32),
        }
        d = X.shape[1]
        with tempfile.TemporaryDirectory(prefix="bench_feynman_pykan_") as tmp, _inside(tmp), \
                contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            # auto_save=False is not inherited: prune() and refine() build models with
            # auto_save=True that write checkpoints and history.txt into ckpt_path.
            model = PyKAN(width=[d, args.pykan_hidden, 1], grid=5, k=3, seed=0, auto_save=False,
                          ckpt_path=tmp)
            mark("init")
            model.fit(dataset, opt="LBFGS", steps=args.pykan_steps, lamb=args.pykan_lamb)
            mark("fit_sparse")
            model = model.prune()
            mark("prune")
            model = model.refine(10)
            model.fit(dataset, opt="LBFGS", steps=args.pykan_steps)
            mark("refine_fit")
            model.auto_symbolic()
            mark("auto_symbolic")
            model.fit(dataset, opt="LBFGS", steps=args.pykan_steps)
            mark("fit_symbolic")
            out = model.symbolic_formula(var=syms)
            if out is None:
                raise RuntimeError("symbolic_formula returned None")
            formula = ex_round(out[0][0], 4)
            mark("formula")
    except BaseException as exc:  # noqa: BLE001 - a pykan crash is a result, not a failure
        if isinstance(exc, KeyboardInterrupt):
            raise
        rec.update(time_s=time.perf_counter() - t0, outcome=f"crash: {type(exc).__name__}: {exc}",
                   traceback=traceback.format_exc(limit=8), log_tail=log.getvalue()[-2000:])
        return rec
    rec["time_s"] = time.perf_counter() - t0
    return _score(rec, formula, eq, Xt, yt)


def _float(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _int(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def run_equation(eq: Equation, level: float, args, with_pykan: bool = False,
                 with_operon: bool = False) -> dict:
    """One equation at one noise level: every method asked for, on the same data."""
    rec = {"name": eq.name, "noise": level, "source": eq.source, "truth": eq.expr,
           "ranges": [list(r) for r in eq.ranges], "tier": eq.tier, "note": eq.note,
           "n_vars": len(eq.ranges)}
    t0 = time.perf_counter()
    X, y_clean = make_data(eq, args.n, args.seed)
    y = add_noise(eq, y_clean, level, args.seed)
    Xt, yt = make_test_data(eq, args.n_test, args.seed)
    # what the noise allows: a formula whose squared error on the fresh points is at most the
    # noise's variance is as accurate as the training data can tell
    rec["noise_var"] = float((level * np.sqrt(np.mean(y_clean ** 2))) ** 2)
    rec["test_var"] = float(np.var(yt))
    rec["data_s"] = time.perf_counter() - t0
    if not args.no_kanlab:
        rec["kanlab"] = run_kanlab(eq, X, y, Xt, yt, args.budget, args.seed,
                                   getattr(args, "discover_workers", 1))
    if with_operon:
        rec["operon"] = run_operon(eq, X, y, Xt, yt, args)
    if with_pykan:
        rec["pykan"] = run_pykan(eq, X, y, Xt, yt, args)
    return rec


def _worker_init(threads: int):
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")


# =========================================================================== environment & report
def _version(dist: str):
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:
        return None


def environment(args) -> dict:
    def git(*cmd):
        try:
            return subprocess.run(["git", "-C", str(ROOT), *cmd], capture_output=True, text=True,
                                  timeout=10).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            return None

    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "torch": torch.__version__,
        "torch_threads": 1 if args.workers > 1 else torch.get_num_threads(),
        "workers": args.workers,
        "discover_workers": getattr(args, "discover_workers", 1),
        "numpy": np.__version__,
        "sympy": sympy.__version__,
        "pykan": _version("pykan"),
        "pyoperon": _version("pyoperon"),
        "kanlab": getattr(kanlab, "__version__", None) if kanlab else f"not importable ({KANLAB_IMPORT_ERROR})",
        "kanlab_file": getattr(kanlab, "__file__", None),
        "equations_dir": None if args.subset == "quick" else str(args.equations_dir),
        "git_commit": git("rev-parse", "HEAD"),
        "git_src_dirty": bool(git("status", "--porcelain", "--", "src")),
    }


def _fmt_r2(v) -> str:
    if v is None:
        return "-"
    if v == float("-inf"):
        return "-inf"
    return f"{v:.6f}" if v > 0.99 else f"{v:.3f}"


def _fmt_exact(part: dict | None) -> str:
    if part is None:
        return "-"
    if not part.get("ok"):
        out = str(part.get("outcome", "fail"))
        return "crash" if out.startswith("crash") else out.split(":")[0]
    return "**yes**" if part.get("exact") else "no"


def _code(text, limit=160) -> str:
    if text is None:
        return "-"
    text = str(text).replace("|", "\\|").replace("`", "'").replace("\n", " ")
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"`{text}`"


def _t(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def _med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _summary(records, key: str, level: float, budget: float) -> dict | None:
    """Per (method, noise level): the SRBench rates, times and sizes."""
    rows = [r for r in records if key in r and r["noise"] == level]
    parts = [r[key] for r in rows]
    if not parts:
        return None
    n = len(parts)
    exact = sum(1 for p in parts if p.get("exact"))
    times = [p["time_s"] for p in parts if p.get("time_s") is not None]
    r2s = [p["r2"] for p in parts if p.get("r2") is not None]
    good = sum(1 for v in r2s if v > 0.999)
    return {
        "method": key, "noise": level, "n": n, "exact": exact, "exact_rate": exact / n,
        "r2_above_0.999": good, "r2_above_0.999_rate": good / n,
        "median_r2": _med(r2s),
        "median_time_s": _med(times), "max_time_s": max(times) if times else None,
        "total_time_s": sum(times) if times else None,
        "median_complexity": _med([p.get("complexity") for p in parts]),
        "median_tree_size": _med([p.get("tree_size") for p in parts]),
        # pykan's recipe has no time limit, so it cannot be over one
        "over_budget": None if key == "pykan" else sum(1 for t in times if t > 1.1 * budget),
        "crashes": sum(1 for p in parts if str(p.get("outcome", "")).startswith("crash")),
        "within_noise": _within_noise(rows, key) if level > 0 else None,
    }


def _within_noise(rows, key) -> int | None:
    """Runs whose formula's mean squared error on the fresh noise-free points is at most the
    training noise's variance (no formula that fits the noise); None without the fields."""
    if not all("noise_var" in r and "test_var" in r for r in rows):
        return None
    return sum(1 for r in rows if r[key].get("r2") is not None and math.isfinite(r[key]["r2"])
               and (1.0 - r[key]["r2"]) * r["test_var"] <= r["noise_var"])


def _pct(k, n) -> str:
    return f"{100 * k / n:.1f}% ({k}/{n})" if n else "-"


def _levels_text(levels) -> str:
    return ", ".join(f"{v:g}" for v in levels)


def render_markdown(env, args, eqs, records, summaries) -> str:
    methods = [(k, label) for k, label in METHODS if any(k in r for r in records)]
    levels = list(args.noise)
    out = ["# Feynman symbolic-regression benchmark (SRBench ground truth)", ""]
    out.append(f"Run of {env['date_utc']}: torch {env['torch']} ({env['torch_threads']} thread(s) per "
               f"equation, {env['workers']} worker(s)), {env['cpu_count']} CPUs "
               f"(affinity {env['cpu_affinity']}), Python {env['python']}, sympy {env['sympy']}, "
               f"pykan {env['pykan']}, pyoperon {env['pyoperon']}, kanlab {env['kanlab']} at commit "
               f"`{(env['git_commit'] or '?')[:12]}`{' (src/ modified)' if env['git_src_dirty'] else ''}.")
    out.append("")
    out.append(f"Command: `{env['command']}`")
    out.append("")
    subset = {"full": "SRBench's 120 Feynman ground-truth equations (100 Feynman + 20 bonus)",
              "feynman": "SRBench's 100 Feynman equations", "bonus": "SRBench's 20 bonus equations",
              "quick": "the 36-equation quick table"}[args.subset]
    partial = " (a selection: rates are not comparable to published ones)" if (
        args.only or args.limit is not None) else ""
    out.append(f"Equations: {subset}; {len(eqs)} run{partial}, at noise level(s) {_levels_text(levels)}: "
               f"{len(records)} runs per method. Equation files: `{env['equations_dir'] or '-'}`.")
    out.append("")
    out.append(f"Data: n = {args.n} points per equation drawn from the stated ranges (seed {args.seed}), "
               f"the same inputs at every level; noise is Gaussian with standard deviation level x RMS(y) "
               f"(RMS = sqrt(mean(y^2)) of the training target), on the training target only. R2 on "
               f"{args.n_test} fresh noise-free points, computed by this script from the returned formula "
               f"(non-finite -> -inf). Budget {args.budget:g} s per run; 'over budget' counts runs that "
               f"took more than 1.1 x budget; 'error <= noise' counts runs (at a noise level above 0) "
               f"whose formula's mean squared error on the fresh points is at most the training noise's "
               f"variance. 'exact' is SRBench's rule: sympy simplifies found - truth "
               f"to a constant or found / truth to a nonzero constant (symbols positive where the range "
               f"is, nonnegative where it starts at 0), with found taken as given, with its floats as "
               f"exact rationals, or with its floats rounded to 3 decimals (below 1e-4 -> 0).")
    if any("operon" in r for r in records):
        out.append("")
        out.append(f"Operon: pyoperon {env['pyoperon']} `SymbolicRegressor(allowed_symbols="
                   f"'{args.operon_symbols}', max_time={operon_max_time(args.budget)}, "
                   f"max_evaluations={int(args.operon_evaluations)}, generations={int(args.operon_generations)}, "
                   f"n_threads={args.operon_threads}, random_state={args.seed})`, other settings its "
                   f"defaults, on all n points; its model string (12 digits) parsed with sympy and scored "
                   f"like kanlab's formula. Complexity: Operon's own (`stats_['model_complexity']`).")
    if any("pykan" in r for r in records):
        out.append("")
        out.append(f"pykan: KAN(width=[d, {args.pykan_hidden}, 1], grid=5, k=3, seed=0), fit LBFGS "
                   f"{args.pykan_steps} steps lamb={args.pykan_lamb:g}, prune(), refine(10), fit "
                   f"{args.pykan_steps}, auto_symbolic(), fit {args.pykan_steps}, symbolic_formula(), "
                   f"ex_round(4); trained on 80% of the same n points (its test split is the other 20%), "
                   f"no time limit. Run on the first {args.pykan_limit} equation(s) only. Complexity: "
                   f"nodes of its sympy tree.")
    out.append("")

    out.append("## Summary")
    out.append("")
    out.append("| method | noise | runs | exact recovery | R2 > 0.999 | median time (s) | max time (s) "
               "| median complexity | median nodes | over budget | crashes | error <= noise |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in summaries:
        label = dict(METHODS)[s["method"]]
        cx = "-" if s["median_complexity"] is None else f"{s['median_complexity']:g}"
        nodes = "-" if s["median_tree_size"] is None else f"{s['median_tree_size']:g}"
        over = "no limit" if s["over_budget"] is None else str(s["over_budget"])
        out.append(f"| {label} | {s['noise']:g} | {s['n']} | {_pct(s['exact'], s['n'])} | "
                   f"{_pct(s['r2_above_0.999'], s['n'])} | {_t(s['median_time_s'])} | "
                   f"{_t(s['max_time_s'])} | {cx} | {nodes} | {over} | {s['crashes']} | "
                   f"{'-' if s.get('within_noise') is None else _pct(s['within_noise'], s['n'])} |")
    out.append("")

    out.append("## Beside the published exact-recovery rates")
    out.append("")
    cols = sorted(set(levels) | {0.0, 0.001})
    out.append("| method | " + " | ".join(f"noise {v:g}" for v in cols) + " | conditions |")
    out.append("| --- | " + " | ".join("---:" for _ in cols) + " | --- |")
    by = {(s["method"], s["noise"]): s for s in summaries}
    for key, label in methods:
        cells = [(_pct(by[key, v]["exact"], by[key, v]["n"]) if (key, v) in by else "-") for v in cols]
        ran = max((by[key, v]["n"] for v in cols if (key, v) in by), default=len(eqs))
        out.append(f"| {label} (this run) | " + " | ".join(cells)
                   + f" | {ran} equations, one seed, {args.budget:g} s each |")
    for name, rates, where in PUBLISHED:
        cells = [f"{rates[v]:.1f}%" if v in rates else "-" for v in cols]
        out.append(f"| {name} (published) | " + " | ".join(cells) + f" | {where} |")
    out.append("")
    out.append("SRBench 2021's rates are over its Feynman problems, several seeds each, with hours per "
               "problem; they are the reference, not a like-for-like comparison with a short budget.")
    out.append("")

    out.append("## Per run")
    out.append("")
    headers = ["equation", "noise"]
    for key, _ in methods:
        headers += [f"{key} exact", f"{key} R2", f"{key} s", f"{key} cx", f"{key} formula"]
    out.append("| " + " | ".join(headers) + " |")
    out.append("| " + " | ".join("---:" if h.endswith((" R2", " s", " cx")) or h == "noise" else "---"
                                 for h in headers) + " |")
    for r in records:
        row = [r["name"] + (" (*)" if r.get("note") else ""), f"{r['noise']:g}"]
        for key, _ in methods:
            p = r.get(key)
            if p is None:
                row += ["-"] * 5
                continue
            cx = p.get("complexity", p.get("tree_size") if key == "pykan" else None)
            row += [_fmt_exact(p), _fmt_r2(p.get("r2")), _t(p.get("time_s")),
                    "-" if cx is None else str(cx), _code(p.get("formula"), 120) if p.get("ok") else "-"]
        out.append("| " + " | ".join(row) + " |")
    out.append("")

    out.append("## Equations")
    out.append("")
    out.append("| equation | set | formula | ranges |")
    out.append("| --- | --- | --- | --- |")
    for e in eqs:
        title = f" ({e.title})" if e.title else ""
        out.append(f"| {e.name}{' (*)' if e.note else ''} | {e.source}{title} | {_code(e.expr, 200)} "
                   f"| {e.ranges_text()} |")
    notes = [e for e in eqs if e.note]
    if notes:
        out.append("")
        for e in notes:
            out.append(f"(*) {e.name}: {e.note}")
    crashes = [(r["name"], r["noise"], key, r[key]["outcome"]) for r in records for key, _ in methods
               if key in r and not r[key].get("ok")]
    if crashes:
        out.append("")
        out.append("Crashes and runs without a formula:")
        out.append("")
        for name, level, key, outcome in crashes:
            out.append(f"- {name} at noise {level:g} ({key}): {_code(outcome, 300)}")
    out.append("")
    return "\n".join(out)


def _json_safe(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return _json_safe(obj.item())
    return obj


# =========================================================================== self-test
def _self_test_equation(eq: Equation, args) -> tuple[bool, str, bool]:
    """(passed, report line, truth-as-floats counted exact) for one equation; no training."""
    syms, truth = eq.symbols(), eq.sympy_expr()
    X, y = make_data(eq, args.n, args.seed)  # raises if y is not finite
    X2, _ = make_data(eq, args.n, args.seed)
    Xt, yt = make_test_data(eq, args.n_test, args.seed)
    lows = np.array([lo for _, lo, _ in eq.ranges]); highs = np.array([hi for _, _, hi in eq.ranges])
    problems = []
    if not np.array_equal(X, X2):
        problems.append("data not reproducible")
    if np.array_equal(X[: len(Xt)], Xt[: len(X)]):
        problems.append("test points equal training points")
    if not (np.all((X >= lows) & (X <= highs)) and np.all((Xt >= lows) & (Xt <= highs))):
        problems.append("points outside the ranges")
    if not np.all(np.isfinite(yt)):
        problems.append("non-finite truth on the test points")
    # SRBench noise: std level * RMS(y), fresh per level, none at level 0.
    level = 0.01
    noisy = add_noise(eq, y, level, args.seed)
    ratio = float(np.std(noisy - y)) / (level * float(np.sqrt(np.mean(y ** 2))))
    if not (0.85 < ratio < 1.15) or not np.array_equal(noisy, add_noise(eq, y, level, args.seed)) \
            or not np.array_equal(add_noise(eq, y, 0.0, args.seed), y):
        problems.append(f"noise rule (std / (level * RMS) = {ratio:.3f})")
    name0, lo0, hi0 = eq.ranges[0]
    perturbed = truth.subs(syms[0], syms[0] + (hi0 - lo0) / 10)  # the first input shifted
    t0 = time.perf_counter()
    got = tuple(is_exact(f, truth, syms, eq.ranges) for f in (
        truth, truth * 2, truth + 1, perturbed, truth + syms[0] ** 2, truth * syms[-1]))
    want = (True, True, True, False, False, False)
    if got != want:
        problems.append("exact checker")
    # Informational: the truth with every constant evaluated to a 15-digit float, as a
    # numerical fit would return it (SRBench's 3-digit rounding does not undo all of them).
    floaty = is_exact(sympy.N(truth, 15), truth, syms, eq.ranges, timeout_s=10)
    dt = time.perf_counter() - t0
    r2 = r2_score(truth, syms, Xt, yt)
    if r2 != 1.0:
        problems.append(f"R2(truth) = {r2}")
    line = (f"{eq.name:<10} {len(syms):>2} [{y.min():10.4g},{y.max():10.4g}]  "
            + " ".join(f"{'T' if g else 'F':>3}" for g in got)
            + f"  {ratio:5.3f}  {'T' if floaty else 'F':>6}  {dt:6.2f}"
            + ("" if not problems else "  <-- FAIL: " + "; ".join(problems)))
    return not problems, line, floaty


def self_test(args) -> int:
    """Data generation, the noise rule and the exact checker on every selected equation, then
    special cases of the checker; no training. Returns the number of failures."""
    failures = n_floaty = 0
    eqs = select(args)
    print(f"{'equation':<10} {'d':>2} {'y range':>23}  {'truth':>3} {'x2':>3} {'+1':>3} {'pert':>3} "
          f"{'+x0^2':>3} {'*x_d':>3} noise  floats  check(s)")
    for eq in eqs:
        try:
            ok, line, floaty = _self_test_equation(eq, args)
        except Exception as exc:
            ok, line, floaty = False, f"{eq.name:<10} <-- FAIL: {type(exc).__name__}: {exc}", False
        failures += not ok
        n_floaty += floaty
        print(line, flush=True)
    for e in eqs:
        if e.note and e.source != "quick":
            print(f"  note {e.name}: {e.note}")

    # Cases that exercise rounding, symbol assumptions, text input and failure handling.
    k, x = sympy.symbols("k_spring x")  # no assumptions: as a library might build them
    eq = next(e for e in QUICK_EQUATIONS if e.name == "I.14.4")
    syms = eq.symbols()
    cases = [
        ("0.50000003*k*x**2 + 2e-6 (rounding)", 0.50000003 * k * x ** 2 + 2e-6, True),
        ("0.52*k*x**2 (ratio const: exact)", 0.52 * k * x ** 2, True),
        ("0.5*k*x**2.01", 0.5 * k * x ** 2.01, False),
        ("text '0.5*k_spring*x**2 - 3'", "0.5*k_spring*x**2 - 3", True),
        ("k*x**2/2 + 1e-3*x (not exact)", k * x ** 2 / 2 + sympy.Float(1e-3) * x, False),
        ("0 (zero ratio)", sympy.Integer(0), False),
        ("unknown symbol z", k * sympy.Symbol("z"), False),
        ("1/(x - x) (nan)", sympy.Integer(1) / (x - x), False),
        ("Operon '((0.5 * k_spring) * (x ^ 2))'", parse_model("((0.5 * k_spring) * (x ^ 2))", syms), True),
        ("Operon '(1.5 + (0.5 * (k_spring * square(x))))'",
         parse_model("(1.5 + (0.5 * (k_spring * square(x))))", syms), True),
        ("Operon '(1.5 + (0.25 * (k_spring * square(x))))' (affine)",
         parse_model("(1.5 + (0.25 * (k_spring * square(x))))", syms), False),
    ]
    # A variable named I (not sympy's imaginary unit), and sqrt(x**2) = x for x > 0.
    eq_i = Equation("II.13.17", "1/(4*pi*epsilon*c**2)*2*I/r",
                    (("epsilon", 1, 5), ("c", 1, 5), ("I", 1, 5), ("r", 1, 5)), source="feynman")
    eq_s = Equation("sqrt", "sqrt(x**2)*y", (("x", 1, 5), ("y", 0, 1)), source="feynman")
    special = [(eq, label, found, want) for label, found, want in cases] + [
        (eq_i, "Operon '(0.159154943092 * (I / ((epsilon * (c ^ 2)) * r)))'",
         parse_model("(0.159154943092 * (I / ((epsilon * (c ^ 2)) * r)))", eq_i.symbols()), True),
        (eq_i, "I*r (wrong)", "I*r", False),
        (eq_s, "x*y (x positive, y nonnegative)", "x*y", True),
    ]
    print()
    for e, label, found, want in special:
        got, why = exact_check(found, e.sympy_expr(), e.symbols(), e.ranges)
        ok = got == want
        failures += not ok
        print(f"{e.name} vs {label:<58} -> {got!s:<5} ({why}){'' if ok else '  <-- FAIL'}")
    assumptions = [s.is_positive for s in next(e for e in QUICK_EQUATIONS if e.name == "I.26.2").symbols()]
    if assumptions != [None, True]:  # n ~ U(0, 1): nonnegative only; theta2 ~ U(1, 5): positive
        failures += 1
        print(f"symbol assumptions of I.26.2 wrong: positive = {assumptions}  <-- FAIL")
    r2_nan = r2_score(sympy.sqrt(-k) * x, syms, *make_test_data(eq, 100, 0))
    print(f"R2 of sqrt(-k)*x (complex everywhere): {r2_nan}")
    failures += r2_nan != float("-inf")
    print(f"\n{len(eqs)} equation(s); truth with constants as 15-digit floats counted exact on "
          f"{n_floaty} of them")
    print(f"self-test: {failures} failure(s)")
    return failures


# =========================================================================== main
GROUPS = ("easy", "medium", "hard", "feynman", "bonus")


def select(args) -> list[Equation]:
    eqs = equations(args.subset, args.equations_dir, args.tilde)
    if args.only:
        names = [s.strip() for s in args.only.split(",") if s.strip()]
        known = {e.name for e in eqs}
        unknown = [s for s in names if s not in known and s not in GROUPS]
        if unknown:
            other = "quick" if args.subset != "quick" else "full"
            try:
                elsewhere = [s for s in unknown if s in {e.name for e in equations(
                    other, args.equations_dir, args.tilde)}]
            except Exception:
                elsewhere = []
            hint = f" ({', '.join(elsewhere)}: in --subset {other})" if elsewhere else ""
            raise SystemExit(f"unknown equation(s) {unknown} in --subset {args.subset}{hint}; "
                             "--list shows the names")
        eqs = [e for e in eqs if e.name in names or e.tier in names or e.source in names]
    if args.limit is not None:
        eqs = eqs[: args.limit]
    return eqs


def _noise_levels(text: str) -> list[float]:
    try:
        levels = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of numbers: {text!r}")
    if not levels or any(not math.isfinite(v) or v < 0 for v in levels):
        raise argparse.ArgumentTypeError(f"noise levels must be >= 0: {text!r}")
    return list(dict.fromkeys(levels))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--subset", choices=SUBSETS, default="full",
                   help="full: SRBench's 120 (100 Feynman + 20 bonus); feynman / bonus: one file; "
                        "quick: the 36-equation table")
    p.add_argument("--only", help="comma list of equation names, or the groups feynman/bonus "
                                  "(and easy/medium/hard of --subset quick)")
    p.add_argument("--limit", type=int, help="run only the first N selected equations")
    p.add_argument("--equations-dir", type=Path, default=DEFAULT_DIR,
                   help="folder of FeynmanEquations.csv and BonusEquations.csv")
    p.add_argument("--tilde", choices=("minus", "drop"), default="minus",
                   help="how to read the '~' of three bonus formulas (see feynman_equations.py)")
    p.add_argument("--budget", type=float, default=60.0, help="time budget per run (s)")
    p.add_argument("--seed", type=int, default=0, help="data seed and the methods' seed")
    p.add_argument("--n", type=int, default=1000, help="training points per equation")
    p.add_argument("--n-test", type=int, default=5000, help="fresh noise-free points for R2")
    p.add_argument("--noise", type=_noise_levels, default=[0.0, 0.001, 0.01],
                   help="comma list of noise levels; noise std = LEVEL * RMS(y), training target only")
    p.add_argument("--workers", "--jobs", type=int, default=1,
                   help="runs in parallel (processes, 1 torch thread each); 1 keeps timings clean")
    p.add_argument("--threads", type=int, help="torch threads with --workers 1 (default: torch's)")
    p.add_argument("--discover-workers", type=int, default=1,
                   help="processes per discover() call (its attempts in parallel; default 1)")
    p.add_argument("--out", help="writes OUT.md and OUT.json (default: benchmarks/results/"
                                 "feynman_srbench, feynman_quick, ...; '_partial' added with --only/--limit)")
    p.add_argument("--no-write", action="store_true", help="print the report only")
    p.add_argument("--no-kanlab", action="store_true", help="skip kanlab.discover (baselines only)")
    p.add_argument("--operon", action="store_true", help="also run Operon (pip install pyoperon)")
    p.add_argument("--operon-limit", type=int, default=None,
                   help="Operon on the first N selected equations only (default: all)")
    p.add_argument("--operon-symbols", default="add,sub,mul,div,square,sqrt,exp,log,sin,cos,constant,variable",
                   help="Operon's allowed_symbols")
    p.add_argument("--operon-evaluations", type=float, default=1e6,
                   help="Operon's max_evaluations (its default); max_time is the budget")
    p.add_argument("--operon-generations", type=int, default=1000, help="Operon's generations (its default)")
    p.add_argument("--operon-threads", type=int,
                   help="Operon's n_threads (default: the torch threads of a kanlab run)")
    p.add_argument("--pykan", action="store_true", help="also run pykan's tutorial recipe (no time limit)")
    p.add_argument("--pykan-limit", type=int, default=None,
                   help="pykan on the first N selected equations only (default: all)")
    p.add_argument("--pykan-steps", type=int, default=50, help="LBFGS steps of each pykan fit")
    p.add_argument("--pykan-lamb", type=float, default=0.01, help="sparsity penalty of pykan's first fit")
    p.add_argument("--pykan-hidden", type=int, default=5, help="hidden width of pykan's [d, H, 1]")
    p.add_argument("--list", action="store_true", help="print the equation table and exit")
    p.add_argument("--self-test", action="store_true",
                   help="check data, noise and the exact checker on the selection; no training")
    return p.parse_args(argv)


def _default_out(args) -> str:
    name = {"full": "feynman_srbench", "feynman": "feynman_srbench_feynman",
            "bonus": "feynman_srbench_bonus", "quick": "feynman_quick"}[args.subset]
    if args.only or args.limit is not None:
        name += "_partial"
    return str(ROOT / "benchmarks" / "results" / name)


def main(argv=None) -> int:
    args = parse_args(argv)
    eqs = select(args)
    if not eqs:
        raise SystemExit(f"no equation selected (--subset {args.subset}, --only {args.only!r}, "
                         f"--limit {args.limit})")
    if args.list:
        for e in eqs:
            print(f"{e.name:<10} {e.source:<7} {e.tier:<6} {e.expr:<60} {e.ranges_text()}"
                  + (f"   [{e.note}]" if e.note else ""))
        print(f"{len(eqs)} equation(s)")
        return 0
    if args.self_test:
        return 1 if self_test(args) else 0
    if not args.no_kanlab and kanlab is None:
        raise SystemExit(f"kanlab cannot be imported ({KANLAB_IMPORT_ERROR}); "
                         "use --no-kanlab with --operon or --pykan to run the baselines alone")
    if not args.no_kanlab and not hasattr(kanlab, "discover"):
        raise SystemExit("kanlab.discover does not exist in this kanlab "
                         f"({kanlab.__file__}); use --no-kanlab with --operon or --pykan")
    if args.operon and (err := operon_error()):
        raise SystemExit(f"--operon: {err}")
    if args.no_kanlab and not (args.pykan or args.operon):
        raise SystemExit("nothing to run: --no-kanlab without --operon or --pykan")
    if args.threads and args.workers == 1:
        torch.set_num_threads(args.threads)
    if args.operon_threads is None:
        args.operon_threads = torch.get_num_threads() if args.workers == 1 else 1
    args.pykan_limit = (len(eqs) if args.pykan_limit is None else args.pykan_limit) if args.pykan else 0
    args.operon_limit = (len(eqs) if args.operon_limit is None else args.operon_limit) if args.operon else 0
    args.equations_dir = str(args.equations_dir)
    args.out = args.out or _default_out(args)

    env = environment(args)
    levels = args.noise
    print(f"# {len(eqs)} equation(s) x noise {_levels_text(levels)}, budget {args.budget:g} s, "
          f"workers {args.workers}, operon on {min(args.operon_limit, len(eqs))}, "
          f"pykan on {min(args.pykan_limit, len(eqs))}", flush=True)
    # Level by level, so that a run stopped early still has whole levels.
    jobs = [(e, level, i < args.pykan_limit, i < args.operon_limit)
            for level in levels for i, e in enumerate(eqs)]
    results: dict[tuple, dict] = {}
    t_start = time.perf_counter()
    partial = Path(f"{args.out}.partial.json")

    def record(key, rec):
        results[key] = rec
        bits = []
        for lib, _ in METHODS:
            if lib in rec:
                part = rec[lib]
                bits.append(f"{lib}: {part.get('outcome')} R2={_fmt_r2(part.get('r2'))} "
                            f"{_t(part.get('time_s'))} s {part.get('formula', '')}"[:200])
        print(f"[{len(results)}/{len(jobs)}] {rec['name']} noise {rec['noise']:g}: "
              + (" | ".join(bits) or rec.get("error", "")), flush=True)
        if not args.no_write:  # a checkpoint for long runs; removed when the run completes
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps(_json_safe({"environment": env, "options": vars(args),
                                                      "runs": list(results.values())}), indent=1))

    if args.workers > 1:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx,
                                 initializer=_worker_init, initargs=(1,)) as pool:
            futs = {pool.submit(run_equation, e, level, args, wp, wo): (e, level)
                    for e, level, wp, wo in jobs}
            for fut in as_completed(futs):
                e, level = futs[fut]
                try:
                    rec = fut.result()
                except Exception as exc:  # the worker process itself died
                    rec = {"name": e.name, "noise": level, "source": e.source, "truth": e.expr,
                           "note": e.note, "error": f"{type(exc).__name__}: {exc}"}
                record((e.name, level), rec)
    else:
        warnings.filterwarnings("ignore")
        for e, level, wp, wo in jobs:
            record((e.name, level), run_equation(e, level, args, wp, wo))

    records = [results[e.name, level] for e, level, _, _ in jobs]
    summaries = [s for key, _ in METHODS for level in levels
                 if (s := _summary(records, key, level, args.budget)) is not None]
    env["wall_s"] = time.perf_counter() - t_start
    md = render_markdown(env, args, eqs, records, summaries)
    print()
    print(md)
    if not args.no_write:
        md_path, json_path = Path(f"{args.out}.md"), Path(f"{args.out}.json")
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(md)
        payload = {"environment": env, "options": vars(args), "summary": summaries,
                   "published_exact_rates_percent": [
                       {"method": m, "rates": {f"{k:g}": v for k, v in r.items()}, "source": w}
                       for m, r, w in PUBLISHED],
                   "equations": [{"name": e.name, "source": e.source, "title": e.title,
                                  "formula": e.expr, "published": e.published, "output": e.output,
                                  "ranges": [list(r) for r in e.ranges], "note": e.note} for e in eqs],
                   "runs": records}
        json_path.write_text(json.dumps(_json_safe(payload), indent=1))
        partial.unlink(missing_ok=True)
        print(f"wrote {md_path} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
