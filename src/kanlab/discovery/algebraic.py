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
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import sympy

from .dense import dense_polynomials
from .prefactor import dense_behind, divided_sum, powerlaw_fit, powerlaw_sum
from .signomial import signomial_sums
from .sparse import EXACT_RSS, chosen_supports, forward_select, lstsq_on, prune_support
from .terms import (FUNCTIONS, Dictionary, build_dictionary, input_kinds, simplest_first, sum_expr,
                    term_expr)

__all__ = ["algebraic_candidates", "Candidate"]


@dataclass
class Candidate:
    """One algebraic formula: ``expr`` in the caller's symbols, with ``label`` saying how."""

    expr: sympy.Expr
    label: str
    n_terms: int
    train_rel_rss: float  # residual sum of squares of the transformed target, relative


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


_RATIONAL_ALL = 200  # a dictionary this small enters the ratios whole (functions too)


_POLY_TARGETS = ("y", "1/y", "y^2", "1/y^2")  # the transforms tried as whole polynomials


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
    out.extend(Candidate(*f) for f in signomial_sums(
        X, transforms, symbols, live, deadline=deadline, seed=seed,
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
        # a small dictionary is taken whole: (x**2 - 1)/(x + cos(theta))**2
        # (integer powers only: roots stay in the sums)
        whole = [j for j, (v, _) in enumerate(D.terms) if all(e == int(e) for e in v)]
        mono_cols = [j for j in whole
                     if D.terms[j][1] is None or len(whole) <= _RATIONAL_ALL][:max_rational]
        Dm = Dictionary([D.terms[j] for j in mono_cols], D.columns[:, mono_cols])
    order = simplest_first(D.terms)
    # the sums of every transform first, then the ratios P/Q (P/Q covers Q/P: 1/y and 1/y**2
    # add nothing there): a sum takes a fraction of a ratio's time, so within a sub-search's
    # few seconds a two-term sum of log y is not lost behind the ratios of y and y**2
    finite = [(name, t, inverse) for name, t, inverse in transforms if np.all(np.isfinite(t))]
    for name, t, inverse in finite:
        if time.perf_counter() > deadline or _exact(out):
            break  # past the deadline, or exact to float precision: nothing can fit better
        out.extend(_sums(D, t, name, inverse, symbols, k_max, n, deadline, order))
    for name, t, inverse in finite if rational else ():
        if time.perf_counter() > deadline or _exact(out):
            break
        if name in ("y", "y^2", "cos y"):
            out.extend(_rational(Dm, t, name, inverse, symbols, k_max, n, deadline))
            if name == "y" and not any(c.train_rel_rss < 1e-11 for c in out):
                out.extend(small_ratios(Dm, t, name, inverse, symbols, deadline))
    if not _exact(out):
        plain = min((c.train_rel_rss for c in out  # the sparse sums only: a whole polynomial
                     if c.label.startswith("sum of") and c.label.endswith("terms of y")),
                    default=1.0)  # of 10 terms fits to the noise and would bar every law
        found = divided_sum(D, X, y, one_sign, symbols, order, k_max, n, deadline, plain)
        if not any(f[3] < EXACT_RSS for f in found):
            found += powerlaw_sum(X, y, one_sign, live, symbols, k_max, n, deadline, fns, plain)
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


def _rational(D, y, name, inverse, symbols, k_max, n, deadline):
    """T(y) = P/Q with Q = 1 + (terms) (``y`` here is T(y), ``name`` says which T): ``T*Q = P``,
    that is ``T = P - T*(Q - 1)``, is linear in the coefficients. The linear form also admits
    near-degenerate solutions (Q - 1 ~ -1 from functions that approximate a constant, P ~ 0),
    so :func:`forward_select` ranks supports by the error of P/Q itself."""
    scale = float(np.sqrt(np.mean(y * y))) or 1.0
    ys = y / scale
    yss = float(ys @ ys)
    terms = D.terms
    index = {t: j for j, t in enumerate(terms)}
    d = len(terms[0][0]) if terms else 0
    lhs = [("Q", index.get((tuple([0] * d), None)))]
    out, M = [], D.columns.shape[1]
    for side, m in lhs:
        if m is None or time.perf_counter() > deadline:
            continue
        others = [j for j in range(M) if j != m]
        if side == "Q":  # T*m_L = P + sum c_k (-T m_k)
            target = ys * D.columns[:, m]
            A = np.concatenate([D.columns, -ys[:, None] * D.columns[:, others]], axis=1)
        else:  # m_L = sum c_k (T m_k) + sum c_k (-m_k)
            target = D.columns[:, m].copy()
            A = np.concatenate([-D.columns[:, others], ys[:, None] * D.columns], axis=1)

        def parts(sup, coef):
            """(P terms, Q terms) as [(term index, coefficient)]."""
            P, Q = [], []
            for j, c in zip(sup, coef):
                if side == "Q":
                    (P if j < M else Q).append((j if j < M else others[j - M], c))
                else:
                    (P if j < M - 1 else Q).append((others[j] if j < M - 1 else j - (M - 1), c))
            (Q if side == "Q" else P).append((m, 1.0))
            return P, Q

        def error(sup):
            coef, _ = lstsq_on(A, target, sup)
            P, Q = parts(sup, coef)
            num = sum((D.columns[:, j] * c for j, c in P), np.zeros(len(ys)))
            den = sum((D.columns[:, j] * c for j, c in Q), np.zeros(len(ys)))
            with np.errstate(all="ignore"):
                res = num / den - ys
            v = float(res @ res) / yss
            return v if math.isfinite(v) else math.inf

        # a wider beam than the sums' least: a greedy first column outside P and Q's support
        # is common (y**2 = (1 - g1**2*g2)**2/(1 - g1**2) on one sample of rows, not another)
        beam = max(12, min(32, 12000 // max(A.shape[1], 1)))
        path = forward_select(A, target, k_max, deadline=deadline, score=error, beam=beam)
        if not path:
            continue
        exact = False
        for sup in chosen_supports(A, target, path, n):
            coef, _ = lstsq_on(A, target, sup)
            P, Q = parts(sup, coef)
            if len(Q) == 1 and not any(terms[Q[0][0]][0]) and terms[Q[0][0]][1] is None:
                continue  # Q = 1: the plain sums have it already
            err = error(sup)
            Pe = sum_expr(D, [j for j, _ in P], [c for _, c in P], symbols, scale)
            Qe = sum_expr(D, [j for j, _ in Q], [c for _, c in Q], symbols, 1.0)
            out.append(Candidate(inverse(Pe / Qe), f"ratio P/Q of {len(sup) + 1} terms for {name}",
                                 len(sup) + 1, err))
            exact = exact or err < 1e-11
        if exact:
            break
    return out


def small_ratios(D, y, name, inverse, symbols, deadline, max_p: int = 400, k_max: int = 4,
                 max_pool: int = 21, max_seconds: float = 2.0):
    """T(y) = P / (m_a + c*m_b) for every pair of monomials m_a, m_b with non-negative exponents
    and degree <= 2 (``c^2 + u*v``, ``m1 + m2``, ``3 - n*alpha``), P a short sum found by forward
    selection over the simplest ``max_p`` monomials: ``T*m_a = P - c*T*m_b`` is linear, and with
    Q fixed up to c it has no degenerate solution. Stops at the first exact fit, after the
    ``max_pool`` simplest monomials or after ``max_seconds``. Without an exact fit (noisy data)
    the pair whose P/Q, with P of the size BIC picks, has the lowest BIC is returned: on
    ``x1*x2/(x1 + x2) + x3`` at 1% noise no pair fits exactly, and the right one fits to the
    noise with three terms in P."""
    mono = [j for j, (v, fn) in enumerate(D.terms) if fn is None][:max_p]
    if not mono:
        return []
    pool = [j for j, (v, fn) in enumerate(D.terms)
            if fn is None and all(e >= 0 for e in v) and sum(v) <= 2][:max_pool]
    deadline = min(deadline, time.perf_counter() + max_seconds)
    scale = float(np.sqrt(np.mean(y * y))) or 1.0
    ys = y / scale
    yss = float(ys @ ys)
    n = len(ys)
    Ap = D.columns[:, mono]
    Ap = Ap / np.sqrt(np.sum(Ap * Ap, axis=0))
    best = None
    for ia, a in enumerate(pool):
        for b in pool[ia + 1:]:
            if time.perf_counter() > deadline:
                return [] if best is None else [best[1]]
            q = -ys * D.columns[:, b]
            qn = q / (np.linalg.norm(q) or 1.0)
            t = ys * D.columns[:, a]
            tp = t - qn * (qn @ t)
            A = Ap - np.outer(qn, qn @ Ap)
            path = forward_select(A, tp, k_max, beam=4, max_pairs=200)
            if not path:
                continue
            exact = path[-1][1] <= 1e-11
            if exact:
                sup = prune_support(A, tp, path[-1][0], 1e-11)
            else:  # noise biases the linear form's residual (y sits on both sides): rank the
                # supports by the error of P/Q itself, as the ratios above do
                def error(sup, a=a, b=b, q=q, t=t):
                    return _small_ratio_fit(D, ys, yss, mono, sup, q, t, a, b)[1]
                path = forward_select(A, tp, k_max, beam=4, score=error)
                if not path:
                    continue
                sup = chosen_supports(A, tp, path, n)[0]
            cand = _small_ratio(D, ys, yss, mono, sup, q, t, a, b, name, inverse, symbols, scale)
            if cand is None:
                continue
            if exact and cand.train_rel_rss < 1e-10:
                return [cand]
            score = n * math.log(max(cand.train_rel_rss, 1e-30)) + cand.n_terms * math.log(n)
            if best is None or score < best[0]:
                best = (score, cand)
    return [] if best is None else [best[1]]


def _small_ratio_fit(D, ys, yss, mono, sup, q, t, a, b):
    """``(coefficients, relative squared error of P/Q)`` of ``P / (m_a + c*m_b)`` with P on
    the columns ``sup`` of ``mono``, fitted by least squares of ``T*m_a = P - c*T*m_b`` (c
    last); the error is inf where P/Q is not finite on the rows."""
    cols = np.column_stack([D.columns[:, [mono[j] for j in sup]], q])
    coef, *_ = np.linalg.lstsq(cols, t, rcond=None)
    with np.errstate(all="ignore"):
        res = (cols[:, :-1] @ coef[:-1]) / (D.columns[:, a] + coef[-1] * D.columns[:, b]) - ys
    err = float(res @ res) / yss
    return coef, err if math.isfinite(err) else math.inf


def _small_ratio(D, ys, yss, mono, sup, q, t, a, b, name, inverse, symbols, scale):
    """The :class:`Candidate` of :func:`_small_ratio_fit`; None where P/Q is not finite."""
    coef, err = _small_ratio_fit(D, ys, yss, mono, sup, q, t, a, b)
    if not math.isfinite(err):
        return None
    P = sum_expr(D, [mono[j] for j in sup], coef[:-1], symbols, scale)
    Q = term_expr(D.terms[a], symbols) + sympy.Float(float(coef[-1]), 15) * \
        term_expr(D.terms[b], symbols)
    return Candidate(inverse(P / Q), f"ratio P/(m_a + c*m_b) for {name}", len(sup) + 2, err)
