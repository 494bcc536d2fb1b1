"""Sums of power laws whose coefficients are rational in one input.

A law can be a sum of power laws in all inputs but one, ``u``, which enters each term through
a ratio of low-degree polynomials with a common denominator:
``Ef*cos(theta)*(d**3*(alpha - 1)/(r**2*(alpha + 2)) - r)`` (a Clausius-Mossotti factor),
``x1*x2/(1 + x3) + x2``. A power-law fit of it finds the right terms but can only bend ``u``'s
share into a power (``alpha**1.5`` for ``(alpha - 1)/(alpha + 2)`` over [1, 5]: a mimic).

Given the terms of a power-law fit (free exponents, :mod:`.signomial`), each one-signed
input in turn has its exponents dropped, the others' rounded to integers or halves, and its
share re-fitted as
``sum_j m_j * P_j(u) / Q(u)``. Cleared of the denominator the model is linear,
``sum_j m_j * P_j(u) - t * Q(u) = 0``: its coefficients are the singular vector of the smallest
singular value of the (column-scaled) matrix, refined by re-weighting the rows by ``1/|Q(u)|``
(Sanathanan-Koerner) so that the residual is that of t, not of t*Q. Degrees grow from one;
a fit is kept when BIC says its extra coefficients pay for themselves against the power-law
sum and against the lower degrees, and when Q keeps one sign on the data (no pole among the
points). The caller refits and snaps the constants like any candidate's.
"""
from __future__ import annotations

import math

import numpy as np
import sympy

__all__ = ["rational_factor", "round_powers"]

# (degree of each P_j, degree of Q), simplest first
_DEGREES = ((0, 1), (1, 1), (2, 1), (1, 2), (2, 2))
_SK_STEPS = 3  # re-weightings by 1/|Q|
_ROUND = 0.15  # how far a power may be from an integer or a half and be taken for it
_MIN_Q = 1e-3  # min |Q| / max |Q| on the data: smaller is a pole among the points


def rational_factor(space, t, w, E, tags, rel):
    """``(expr of t, relative residual, input symbol)`` of the best sum of the power laws
    ``E`` (free exponents, (K, d); ``tags``: each term's factor column of ``space.T``) with
    one input's share made rational and the other exponents rounded to integers or halves,
    when BIC prefers it to the free fit (whose weighted relative residual is ``rel``); else
    None. ``w``: row weights, as the power-law fit used them."""
    n = len(t)
    tw = t * w
    tss = float(tw @ tw)
    if not (tss > 0 and math.isfinite(tss)) or rel < 1e-24:
        return None
    # against the free fit (K*(d + 1) numbers) and the same terms with their powers rounded
    # (K coefficients): a ratio must pay for its coefficients against the simpler of them
    best_bic = n * math.log(max(rel, 1e-300)) + (E.size + len(E)) * math.log(n)
    plain = _rounded_rel(space, t, w, E, tags, tss)
    if plain is not None:
        best_bic = min(best_bic, n * math.log(max(plain, 1e-300)) + len(E) * math.log(n))
    best = None
    for k in range(E.shape[1]):
        Rk = round_powers(np.delete(E, k, axis=1))
        if Rk is None:
            continue  # the other inputs' powers are no integers or halves
        Rk = np.insert(Rk, k, 0.0, axis=1)
        # terms that differ only in u's power become one
        RT = np.unique(np.column_stack([Rk, tags]), axis=0)
        Rk, tg = RT[:, :-1], RT[:, -1].astype(int)
        with np.errstate(all="ignore"):
            M = np.exp(np.log(space.ax) @ Rk.T) * space.T[:, tg]
        if not np.all(np.isfinite(M)):
            continue
        u = space.ax[:, k]
        top = float(u.max())
        for p, q in _DEGREES:
            fit = _fit(M, u / top, t, w, p, q)
            if fit is None:
                continue
            a, b, res = fit
            r = float(res @ res) / tss
            bic = n * math.log(max(r, 1e-300)) + (len(Rk) * (p + 1) + q) * math.log(n)
            if bic < best_bic - 1e-9 * abs(best_bic):
                best_bic, best = bic, (k, Rk, tg, a, b, top, r)
    if best is None:
        return None
    k, Rk, tg, a, b, top, r = best
    return _expression(space, k, Rk, tg, a, b, top), r, space.names[k]


