#!/usr/bin/env python
"""Symbolic-regression benchmark of ``kanlab.discover`` on Feynman equations.

Every equation of the table below (taken from the AI Feynman / SRBench Feynman set, with
the sampling ranges of the Feynman database) is sampled with a seeded numpy Generator,
handed to ``kanlab.discover``, and the returned formula is judged by

* SRBench's exact-recovery rule (``is_exact``): ``found - truth`` simplifies to a constant,
  or ``found / truth`` to a nonzero constant, after floats in ``found`` are rounded to 3
  digits (and floats below 1e-4 in magnitude set to 0);
* its R2 on fresh, noise-free test points, computed here (not the R2 kanlab reports).

With ``--pykan`` the same data also go through pykan's tutorial recipe (fit with sparsity
penalty, prune, refine, fit, auto_symbolic, fit, symbolic_formula) for a side-by-side view.

Run from the repository root:

    python benchmarks/bench_feynman.py                       # all equations, 60 s each
    python benchmarks/bench_feynman.py --limit 2 --budget 20 --no-write
    python benchmarks/bench_feynman.py --only I.12.1,I.14.4 --pykan
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
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

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
from sympy.parsing.sympy_parser import parse_expr


# =========================================================================== equations
@dataclass(frozen=True)
class Equation:
    """One benchmark problem: ``expr`` is sympy-parsable text over the names in ``ranges``."""

    name: str
    expr: str
    ranges: tuple  # ((variable, low, high), ...); every variable is drawn from U(low, high)
    tier: str  # "easy" / "medium" / "hard": a rough guide for --only, not used in scoring
    note: str = ""

    @property
    def var_names(self) -> list[str]:
        return [v for v, _, _ in self.ranges]

    def symbols(self) -> list[sympy.Symbol]:
        # Positive ranges -> positive symbols (lets sympy use sqrt(x**2) = x and friends).
        return [sympy.Symbol(v, positive=True) if lo >= 0 else sympy.Symbol(v, real=True)
                for v, lo, _ in self.ranges]

    def sympy_expr(self) -> sympy.Expr:
        syms = self.symbols()
        local = {s.name: s for s in syms}
        return parse_expr(self.expr, local_dict=local)

    def ranges_text(self) -> str:
        return ", ".join(f"{v}~U({_num(lo)},{_num(hi)})" for v, lo, hi in self.ranges)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _r(*triples):
    return tuple(triples)


# Ordered from easy to hard so that --limit N picks quick cases first; the toy problem of
# pykan's README comes first because both libraries are known to solve it.
EQUATIONS: tuple[Equation, ...] = (
    Equation("toy", "exp(sin(pi*x1) + x2**2)", _r(("x1", -1, 1), ("x2", -1, 1)), "easy",
             "pykan README example (ranges U(-1,1))"),
    Equation("I.12.1", "mu*Nn", _r(("mu", 1, 5), ("Nn", 1, 5)), "easy"),
    Equation("I.12.5", "q2*Ef", _r(("q2", 1, 5), ("Ef", 1, 5)), "easy"),
    Equation("I.14.4", "k_spring*x**2/2", _r(("k_spring", 1, 5), ("x", 1, 5)), "easy"),
    Equation("I.25.13", "q/C", _r(("q", 1, 5), ("C", 1, 5)), "easy"),
    Equation("I.29.4", "omega/c", _r(("omega", 1, 10), ("c", 1, 10)), "easy"),
    Equation("I.34.27", "h*omega/(2*pi)", _r(("omega", 1, 5), ("h", 1, 5)), "easy"),
    Equation("I.39.1", "3*pr*V/2", _r(("pr", 1, 5), ("V", 1, 5)), "easy"),
    Equation("II.3.24", "Pwr/(4*pi*r**2)", _r(("Pwr", 1, 5), ("r", 1, 5)), "easy"),
    Equation("II.8.31", "epsilon*Ef**2/2", _r(("epsilon", 1, 5), ("Ef", 1, 5)), "easy"),
    Equation("II.27.18", "epsilon*Ef**2", _r(("epsilon", 1, 5), ("Ef", 1, 5)), "easy"),
    Equation("II.38.14", "Y/(2*(1 + sigma))", _r(("Y", 1, 5), ("sigma", 1, 5)), "easy"),
    Equation("III.12.43", "n*h/(2*pi)", _r(("n", 1, 5), ("h", 1, 5)), "easy"),
    Equation("I.6.2a", "exp(-theta**2/2)/sqrt(2*pi)", _r(("theta", 1, 3)), "easy"),
    Equation("I.6.2", "exp(-(theta/sigma)**2/2)/(sqrt(2*pi)*sigma)",
             _r(("sigma", 1, 3), ("theta", 1, 3)), "medium"),
    Equation("I.26.2", "asin(n*sin(theta2))", _r(("n", 0, 1), ("theta2", 1, 5)), "medium"),
    Equation("II.11.28", "1 + n*alpha/(1 - n*alpha/3)", _r(("n", 0, 1), ("alpha", 0, 1)), "medium"),
    Equation("I.41.16*", "omega**3/(pi**2*(exp(omega/T) - 1))", _r(("omega", 1, 5), ("T", 1, 5)),
             "medium", "I.41.16 with h=2*pi, kb=c=1 (2 of its 5 variables kept)"),
    Equation("I.43.31", "mob*kb*T", _r(("mob", 1, 5), ("T", 1, 5), ("kb", 1, 5)), "medium"),
    Equation("II.27.16", "epsilon*c*Ef**2", _r(("epsilon", 1, 5), ("c", 1, 5), ("Ef", 1, 5)), "medium"),
    Equation("III.15.27", "2*pi*alpha/(n*d)", _r(("alpha", 1, 5), ("n", 1, 5), ("d", 1, 5)), "medium"),
    Equation("II.4.23", "q/(4*pi*epsilon*r)", _r(("q", 1, 5), ("epsilon", 1, 5), ("r", 1, 5)), "medium"),
    Equation("I.47.23", "sqrt(gamma*pr/rho)", _r(("gamma", 1, 5), ("pr", 1, 5), ("rho", 1, 5)), "medium"),
    Equation("I.10.7", "m_0/sqrt(1 - v**2/c**2)", _r(("m_0", 1, 5), ("v", 1, 2), ("c", 3, 10)), "medium"),
    Equation("I.15.1", "m_0*v/sqrt(1 - v**2/c**2)", _r(("m_0", 1, 5), ("v", 1, 2), ("c", 3, 10)), "medium"),
    Equation("I.34.1", "omega_0/(1 - v/c)", _r(("c", 3, 10), ("v", 1, 2), ("omega_0", 1, 5)), "medium"),
    Equation("I.27.6", "1/(1/d1 + n/d2)", _r(("d1", 1, 5), ("d2", 1, 5), ("n", 1, 5)), "medium"),
    Equation("II.15.4", "-mom*B*cos(theta)", _r(("mom", 1, 5), ("B", 1, 5), ("theta", 1, 5)), "medium"),
    Equation("III.17.37", "beta*(1 + alpha*cos(theta))",
             _r(("beta", 1, 5), ("alpha", 1, 5), ("theta", 1, 5)), "medium"),
    Equation("I.39.22", "n*kb*T/V", _r(("n", 1, 5), ("T", 1, 5), ("V", 1, 5), ("kb", 1, 5)), "medium"),
    Equation("I.18.4", "(m1*r1 + m2*r2)/(m1 + m2)",
             _r(("m1", 1, 5), ("m2", 1, 5), ("r1", 1, 5), ("r2", 1, 5)), "hard"),
    Equation("I.12.2", "q1*q2/(4*pi*epsilon*r**2)",
             _r(("q1", 1, 5), ("q2", 1, 5), ("epsilon", 1, 5), ("r", 1, 5)), "hard"),
    Equation("I.13.4", "m*(v**2 + u**2 + w**2)/2",
             _r(("m", 1, 5), ("v", 1, 5), ("u", 1, 5), ("w", 1, 5)), "hard"),
    Equation("I.30.3", "Int_0*sin(n*theta/2)**2/sin(theta/2)**2",
             _r(("Int_0", 1, 5), ("theta", 1, 5), ("n", 1, 5)), "hard"),
    Equation("I.37.4", "I1 + I2 + 2*sqrt(I1*I2)*cos(delta)",
             _r(("I1", 1, 5), ("I2", 1, 5), ("delta", 1, 5)), "hard"),
    Equation("I.8.14", "sqrt((x2 - x1)**2 + (y2 - y1)**2)",
             _r(("x1", 1, 5), ("x2", 1, 5), ("y1", 1, 5), ("y2", 1, 5)), "hard"),
)
EQ_BY_NAME = {e.name: e for e in EQUATIONS}


# =========================================================================== data
def equation_rng(eq: Equation, seed: int, stream: int) -> np.random.Generator:
    """A Generator that depends only on (seed, equation name, stream), not on --only/--limit."""
    return np.random.default_rng([int(seed), zlib.crc32(eq.name.encode()), int(stream)])


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


def make_data(eq: Equation, n: int, seed: int, noise: float = 0.0):
    """(X, y) for discovery: n points, y = f(X) (+ Gaussian noise of std noise*std(f(X)))."""
    rng = equation_rng(eq, seed, 0)
    X = sample_inputs(eq, n, rng)
    y = evaluate(eq.sympy_expr(), eq.symbols(), X)
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{eq.name}: non-finite target values on the sampling ranges")
    if noise > 0:
        y = y + noise * float(np.std(y)) * rng.standard_normal(n)
    return X, y


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
    nonzero constant. ``found`` is tried as given, with its floats written as exact rationals
    (same values; sympy handles x**(1/2) better than x**0.5), and with its floats rounded to
    ``digits`` decimals (floats below 1e-4 in magnitude set to 0), as SRBench does. Before any
    ``simplify`` a numeric test on ``n_points`` random points in ``ranges`` (default U(1,5))
    rejects expressions whose difference and ratio are both clearly non-constant, so simplify
    only ever sees near-equal pairs; simplify itself runs under a ``timeout_s`` alarm (main
    thread only). Any exception counts as not recovered.
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
                    d = sympy.simplify(cand - truth)
                    if not d.free_symbols and d.is_finite is not False:
                        return True, f"{label}: found - truth = {d}"
                if ratio_like:
                    q = sympy.simplify(cand / truth)
                    if not q.free_symbols and q.is_finite is not False and q != 0:
                        return True, f"{label}: found / truth = {q}"
            reasons.append(f"{label}: numerically equal up to a constant but sympy could not show it")
        except _SimplifyTimeout:
            reasons.append(f"{label}: simplify timed out after {timeout_s:g} s")
        except Exception as exc:
            reasons.append(f"{label}: {type(exc).__name__}: {exc}")
    return False, "; ".join(reasons)


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
def run_kanlab(eq: Equation, X, y, Xt, yt, budget: float, seed: int, workers: int = 1) -> dict:
    syms, truth = eq.symbols(), eq.sympy_expr()
    rec: dict = {"ok": False}
    t0 = time.perf_counter()
    try:
        res = kanlab.discover(X, y, var_names=eq.var_names, time_budget=budget, seed=seed,
                              workers=workers)
    except Exception as exc:
        rec.update(time_s=time.perf_counter() - t0, outcome=f"crash: {type(exc).__name__}: {exc}",
                   traceback=traceback.format_exc(limit=8))
        return rec
    rec["time_s"] = time.perf_counter() - t0
    formula = getattr(res, "formula", None)
    rec.update(ok=formula is not None, formula=str(formula),
               r2_reported=_float(getattr(res, "r2", None)),
               complexity=_int(getattr(res, "complexity", None)),
               stages={k: _float(v) for k, v in (getattr(res, "stages", None) or {}).items()})
    if formula is None:
        rec["outcome"] = "no formula"
        return rec
    rec["tree_size"] = tree_size(formula)
    rec["exact"], rec["exact_reason"] = exact_check(formula, truth, syms, eq.ranges)
    rec["r2"] = r2_score(formula, syms, Xt, yt)
    rec["outcome"] = "exact" if rec["exact"] else "not exact"
    return rec


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
    syms, truth = eq.symbols(), eq.sympy_expr()
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
    rec.update(ok=True, formula=str(formula), tree_size=tree_size(formula))
    rec["exact"], rec["exact_reason"] = exact_check(formula, truth, syms, eq.ranges)
    rec["r2"] = r2_score(formula, syms, Xt, yt)
    rec["outcome"] = "exact" if rec["exact"] else "not exact"
    return rec


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


def run_equation(eq_name: str, args, with_pykan: bool) -> dict:
    eq = EQ_BY_NAME[eq_name]
    rec = {"name": eq.name, "truth": eq.expr, "ranges": [list(r) for r in eq.ranges],
           "tier": eq.tier, "note": eq.note, "n_vars": len(eq.ranges)}
    t0 = time.perf_counter()
    X, y = make_data(eq, args.n, args.seed, args.noise)
    Xt, yt = make_test_data(eq, args.n_test, args.seed)
    rec["data_s"] = time.perf_counter() - t0
    if not args.no_kanlab:
        rec["kanlab"] = run_kanlab(eq, X, y, Xt, yt, args.budget, args.seed,
                                   getattr(args, "discover_workers", 1))
    if with_pykan:
        rec["pykan"] = run_pykan(eq, X, y, Xt, yt, args)
    return rec


def _worker_init(threads: int):
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")


# =========================================================================== environment & report
def environment(args) -> dict:
    def git(*cmd):
        try:
            return subprocess.run(["git", "-C", str(ROOT), *cmd], capture_output=True, text=True,
                                  timeout=10).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            return None

    try:
        from importlib.metadata import version
        pykan_version = version("pykan")
    except Exception:
        pykan_version = None
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
        "pykan": pykan_version,
        "kanlab": getattr(kanlab, "__version__", None) if kanlab else f"not importable ({KANLAB_IMPORT_ERROR})",
        "kanlab_file": getattr(kanlab, "__file__", None),
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
        return part.get("outcome", "fail")
    return "**yes**" if part.get("exact") else "no"


def _code(text, limit=160) -> str:
    if text is None:
        return "-"
    text = str(text).replace("|", "\\|").replace("`", "'").replace("\n", " ")
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"`{text}`"


def _summary(records, key) -> dict | None:
    parts = [r[key] for r in records if key in r]
    if not parts:
        return None
    n = len(parts)
    exact = sum(1 for p in parts if p.get("exact"))
    times = [p["time_s"] for p in parts if p.get("time_s") is not None]
    r2s = [p["r2"] for p in parts if p.get("r2") is not None]
    return {
        "n": n,
        "exact": exact,
        "exact_rate": exact / n,
        "crashes": sum(1 for p in parts if str(p.get("outcome", "")).startswith("crash")),
        "median_time_s": statistics.median(times) if times else None,
        "total_time_s": sum(times) if times else None,
        "median_r2": statistics.median(r2s) if r2s else None,
        "r2_above_0.999": sum(1 for v in r2s if v > 0.999),
    }


def _summary_line(label, s) -> str:
    if s is None:
        return ""
    med_r2 = "-" if s["median_r2"] is None else _fmt_r2(s["median_r2"])
    med_t = "-" if s["median_time_s"] is None else f"{s['median_time_s']:.1f} s"
    tot_t = "-" if s["total_time_s"] is None else f"{s['total_time_s']:.0f} s"
    return (f"**{label}**: exact recovery {s['exact']}/{s['n']} ({100 * s['exact_rate']:.0f}%), "
            f"R2 > 0.999 on {s['r2_above_0.999']}/{s['n']}, median R2 {med_r2}, "
            f"median time {med_t} (total {tot_t}), crashes {s['crashes']}")


def render_markdown(env, args, records, summaries) -> str:
    out = ["# Feynman symbolic-regression benchmark", ""]
    out.append(f"Run of {env['date_utc']}: torch {env['torch']} ({env['torch_threads']} thread(s) per "
               f"equation, {env['workers']} worker(s)), {env['cpu_count']} CPUs "
               f"(affinity {env['cpu_affinity']}), Python {env['python']}, sympy {env['sympy']}, "
               f"pykan {env['pykan']}, kanlab {env['kanlab']} at commit "
               f"`{(env['git_commit'] or '?')[:12]}`{' (src/ modified)' if env['git_src_dirty'] else ''}.")
    out.append("")
    out.append(f"Command: `{env['command']}`")
    out.append("")
    out.append(f"Data: n = {args.n} points per equation drawn from the stated ranges (seed {args.seed}), "
               f"noise {args.noise:g} x std(y); R2 on {args.n_test} fresh noise-free points, computed "
               f"by this script from the returned formula (non-finite -> -inf). kanlab budget "
               f"{args.budget:g} s per equation. 'exact' is SRBench's rule: sympy simplifies found - truth to "
               f"a constant or found / truth to a nonzero constant, with found taken as given, with its "
               f"floats as exact rationals, or with its floats rounded to 3 decimals (below 1e-4 -> 0).")
    if any("pykan" in r for r in records):
        out.append("")
        out.append(f"pykan: KAN(width=[d, {args.pykan_hidden}, 1], grid=5, k=3, seed=0), fit LBFGS "
                   f"{args.pykan_steps} steps lamb={args.pykan_lamb:g}, prune(), refine(10), fit "
                   f"{args.pykan_steps}, auto_symbolic(), fit {args.pykan_steps}, symbolic_formula(), "
                   f"ex_round(4); trained on 80% of the same n points (its test split is the other 20%), "
                   f"no time limit. Run on the first {args.pykan_limit} equation(s) only.")
    out.append("")
    for key, label in (("kanlab", "kanlab.discover"), ("pykan", "pykan recipe")):
        line = _summary_line(label, summaries.get(key))
        if line:
            out.append(line)
            out.append("")

    has_k = any("kanlab" in r for r in records)
    has_p = any("pykan" in r for r in records)
    headers = ["equation", "formula", "ranges"]
    if has_k:
        headers += ["kanlab exact", "R2", "time (s)", "complexity", "found formula"]
    if has_p:
        headers += ["pykan exact", "pykan R2", "pykan time (s)", "pykan nodes", "pykan formula"]
    rows = []
    for r in records:
        row = [r["name"] + (" (*)" if r.get("note") else ""), _code(r["truth"]),
               EQ_BY_NAME[r["name"]].ranges_text()]
        if has_k:
            k = r.get("kanlab")
            if k is None:
                row += ["-"] * 5
            else:
                row += [_fmt_exact(k), _fmt_r2(k.get("r2")), _t(k.get("time_s")),
                        "-" if k.get("complexity") is None else str(k["complexity"]),
                        _code(k.get("formula")) if k.get("ok") else "-"]
        if has_p:
            p = r.get("pykan")
            if p is None:
                row += ["-"] * 5
            else:
                row += [_fmt_exact(p), _fmt_r2(p.get("r2")), _t(p.get("time_s")),
                        "-" if p.get("tree_size") is None else str(p["tree_size"]),
                        _code(p.get("formula")) if p.get("ok") else "-"]
        rows.append(row)
    out.append("| " + " | ".join(headers) + " |")
    out.append("| " + " | ".join("---:" if h in ("R2", "time (s)", "complexity", "pykan R2",
                                               "pykan time (s)", "pykan nodes") else "---"
                                 for h in headers) + " |")
    for row in rows:
        out.append("| " + " | ".join(row) + " |")
    notes = [r for r in records if r.get("note")]
    if notes:
        out.append("")
        for r in notes:
            out.append(f"(*) {r['name']}: {r['note']}")
    staged = [(r["name"], lib, r[lib]["stages"]) for r in records for lib in ("kanlab", "pykan")
              if lib in r and r[lib].get("stages")]
    if staged:
        out.append("")
        out.append("Stage times (s):")
        out.append("")
        for name, lib, stages in staged:
            parts = ", ".join(f"{k} {v:.1f}" if isinstance(v, (int, float)) else f"{k} {v}"
                              for k, v in stages.items())
            out.append(f"- {name} ({lib}): {parts}")
    crashes = [(r["name"], lib, r[lib]["outcome"]) for r in records for lib in ("kanlab", "pykan")
               if lib in r and str(r[lib].get("outcome", "")).startswith("crash")]
    if crashes:
        out.append("")
        out.append("Crashes:")
        out.append("")
        for name, lib, outcome in crashes:
            out.append(f"- {name} ({lib}): {_code(outcome, 300)}")
    out.append("")
    return "\n".join(out)


def _t(v) -> str:
    return "-" if v is None else f"{v:.1f}"


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
def self_test(args) -> int:
    """Data generation and the exact checker on every equation; no training. Returns #failures."""
    failures = n_floaty = 0
    print(f"{'equation':<11} {'y range':>23}  truth  x2   +1  wrong1 wrong2 R2(truth)  floats  checker(s)")
    for eq in select(args):
        syms, truth = eq.symbols(), eq.sympy_expr()
        X, y = make_data(eq, args.n, args.seed, 0.0)
        X2, _ = make_data(eq, args.n, args.seed, 0.0)
        Xt, yt = make_test_data(eq, args.n_test, args.seed)
        assert np.array_equal(X, X2), "data not reproducible"
        assert not np.array_equal(X[: len(Xt)], Xt[: len(X)]), "test points equal training points"
        lows = np.array([lo for _, lo, _ in eq.ranges]); highs = np.array([hi for _, _, hi in eq.ranges])
        in_range = bool(np.all((X >= lows) & (X <= highs)))
        t0 = time.perf_counter()
        got = tuple(is_exact(f, truth, syms, eq.ranges) for f in (
            truth, truth * 2, truth + 1,
            truth + syms[0] ** 2, truth * syms[-1]))  # the last two are wrong formulas
        # Informational: the truth with every constant evaluated to a 15-digit float, as a
        # numerical fit would return it (SRBench's 3-digit rounding does not undo all of them).
        floaty = is_exact(sympy.N(truth, 15), truth, syms, eq.ranges)
        dt = time.perf_counter() - t0
        r2 = r2_score(truth, syms, Xt, yt)
        ok = got == (True, True, True, False, False) and in_range and np.all(np.isfinite(y)) and r2 == 1.0
        failures += not ok
        n_floaty += floaty
        print(f"{eq.name:<11} [{y.min():10.4g},{y.max():10.4g}]  " + "  ".join(
            f"{'T' if g else 'F':>3}" for g in got) + f"  {r2:9.6f}  {'T' if floaty else 'F':>7}  {dt:8.2f}"
            + ("" if ok else "  <-- FAIL"))

    # Cases that exercise rounding, symbol assumptions, text input and failure handling.
    k, x = sympy.symbols("k_spring x")  # no assumptions: as a library might build them
    eq = EQ_BY_NAME["I.14.4"]
    truth, syms = eq.sympy_expr(), eq.symbols()
    cases = [
        ("0.50000003*k*x**2 + 2e-6 (rounding)", 0.50000003 * k * x ** 2 + 2e-6, True),
        ("0.52*k*x**2 (ratio const: exact)", 0.52 * k * x ** 2, True),
        ("0.5*k*x**2.01", 0.5 * k * x ** 2.01, False),
        ("text '0.5*k_spring*x**2 - 3'", "0.5*k_spring*x**2 - 3", True),
        ("k*x**2/2 + 1e-3*x (not exact)", k * x ** 2 / 2 + sympy.Float(1e-3) * x, False),
        ("0 (zero ratio)", sympy.Integer(0), False),
        ("unknown symbol z", k * sympy.Symbol("z"), False),
        ("1/(x - x) (nan)", sympy.Integer(1) / (x - x), False),
    ]
    print()
    for label, found, want in cases:
        got, why = exact_check(found, truth, syms, eq.ranges)
        ok = got == want
        failures += not ok
        print(f"I.14.4 vs {label:<40} -> {got!s:<5} ({why}){'' if ok else '  <-- FAIL'}")
    r2_nan = r2_score(sympy.sqrt(-k) * x, syms, *make_test_data(eq, 100, 0))
    print(f"R2 of sqrt(-k)*x (complex everywhere): {r2_nan}")
    failures += r2_nan != float("-inf")
    print(f"\ntruth with constants as 15-digit floats counted exact on {n_floaty} equation(s)")
    print(f"self-test: {failures} failure(s)")
    return failures


