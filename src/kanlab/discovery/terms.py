"""The algebraic stage's dictionary: monomial terms, optionally times one function of one input.

A term is ``prod_i x_i**e_i`` (integer exponents; negative ones only for inputs that keep one
sign and stay away from zero; +-1/2 too for positive inputs when there are at most three
inputs), optionally times ``sin(x_j)``, ``cos(x_j)``,
``sin(x_j)*cos(x_j)``, ``sin(x_j)**2`` or ``log(x_j)`` (positive inputs). With two inputs,
``sin``, ``cos`` and ``sin**2`` of their product enter too (a phase such as
``omega*t`` or ``n*theta``: ``sin(n*theta/2)**2/sin(theta/2)**2`` is
``(1 - cos(n*theta))/(1 - cos(theta))``). Terms are ordered simplest first and capped in
number, so the dictionary stays a few thousand columns.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from itertools import combinations, product

import numpy as np
import sympy

__all__ = ["FUNCTIONS", "Dictionary", "build_dictionary", "input_kinds", "simplest_first",
           "sum_expr", "term_expr"]

FUNCTIONS = ("sin", "cos", "sincos", "sin2", "log")

def _exponent_vectors(allowed, max_l1: int, max_vars: int):
    """All exponent vectors with per-input exponents in ``allowed[i]``, L1 norm <= max_l1 and at
    most ``max_vars`` non-zero entries, simplest (smallest L1, then fewest inputs) first."""
    out = []

    def rec(i, left, nz, cur):
        if i == len(allowed):
            out.append(tuple(cur))
            return
        for e in allowed[i]:
            if _weight(e) > left or (e != 0 and nz == max_vars):
                continue
            cur.append(e)
            rec(i + 1, left - _weight(e), nz + (e != 0), cur)
            cur.pop()

    rec(0, max_l1, 0, [])
    out.sort(key=lambda v: (sum(map(_weight, v)), sum(1 for e in v if e), v))
    return out


_HALF = (Fraction(1, 2), Fraction(-1, 2))


def _weight(e) -> float:
    """An exponent's share of a term's degree budget: |e|, and one more for a half power (a
    root is less likely a priori than the integer power beside it)."""
    return abs(e) + (0 if e == int(e) else 1)


def input_kinds(X):
    """Per input: may it take negative exponents (one sign, away from zero), a log (positive),
    trigonometric factors (spans at most a few periods)?"""
    lo, hi = X.min(0), X.max(0)
    amax = np.maximum(np.abs(lo), np.abs(hi))
    one_sign = (lo > 0) | (hi < 0)
    away = one_sign & (np.minimum(np.abs(lo), np.abs(hi)) >= 1e-3 * amax)
    live = hi > lo
    return away & live, (lo > 0) & live, (amax <= 4 * math.pi) & live, live


@dataclass
class Dictionary:
    terms: list  # (exponents, fn) with fn None or (name, j)
    columns: np.ndarray  # (n, M), finite


_HALF_MAX_INPUTS = 3  # square roots of positive inputs enter dictionaries of this few inputs
# functions of a product x_j*x_k: in dictionaries of this few inputs, where the product sweeps
# half a period at least (less, its sine is nearly a polynomial in the monomials: the greedy
# search then takes it for them) and stays within a few periods (beyond, a sine of it fits
# anything wiggly)
_PAIR_MAX_INPUTS, _PAIR_SWEEP, _PAIR_SPAN = 2, math.pi, 8 * math.pi
_PAIR_FUNCTIONS = ("sin", "cos", "sin2")


def _degree_limits(d: int):
    """(max L1 of pure monomials, max L1 of a monomial beside a function factor, exponent bound)
    for d live inputs: a dictionary of a few thousand terms at most."""
    if d <= 2:
        return 6, 3, 4
    if d <= 4:
        return 5, 3, 3
    if d <= 6:
        return 4, 3, 3
    return 3, 2, 2


def build_dictionary(X, max_columns: int = 6000, functions=FUNCTIONS,
                     extra_degree: int = 0) -> Dictionary:
    """The terms for inputs X (n, d) and their values on X, with function factors among
    ``functions``; columns that are not finite are left out. ``extra_degree``: monomials of
    that much higher total degree than :func:`_degree_limits` allows."""
    neg_ok, pos, trig_ok, live = input_kinds(X)
    d = X.shape[1]
    n_live = int(live.sum())
    l1, l1_fn, emax = _degree_limits(max(n_live, 1))
    l1 += extra_degree
    max_vars = min(n_live, 4)
    allowed = []
    for i in range(d):
        if not live[i]:
            allowed.append([0])
        elif neg_ok[i]:
            allowed.append([0] + [s * e for e in range(1, emax + 1) for s in (1, -1)])
        else:
            allowed.append(list(range(0, emax + 1)))
        if live[i] and pos[i] and n_live <= _HALF_MAX_INPUTS:
            allowed[-1] += list(_HALF if neg_ok[i] else _HALF[:1])
    terms = [(v, None) for v in _exponent_vectors(allowed, l1, max_vars)][: max_columns]
    if functions:  # the monomials first, whole; terms with a function factor fill the rest
        small = _exponent_vectors(allowed, l1_fn, max(min(max_vars, 3), 1))
        extra = []
        for j in range(d):
            names = [f for f in functions
                     if (f == "log" and pos[j]) or (f != "log" and trig_ok[j])]
            for f, v in product(names, small):
                extra.append((v, (f, j)))
        for pair in _phase_pairs(X, live) if n_live <= _PAIR_MAX_INPUTS else ():
            for f, v in product([f for f in functions if f in _PAIR_FUNCTIONS], small):
                extra.append((v, (f, pair)))
        extra.sort(key=_term_cost)
        terms += extra[: max(max_columns - len(terms), 0)]
    cols, kept = [], []
    with np.errstate(all="ignore"):
        logs = np.where(X > 0, np.log(np.where(X > 0, X, 1.0)), 0.0)
        for t in terms:
            v = _term_values(t, X, logs)
            if np.all(np.isfinite(v)):
                cols.append(v)
                kept.append(t)
    A = np.stack(cols, axis=1) if cols else np.zeros((X.shape[0], 0))
    return Dictionary(kept, A)


def _phase_pairs(X, live):
    """Pairs (j, k) of live inputs whose product sweeps ``_PAIR_SWEEP`` radians or more and
    stays within ``_PAIR_SPAN`` of zero."""
    out = []
    for j, k in combinations(np.flatnonzero(live).tolist(), 2):
        z = X[:, j] * X[:, k]
        if np.ptp(z) >= _PAIR_SWEEP and np.max(np.abs(z)) <= _PAIR_SPAN:
            out.append((j, k))
    return out


def _term_cost(t) -> int:
    v, fn = t
    fn_cost = 0 if fn is None else 2 if isinstance(fn[1], int) else 3
    return sum(map(_weight, v)) + sum(1 for e in v if e) + fn_cost


def _argument(j, X):
    """The values of a function factor's argument: input j, or the product of a pair."""
    return X[:, j] if isinstance(j, int) else X[:, j[0]] * X[:, j[1]]


