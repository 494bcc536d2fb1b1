"""The algebraic stage: T(y) as a short sum of terms, or y as a ratio P/Q, by sparse least squares.

A term is a monomial ``prod_i x_i**e_i`` (integer exponents; negative ones only for inputs that
keep one sign and stay away from zero), optionally times one factor of a single input:
``sin(x_j)``, ``cos(x_j)``, ``sin(x_j)*cos(x_j)``, ``sin(x_j)**2`` or ``log(x_j)`` (positive
inputs). The dictionary of such terms, simplest first and capped in size, is searched greedily:
forward selection by orthogonal least squares (each step adds the term that lowers the residual
most once the chosen terms are refitted), then backward elimination of terms the fit does not
need. The path of fits (1, 2, ... terms) is kept and judged by BIC, so noisy data get the short
formula the data support rather than one that fits the noise.

Targets tried: ``T(y)`` for the invertible transforms that are defined on the data (y, 1/y,
y**2, 1/y**2, sqrt(y), log(y), sin(y), cos(y)), and ``y = P/Q`` through its linear form
``y = P - y*(Q - 1)``. A pure monomial ``c * prod x_i**p_i`` with any rational powers is read
directly off ``log|y|`` by ordinary least squares, and sums of a few power laws with free
exponents by nonlinear least squares (:mod:`.signomial`, first, within a couple of seconds).
When nothing is exact, sums behind a prefactor (``x_i**+-1``, or the integer powers of a
power-law fit) are tried too (:mod:`.prefactor`). Everything else here is linear algebra on a
few hundred rows: a whole stage takes a few seconds at most, so it runs first.
"""
from __future__ import annotations

import math
import time
from fractions import Fraction

import numpy as np
import sympy

from .candidate import Candidate
from .dense import dense_polynomials
from .prefactor import (cleared_sum, dense_behind, divided_sum, powerlaw_fit, powerlaw_ratio,
                        powerlaw_sum)
from .ratios import ratio_dictionary, rational_fits, small_ratios
from .roots import divided_root, root_beside_terms
from .signomial import signomial_sums
from .sparse import EXACT_RSS, chosen_supports, forward_select, lstsq_on
from .terms import FUNCTIONS, build_dictionary, input_kinds, simplest_first, sum_expr

__all__ = ["algebraic_candidates", "Candidate"]


def _transforms(y, allowed=None):
    """(name, T(y) values, inverse as a function of the sympy expression of T(y)); with
    ``allowed`` (function names), only the transforms whose inverse uses allowed functions."""
    out = [("y", y, lambda e: e)]
    use = _allowed_functions(allowed)
    sign = sympy.Integer(1 if float(np.mean(y)) >= 0 else -1)  # exact: no fitted 1.0
    amin, amax = float(np.min(np.abs(y))), float(np.max(np.abs(y)))
    one_sign = bool(np.all(y > 0) or np.all(y < 0))
    away = one_sign and amin >= 1e-3 * amax
    with np.errstate(all="ignore"):
        if away:
            out.append(("1/y", 1.0 / y, lambda e: 1 / e))
            if "sqrt" in use:
                out.append(("1/y^2", y ** -2.0, lambda e: sign / sympy.sqrt(e)))
        if one_sign and "sqrt" in use:
            out.append(("y^2", y * y, lambda e: sign * sympy.sqrt(e)))
        if one_sign and "exp" in use:
            out.append(("log y", np.log(np.abs(y)), lambda e: sign * sympy.exp(e)))
        if np.all(y >= 0):
            out.append(("sqrt y", np.sqrt(y), lambda e: e ** 2))
        if amax <= math.pi / 2 and amax > 0.2 and "arcsin" in use:
            out.append(("sin y", np.sin(y), lambda e: sympy.asin(e)))
        if np.all(y >= 0) and np.all(y <= math.pi) and amax > 0.2 and "arccos" in use:
            out.append(("cos y", np.cos(y), lambda e: sympy.acos(e)))
    return out


def _allowed_functions(allowed):
    """The library names the algebraic stage may use, out of sqrt, exp, log, sin, cos, arcsin
    and arccos (``allowed`` None: all of them; the library's aliases are understood)."""
    every = {"sqrt", "exp", "log", "sin", "cos", "arcsin", "arccos"}
    if allowed is None:
        return every
    alias = {"x^0.5": "sqrt", "asin": "arcsin", "acos": "arccos"}
    return {alias.get(a, a) for a in allowed} & every


