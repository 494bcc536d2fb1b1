"""Square roots of short sums: ``y = x_i**p * sqrt(S)`` and ``y = g*m + x_i**p * sqrt(S)``.

Energies, distances and norms are roots of sums: ``c*sqrt(c**2*m**2 + (p - q*A)**2)`` is the
root of four terms once ``c**2`` is divided out of y**2, and ``q*V + c*sqrt(...)`` (Goldstein
8.56) has a power-law term beside it. The sparse sums of y cannot hold such a law, and y**2
(the algebraic stage's transform) holds it only behind the prefactor and without the term
beside it. Here, for one input x_i of one sign and p = +-1:

* :func:`divided_root`: S is the sparse fit of ``y**2 = x_i**(2*p) * S`` (forward selection
  over the algebraic stage's dictionary, rows weighed by ``1/|y|`` so that each residual is one
  of y);
* :func:`root_beside_terms`: for a power-law term m with integer powers that the power-law fits
  hold beside others (:func:`.signomial.signomial_sums`), the same with
  ``(y - g*m)**2 = y**2 - 2*g*m*y + g**2*m**2``: the columns ``m*y`` and ``m**2`` enter every
  fit (partialled out of the dictionary before the selection), so g is fitted with S.

Two picks along each forward path, judged on y: by BIC, and by the extended BIC, where each term
also pays ``2*log(M)`` for the M columns it was chosen among (on noisy data the best of
thousands of columns lowers the residual by more than BIC's ``log(n)``: at 1% noise the root
above gets three noise terms by BIC, none by the extended BIC). A sum under a root has at most
``_ROOT_TERMS`` terms and must stay positive over the data's whole box (2000 random points),
not only at its rows: new points fill the box.
"""
from __future__ import annotations

import math
import time

import numpy as np
import sympy

from .result import _evaluate
from .sparse import forward_select
from .terms import sum_expr, term_values

__all__ = ["divided_root", "root_beside_terms", "whole_terms_of"]

_BESIDE_TERMS = 3  # power-law terms tried beside a root
_ROOT_TERMS = 6  # most terms under a root (a longer sum there is a mimic)
_BOX = 2000  # random points of the data's box on which a root must stay real
_ROUND = 0.15  # a power this close to an integer is that integer, in a term kept whole


def divided_root(D, X, y, inputs, symbols, order, k_max, n, deadline, plain, beside=None):
    """``(expr, label, n_terms, relative residual of y)`` of the BIC and extended-BIC picks
    of ``[g*m +] x_i**p * sqrt(S)`` over i in ``inputs`` (one sign, away from zero) and
    p = +-1, each kept if it fits y at least twice as closely as the plain sums (relative
    residual ``plain``). ``beside``: ``(m's expression, a first g, m's values)`` for a term
    beside the root, else None (y must then keep one sign)."""
    if beside is None:
        m_expr, mv, g0 = sympy.Integer(0), np.zeros_like(y), 0.0
    else:
        m_expr, g0, mv = beside
    r0 = y - g0 * mv
    if not (np.all(r0 > 0) or np.all(r0 < 0)):
        return []
    sign = 1.0 if r0[0] > 0 else -1.0
    box = np.random.default_rng(0).uniform(X.min(axis=0), X.max(axis=0), (_BOX, X.shape[1]))
    m_box = _evaluate(m_expr, symbols, box)
    w = 1.0 / np.abs(r0)
    w = w / np.mean(w)
    Z = (np.column_stack([mv * y, mv * mv]) if beside is not None
         else np.zeros((len(y), 0))) * w[:, None]
    yy = float(y @ y) or 1.0
    extra = 2.0 * math.log(max(D.columns.shape[1], 2))
    best = [None, None]  # (key, expr, terms, rel) by BIC and by the extended BIC
    for i in inputs:
        for p in (1, -1):
            if time.perf_counter() > deadline:
                break
            f = X[:, i] ** float(2 * p)
            Aw = f[:, None] * D.columns * w[:, None]
            tw = y * y * w
            path = forward_select(*_partial_out(Aw, tw, Z), min(k_max, _ROOT_TERMS),
                                  deadline=deadline, beam=4, triples=True, order=order)
            for sup, _ in path:
                fit = _root_fit(D, X, y, i, p, f, Aw, tw, Z, sup, mv, sign, box, m_box)
                if fit is None:
                    continue
                pred, coef, gamma, rest = fit
                rel = float(np.sum((pred - y) ** 2)) / yy
                for e, pen in enumerate((math.log(n), math.log(n) + extra)):
                    key = n * math.log(max(rel, 1e-30)) + len(sup) * pen
                    if best[e] is None or key < best[e][0]:
                        S = sum_expr(D, sup, coef, symbols, 1.0)
                        if beside is not None:
                            S = S + sympy.Float(rest, 15) * m_expr ** 2 / symbols[i] ** (2 * p)
                        s_i = 1 if X[0, i] ** p > 0 else -1  # x_i**p's sign on the data
                        expr = sympy.Integer(int(sign) * s_i) * symbols[i] ** p * sympy.sqrt(S)
                        if beside is not None:
                            expr = sympy.Float(gamma, 15) * m_expr + expr
                        best[e] = (key, expr, len(sup), rel)
    out, seen = [], set()
    for b in best:
        if b is not None and b[3] < 0.5 * plain and str(b[1]) not in seen:
            seen.add(str(b[1]))
            label = (f"the root of a sum of {b[2]} terms behind a prefactor" if beside is None
                     else f"a power law beside the root of a sum of {b[2]} terms")
            out.append((b[1], label, b[2] + (beside is not None), b[3]))
    return out