def simplest_first(terms) -> np.ndarray:
    """Indices of ``terms`` ranked simplest first (monomials and function terms together)."""
    return np.argsort([_term_cost(t) for t in terms], kind="stable")


def term_values(terms, X) -> np.ndarray:
    """The columns of ``terms`` (as a :class:`Dictionary` holds them) at other points X."""
    with np.errstate(all="ignore"):
        logs = np.where(X > 0, np.log(np.where(X > 0, X, 1.0)), 0.0)
        return np.column_stack([_term_values(t, X, logs) for t in terms]) if terms else \
            np.zeros((len(X), 0))


def _term_values(t, X, logs):
    v, fn = t
    out = np.ones(X.shape[0])
    for i, e in enumerate(v):
        if e:
            out = out * X[:, i] ** float(e)
    if fn is not None:
        name, j = fn
        x = _argument(j, X)
        out = out * {"sin": np.sin, "cos": np.cos, "log": lambda _: logs[:, j],
                     "sincos": lambda z: np.sin(z) * np.cos(z),
                     "sin2": lambda z: np.sin(z) ** 2}[name](x)
    return out


def term_expr(t, symbols):
    v, fn = t
    e = sympy.Integer(1)
    for s, p in zip(symbols, v):
        if p:
            e = e * s ** sympy.Rational(str(p))
    if fn is not None:
        name, j = fn
        s = symbols[j] if isinstance(j, int) else symbols[j[0]] * symbols[j[1]]
        e = e * {"sin": sympy.sin(s), "cos": sympy.cos(s), "log": sympy.log(s),
                 "sincos": sympy.sin(s) * sympy.cos(s), "sin2": sympy.sin(s) ** 2}[name]
    return e


def sum_expr(D, support, coef, symbols, scale):
    """The sympy sum of ``D``'s terms ``support`` with coefficients ``coef * scale``."""
    return sympy.Add(*[sympy.Float(float(c) * scale, 15) * term_expr(D.terms[j], symbols)
                       for j, c in zip(support, coef) if c != 0])
