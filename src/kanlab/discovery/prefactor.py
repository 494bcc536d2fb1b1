"""Sums behind a prefactor: y = P * S (or P / S), P a product of powers of inputs, S a short sum.

A prefactor that multiplies every term of a law moves each term out of the simple columns the
sparse search looks at first: ``x1*cos(u) + x1*alpha*cos(u)**2`` or
``G**4*(m1*m2)**2*(m1 + m2)/(c**5*r**5)``, whose terms are of degree 19. Dividing it out leaves
a sum of two or three low-degree terms. Two ways to find P:

* :func:`divided_sum`: one input to the power +-1 (the caller's plain sums missed; the same
  under a square root is :func:`.roots.divided_root`);
* :func:`cleared_sum`: y times a monomial that vanishes on the data is a sum (a denominator
  the dictionary cannot hold);
* :func:`powerlaw_sum`: the inputs whose exponent in a power-law fit of ``|y|`` is near an
  integer (a factor of their own), to that integer; the sum is then searched over the other
  inputs only, in a dictionary of their own (of higher degree, having fewer inputs).
  :func:`powerlaw_ratio` does the same for a ratio of such terms.

Each returns ``(expr, label, n_terms, relative residual of y)`` tuples; the caller makes them
candidates.
"""
from __future__ import annotations

import itertools
import math
import time

import numpy as np
import sympy

from .dense import dense_polynomials
from .ratios import ratio_dictionary, rational_fits
from .result import _evaluate
from .sparse import EXACT_RSS, bic_pick, chosen_supports, forward_select, lstsq_on
from .terms import build_dictionary, simplest_first, sum_expr

__all__ = ["cleared_sum", "dense_behind", "divided_sum", "integer_prefactor", "powerlaw_fit",
           "powerlaw_ratio", "powerlaw_sum"]

_NEAR_INTEGER = 0.1  # a fitted exponent this close to an integer is taken as that integer
_NEAR_RATIO = 0.25  # ... and tried as the prefactor of a ratio (one input, one rational fit)
_CLEAR_MAX_INPUTS = 2  # cleared_sum tries every monomial of this many live inputs


def divided_sum(D, X, y, inputs, symbols, order, k_max, n, deadline, plain):
    """``x_i**p`` times a short sum of ``D``'s terms, p = 1 or -1, for i among ``inputs``
    (those of one sign, away from zero): ``x1*cos(u) + x1*alpha - x1*alpha*sin(u)**2``, whose
    triple is found once x1 is divided out. The best such fit is returned if it fits y at least
    twice as closely as the plain sums (relative residual ``plain``); else nothing."""
    yy = float(y @ y) or 1.0
    A = D.columns
    best = None
    for i in inputs:
        for p in (1, -1):
            if time.perf_counter() > deadline:
                break
            f = X[:, i] ** float(p)
            # y = f * S fitted as it stands (not y / f = S, whose noise f would reshape)
            fits = _fit_sums(f[:, None] * A, y, k_max, n, deadline, order)
            if not fits:
                continue
            coef, sup, scale = fits[0]
            rel = float(np.sum((y - f * (A[:, sup] @ coef) * scale) ** 2)) / yy
            if best is None or rel < best[3]:
                expr = symbols[i] ** p * sum_expr(D, sup, coef, symbols, scale)
                best = (expr, f"{symbols[i]}**{p} times a sum of {len(sup)} terms", len(sup), rel)
            if rel < EXACT_RSS:
                return [best]
    return [best] if best is not None and best[3] < 0.5 * plain else []


def cleared_sum(D, X, y, live, away, symbols, order, k_max, n, deadline, plain):
    """``S / m``: y times a monomial m is a short sum S of ``D``'s terms, where m carries a
    positive power of an input that changes sign (a denominator that vanishes on the data, out
    of the dictionary's reach: ``(2 - 2*cos(u*t))/(u**2*t)``, a sinc squared). Tried with up
    to ``_CLEAR_MAX_INPUTS`` live inputs, m's exponents 1 or 2 for inputs that change sign, -1
    to 2 for the others; the best is returned if its BIC beats that of ``plain``, the best of
    the caller's sums (relative residual, number of terms), else nothing: on noisy data a sum
    of seven terms may fit as closely as the law's two."""
    idx = [int(i) for i in np.flatnonzero(live)]
    signed = [i for i in idx if not away[i]]
    if not signed or len(idx) > _CLEAR_MAX_INPUTS:
        return []
    yy = float(y @ y) or 1.0
    choices = [(0, 1, 2) if i in signed else (-1, 0, 1, 2) for i in idx]
    best, best_key = None, math.inf
    for powers in itertools.product(*choices):
        if not any(p > 0 for i, p in zip(idx, powers) if i in signed):
            continue
        if time.perf_counter() > deadline:
            break
        m = np.prod([X[:, i] ** float(p) for i, p in zip(idx, powers)], axis=0)
        with np.errstate(all="ignore"):
            B = D.columns / m[:, None]  # the terms over m, in which y itself is a sum
        ok = np.all(np.isfinite(B), axis=0)
        if not ok.any():
            continue
        # supports grown on y*m (noise times m: where m is large, y*m is noisy), ranked by
        # how well their coefficients refitted on y fit y: y*m's own fit need not cancel where
        # m vanishes (2.001/t - 2*cos(u*t)/t over u**2 blows up at u = 0), y's must
        Bok, cols = B[:, ok], np.flatnonzero(ok)

        def err(sup, Bok=Bok):
            return lstsq_on(Bok, y, sup)[1] / yy

        t = y * m
        path = forward_select(D.columns[:, cols], t / (float(np.sqrt(np.mean(t * t))) or 1.0),
                              k_max, deadline=deadline, beam=4, score=err)
        if not path:
            continue
        sup, rel = path[bic_pick(path, n)]
        key = n * math.log(max(rel, 1e-30)) + len(sup) * math.log(n)  # BIC, as along a path
        if math.isfinite(rel) and (best is None or key < best_key):
            best_key = key
            coef = lstsq_on(Bok, y, sup)[0]
            mono = sympy.Mul(*[symbols[i] ** p for i, p in zip(idx, powers)])
            expr = sum_expr(D, [int(cols[k]) for k in sup], coef, symbols, 1.0) / mono
            best = (expr, f"a sum of {len(sup)} terms over {mono}", len(sup), rel)
        if rel < EXACT_RSS:
            break
    rel, k = plain
    return [best] if best is not None and \
        best_key < n * math.log(max(rel, 1e-30)) + k * math.log(n) else []


