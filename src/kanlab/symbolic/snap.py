"""Retrain and snap the constants of a formula against data.

:func:`refine_constants` treats every floating-point constant of a sympy expression as a free
parameter and refits them all by nonlinear least squares on the data. :func:`snap_constants` then
tries to replace each constant by a simple exact number (0, an integer, a small ratio, or a small
ratio times pi, 1/pi, pi**2, 1/pi**2, pi**3, 1/pi**3, e, sqrt(2), sqrt(3), sqrt(pi), 1/sqrt(pi)
or sqrt(2/pi); a power's exponent becomes a plain ratio only) and keeps a replacement only
where the loss does not get worse by more than what one free parameter is worth (the Bayesian
information criterion: MSE may grow by a factor ``exp(log(n)/n)`` per constant for n samples;
Akaike's ``exp(2/n)``, which targets prediction rather than the true model, kept
``0.9965*a*b**2.004`` on 1% noise where the data cannot tell it from ``a*b**2``). Constants
are retrained after every pass.
"""
from __future__ import annotations

import math
import time
import warnings
from fractions import Fraction

import numpy as np
import sympy

from .formula import tidy

__all__ = ["refine_constants", "snap_constants", "round_constants", "formula_loss"]


def _floats(expr):
    seen = []
    for a in sympy.preorder_traversal(expr):
        if isinstance(a, sympy.Float) and a not in seen:
            seen.append(a)
    return seen


def _exponents(expr) -> set:
    """The floats of ``expr`` that are some power's exponent."""
    return {a.exp for a in sympy.preorder_traversal(expr)
            if isinstance(a, sympy.Pow) and isinstance(a.exp, sympy.Float)}


def _compile(expr, symbols):
    """Return (floats, f(X, p) -> predictions) with the floats of expr as parameters p."""
    fl = _floats(expr)
    ps = sympy.symbols(f"_p0:{len(fl)}") if fl else ()
    body = expr.xreplace(dict(zip(fl, ps)))
    fn = sympy.lambdify(list(symbols) + list(ps), body, modules="numpy", dummify=True)

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
    with np.errstate(all="ignore"):
        r = f(X, []) - y
        v = float(np.mean(r * r))
    return v if math.isfinite(v) else math.inf


def _mse(f, X, y, p):
    with np.errstate(all="ignore"):  # a trial constant may overflow: that is an inf loss
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
        with np.errstate(all="ignore"):  # overflowing trial steps are rejected by the solver
            sol = least_squares(res, p[free], method="lm" if len(y) >= len(free) else "trf",
                                max_nfev=max_nfev * (len(free) + 1), x_scale="jac")
    except Exception:  # pragma: no cover - defensive
        return None
    return full(sol.x)


