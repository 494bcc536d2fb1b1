"""A formula's last stage: constants refitted, snapped honestly, rounded, the shortest form.

:func:`_finish` runs it. Snapping (:func:`..symbolic.snap.snap_constants`) makes a constant an
exact number only if that number is short for the digits it matches; the constants left are
rounded to the digits the data support (:func:`..symbolic.snap.round_constants`); last, the
shortest equal form that sympy's rewrites reach is kept (:func:`shortest_form`).

The inputs whose data are all positive are treated as positive symbols while rewriting, so that
``sqrt(m**2/(1 - v**2/c**2))`` may become ``m/sqrt(1 - v**2/c**2)``; a rewrite is kept only
when it is shorter (:func:`expression_size`) and equal to the original on the data to float
precision, so the assumption cannot change what the formula computes where it was fitted.
"""
from __future__ import annotations

import math
import threading
import time

import numpy as np
import sympy

from ..symbolic.formula import _time_limited, expression_size, tidy
from ..symbolic.snap import _floats as _floats_of
from ..symbolic.snap import merged_numbers, refine_constants, round_constants, snap_constants
from .oracle import shown
from .result import _evaluate, _finite_between, _r2

__all__ = ["shortest_form"]

_REFIT_MAX = 400  # nodes past which a formula's constants are not refitted or snapped


def _float_count(expr) -> int:
    """Floats in ``expr``, each occurrence counted."""
    return sum(1 for a in sympy.preorder_traversal(expr) if isinstance(a, sympy.Float))


def _finish(expr, clean, symbols, Xtr, ytr, snap, deadline, floor=None):
    """A candidate formula's last stage: constants refitted by least squares on the data, then
    snapped to simple exact values when the formula explains the data (honestly: a constant
    becomes an exact number only if that number is short for the digits it matches, see
    :func:`..symbolic.snap._candidates`), the rest rounded to the digits the data support, and
    the shortest equal form kept (:func:`shortest_form`).

    ``floor``: the squared error the data allow (the noise floor: a numeric surrogate's
    held-out MSE), if known. Constants are snapped only when the formula fits within it (or,
    without one, to 1e-6 of the target's variance): snapping the constants of a formula that
    misses the data by more only dresses up its error. A formula with at most three floats
    gets up to a second past ``deadline``: snapping it costs milliseconds (a second on the
    first call, which imports and compiles), and without it an exact law would come back as
    ``1.0*x_1*x_2 + 1.0``."""
    if _float_count(expr) <= 3:
        deadline = max(deadline, time.perf_counter() + 1.0)
    if expression_size(expr) > _REFIT_MAX:  # no law: a long series, refitted for minutes
        # (and compiled again for each rounding trial and sign check: 18 s past the deadline
        # for test_20's 8376-node network formula at noise 0.01), so it is returned as it is
        return expr
    if clean and time.perf_counter() < deadline:
        expr = refine_constants(expr, symbols, Xtr, ytr)
        resid = _evaluate(expr, symbols, Xtr) - ytr
        mse, var = float(np.mean(resid * resid)), float(np.var(ytr))
        fits = mse <= 1e-6 * var if floor is None else \
            mse <= max(2.0 * floor, 1e-12 * var) and mse <= 1e-2 * var
        if snap and fits:
            expr = _snap_forms(expr, symbols, Xtr, ytr, deadline)
        elif time.perf_counter() < deadline:
            expr = tidy(expr)
    if time.perf_counter() < deadline:
        expr = round_constants(expr, symbols, Xtr, ytr, deadline=deadline)
    if time.perf_counter() < deadline and \
            _float_count(expr) <= 4:
        expr = shortest_form(expr, symbols, Xtr, deadline=deadline)
    return _signs_known(expr, symbols, Xtr)