def round_powers(E):
    """``E`` with each power set to the nearest integer, or else half, within ``_ROUND``;
    None when one is neither or a power is past 8."""
    R = np.where(np.abs(E - np.round(E)) <= _ROUND, np.round(E), np.round(2 * E) / 2)
    return None if np.any(np.abs(R - E) > _ROUND) or np.any(np.abs(R) > 8) else R


def _rounded_rel(space, t, w, E, tags, tss):
    """Weighted relative residual of the power laws ``E`` (factors ``tags``) rounded
    (:func:`round_powers`), their coefficients refitted; None when they do not round."""
    R = round_powers(E)
    if R is None:
        return None
    with np.errstate(all="ignore"):
        A = np.exp(np.log(space.ax) @ R.T) * space.T[:, tags] * w[:, None]
        if not np.all(np.isfinite(A)):
            return None
        c, *_ = np.linalg.lstsq(A, t * w, rcond=None)
        r = A @ c - t * w
    rel = float(r @ r) / tss
    return rel if math.isfinite(rel) else None


def _fit(M, v, t, w, p, q):
    """Coefficients ``a`` ((K, p + 1): P_j's, lowest power first) and ``b`` ((q + 1,): Q's) of
    ``sum_j M_j * P_j(v) / Q(v)`` fitted to ``t`` (row weights ``w``), with the weighted
    residual; None when the fit fails or Q nearly vanishes on the data."""
    K = M.shape[1]
    V = v[:, None] ** np.arange(max(p, q) + 1)[None, :]
    A = np.concatenate([(M[:, :, None] * V[:, None, :p + 1]).reshape(len(v), K * (p + 1)),
                        -t[:, None] * V[:, :q + 1]], axis=1)
    rw = w.copy()
    a = b = None
    with np.errstate(all="ignore"):
        for _ in range(_SK_STEPS):
            B = A * rw[:, None]
            s = np.sqrt(np.sum(B * B, axis=0))
            if not np.all(np.isfinite(B)) or np.any(s == 0):
                return None
            try:
                _, _, vt = np.linalg.svd(B / s, full_matrices=False)
            except np.linalg.LinAlgError:
                return None
            c = vt[-1] / s
            a, b = c[:K * (p + 1)].reshape(K, p + 1), c[K * (p + 1):]
            Q = V[:, :q + 1] @ b
            aQ = np.abs(Q)
            if not np.all(np.isfinite(Q)) or aQ.min() < _MIN_Q * aQ.max() or \
                    not (np.all(Q > 0) or np.all(Q < 0)):
                return None
            rw = w / aQ * np.mean(aQ)
        P = np.sum(M[:, :, None] * V[:, None, :p + 1] * a[None, :, :], axis=(1, 2))
        res = (P / Q - t) * w
    if not np.all(np.isfinite(res)):
        return None
    return a, b, res


def _expression(space, k, Rk, tg, a, b, top):
    """``sum_j m_j * P_j(u) / Q(u)`` as sympy, in the caller's units (u = the k-th input, the
    polynomials' variable u/top undone), Q's highest coefficient 1."""
    u = space.names[k]
    bu = np.asarray(b, dtype=np.float64) / top ** np.arange(len(b))  # Q's coefficients in u
    lead = next(float(c) for c in bu[::-1] if abs(c) > 1e-9 * np.max(np.abs(bu)))

    def poly(coef):  # coefficients of v = u/top
        return sum((sympy.Float(float(c) / top ** i / lead, 15) * u ** i
                    for i, c in enumerate(coef) if c != 0), sympy.Integer(0))

    num = sympy.Integer(0)
    for j in range(len(Rk)):
        m = space.term(Rk[j], tg[j])
        num = num + m * poly(a[j])
    return num / poly(b)
