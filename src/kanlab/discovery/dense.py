"""Whole low-degree polynomials pruned backward: ``T(y) = P(x)`` with many terms of low degree.

Forward selection (:mod:`.sparse`) builds a sum one term at a time, and a law whose terms are
strongly correlated over the data defeats it: ``1/((x2 - x1)**2 + (y2 - y1)**2 + (z2 - z1)**2)``
is nine monomials of degree 2 in 1/y, and with ``x1`` in [3, 4] and ``x2`` in [1, 2] the
columns ``x1**2``, ``x1*x2`` and ``x2**2`` are nearly parallel: a ten-term forward path ends
at a relative residual of 1e-4, while the nine true terms fit exactly.

Here every monomial of total degree <= D is fitted at once, which is exact whenever the law is
such a polynomial, and the columns are then dropped one at a time, each time the one whose loss
raises the residual least. The path of fits from the whole basis down to one column is judged
by BIC (:func:`.sparse.chosen_supports`), as the forward path is, so noisy data keep the terms
the data support and not those that fit the noise. D goes up from 1 (to 2 for up to twelve
inputs, 3 for up to six) only while the whole basis of the next degree halves the residual:
a basis larger than the law needs has more near-parallel columns, and on noisy data the
elimination then drops true terms before idle ones. Rows are weighed so that each fit is one
of y (:func:`.signomial.row_weights`): the noise of 1/y is largest where y is smallest.
"""
from __future__ import annotations

import itertools
import math
import time

import numpy as np

from .signomial import row_weights
from .sparse import EXACT_RSS, chosen_supports, lstsq_on
from .terms import Dictionary, sum_expr

__all__ = ["dense_polynomials", "polynomial_basis"]

_GATE = 1e-2  # a whole-basis fit that leaves more (relative) says T(y) is no such polynomial
_GAIN = 0.5  # a degree higher is tried only when its whole basis leaves this much or less


def _max_degree(d: int) -> int:
    """Highest total degree tried for d live inputs (0: too many inputs)."""
    return 3 if d <= 6 else 2 if d <= 12 else 0


def polynomial_basis(X, live) -> tuple[Dictionary, list[int]]:
    """Every monomial of the live inputs with nonnegative integer exponents and total degree up
    to :func:`_max_degree`, lowest degree first, as a :class:`.terms.Dictionary`, and the
    number of columns of degree <= 1, 2, ... (each basis is a prefix of the next)."""
    idx = [i for i in range(X.shape[1]) if live[i]]
    terms, ends = [], []
    for k in range(_max_degree(len(idx)) + 1 if idx else 0):
        for combo in itertools.combinations_with_replacement(idx, k):
            v = [0] * X.shape[1]
            for i in combo:
                v[i] += 1
            terms.append((tuple(v), None))
        if k:
            ends.append(len(terms))
    cols = [np.prod([X[:, i] ** e for i, e in enumerate(v) if e] or [np.ones(len(X))], axis=0)
            for v, _ in terms]
    A = np.column_stack(cols) if cols else np.zeros((len(X), 0))
    return Dictionary(terms, A), ends


def _backward_path(A, t, deadline: float = math.inf):
    """``[(support, relative rss)]`` from one column up to all of A's (unit columns): the whole
    basis, then each time without the column whose removal raises the residual least. With
    ``A = Q R`` once, every fit on a subset S of columns is the small problem ``R[:, S] c ~
    Q^T t`` plus the fixed residual outside span(A); there the raise for column j is
    ``c_j**2 / ((R_S^T R_S)^-1)_jj``."""
    tss = float(t @ t) or 1.0
    Q, R = np.linalg.qr(A)
    z = Q.T @ t
    off = t - Q @ z  # residuals as vectors: a difference of sums of squares loses them to
    outside = float(off @ off)  # rounding where the fit is exact, and BIC then ranks noise
    sup = list(range(A.shape[1]))
    path = []
    while sup:
        q, r = np.linalg.qr(R[:, sup])
        diag = np.abs(np.diag(r))
        if diag.min() < 1e-12 * diag.max():  # dependent columns: drop one, no step recorded
            sup.pop(int(np.argmin(diag)))
            continue
        qz = q.T @ z
        inside = z - q @ qz
        path.append((list(sup), (outside + float(inside @ inside)) / tss))
        if len(sup) == 1 or time.perf_counter() > deadline:
            break
        rinv = np.linalg.inv(r)
        coef = rinv @ qz
        raise_ = coef ** 2 / np.maximum(np.sum(rinv * rinv, axis=1), 1e-300)
        sup.pop(int(np.argmin(raise_)))
    return path[::-1]


def dense_polynomials(X, transforms, symbols, live, n: int, k_max: int,
                      deadline: float = math.inf, weights=None) -> list[tuple]:
    """``(expr, label, n_terms, relative rss)`` for the transforms ``(name, T(y), inverse)``
    (named as :func:`.signomial.row_weights` knows them) that a whole polynomial basis fits:
    the support BIC picks on the backward path of each degree tried, among those of at most
    ``k_max`` terms. ``weights``: row weights on top of the transforms' own (a prefactor's
    |P| when T is of y / P). Returns at the first exact fit: nothing fits better."""
    D, ends = polynomial_basis(X, live)
    ends = [e for e in ends if e <= 0.5 * len(X)]
    if not ends:
        return []
    out = []
    for name, t, inverse in transforms:
        if not np.all(np.isfinite(t)):
            continue
        w = row_weights(name, t) * (1.0 if weights is None else weights)
        scale = float(np.sqrt(np.mean(t * t))) or 1.0
        ts = t / scale
        Aw = D.columns * w[:, None]
        norms = np.maximum(np.sqrt(np.sum(Aw * Aw, axis=0)), 1e-300)
        Aw = Aw / norms
        tw = ts * w
        last = math.inf
        for end in ends:
            if time.perf_counter() > deadline:
                return out
            whole = list(range(end))
            rel = lstsq_on(Aw, tw, whole)[1] / float(tw @ tw)
            if rel > _GAIN * last:
                break  # the higher degree explains nothing more than noise
            last = rel
            if not rel < _GATE:
                continue
            path = [p for p in _backward_path(Aw[:, :end], tw, deadline) if len(p[0]) <= k_max]
            for sup in chosen_supports(Aw, tw, path, n)[:1] if path else []:  # empty: the
                # deadline stopped the elimination before it reached k_max columns
                coef, rss = lstsq_on(Aw, tw, sup)  # on unit columns: no column lost to rcond
                fit = rss / float(tw @ tw)
                expr = inverse(sum_expr(D, sup, coef / norms[sup], symbols, scale))
                out.append((expr, f"polynomial of {len(sup)} terms of {name}", len(sup), fit))
                if fit < EXACT_RSS:
                    return out
    return out
