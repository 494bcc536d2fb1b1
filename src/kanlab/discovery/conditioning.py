"""The data as discovery sees it: names, offsets and scales the search can work with.

The search runs on plain symbols of the caller's names where sympy and NumPy read them as
variables, and on ``x_i`` where they would not (a variable called ``pi``, ``E`` or ``1a`` is
renamed by symbol, never by string; the formula comes back in the caller's symbols). It runs on
data brought to a workable scale: a column far from zero compared with its spread
(``1e8 + [-1, 1]``) is shifted by a short exact offset, a column or target whose magnitude is
extreme (``1e-30``, ``1e200``) is scaled by a power of ten. The formula found is then written in
the caller's variables with the offsets kept inside ``(x - c)``, so evaluating it does not
cancel the digits away, and every statistic of the result (the model's standardization
included) is mapped back.
"""
from __future__ import annotations

import keyword
import math
from dataclasses import dataclass, replace

import numpy as np
import sympy

from ..parallel import check_backend
from ..symbolic.formula import expression_size, make_symbols
from .result import _as_array
from .select import RULES

OFFSET_RATIO = 1e3  # |center| above this many half-ranges: shift the column
SCALE_RANGE = (1e-6, 1e6)  # column half-ranges outside: scale by a power of ten
Y_RANGE = (1e-8, 1e8)  # target magnitudes outside: scale by a power of ten


def _pow10(v: float) -> int:
    return int(math.floor(math.log10(v))) if v > 0 and math.isfinite(v) else 0


def _short_offset(center: float, half: float) -> sympy.Rational:
    """An exact offset near ``center``, rounded to a digit below the spread (so it prints
    short and the shifted data stays well inside float64)."""
    step = 10.0 ** (_pow10(half) - 1) if half > 0 else 10.0 ** (_pow10(abs(center)) - 6)
    k = round(center / step)
    e = _pow10(half) - 1 if half > 0 else _pow10(abs(center)) - 6
    return sympy.Integer(k) * sympy.Integer(10) ** e


def _safe(name: str) -> bool:
    """Whether the search may use ``name`` as it is: an identifier that sympy, NumPy and the
    printed formula read as a variable (not ``pi``, ``E``, ``I``, ``sin``, ``lambda``, ``1a``)."""
    return (name.isidentifier() and not keyword.iskeyword(name) and name not in vars(sympy)
            and name not in vars(math) and not name.startswith("_"))


def _search_symbols(symbols: list) -> list:
    """The search's symbols: plain symbols of the caller's names where those are safe, else
    ``x_i`` (or ``x_i_`` when the caller uses ``x_i`` for another column)."""
    taken = {s.name for s in symbols}
    out = []
    for i, s in enumerate(symbols):
        name = s.name if _safe(s.name) else f"x_{i + 1}"
        while name != s.name and name in taken:
            name += "_"
        taken.add(name)
        out.append(sympy.Symbol(name))
    return out


def _ten(e: int) -> sympy.Expr:
    """10**e, exact while it prints short, else a float (1.0e+200, not 201 digits)."""
    return sympy.Integer(10) ** e if abs(e) <= 4 else sympy.Float(f"1e{e}", 15)