def _prepare(expr, symbols, X, y):
    """(X, y as float64, floats of expr, compiled f, their values) for the functions below."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    fl, f = _compile(expr, symbols)
    return X, y, fl, f, np.array([float(v) for v in fl])


def refine_constants(expr, symbols, X, y, max_nfev: int = 200):
    """Refit every float constant of ``expr`` by least squares on (X, y); returns the new expr."""
    from scipy.optimize import least_squares

    X, y, fl, f, p0 = _prepare(expr, symbols, X, y)
    if not fl:
        return expr
    base = _mse(f, X, y, p0)

    def res(p):
        r = f(X, p) - y
        return np.where(np.isfinite(r), r, 1e6)

    try:
        with np.errstate(all="ignore"):  # overflowing trial steps are rejected by the solver
            sol = least_squares(res, p0, method="lm" if len(y) >= len(p0) else "trf",
                                max_nfev=max_nfev, x_scale="jac")
        p = sol.x
    except Exception:  # pragma: no cover - defensive: keep the input constants
        return expr
    if not _mse(f, X, y, p) < base:
        return expr
    return expr.xreplace({a: sympy.Float(float(v), 15) for a, v in zip(fl, p)})


# the exact numbers a constant may become: a small ratio p/q times one of these bases, with the
# bits it takes to name the base (a description length: see _bits)
_BASES = ((sympy.Integer(1), 0.0), (sympy.pi, 1.5), (1 / sympy.pi, 1.5), (sympy.pi**2, 3.0),
          (1 / sympy.pi**2, 3.0), (sympy.pi**3, 4.0), (1 / sympy.pi**3, 4.0), (sympy.E, 3.0),
          (sympy.sqrt(2), 3.0), (sympy.sqrt(3), 3.0),
          (sympy.sqrt(sympy.pi), 3.0), (1 / sympy.sqrt(sympy.pi), 3.0),
          (sympy.sqrt(2 / sympy.pi), 3.0))
_DENOMINATORS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16)  # of plain ratios
_BASE_DENOMINATORS = (1, 2, 3, 4, 6, 8)  # of multiples of pi, e, sqrt(2) ...


def _bits(p: int, q: int, base_bits: float) -> float:
    """Bits to write p/q * base: sign, numerator, denominator, which base."""
    return 1.0 + math.log2(abs(p) + 1) + math.log2(q) + base_bits


def _candidates(v: float, rel: float = 0.1, exponent: bool = False):
    """Simple exact numbers near v, simplest (fewest bits) first, as (number, bits).

    A number of b bits is a candidate only within a relative distance 2**-(1.5*b+1) of v (and
    ``rel``): a short number may lie far from v, a long one must match to as many digits as it
    takes to write, or it is a coincidence (13/(11*pi**2) "matches" any number near 0.12).
    ``exponent``: v is a power's exponent, which becomes a plain ratio or stays a float (laws
    raise to rational powers; ``alpha**sqrt(pi)`` or ``omega**pi`` only dress up a fit)."""
    out = [(sympy.Integer(0), 0.0)]
    av = abs(v)
    if av == 0 or not math.isfinite(v):
        return out
    seen = set()
    for base, bb in (_BASES[:1] if exponent else _BASES):
        bv = float(base)
        for q in (_DENOMINATORS if bb == 0 else _BASE_DENOMINATORS):
            num = round(v / bv * q)
            if num == 0 or abs(num) > (10000 if q == 1 and bb == 0 else 64 if q == 1 else 16 * q):
                continue
            fr = Fraction(int(num), q)
            if fr.denominator != q:  # found with a smaller denominator already
                continue
            c = sympy.Rational(fr.numerator, fr.denominator) * base
            b = _bits(fr.numerator, fr.denominator, bb)
            dist = abs(float(c) - v)
            if dist <= min(rel, 2.0 ** -(1.5 * b + 1)) * av and c not in seen:
                seen.add(c)
                out.append((c, b))
    out[1:] = sorted(out[1:], key=lambda e: e[1])
    return out


def merged_numbers(expr):
    """``expr`` with each product's numeric factors that hold a float merged into one float:
    ``0.0506605918*pi**2*d**2`` is ``0.5*d**2``. A float beside a symbolic constant hides a
    simple number from snapping, which sees one float at a time."""
    def mixed(a):
        nums = [x for x in a.args if not x.free_symbols]
        return len(nums) > 1 and any(x.has(sympy.Float) for x in nums)

    def merge(a):
        nums = [x for x in a.args if not x.free_symbols]
        rest = [x for x in a.args if x.free_symbols]
        return sympy.Float(float(sympy.Mul(*nums).evalf(17)), 15) * sympy.Mul(*rest)

    try:
        return expr.replace(lambda a: a.is_Mul and mixed(a), merge)
    except Exception:  # pragma: no cover - sympy internals; the formula stays as it was
        return expr


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
    expr = refine_constants(merged_numbers(expr), symbols, X, y)
    if len(_floats(expr)) > max_constants:
        return expr
    expr = _snap_passes(expr, symbols, X, y, passes, rel, deadline, atol)
    for _ in range(2):
        if time.perf_counter() > deadline:
            return expr
        simpler = merged_numbers(tidy(expr))
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
    factor = math.exp(max(math.log(n), 2.0) / n)  # BIC's price of a parameter (module doc)
    for _ in range(passes):
        fl, f = _compile(expr, symbols)
        if not fl:
            break
        p = np.array([float(v) for v in fl])
        ref = _mse(f, X, y, p)
        if not math.isfinite(ref):
            break
        powers = _exponents(expr)
        chosen, done = {}, set()  # snapped constants stay fixed when others are refitted
        # largest-magnitude constants last: small ones (likely spurious terms) go first
        for k in sorted(range(len(fl)), key=lambda q: abs(p[q])):
            if time.perf_counter() > deadline:
                break
            allowed = lambda: ref * factor ** (len(chosen) + 1) + atol  # noqa: E731
            found = _candidates(p[k], rel, exponent=fl[k] in powers)
            cands = [c for c, _ in found]
            hit = None
            if len(fl) <= 12 and len(fl) > len(done) + 1:  # others free to move with it
                curv = _profile_curvature(f, X, p, k, done)
                hit = _shortest_description(f, X, y, p, k, found, allowed(), atol, curv)
                if hit is not None:  # the quadratic model's choice, checked by a real refit
                    trial = _refit_others(f, X, y, p, k, float(hit[0]), fixed=done)
                    hit = (hit[0], trial) if trial is not None and \
                        _mse(f, X, y, trial) <= allowed() else None
            if hit is None:
                hit = _shortest_description(f, X, y, p, k, found, allowed(), atol)
            # coupled constants: refit the others around a value (skipped for formulas with many
            # constants, where each refit costs seconds and the formula is rarely exact anyway)
            if hit is None and len(fl) <= 12 and time.perf_counter() < deadline:
                near = [c for c in cands if abs(float(c) - p[k]) <= 1e-2 * max(abs(p[k]), 1e-12)]
                # 0 drops a term; +-1 removes a scale the others can absorb
                tries = near[:1] + [c for c in (sympy.Integer(0), sympy.Integer(1 if p[k] > 0 else -1))
                                    if c not in near[:1]]
                for c in tries:
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


def _profile_curvature(f, X, p, k, fixed):
    """How fast the sum of squared residuals grows as the k-th constant moves from ``p[k]``
    when every other constant not in ``fixed`` is refitted around it (``1 / [(J^T J)^-1]_kk``
    over the free constants, J the residuals' Jacobian by finite differences); None where the
    Jacobian is not finite. Constants are often coupled (``c0*(x1 + x2)/(x3 + c1*x4)``: only
    c1/c0 is sharp), and holding the others fixed makes a simple value look many standard
    errors off: 1% noise then made 0.99737 ``5*sqrt(2)/(4*sqrt(pi))`` rather than 1."""
    free = [q for q in range(len(p)) if q == k or q not in fixed]
    base = f(X, p)
    cols = []
    for q in free:
        h = 1e-6 * max(abs(p[q]), 1e-3)
        trial = p.copy()
        trial[q] += h
        cols.append((f(X, trial) - base) / h)
    J = np.column_stack(cols)
    if not np.all(np.isfinite(J)) or not np.all(np.isfinite(base)):
        return None
    cov = np.linalg.pinv(J.T @ J)
    s = float(cov[free.index(k), free.index(k)])
    return 1.0 / s if s > 0 else 0.0


def _shortest_description(f, X, y, p, k, found, allowed, atol, curv=None):
    """``(number, constants)`` with the k-th constant set to the number of ``found`` (``(number,
    bits)`` pairs) that keeps the MSE within ``allowed`` and makes the shortest description of
    the data: ``n/2 * log2(MSE) + bits``. Of two numbers the fit accepts, the longer one wins
    when it fits by more than its extra bits are worth: 9.87 is ``pi**2`` rather than 10 when
    the data say so; on exact data (MSE at the float floor ``atol``) the simplest wins. None
    when no number is accepted. ``curv`` (:func:`_profile_curvature`): the MSE of a number is
    then the one the other constants reach when refitted around it (to second order), and the
    constants returned are to be refitted by the caller."""
    n = max(len(y), 1)
    best, key = None, math.inf
    ref = _mse(f, X, y, p) if curv is not None else None
    for cand, bits in found:
        trial = p.copy()
        trial[k] = float(cand)
        m = _mse(f, X, y, trial)
        if curv is not None and math.isfinite(ref):
            m = min(m, ref + curv * (float(cand) - p[k]) ** 2 / n)
        if m <= allowed:
            length = 0.5 * n * math.log2(max(m, atol, 1e-300)) + bits
            if length < key - 1e-9:
                best, key = (cand, trial), length
    return best


def round_constants(expr, symbols, X, y, rtol: float = 1e-3, deadline: float = math.inf):
    """``expr`` with each float written with the fewest significant digits (or dropped, as 0)
    that keep the mean squared error on (X, y) within a factor ``1 + rtol`` of what it was:
    the digits the data support, and no offsets of 1e-15. Floats that are integers to their
    own precision become integers (``x**1.0`` is ``x``)."""
    X, y, fl, f, p = _prepare(expr, symbols, X, y)
    if not fl:
        return expr
    ref = _mse(f, X, y, p)
    if not math.isfinite(ref):
        return expr
    limit = ref * (1.0 + rtol) + 1e-28 * float(np.mean(y * y) + 1e-300)
    out = {}
    for k in sorted(range(len(fl)), key=lambda q: abs(p[q])):  # tiny ones first: maybe 0
        if time.perf_counter() > deadline:
            break
        v = p[k]
        tries = [(0.0, sympy.Integer(0))]
        if v == round(v) and abs(v) < 1e15:
            tries.append((v, sympy.Integer(int(v))))
        for digits in range(1, 16):
            r = float(f"{v:.{digits - 1}e}")
            tries.append((r, sympy.Integer(int(r)) if r == round(r) and abs(r) < 1e15
                          else sympy.Float(r, digits)))
        for val, e in tries:
            trial = p.copy()
            trial[k] = val
            if _mse(f, X, y, trial) <= limit:
                p, out[fl[k]] = trial, e
                break
    return expr.xreplace(out) if out else expr