def _monomial(X, y, symbols, live):
    """``c * prod x_i**p_i`` off log|y| (:func:`.prefactor.powerlaw_fit`) when y (up to noise)
    and the live inputs keep one sign each; powers rounded to simple fractions when that costs
    nothing. None when it does not fit."""
    idx = [i for i in range(X.shape[1]) if live[i]]
    if not idx or any(not (np.all(X[:, i] > 0) or np.all(X[:, i] < 0)) for i in idx):
        return None
    fit = powerlaw_fit(X, y, idx)
    if fit is None or not fit[2] < 0.05:  # not a monomial (5% off in y)
        return None
    _, exponents, rms = fit
    powers = []
    for p in exponents:
        fr = Fraction(float(p)).limit_denominator(6)
        powers.append(sympy.Rational(fr.numerator, fr.denominator)
                      if abs(float(fr) - p) < 2e-3 else sympy.Float(float(p), 15))
    body = sympy.Integer(1)
    for i, p in zip(idx, powers):
        xi = symbols[i] if np.all(X[:, i] > 0) else -symbols[i]
        body = body * xi ** p
    vals = _evaluate_terms(body, symbols, X)
    c = float(np.dot(vals, y) / max(np.dot(vals, vals), 1e-300))
    return Candidate(sympy.Float(c, 15) * body, "monomial", len(idx), rms * rms)


def _evaluate_terms(expr, symbols, X):
    fn = sympy.lambdify(symbols, expr, modules="numpy", dummify=True)
    with np.errstate(all="ignore"):
        out = fn(*[X[:, i] for i in range(X.shape[1])])
    return np.broadcast_to(np.asarray(out, dtype=np.float64), (X.shape[0],))


_POLY_TARGETS = ("y", "1/y", "y^2", "1/y^2")  # the transforms tried as whole polynomials
# a ratio behind a prefactor needs this share of the stage's time left, and takes a second at
# most (see algebraic_candidates)
_BEHIND_RATIO_LEFT, _BEHIND_RATIO_SECONDS = 0.3, 1.0
_ROOTS_SHARE = 0.3  # of the time left, for the roots of sums (roots.py)


