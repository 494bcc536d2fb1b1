"""Retrain and snap the constants of a formula against data.

:func:`refine_constants` treats every floating-point constant of a sympy expression as a free
parameter and refits them all by nonlinear least squares on the data. :func:`snap_constants` then
tries to replace each constant by a simple exact number (0, an integer, a small ratio, or a small
ratio times pi, 1/pi, pi**2, 1/pi**2, e, sqrt(2), sqrt(3), sqrt(pi), 1/sqrt(pi) or sqrt(2/pi)) and keeps a replacement only where the loss does not get
worse by more than what one free parameter is worth (Akaike's rule: MSE may grow by a factor
``exp(2/n)`` at most for n samples). Constants are retrained after every pass.
"""
from __future__ import annotations

import math
import time
import warnings
from fractions import Fraction

import numpy as np
import sympy

from .formula import tidy

__all__ = ["refine_constants", "snap_constants", "formula_loss"]


def _floats(expr):
    seen = []
    for a in sympy.preorder_traversal(expr):
        if isinstance(a, sympy.Float) and a not in seen:
            seen.append(a)
    return seen


def _compile(expr, symbols):
    """Return (floats, f(X, p) -> predictions) with the floats of expr as parameters p."""
    fl = _floats(expr)
    ps = sympy.symbols(f"_p0:{len(fl)}") if fl else ()
    body = expr.xreplace(dict(zip(fl, ps)))
    fn = sympy.lambdify(list(symbols) + list(ps), body, modules="numpy")

    def f(X, p):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fn(*[X[:, i] for i in range(X.shape[1])], *p)
        out = np.asarray(out, dtype=np.complex128 if np.iscomplexobj(out) else np.float64)
        if np.iscomplexobj(out):
            out = np.where(np.abs(out.imag) < 1e-9 * (1 + np.abs(out.real)), out.real, np.nan)
        return np.broadcast_to(out, (X.shape[0],)).astype(np.float64)

    return fl, f


def formula_loss(expr, symbols, X, y) -> float:
    """Mean squared error of ``expr`` on (X, y); inf where it is not finite."""
    _, f = _compile(expr, symbols)
    r = f(X, []) - y
    v = float(np.mean(r * r))
    return v if math.isfinite(v) else math.inf


def _mse(f, X, y, p):
    r = f(X, p) - y
    v = float(np.mean(r * r))
    return v if math.isfinite(v) else math.inf


def _refit_others(f, X, y, p, k, value, fixed=(), max_nfev: int = 30):
    """Least-squares refit of every constant but the k-th (held at ``value``) and ``fixed``."""
    from scipy.optimize import least_squares

    free = [q for q in range(len(p)) if q != k and q not in fixed]
    if not free:
        out = p.copy()
        out[k] = value
        return out

    def full(z):
        out = p.copy()
        out[k] = value
        out[free] = z
        return out

    def res(z):
        r = f(X, full(z)) - y
        return np.where(np.isfinite(r), r, 1e6)

    try:
        sol = least_squares(res, p[free], method="lm" if len(y) >= len(free) else "trf",
                            max_nfev=max_nfev * (len(free) + 1), x_scale="jac")
    except Exception:  # pragma: no cover - defensive
        return None
    return full(sol.x)


def refine_constants(expr, symbols, X, y, max_nfev: int = 200):
    """Refit every float constant of ``expr`` by least squares on (X, y); returns the new expr."""
    from scipy.optimize import least_squares

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    fl, f = _compile(expr, symbols)
    if not fl:
        return expr
    p0 = np.array([float(v) for v in fl])
    base = _mse(f, X, y, p0)

    def res(p):
        r = f(X, p) - y
        return np.where(np.isfinite(r), r, 1e6)

    try:
        sol = least_squares(res, p0, method="lm" if len(y) >= len(p0) else "trf", max_nfev=max_nfev,
                            x_scale="jac")
        p = sol.x
    except Exception:  # pragma: no cover - defensive: keep the input constants
        return expr
    if not _mse(f, X, y, p) < base:
        return expr
    return expr.xreplace({a: sympy.Float(float(v), 15) for a, v in zip(fl, p)})


_BASES = (sympy.Integer(1), sympy.pi, 1 / sympy.pi, sympy.E, sympy.sqrt(2), sympy.sqrt(3),
          sympy.pi**2, 1 / sympy.pi**2, sympy.sqrt(sympy.pi), 1 / sympy.sqrt(sympy.pi),
          sympy.sqrt(2 / sympy.pi))