def _fit_sums(A, t, k_max, n, deadline, order):
    """[(coefficients, support, scale)] of the sparse fits of ``t`` by ``A``'s columns worth a
    formula (:func:`.sparse.chosen_supports`), the coefficients in units of ``t``'s RMS
    ``scale``; empty when nothing fits."""
    scale = float(np.sqrt(np.mean(t * t))) or 1.0
    ts = t / scale
    path = forward_select(A, ts, k_max, deadline=deadline, beam=4, triples=True, order=order)
    return [(lstsq_on(A, ts, sup)[0], sup, scale)
            for sup in (chosen_supports(A, ts, path, n) if path else [])]


def powerlaw_fit(X, y, idx):
    """``(log c, exponents of X[:, idx], weighted RMS residual in log y)`` of ``|y| = c *
    prod |x_i|**p_i`` by least squares on the logs; None when y does not keep one sign (rows
    of the other sign may carry up to 1% of y's sum of squares: noise around zero).

    Each row is weighed by y**2: additive noise moves log|y| by about noise/|y|, so rows where
    y is small (a law spanning decades) say little."""
    y2 = y * y
    main = y > 0 if float(np.sum(y2[y > 0])) >= float(np.sum(y2[y < 0])) else y < 0
    if float(np.sum(y2[~main])) > 0.01 * float(np.sum(y2)) or main.sum() < 8:
        return None
    Xm, ym = X[main], y[main]
    L = np.column_stack([np.ones(len(ym))] + [np.log(np.abs(Xm[:, i])) for i in idx])
    ly = np.log(np.abs(ym))
    w = np.sqrt(ym * ym / np.mean(ym * ym))
    coef, *_ = np.linalg.lstsq(L * w[:, None], ly * w, rcond=None)
    res = (L @ coef - ly) * w
    return float(coef[0]), coef[1:], float(np.sqrt(np.mean(res * res)))


def powerlaw_sum(X, y, inputs, live, symbols, k_max, n, deadline, functions, plain):
    """``y = P * S`` or ``y = P / S`` (see the module doc), the one that fits y more closely,
    if it fits more closely than the plain sums (relative residual ``plain``). ``inputs``: those
    of one sign, away from zero (the prefactor's candidates); ``live``: which inputs vary."""
    if time.perf_counter() > deadline:
        return []
    found = integer_prefactor(X, y, inputs, live, symbols)
    if found is None:
        return []
    P, Pe, rest = found
    # fewer inputs than y has: a degree more than their own dictionary would have (the
    # II.36.38 sum H + alpha*M/(epsilon*c**2) is of degree 5 in five inputs)
    D = build_dictionary(X[:, rest], max_columns=4000, functions=functions, extra_degree=1)
    sub = [symbols[i] for i in rest]
    if D.columns.shape[1] == 0:
        return []
    order = simplest_first(D.terms)
    yy = float(y @ y) or 1.0
    amin, amax = float(np.min(np.abs(y))), float(np.max(np.abs(y)))
    # the rows weighed so that the fit is of y itself: y = P * S, and y * S = P for P / S (an
    # error e in S moves P / S by about e * y**2 / P)
    forms = [("times", P, y)] + ([("over", y * y / P, y)] if amin >= 1e-3 * amax else [])
    best = []  # the closer form's fits: BIC's choice and the one a term shorter
    for kind, w, t in forms:
        if time.perf_counter() > deadline or not np.all(np.isfinite(w)):
            continue
        fits = []
        for coef, sup, scale in _fit_sums(w[:, None] * D.columns, t, k_max, n, deadline, order):
            s = (D.columns[:, sup] @ coef) * scale
            with np.errstate(all="ignore"):
                pred = P * s if kind == "times" else P / s
            rel = float(np.sum((y - pred) ** 2)) / yy
            if math.isfinite(rel):
                S = sum_expr(D, sup, coef, sub, scale)
                fits.append((Pe * S if kind == "times" else Pe / S,
                             f"{Pe} {kind} a sum of {len(sup)} terms", len(sup), rel))
        if fits and (not best or fits[0][3] < best[0][3]):
            best = fits
    return [f for f in best if f[3] < plain]