@dataclass
class Conditioning:
    """How the caller's data maps to the search's: ``u_i = (x_i - offset_i) / 10**xexp_i`` and
    ``y = 10**yexp * v + y_offset``."""

    symbols: list
    inner: list
    offsets: list
    xexp: list
    y_offset: sympy.Rational
    yexp: int

    @classmethod
    def of(cls, X: np.ndarray, y: np.ndarray, symbols: list) -> "Conditioning":
        d = X.shape[1]
        offsets, xexp = [], []
        for i in range(d):
            lo, hi = float(np.min(X[:, i])), float(np.max(X[:, i]))
            center, half = (lo + hi) / 2, (hi - lo) / 2
            c = sympy.Integer(0)
            if center != 0 and abs(center) > OFFSET_RATIO * half:
                c = _short_offset(center, half)
                if half == 0 or abs(float(c)) <= OFFSET_RATIO * half:
                    c = sympy.Integer(0)  # constant columns, and offsets too small to matter
            size = half if half > 0 else abs(center - float(c))
            e = 0
            if size > 0 and not SCALE_RANGE[0] <= size <= SCALE_RANGE[1]:
                e = _pow10(size)
            offsets.append(c)
            xexp.append(e)
        yc = float(np.mean(y)) if not np.any(np.abs(y) > 1e300) else float(np.median(y))
        spread = float(np.max(np.abs(y - yc)))
        y_off = sympy.Integer(0)
        if yc != 0 and spread > 0 and abs(yc) > OFFSET_RATIO * 10 * spread:
            y_off = _short_offset(yc, spread)
        size = spread if spread > 0 else abs(yc)
        yexp = _pow10(size) if size > 0 and not Y_RANGE[0] <= size <= Y_RANGE[1] else 0
        inner = _search_symbols(symbols)
        return cls(list(symbols), inner, offsets, xexp, y_off, yexp)

    @property
    def rescales(self) -> bool:
        return bool(any(c != 0 for c in self.offsets) or any(self.xexp) or self.y_offset != 0
                    or self.yexp)

    def data(self, X: np.ndarray, y: np.ndarray):
        """The search's (X, y): shifted and scaled in float64 (the shift first, exactly)."""
        U = X.astype(np.float64, copy=True)
        for i, (c, e) in enumerate(zip(self.offsets, self.xexp)):
            if c != 0:
                U[:, i] = U[:, i] - float(c)
            if e:
                U[:, i] = U[:, i] / 10.0 ** e
        v = y.astype(np.float64, copy=True)
        if self.y_offset != 0:
            v = v - float(self.y_offset)
        if self.yexp:
            v = v / 10.0 ** self.yexp
        return U, v

    def expr(self, inner_expr):
        """A formula of the search's variables, in the caller's."""
        if inner_expr is None:
            return None
        sub = {}
        for u, x, c, e in zip(self.inner, self.symbols, self.offsets, self.xexp):
            shifted = x - c if c != 0 else x
            sub[u] = shifted * _ten(-e) if e else shifted
        out = sympy.sympify(inner_expr)
        # floats rounded to a few digits carry a short mantissa: widen them (from their decimal
        # form) before they meet powers of ten, or 0.001 * 1e200 comes out as 1.007e197
        out = out.xreplace({f: sympy.Float(str(f), 15) for f in out.atoms(sympy.Float)})
        out = out.xreplace(sub)
        if self.yexp:
            out = _ten(self.yexp) * out
        if self.y_offset != 0:
            out = out + self.y_offset
        return out

    def result(self, res):
        """A DiscoveryResult of the search, in the caller's variables and units."""
        names = {}

        def mapped(expr):
            out = self.expr(expr)
            if expr is not None:
                names[str(expr)] = str(out)
            return out

        formula = mapped(res.formula)
        attempts = []
        for a in res.attempts:
            a = dict(a)
            if a.get("expr") is not None:
                a["expr"] = mapped(a["expr"])
                a["formula"] = str(a["expr"])
                a["complexity"] = expression_size(a["expr"])
            attempts.append(a)
        pareto = [dict(r, formula=names.get(r["formula"], r["formula"])) for r in res.pareto]
        xs = np.array([10.0 ** e for e in self.xexp])
        xo = np.array([float(c) for c in self.offsets])
        ys = 10.0 ** self.yexp
        return replace(
            res, formula=formula, complexity=expression_size(formula), variables=self.symbols,
            attempts=attempts, pareto=pareto,
            x_center=None if res.x_center is None else np.asarray(res.x_center) * xs + xo,
            x_scale=None if res.x_scale is None else np.asarray(res.x_scale) * xs,
            y_center=float(res.y_center) * ys + float(self.y_offset),
            y_scale=float(res.y_scale) * ys)


def _validated(X, y, var_names, test_size, time_budget, backend, workers, model_selection):
    """(X, y, symbols) as float64 arrays and sympy symbols, or a ValueError saying what to fix."""
    X = _as_array(X, "X")
    y = _as_array(y, "y")
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (n_samples, n_features), got shape {X.shape}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"y must have shape (n,) or (n, 1), got {y.shape}")
    n, d = X.shape
    if n != y.shape[0]:
        raise ValueError(f"X has {n} rows but y has {y.shape[0]}: they must match")
    if n < 10:
        raise ValueError(f"discover() needs at least 10 samples, got {n}")
    if d < 1:
        raise ValueError("X has no columns")
    if not np.all(np.isfinite(X)) or not np.all(np.isfinite(y)):
        raise ValueError("X and y must be finite: remove or impute rows with NaN/Inf first")
    if not 0.0 < float(test_size) < 0.9:
        raise ValueError(f"test_size must be in (0, 0.9), got {test_size}")
    if not float(time_budget) > 0:
        raise ValueError(f"time_budget must be positive, got {time_budget}")
    check_backend(backend, workers)
    if model_selection not in RULES:
        raise ValueError(f"model_selection must be one of {RULES}, got {model_selection!r}")
    if var_names is not None and (isinstance(var_names, str) or len(list(var_names)) != d):
        raise ValueError(f"var_names needs {d} names (one per column of X), got {var_names!r}")
    if var_names is not None:
        bad = [v for v in var_names if isinstance(v, str) and any(ch in v for ch in "\n\r\t\x00")]
        if bad:
            raise ValueError(f"variable names must not hold newlines, tabs or NUL: {bad!r}")
    symbols = make_symbols(d, var_names)
    if var_names is not None and len({s.name for s in symbols}) != d:
        raise ValueError(f"var_names must be distinct, got {list(var_names)}")
    return X, y, symbols
