"""One input left: T(y) * x**p = c * f(a*x + b) + d, for every library function at once.

A problem with a single live input (a raw one-variable law, or what a reduction to one
dimensionless group leaves, such as Planck's ``1/(exp(z/(2*pi)) - 1)``) is a curve, and a curve
can be searched exhaustively and cheaply. The target is transformed by each invertible ``T``
that is defined on the data (y, 1/y, y**2, sqrt y, 1/sqrt y, 1/y**2, log y) and multiplied by
a power of the input (x**-1, x, where x keeps one sign away from zero), and every library
function is fitted to every transformed target in one batched call of
:func:`..symbolic.fit.fit_functions` (coarse (a, b) scan, Levenberg-Marquardt). The best fits
become formulas in the caller's variable, ``T^-1((c*f(a*x + b) + d) / x**p)``, scored on y
itself; the caller refits, snaps and scores them like any candidate.
"""
from __future__ import annotations

import math
import time

import numpy as np
import sympy
import torch

from ..symbolic.fit import fit_functions
from ..symbolic.library import SymbolicFunction, default_lib, get_symbolic

__all__ = ["univariate_candidates"]

_MIN_R2 = 0.999  # a transformed fit worse than this is not a law of the curve
# functions whose fits only mimic curves (powers are there as x**p already; sgn, 0, x are
# handled by the algebraic stage's polynomials)
_SKIP = {"0", "x", "sgn", "abs"}
_WIDE = {"sin", "cos", "exp"}  # scanned over a wide range of a as well (see _wide)
# rows the fits are refined on: the caller refits the chosen few on all rows, so more only
# costs time (800 rows refined on 512: 6.5 s for exp(-u), about twice the time on 256)
_POINTS = 256
_ALWAYS = ("y", "1/y", "log y")  # transforms fitted even past the deadline (a second or two)
_WIDE_A = 48.0  # the wide scan's |a|: about 15 periods over the standardized range
# shapes of physics' curves outside pykan's library (which the library mirrors), tried here
# only: 1/(exp(u) + exp(-u)) is 1/(2*cosh(u)), a population over two levels
_EXTRA = [
    SymbolicFunction("cosh", torch.cosh, sympy.cosh, 3, torch.cosh, None, "even"),
    SymbolicFunction("sinh", torch.sinh, sympy.sinh, 3, torch.sinh, None, "odd"),
]


def _transforms(y):
    """(name, T(y), inverse as a function of the sympy expression of T(y))."""
    out = [("y", y, lambda e: e)]
    one_sign = bool(np.all(y > 0) or np.all(y < 0))
    sign = sympy.Integer(1 if float(np.mean(y)) >= 0 else -1)  # exact: no fitted 1.0
    amin, amax = float(np.min(np.abs(y))), float(np.max(np.abs(y)))
    with np.errstate(all="ignore"):
        if one_sign and amin >= 1e-6 * amax:
            out.append(("1/y", 1.0 / y, lambda e: 1 / e))
            out.append(("log y", np.log(np.abs(y)), lambda e: sign * sympy.exp(e)))
        if one_sign:
            out.append(("y^2", y * y, lambda e: sign * sympy.sqrt(e)))
        if np.all(y >= 0):
            out.append(("sqrt y", np.sqrt(y), lambda e: e ** 2))
        if np.all(y > 0) and amin >= 1e-6 * amax:
            # a power of a curve: 1/sin(x/2)**4 is (1 - cos(x))**-2
            out.append(("1/sqrt y", 1.0 / np.sqrt(y), lambda e: 1 / e ** 2))
            out.append(("1/y^2", 1.0 / (y * y), lambda e: 1 / sympy.sqrt(e)))
    return out


