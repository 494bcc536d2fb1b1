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
from dataclasses import dataclass

import numpy as np
import sympy
import torch

from ..symbolic.fit import fit_functions
from ..symbolic.library import SymbolicFunction, default_lib, get_symbolic

__all__ = ["Curve", "univariate_candidates", "univariate_curves"]

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


def _transforms(y, lib=None):
    """(name, T(y), inverse of a sympy expression of T(y), the same inverse on numbers); with
    a library ``lib``, only those whose inverse it has (exp for log y, sqrt for y**2)."""
    names = None if lib is None else {n.name if isinstance(n, SymbolicFunction) else n
                                      for n in lib}
    has_exp = names is None or "exp" in names
    has_sqrt = names is None or bool({"sqrt", "x^0.5"} & names)
    out = [("y", y, lambda e: e, lambda v: v)]
    one_sign = bool(np.all(y > 0) or np.all(y < 0))
    s = 1 if float(np.mean(y)) >= 0 else -1
    sign = sympy.Integer(s)  # exact: no fitted 1.0
    amin, amax = float(np.min(np.abs(y))), float(np.max(np.abs(y)))
    with np.errstate(all="ignore"):
        if one_sign and amin >= 1e-6 * amax:
            out.append(("1/y", 1.0 / y, lambda e: 1 / e, lambda v: 1 / v))
        if one_sign and amin >= 1e-6 * amax and has_exp:
            out.append(("log y", np.log(np.abs(y)), lambda e: sign * sympy.exp(e),
                        lambda v: s * np.exp(v)))
        if one_sign and has_sqrt:
            out.append(("y^2", y * y, lambda e: sign * sympy.sqrt(e),
                        lambda v: s * np.sqrt(v)))
        if np.all(y >= 0):
            out.append(("sqrt y", np.sqrt(y), lambda e: e ** 2, lambda v: v * v))
        if np.all(y > 0) and amin >= 1e-6 * amax:
            # a power of a curve: 1/sin(x/2)**4 is (1 - cos(x))**-2
            out.append(("1/sqrt y", 1.0 / np.sqrt(y), lambda e: 1 / e ** 2,
                        lambda v: 1 / (v * v)))
            if has_sqrt:
                out.append(("1/y^2", 1.0 / (y * y), lambda e: 1 / sympy.sqrt(e),
                            lambda v: 1 / np.sqrt(v)))
    return out


@dataclass
class _Target:
    """One transformed target: T(y) * x**p against the argument x or 1/x, standardized."""
    name: str  # its label, e.g. "1/y in 1/x"
    p: int
    inverse: object  # T^-1 on sympy
    inverse_np: object  # T^-1 on numbers
    t: np.ndarray  # T(y) * x**p
    arg_inverted: bool  # the argument is 1/x
    centre: float  # of the argument, for its standardized form (v - centre) / half
    half: float


@dataclass
class Curve:
    """A fitted curve ``T^-1((c*f(a*v + b) + d) / x**p)``, v the standardized argument (x or
    1/x): its label, (a, b, c, d), R2 on y, and how to evaluate it at other x or other
    constants (:meth:`values`) and write it (:meth:`expression`)."""
    label: str
    fn: SymbolicFunction
    target: _Target
    params: np.ndarray
    r2: float

    def values(self, x, params=None):
        a, b, c, d = self.params if params is None else params
        tg = self.target
        v = ((1.0 / x if tg.arg_inverted else x) - tg.centre) / tg.half
        with torch.no_grad():
            f = self.fn.torch_fn(torch.as_tensor(a * v + b, dtype=torch.float64)).numpy()
        with np.errstate(all="ignore"):
            return tg.inverse_np((c * f + d) / x ** tg.p)

    def expression(self, symbol, params=None):
        a, b, c, d = (float(q) for q in (self.params if params is None else params))
        tg = self.target
        arg = 1 / symbol if tg.arg_inverted else symbol
        vstd = (arg - sympy.Float(tg.centre, 15)) / sympy.Float(tg.half, 15)
        inner = sympy.Float(c, 15) * self.fn.sympy_fn(sympy.Float(a, 15) * vstd
                                                      + sympy.Float(b, 15)) + sympy.Float(d, 15)
        return tg.inverse(inner / symbol ** tg.p)


def univariate_candidates(x, y, symbol, *, lib=None, deadline: float = math.inf,
                          keep: int = 6):
    """Up to ``keep`` (label, sympy expression in ``symbol``) of y against the one input x,
    best training fit first (see the module doc); [] when nothing fits to ``_MIN_R2``."""
    out = []
    for cv in univariate_curves(x, y, lib=lib, deadline=deadline):
        try:
            out.append((cv.label, cv.expression(symbol)))
        except Exception:  # sympy cannot form it: not a candidate
            continue
        if len(out) >= keep:
            break
    return out