def powerlaw_ratio(X, y, inputs, live, symbols, k_max, n, deadline, functions, plain):
    """``y = x_i**p * R/Q``, x_i the input (among ``inputs``) whose exponent in a power-law fit
    of ``|y|`` is nearest a nonzero integer p (within ``_NEAR_RATIO``), and R/Q a ratio of terms
    of the other inputs (:func:`.ratios.rational_fits` on y/x_i**p, in their own dictionary,
    which has functions of their products when they are few):
    ``Int_0*(1 - cos(n*theta))/(1 - cos(theta))``, where the fit weighs the rows near the
    zeros of the sine little and reads Int_0's exponent as 0.87. The fits of y closer than
    ``plain``."""
    idx = [int(i) for i in inputs]
    fit = powerlaw_fit(X, y, idx) if len(idx) >= 2 else None
    if fit is None or time.perf_counter() > deadline:
        return []
    off = [(abs(p - round(p)), i, int(round(p))) for i, p in zip(idx, fit[1]) if round(p) != 0]
    if not off or min(off)[0] > _NEAR_RATIO:
        return []
    _, i, p = min(off)
    rest = [j for j in np.flatnonzero(live).tolist() if j != i]
    D = build_dictionary(X[:, rest], max_columns=3000, functions=functions)
    if D.columns.shape[1] == 0:
        return []
    P, Pe = X[:, i] ** float(p), symbols[i] ** p
    sub = [symbols[j] for j in rest]
    yy = float(y @ y) or 1.0
    out = []
    for c in rational_fits(ratio_dictionary(D), y / P, "y", lambda e: Pe * e, sub, k_max, n,
                           deadline):
        rel = float(np.sum((y - _evaluate(c.expr, symbols, X)) ** 2)) / yy
        if math.isfinite(rel) and rel < plain:
            out.append((c.expr, f"{Pe} times a {c.label}", c.n_terms, rel))
    return out


def integer_prefactor(X, y, inputs, live, symbols):
    """``(P values, P expression, the other live inputs)`` with P the product of the inputs
    (among ``inputs``: one sign, away from zero) whose exponent in a power-law fit of ``|y|``
    is near a nonzero integer, to that integer; None if there is no such input, or no other."""
    idx = [int(i) for i in inputs]
    if len(idx) < 2:
        return None
    fit = powerlaw_fit(X, y, idx)
    if fit is None:
        return None
    powers = {i: int(round(p)) for i, p in zip(idx, fit[1])
              if abs(p - round(p)) <= _NEAR_INTEGER and round(p) != 0}
    rest = [i for i in np.flatnonzero(live) if i not in powers]
    if not powers or not rest:
        return None
    P = np.prod([X[:, i] ** float(e) for i, e in powers.items()], axis=0)
    return P, sympy.Mul(*[symbols[i] ** e for i, e in powers.items()]), rest


def dense_behind(X, y, inputs, live, symbols, k_max, n, deadline):
    """``y = P * S`` or ``P / S``, P the prefactor of :func:`integer_prefactor` and S a whole
    low-degree polynomial of the other inputs pruned backward (:mod:`.dense`): the nine
    correlated terms of ``G*m1*m2/((x2 - x1)**2 + (y2 - y1)**2 + (z2 - z1)**2)`` that forward
    steps miss. The closest such fit of y, if any."""
    found = integer_prefactor(X, y, inputs, live, symbols)
    if found is None or time.perf_counter() > deadline:
        return []
    P, Pe, rest = found
    Xr, sub = X[:, rest], [symbols[i] for i in rest]
    u = y / P
    forms = [("y", u, lambda e: Pe * e)]
    if (np.all(u > 0) or np.all(u < 0)) and np.min(np.abs(u)) >= 1e-3 * np.max(np.abs(u)):
        forms.append(("1/y", 1.0 / u, lambda e: Pe / e))
    yy = float(y @ y) or 1.0
    out = []
    # a fit of y = P*u (or P/(1/u)): an error e in u is P*e in y
    for expr, label, k, _ in dense_polynomials(Xr, forms, sub, np.ones(Xr.shape[1], bool), n,
                                               k_max, deadline, weights=np.abs(P)):
        rel = float(np.sum((y - _evaluate(expr, symbols, X)) ** 2)) / yy
        if math.isfinite(rel):
            out.append((expr, f"{Pe} times a {label}", k, rel))
    return sorted(out, key=lambda f: f[3])[:1]