# =========================================================================== main
def select(args) -> list[Equation]:
    eqs = list(EQUATIONS)
    if args.only:
        names = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in names if s not in EQ_BY_NAME and s not in ("easy", "medium", "hard")]
        if unknown:
            raise SystemExit(f"unknown equation(s) {unknown}; --list shows the names")
        eqs = [e for e in eqs if e.name in names or e.tier in names]
    if args.limit is not None:
        eqs = eqs[: args.limit]
    return eqs


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--only", help="comma list of equation names (or tiers easy/medium/hard)")
    p.add_argument("--limit", type=int, help="run only the first N selected equations")
    p.add_argument("--budget", type=float, default=60.0, help="kanlab.discover time_budget (s)")
    p.add_argument("--seed", type=int, default=0, help="data seed and discover(seed=...)")
    p.add_argument("--n", type=int, default=1000, help="points given to discover (train+test)")
    p.add_argument("--n-test", type=int, default=5000, help="fresh noise-free points for R2")
    p.add_argument("--noise", type=float, default=0.0, help="Gaussian noise, std = NOISE * std(y)")
    p.add_argument("--workers", type=int, default=1,
                   help="equations in parallel (processes, 1 torch thread each)")
    p.add_argument("--threads", type=int, help="torch threads with --workers 1 (default: torch's)")
    p.add_argument("--discover-workers", type=int, default=1,
                   help="processes per discover() call (its attempts in parallel; default 1)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "feynman"),
                   help="writes PREFIX.md and PREFIX.json")
    p.add_argument("--no-write", action="store_true", help="print the report only")
    p.add_argument("--no-kanlab", action="store_true", help="skip kanlab.discover (e.g. pykan only)")
    p.add_argument("--pykan", action="store_true", help="also run pykan's tutorial recipe")
    p.add_argument("--pykan-limit", type=int, default=None,
                   help="pykan on the first N selected equations only (default: all)")
    p.add_argument("--pykan-steps", type=int, default=50, help="LBFGS steps of each pykan fit")
    p.add_argument("--pykan-lamb", type=float, default=0.01, help="sparsity penalty of pykan's first fit")
    p.add_argument("--pykan-hidden", type=int, default=5, help="hidden width of pykan's [d, H, 1]")
    p.add_argument("--list", action="store_true", help="print the equation table and exit")
    p.add_argument("--self-test", action="store_true",
                   help="check data generation and the exact checker on the selection; no training")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    eqs = select(args)
    if args.list:
        for e in eqs:
            print(f"{e.name:<11} {e.tier:<7} {e.expr:<45} {e.ranges_text()}"
                  + (f"   [{e.note}]" if e.note else ""))
        print(f"{len(eqs)} equation(s)")
        return 0
    if args.self_test:
        return 1 if self_test(args) else 0
    if not args.no_kanlab and kanlab is None:
        raise SystemExit(f"kanlab cannot be imported ({KANLAB_IMPORT_ERROR}); "
                         "use --no-kanlab --pykan to run pykan alone")
    if not args.no_kanlab and not hasattr(kanlab, "discover"):
        raise SystemExit("kanlab.discover does not exist in this kanlab "
                         f"({kanlab.__file__}); use --no-kanlab --pykan to run pykan alone")
    if args.no_kanlab and not args.pykan:
        raise SystemExit("nothing to run: --no-kanlab without --pykan")
    if args.threads and args.workers == 1:
        torch.set_num_threads(args.threads)
    if args.pykan_limit is None:
        args.pykan_limit = len(eqs) if args.pykan else 0
    if not args.pykan:
        args.pykan_limit = 0

    env = environment(args)
    print(f"# {len(eqs)} equation(s), budget {args.budget:g} s, workers {args.workers}, "
          f"pykan on {min(args.pykan_limit, len(eqs))}", flush=True)
    jobs = [(e.name, i < args.pykan_limit) for i, e in enumerate(eqs)]
    results: dict[str, dict] = {}
    t_start = time.perf_counter()

    def report_progress(rec):
        bits = []
        for lib in ("kanlab", "pykan"):
            if lib in rec:
                part = rec[lib]
                bits.append(f"{lib}: {part.get('outcome')} R2={_fmt_r2(part.get('r2'))} "
                            f"{_t(part.get('time_s'))} s {part.get('formula', '')}"[:220])
        print(f"[{len(results)}/{len(jobs)}] {rec['name']}: " + " | ".join(bits), flush=True)

    if args.workers > 1:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx,
                                 initializer=_worker_init, initargs=(1,)) as pool:
            futs = {pool.submit(run_equation, name, args, wp): name for name, wp in jobs}
            for fut in as_completed(futs):
                name = futs[fut]
                try:
                    rec = fut.result()
                except Exception as exc:  # the worker process itself died
                    rec = {"name": name, "truth": EQ_BY_NAME[name].expr, "note": EQ_BY_NAME[name].note,
                           "error": f"{type(exc).__name__}: {exc}"}
                results[name] = rec
                report_progress(rec)
    else:
        warnings.filterwarnings("ignore")
        for name, wp in jobs:
            rec = run_equation(name, args, wp)
            results[name] = rec
            report_progress(rec)

    records = [results[name] for name, _ in jobs]
    summaries = {k: _summary(records, k) for k in ("kanlab", "pykan")}
    summaries = {k: v for k, v in summaries.items() if v is not None}
    env["wall_s"] = time.perf_counter() - t_start
    md = render_markdown(env, args, records, summaries)
    print()
    print(md)
    if not args.no_write:
        prefix = Path(args.out)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        md_path, json_path = Path(f"{prefix}.md"), Path(f"{prefix}.json")
        md_path.write_text(md)
        payload = {"environment": env, "options": vars(args), "summary": summaries, "equations": records}
        json_path.write_text(json.dumps(_json_safe(payload), indent=1))
        print(f"wrote {md_path} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