def _candidates(v: float, rel: float = 0.1):
    """Simple exact numbers near v, simplest first."""
    out = [sympy.Integer(0)]
    av = abs(v)
    if av == 0:
        return out
    near = lambda c: abs(float(c) - v) <= rel * av  # noqa: E731
    r = round(v)
    if r != 0 and abs(r) <= 10000 and near(r):
        out.append(sympy.Integer(r))
    for base in _BASES:
        bv = float(base)
        for q in (1, 2, 3, 4, 5, 6, 8, 10, 12, 16):
            fr = Fraction(v / bv).limit_denominator(q)
            if fr.numerator == 0 or abs(fr.numerator) > 12 * fr.denominator:
                continue
            c = sympy.Rational(fr.numerator, fr.denominator) * base
            if near(c) and c not in out:
                out.append(c)
    return out


def snap_constants(expr, symbols, X, y, passes: int = 2, rel: float = 0.1, max_constants: int = 30,
                   deadline: float = math.inf):
    """Replace constants by simple exact numbers where the fit allows it (see module doc).

    Returns the snapped expression (constants that could not be snapped are retrained). An
    expression with more than ``max_constants`` constants is only retrained, not snapped.
    A value that fails on its own but lies within 1% of the constant, and 0, are tried once
    more with the other constants refitted around them (constants are often coupled, e.g. a
    scale inside and outside a power, or a tiny offset inside a product). The result is
    simplified, and constants that simplification merges into new ones get one more pass.
    ``deadline`` (a ``time.perf_counter()`` value) stops the search.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    atol = 1e-14 * float(np.mean(y * y) + 1e-300)
    expr = refine_constants(expr, symbols, X, y)
    if len(_floats(expr)) > max_constants:
        return expr
    expr = _snap_passes(expr, symbols, X, y, passes, rel, deadline, atol)
    for _ in range(2):
        if time.perf_counter() > deadline:
            return expr
        simpler = tidy(expr)
        if simpler == expr or not _loss(simpler, symbols, X, y) <= _loss(expr, symbols, X, y) * 1.000001 + atol:
            break
        expr = simpler
        if not _floats(expr):
            break
        expr = _snap_passes(expr, symbols, X, y, 1, rel, deadline, atol)
    return expr


def _loss(expr, symbols, X, y) -> float:
    _, f = _compile(expr, symbols)
    return _mse(f, X, y, [float(v) for v in _floats(expr)])


def _snap_passes(expr, symbols, X, y, passes, rel, deadline, atol):
    n = max(len(y), 1)
    factor = math.exp(2.0 / n)
    for _ in range(passes):
        fl, f = _compile(expr, symbols)
        if not fl:
            break
        p = np.array([float(v) for v in fl])
        ref = _mse(f, X, y, p)
        if not math.isfinite(ref):
            break
        chosen, done = {}, set()  # snapped constants stay fixed when others are refitted
        # largest-magnitude constants last: small ones (likely spurious terms) go first
        for k in sorted(range(len(fl)), key=lambda q: abs(p[q])):
            if time.perf_counter() > deadline:
                break
            allowed = lambda: ref * factor ** (len(chosen) + 1) + atol  # noqa: E731
            cands = _candidates(p[k], rel)
            hit = None
            for cand in cands:
                trial = p.copy()
                trial[k] = float(cand)
                if _mse(f, X, y, trial) <= allowed():
                    hit = (cand, trial)
                    break
            # coupled constants: refit the others around a value (skipped for formulas with many
            # constants, where each refit costs seconds and the formula is rarely exact anyway)
            if hit is None and len(fl) <= 12 and time.perf_counter() < deadline:
                near = [c for c in cands if abs(float(c) - p[k]) <= 1e-2 * max(abs(p[k]), 1e-12)]
                for c in near[:1] + ([sympy.Integer(0)] if not near or near[0] != 0 else []):
                    trial = _refit_others(f, X, y, p, k, float(c), fixed=done)
                    if trial is not None and _mse(f, X, y, trial) <= allowed():
                        hit = (c, trial)
                        break
            if hit is not None:
                chosen[fl[k]] = hit[0]
                done.add(k)
                p = hit[1]
        if not chosen:
            break
        rest = {a: sympy.Float(float(v), 15) for a, v in zip(fl, p) if a not in chosen}
        expr = expr.xreplace({**chosen, **rest})
        expr = refine_constants(expr, symbols, X, y)
    return expr