def _signs_known(expr, symbols, X):
    """``expr`` with every ``Abs(u)`` and ``sqrt(1/u)`` whose u keeps one sign on the data
    written without them: ``Abs(c**2*t - u*x)`` is ``c**2*t - u*x`` where that is positive on
    every row, and ``sqrt(1/(c - v))`` is ``1/sqrt(c - v)``. Where the data fix the sign, the
    absolute value only hides the law's form (and defeats exact comparison)."""
    def sign_of(u):
        try:
            v = _evaluate(u, symbols, X)
        except Exception:  # sympy cannot evaluate it: leave it
            return 0
        if not np.all(np.isfinite(v)):
            return 0
        return 1 if np.all(v > 0) else -1 if np.all(v < 0) else 0

    def unabs(a):
        s = sign_of(a.args[0])
        return a.args[0] * s if s else a

    def flip(a):  # (1/u)**e -> u**-e for u > 0
        return a.base.base ** (-a.exp) if sign_of(a.base.base) > 0 else a

    def pull(a):  # sqrt(P/Q**2) -> sqrt(P)/Q for Q > 0: the root of a known-sign square
        if expression_size(a.base) > 60:
            return a
        inside, outside = [], []
        for f in sympy.Mul.make_args(sympy.factor(a.base)):
            b, k = f.as_base_exp()
            s = sign_of(b) if k.is_Integer and b.free_symbols else 0
            if (k * a.exp).is_integer and (s > 0 or s < 0 and k.is_even):
                outside.append((s * b) ** (k * a.exp))
            else:
                inside.append(f)
        if not outside:
            return a
        rest = min((sympy.Mul(*inside), sympy.expand(sympy.Mul(*inside))), key=expression_size)
        return sympy.Mul(*outside) * rest ** a.exp

    try:
        out = expr.replace(lambda a: isinstance(a, sympy.Pow) and a.exp.is_Rational
                          and not a.exp.is_integer, pull)
        out = out.replace(lambda a: isinstance(a, sympy.Abs), unabs)
        out = out.replace(lambda a: isinstance(a, sympy.Pow) and isinstance(a.base, sympy.Pow)
                          and a.base.exp == -1 and a.exp.is_Rational and not a.exp.is_integer,
                          flip)
    except Exception:  # pragma: no cover - sympy internals; the formula stays as it was
        return expr
    ref = _evaluate(expr, symbols, X)
    new = _evaluate(out, symbols, X)
    scale = float(np.sqrt(np.mean(ref * ref))) + 1e-300
    if np.all(np.isfinite(new)) and float(np.max(np.abs(new - ref))) <= 1e-9 * scale:
        return out
    return expr


def finished_attempt(expr, name, seed, stages, symbols, Xtr, ytr, Xte, yte, snap, deadline, floor,
                     model, histories):
    """The attempt record of a formula assembled from a sub-search (a reduction's or a group's):
    finished on the data (:func:`_finish`, constants refitted only when it already explains
    the data) and scored on the held-out rows; ``model`` is the surrogate behind it."""
    t = time.perf_counter()
    clean = _r2(_evaluate(expr, symbols, Xtr), ytr) > 0.99
    expr = _finish(expr, clean, symbols, Xtr, ytr, snap, deadline, floor)
    r2 = _r2(_evaluate(expr, symbols, Xte), yte)
    stages["formula"] += time.perf_counter() - t
    return {"seed": seed, "hidden": name, "r2": r2,
            "between_ok": _finite_between(expr, symbols, Xtr, ytr),
            "complexity": expression_size(expr), "formula": str(expr), "expr": expr,
            "model": shown(model), "histories": histories, "width": None}


def _snap_forms(expr, symbols, Xtr, ytr, deadline):
    forms = [expr]
    if expr.has(sympy.atanh, sympy.asinh, sympy.acosh):
        # inverse hyperbolics are logs in disguise (exp(-2*atanh(u)) = (1-u)/(1+u)):
        # written as logs, exp/log pairs cancel and the constants become snappable
        forms.append(_logs(expr))
    # a float shared by a sum's terms, factored out and merged with the numbers around it,
    # may be a simple number: (-0.4886 + 0.4886*u)**-2 is 4.18879*(u - 1)**-2, and 4*pi/3
    common = merged_numbers(sympy.factor_terms(_unified_floats(expr)))
    if len(_floats_of(common)) < len(_floats_of(expr)):
        forms.append(common)
    best_form = None
    for form in forms:
        if time.perf_counter() > deadline:
            break
        cand = snap_constants(form, symbols, Xtr, ytr, deadline=deadline)
        key = (_r2(_evaluate(cand, symbols, Xtr), ytr) >= 1 - 1e-9, -len(_floats_of(cand)),
               -expression_size(cand))
        if best_form is None or key > best_form[0]:
            best_form = (key, cand)
    return best_form[1] if best_form is not None else expr