def algebraic_candidates(X, y, symbols, *, deadline: float = math.inf, k_max: int = 10,
                         max_rows: int = 600, seed: int = 0, rational: bool = True,
                         allowed=None, max_columns: int = 3000,
                         max_rational: int = 1000) -> list[Candidate]:
    """Candidate formulas for ``y = f(X)`` from the algebraic stage (see the module doc).

    Args:
        X: (n, d) inputs in the caller's units; y: (n,) target.
        symbols: d sympy symbols for the formulas.
        deadline: a ``time.perf_counter()`` value; the stage returns what it has by then.
        k_max: most terms in a sum (and in P plus Q of a ratio).
        max_rows: rows used for the selection (a random subset when there are more).
        allowed: library function names the formulas may use (None: any).

    Returns a list of :class:`Candidate`, cheapest first within each target; the constants are
    least-squares values (the caller refits and snaps them on all its data).
    """
    t_start = time.perf_counter()
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if len(y) > max_rows:
        rows = np.random.default_rng(seed).choice(len(y), max_rows, replace=False)
        X, y = X[rows], y[rows]
    n = len(y)
    neg_ok, _, _, live = input_kinds(X)
    one_sign = np.flatnonzero(neg_ok & live)  # inputs of one sign, away from zero
    out = []
    mono = _monomial(X, y, symbols, live)
    if mono is not None:
        out.append(mono)
    use = _allowed_functions(allowed)
    transforms = _transforms(y, allowed)
    # sums of a few power laws: a few seconds at most, and the only way to terms of high degree
    left = deadline - time.perf_counter()
    whole_terms = []  # power-law terms with integer powers, beside others (a root's mimics)
    out.extend(Candidate(*f) for f in signomial_sums(
        X, transforms, symbols, live, deadline=deadline, seed=seed, lib=allowed,
        whole_terms=whole_terms,
        seconds=min(2.0, 0.25 * left) if math.isfinite(left) else 2.0))
    if _exact(out):
        return out  # exact to float precision: nothing can fit better
    # whole polynomials of low degree, pruned backward: many correlated terms (a sum of
    # squared differences) that forward selection misses, at a few milliseconds
    out.extend(Candidate(*f) for f in dense_polynomials(
        X, [tr for tr in transforms if tr[0] in _POLY_TARGETS], symbols, live, n, k_max,
        deadline))
    if not _exact(out):  # and behind a prefactor of the inputs with integer powers
        out.extend(Candidate(*f) for f in dense_behind(X, y, one_sign, live, symbols, k_max, n,
                                                       deadline))
    if _exact(out):
        return out
    fns = tuple(f for f in FUNCTIONS if {"sincos": "sin", "sin2": "sin"}.get(f, f) in use
                and (f not in ("sincos",) or "cos" in use))
    D = build_dictionary(X, max_columns=max_columns, functions=fns)
    if D.columns.shape[1] == 0 or time.perf_counter() > deadline:
        return out
    if rational:  # over the monomials only: the linear form doubles the dictionary
        Dm = ratio_dictionary(D, max_rational)
    order = simplest_first(D.terms)
    # the sums of every transform first, then the ratios P/Q (P/Q covers Q/P: 1/y and 1/y**2
    # add nothing there): a sum takes a fraction of a ratio's time, so within a sub-search's
    # few seconds a two-term sum of log y is not lost behind the ratios of y and y**2
    finite = [(name, t, inverse) for name, t, inverse in transforms if np.all(np.isfinite(t))]
    for name, t, inverse in finite:
        if time.perf_counter() > deadline or _exact(out):
            break  # past the deadline, or exact to float precision: nothing can fit better
        out.extend(_sums(D, t, name, inverse, symbols, k_max, n, deadline, order))
        if name == "y" and not _exact(out):
            # y times a monomial that vanishes on the data, right after y's own sums: a
            # sub-search's share may end before the ratios (a sinc squared of two inputs)
            sums = [(c.train_rel_rss, c.n_terms) for c in out  # residuals of y itself
                    if c.label.startswith("sum of") and c.label.endswith("terms of y")]
            out.extend(Candidate(*f) for f in cleared_sum(
                D, X, y, live, neg_ok, symbols, order, k_max, n, deadline,
                min(sums, default=(1.0, 0))))
    for name, t, inverse in finite if rational else ():
        if time.perf_counter() > deadline or _exact(out):
            break
        if name in ("y", "y^2", "cos y"):
            out.extend(rational_fits(Dm, t, name, inverse, symbols, k_max, n, deadline))
            if name == "y" and not any(c.train_rel_rss < 1e-11 for c in out):
                out.extend(small_ratios(Dm, t, name, inverse, symbols, deadline))
    if not _exact(out):
        plain = min((c.train_rel_rss for c in out  # the sparse sums only: a whole polynomial
                     if c.label.startswith("sum of") and c.label.endswith("terms of y")),
                    default=1.0)  # of 10 terms fits to the noise and would bar every law
        found = divided_sum(D, X, y, one_sign, symbols, order, k_max, n, deadline, plain)
        if not any(f[3] < EXACT_RSS for f in found) and "sqrt" in use:
            # roots of sums, alone and beside a term, in a share of what is left (a few
            # hundred milliseconds each on 600 rows and 3000 columns)
            now = time.perf_counter()
            roots_end = min(deadline, now + _ROOTS_SHARE * max(deadline - now, 0.0))
            found += divided_root(D, X, y, one_sign, symbols, order, k_max, n, roots_end,
                                  min([plain] + [f[3] for f in found]))
            if not any(f[3] < EXACT_RSS for f in found):
                found += root_beside_terms(D, X, y, whole_terms, one_sign, symbols, order,
                                           k_max, n, roots_end,
                                           min([plain] + [f[3] for f in found]))
        if not any(f[3] < EXACT_RSS for f in found):
            found += powerlaw_sum(X, y, one_sign, live, symbols, k_max, n, deadline, fns, plain)
        # a ratio behind a prefactor last, in a second or so of its own, and only where the
        # stage has time left for it and for the finishing of its candidates after it (taken
        # from their share, it cost I.16.6 its exact ratio at noise 0.01)
        # It must fit twice as closely as the plain ratios of y too: behind the prefactor
        # omega_0, the ratio of I.34.14 only displaced the law's own ratio of y**2
        left = deadline - time.perf_counter()
        ratios = min((c.train_rel_rss for c in out if c.label.startswith("ratio")
                      and c.label.endswith("for y")), default=1.0)
        if rational and left >= _BEHIND_RATIO_LEFT * (deadline - t_start) and \
                not any(f[3] < EXACT_RSS for f in found):
            found += powerlaw_ratio(X, y, one_sign, live, symbols, k_max, n,
                                    min(deadline, time.perf_counter() + _BEHIND_RATIO_SECONDS),
                                    fns, min(plain, 0.5 * ratios))
        out.extend(Candidate(*f) for f in found)
    return out


def _exact(cands) -> bool:
    """Whether a candidate fits exactly to float precision (nothing can fit better)."""
    return any(c.train_rel_rss < EXACT_RSS for c in cands)


def _sums(D, t, name, inverse, symbols, k_max, n, deadline, order) -> list[Candidate]:
    """Sparse sums of dictionary terms for the transformed target ``t`` (``name``), one per
    support size that :func:`chosen_supports` keeps."""
    scale = float(np.sqrt(np.mean(t * t))) or 1.0
    ts = t / scale
    # a small dictionary affords a wide beam (the exact support may start from a pair that
    # is not among the few best pairs)
    beam = max(6, min(64, 12000 // max(D.columns.shape[1], 1)))
    path = forward_select(D.columns, ts, k_max, deadline=deadline, beam=beam, triples=True,
                          order=order)
    out = []
    for sup in chosen_supports(D.columns, ts, path, n) if path else []:
        coef, rss = lstsq_on(D.columns, ts, sup)
        expr = inverse(sum_expr(D, sup, coef, symbols, scale))
        out.append(Candidate(expr, f"sum of {len(sup)} terms of {name}", len(sup),
                             rss / float(ts @ ts)))
    return out