def univariate_candidates(x, y, symbol, *, lib=None, deadline: float = math.inf,
                          keep: int = 6):
    """Up to ``keep`` (label, sympy expression in ``symbol``) of y against the one input x,
    best training fit first (see the module doc); [] when nothing fits to ``_MIN_R2``."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if len(x) < 8 or not np.ptp(x) > 0 or time.perf_counter() > deadline:
        return []
    names = [n for n in (lib if lib is not None else default_lib()) if n not in _SKIP]
    if not names:
        return []
    if lib is None:
        names = [get_symbolic(n) for n in names] + _EXTRA
    lo, hi = float(x.min()), float(x.max())
    powers = [0]
    # the argument as x, and as 1/x where x keeps one sign away from zero: a group's
    # orientation is arbitrary (T*kb/(B*mom) or B*mom/(T*kb)), and so is which of the two
    # the law's function takes
    args = [("x", x, symbol)]
    if (lo > 0 or hi < 0) and min(abs(lo), abs(hi)) >= 1e-3 * max(abs(lo), abs(hi)):
        powers += [-1, 1]
        args.append(("1/x", 1.0 / x, 1 / symbol))
    targets = []
    for aname, v, vsym in args:
        vc, vs = 0.5 * (float(v.max()) + float(v.min())), 0.5 * float(np.ptp(v))
        vstd = (vsym - sympy.Float(vc, 15)) / sympy.Float(vs, 15)
        for tname, ty, inv in _transforms(y):
            for p in powers:
                with np.errstate(all="ignore"):
                    t = ty * x ** p
                if np.all(np.isfinite(t)) and np.ptp(t) > 0:
                    targets.append((tname if aname == "x" else f"{tname} in 1/x", p, inv, t,
                                    (v - vc) / vs, vstd))
    if not targets:
        return []
    # one batched fit per transform of y, the deadline checked between them from the fourth
    # on: all 42 targets at once took 4.5 s of a 1.75 s share in a factor's sub-search, and
    # left it no time for a network attempt; y, 1/y and log y (a third of that) always run
    # (Planck's 1/(exp(z) - 1) and 1/(2*cosh(z)) are curves of 1/y)
    chunks: dict[str, list] = {}  # transform -> its targets (x and 1/x, every power)
    for t in targets:
        chunks.setdefault(t[0].split(" in ")[0], []).append(t)
    found = []
    for tname, chunk in chunks.items():
        if tname not in _ALWAYS and time.perf_counter() > deadline:
            break
        U = torch.as_tensor(np.stack([t[4] for t in chunk]), dtype=torch.float64)
        T = torch.as_tensor(np.stack([t[3] for t in chunk]), dtype=torch.float64)
        found += _formulas(fit_functions(U, T, names, n_starts=3, max_points=_POINTS), names,
                           chunk, x, y, symbol)
        if tname == "y":
            found += _wide(names, chunk, U, T, x, y, symbol, deadline)
    found.sort(key=lambda t: -t[0])
    return [(label, expr) for _, label, expr in found[:keep]]


def _wide(names, targets, U, T, x, y, symbol, deadline):
    """A fast oscillation (sin(2*pi*E*t/h)**2 over four periods) lies beyond the default scan
    of a (|a| <= 10 on the standardized argument), and so does a steep decay over a long-tailed
    argument (exp(-u) with u from 0.2 to 77 is exp(-38.7*s) on the standardized s): periodic
    functions and exp get a wide, dense scan, of y itself only (sin**2 is a cos of twice the
    argument, and the scan is costly)."""
    wide = [n for n in names if _name(n) in _WIDE]
    plain = [e for e, t in enumerate(targets) if t[1] == 0]
    if not wide or not plain or time.perf_counter() > deadline:
        return []
    fit = fit_functions(U[plain], T[plain], wide, a_range=(-_WIDE_A, _WIDE_A),
                        b_range=(-3.2, 3.2), grid_number=21, n_starts=3, coarse_points=256,
                        max_points=_POINTS)
    return _formulas(fit, wide, [targets[e] for e in plain], x, y, symbol)


def _name(n):
    return n.name if isinstance(n, SymbolicFunction) else n


def _formulas(fit, names, targets, x, y, symbol):
    """(R2 on y, label, expression) of the best fits of each target."""
    r2 = fit.r2.numpy()
    found = []
    for e, (tname, p, inv, _, _, xsym) in enumerate(targets):
        for fi in np.argsort(-r2[e])[:3]:
            if not r2[e, fi] >= _MIN_R2:
                break
            a, b, c, d = (float(v) for v in fit.params[e, fi])
            name = fit.names[fi]
            f = (names[fi] if isinstance(names[fi], SymbolicFunction)
                 else get_symbolic(names[fi])).sympy_fn
            inner = sympy.Float(c, 15) * f(sympy.Float(a, 15) * xsym + sympy.Float(b, 15)) \
                + sympy.Float(d, 15)
            try:
                expr = inv(inner / symbol ** p)
                with np.errstate(all="ignore"):
                    vals = sympy.lambdify([symbol], expr, "numpy")(x)
            except Exception:  # sympy cannot form or evaluate it: not a candidate
                continue
            vals = np.broadcast_to(np.asarray(vals, dtype=np.float64), y.shape)
            if not np.all(np.isfinite(vals)):
                continue
            r = 1.0 - float(np.mean((vals - y) ** 2)) / max(float(np.var(y)), 1e-300)
            label = f"curve {name} of {tname}" + (f" * x^{p}" if p else "")
            found.append((r, label, expr))
    return found