def root_beside_terms(D, X, y, terms, inputs, symbols, order, k_max, n, deadline, plain):
    """:func:`divided_root` beside each of the first ``_BESIDE_TERMS`` ``terms``
    (``(expr, coefficient, values)``, as :func:`.signomial.signomial_sums` lists them)."""
    out = []
    for term in terms[:_BESIDE_TERMS]:
        if time.perf_counter() > deadline:
            break
        out += divided_root(D, X, y, inputs, symbols, order, k_max, n, deadline, plain,
                            beside=term)
    return out


def whole_terms_of(space, t, E, tags):
    """``(expression, coefficient, values)`` of each term of the fit ``E`` whose powers are all
    within ``_ROUND`` of integers, with the coefficient the terms take when those powers are
    rounded and the others kept (``q*V`` beside two power laws that bend into
    ``c*sqrt(c**2*m**2 + (p - q*A)**2)``)."""
    whole = [k for k in range(len(E)) if np.all(np.abs(E[k] - np.round(E[k])) <= _ROUND)
             and np.any(np.round(E[k]) != 0)]
    if not whole or len(whole) == len(E):
        return []
    R = np.array(E, dtype=np.float64)
    R[whole] = np.round(R[whole])
    with np.errstate(all="ignore"):
        A = np.exp(np.log(space.ax) @ R.T) * space.T[:, tags]
        s = np.sqrt(np.mean(A * A, axis=0))
        if not np.all(np.isfinite(s)) or np.any(s == 0):
            return []
        c, *_ = np.linalg.lstsq(A / s, t, rcond=None)
    out = []
    for k in whole:
        out.append((space.term(R[k], tags[k]), float(c[k] / s[k]), A[:, k]))
    return out


def _partial_out(A, t, Z):
    """A's columns and t with their parts along Z's columns removed (Z: (n, 0) or more), so
    that a selection over A fits t with Z's columns in every support."""
    if Z.shape[1] == 0:
        return A, t
    Q, _ = np.linalg.qr(Z)
    P = A - Q @ (Q.T @ A)
    # a column in Z's span (m**2 / x_i**(2p) itself) keeps only rounding: no column at all
    gone = np.sum(P * P, axis=0) <= 1e-20 * np.sum(A * A, axis=0)
    P[:, gone] = 0.0
    return P, t - Q @ (Q.T @ t)


def _root_fit(D, X, y, i, p, f, Aw, tw, Z, sup, mv, sign, box, m_box):
    """``(predicted y, S's coefficients, g, the m**2 share left in S)`` of the support ``sup``
    fitted with Z's columns; None where the root is not real on the data or on the box."""
    B = np.column_stack([Aw[:, sup], Z])
    try:
        c, *_ = np.linalg.lstsq(B, tw, rcond=None)
    except np.linalg.LinAlgError:
        return None
    coef, gamma, rest = c[:len(sup)], 0.0, 0.0
    if Z.shape[1]:
        gamma = 0.5 * c[len(sup)]  # (y - g*m)**2 = y**2 - 2*g*m*y + g**2*m**2
        rest = c[len(sup) + 1] + gamma ** 2
    with np.errstate(all="ignore"):
        S = D.columns[:, sup] @ coef + rest * mv * mv / f
        if not np.all(S > 0) or not np.all(np.isfinite(S)):
            return None
        fb = box[:, i] ** float(2 * p)
        Sb = term_values([D.terms[j] for j in sup], box) @ coef + rest * m_box * m_box / fb
        if not np.all(Sb > 0):
            return None
        pred = gamma * mv + sign * np.abs(X[:, i] ** float(p)) * np.sqrt(S)
    return pred, coef, gamma, rest