def univariate_curves(x, y, *, lib=None, deadline: float = math.inf, min_r2: float = _MIN_R2,
                      per_target: int = 3, always: bool = True) -> list[Curve]:
    """Every :class:`Curve` of y against the one input x whose transformed target is fitted
    to ``min_r2`` (the ``per_target`` best functions of each), best R2 on y first. A caller
    that refits the curves on y itself may ask for less than ``_MIN_R2``: a transform such as
    1/sqrt y magnifies the noise of small values. ``always``: y, 1/y and log y are fitted even
    past the deadline (else nothing is)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if len(x) < 8 or not np.ptp(x) > 0 or time.perf_counter() > deadline:
        return []
    names = [n for n in (lib if lib is not None else default_lib()) if n not in _SKIP]
    if not names:
        return []
    funcs = [get_symbolic(n) if not isinstance(n, SymbolicFunction) else n for n in names]
    if lib is None:
        funcs = funcs + _EXTRA
    lo, hi = float(x.min()), float(x.max())
    powers = [0]
    # the argument as x, and as 1/x where x keeps one sign away from zero: a group's
    # orientation is arbitrary (T*kb/(B*mom) or B*mom/(T*kb)), and so is which of the two
    # the law's function takes
    args = [(False, x)]
    if (lo > 0 or hi < 0) and min(abs(lo), abs(hi)) >= 1e-3 * max(abs(lo), abs(hi)):
        powers += [-1, 1]
        args.append((True, 1.0 / x))
    targets = []
    for inverted, v in args:
        vc, vs = 0.5 * (float(v.max()) + float(v.min())), 0.5 * float(np.ptp(v))
        for tname, ty, inv, inv_np in _transforms(y, lib):
            for p in powers:
                with np.errstate(all="ignore"):
                    t = ty * x ** p
                if np.all(np.isfinite(t)) and np.ptp(t) > 0:
                    targets.append((_Target(tname if not inverted else f"{tname} in 1/x", p, inv,
                                            inv_np, t, inverted, vc, vs), (v - vc) / vs))
    if not targets:
        return []
    # one batched fit per transform of y, the deadline checked between them from the fourth
    # on: all 42 targets at once took 4.5 s of a 1.75 s share in a factor's sub-search, and
    # left it no time for a network attempt; y, 1/y and log y (a third of that) always run
    # (Planck's 1/(exp(z) - 1) and 1/(2*cosh(z)) are curves of 1/y)
    chunks: dict[str, list] = {}  # transform -> its targets (x and 1/x, every power)
    for tg in targets:
        chunks.setdefault(tg[0].name.split(" in ")[0], []).append(tg)
    found = []
    for tname, chunk in chunks.items():
        if (tname not in _ALWAYS or not always) and time.perf_counter() > deadline:
            break
        U = torch.as_tensor(np.stack([c[1] for c in chunk]), dtype=torch.float64)
        T = torch.as_tensor(np.stack([c[0].t for c in chunk]), dtype=torch.float64)
        fit = fit_functions(U, T, funcs, n_starts=3, max_points=_POINTS)
        found += _curves(fit, funcs, [c[0] for c in chunk], x, y, min_r2, per_target)
        if tname == "y":
            found += _wide(funcs, chunk, U, T, x, y, deadline, min_r2, per_target)
    found.sort(key=lambda cv: -cv.r2)
    return found


def _wide(funcs, chunk, U, T, x, y, deadline, min_r2, per_target):
    """A fast oscillation (sin(2*pi*E*t/h)**2 over four periods) lies beyond the default scan
    of a (|a| <= 10 on the standardized argument), and so does a steep decay over a long-tailed
    argument (exp(-u) with u from 0.2 to 77 is exp(-38.7*s) on the standardized s): periodic
    functions and exp get a wide, dense scan, of y itself only (sin**2 is a cos of twice the
    argument, and the scan is costly)."""
    wide = [f for f in funcs if f.name in _WIDE]
    plain = [e for e, c in enumerate(chunk) if c[0].p == 0]
    if not wide or not plain or time.perf_counter() > deadline:
        return []
    fit = fit_functions(U[plain], T[plain], wide, a_range=(-_WIDE_A, _WIDE_A),
                        b_range=(-3.2, 3.2), grid_number=21, n_starts=3, coarse_points=256,
                        max_points=_POINTS)
    return _curves(fit, wide, [chunk[e][0] for e in plain], x, y, min_r2, per_target)


def _curves(fit, funcs, targets, x, y, min_r2, per_target):
    """The best fits of each target as :class:`Curve`, scored by R2 on y itself."""
    r2 = fit.r2.numpy()
    var = max(float(np.var(y)), 1e-300)
    found = []
    for e, tg in enumerate(targets):
        for fi in np.argsort(-r2[e])[:per_target]:
            if not r2[e, fi] >= min_r2:
                break
            cv = Curve("", funcs[fi], tg, fit.params[e, fi].numpy().astype(np.float64), 0.0)
            try:  # a user's function may fail where the fit's points did not reach
                vals = np.broadcast_to(np.asarray(cv.values(x), dtype=np.float64), y.shape)
            except (RuntimeError, ValueError, TypeError, ArithmeticError):
                continue
            if not np.all(np.isfinite(vals)):
                continue
            cv.r2 = 1.0 - float(np.mean((vals - y) ** 2)) / var
            cv.label = f"curve {funcs[fi].name} of {tg.name}" + (f" * x^{tg.p}" if tg.p else "")
            found.append(cv)
    return found