def _unified_floats(expr, rtol: float = 1e-9):
    """``expr`` with floats of equal magnitude to ``rtol`` made one (signs kept): a refit leaves
    ``-0.48860251190291981 + 0.48860251190291992*u``, whose common factor sympy cannot see."""
    reps, out = [], {}
    for f in _floats_of(expr):
        v = abs(float(f))
        rep = next((r for r in reps if abs(r - v) <= rtol * max(r, v)), None)
        if rep is None:
            reps.append(v)
        elif v != rep:
            out[f] = sympy.Float(math.copysign(rep, float(f)), 15)
    return expr.xreplace(out) if out else expr


def _logs(expr):
    """``expr`` with inverse hyperbolic functions written as logs, exp/log pairs merged."""
    try:
        e = expr.rewrite(sympy.log)
        return sympy.powsimp(sympy.expand_log(sympy.expand(e), force=True), combine="exp")
    except Exception:  # pragma: no cover - sympy internals
        return expr


def _rewrites(e):
    """Candidate equal forms of e (each may raise on odd input: the caller skips those)."""
    yield lambda: sympy.powdenest(e)
    # forced: as if every base were positive; kept only where the data say it is equal
    yield lambda: sympy.powdenest(e, force=True)
    yield lambda: sympy.powsimp(sympy.powdenest(e, force=True), force=True)
    yield lambda: sympy.expand_power_base(sympy.powdenest(e, force=True), force=True)
    yield lambda: sympy.factor(e)
    yield lambda: sympy.cancel(e)
    yield lambda: sympy.expand(e)
    yield lambda: sympy.powsimp(sympy.factor(e), combine="all")
    yield lambda: e.replace(lambda a: isinstance(a, sympy.Pow), lambda a: sympy.Pow(
        sympy.factor(sympy.cancel(a.base)), a.exp))
    yield lambda: sympy.powdenest(sympy.factor(e.replace(
        lambda a: isinstance(a, sympy.Pow), lambda a: sympy.Pow(sympy.cancel(a.base), a.exp))))


def shortest_form(expr, symbols, X, deadline: float = math.inf, max_size: int = 80):
    """The shortest form of ``expr`` found by a few rewrites (see the module doc); ``expr``
    itself when none is shorter. ``X``: the data the formula must still fit exactly."""
    if expression_size(expr) > max_size or not expr.free_symbols:
        return expr
    X = np.asarray(X, dtype=np.float64)
    pos = {s: sympy.Dummy(s.name, positive=True) for i, s in enumerate(symbols)
           if np.all(X[:, i] > 0)}
    back = {v: k for k, v in pos.items()}
    e = expr.xreplace(pos)
    ref = _evaluate(expr, symbols, X)
    if not np.all(np.isfinite(ref)):
        return expr
    tol = 1e-9 * (float(np.sqrt(np.mean(ref * ref))) + 1e-300)
    best, size = expr, expression_size(expr)
    timeable = threading.current_thread() is threading.main_thread()
    for make in _rewrites(e):
        if time.perf_counter() > deadline:
            break
        try:  # a rewrite may take sympy seconds on an unlucky form: each gets at most one
            cand = _time_limited(lambda _: make(), None,
                                 min(1.0, max(deadline - time.perf_counter(), 0.0)))
            if cand is None and not timeable and size <= 40:
                cand = make()  # no timer outside the main thread: small forms only
        except Exception:  # sympy internals on odd input: not a form
            continue
        if cand is None:  # out of time (or not timeable here)
            continue
        cand = cand.xreplace(back)
        s = expression_size(cand)
        if s >= size or cand.has(sympy.I, sympy.zoo, sympy.nan):
            continue
        v = _evaluate(cand, symbols, X)
        if np.all(np.isfinite(v)) and float(np.max(np.abs(v - ref))) <= tol * 10:
            best, size = cand, s
    return best
