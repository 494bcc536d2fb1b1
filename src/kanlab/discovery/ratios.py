"""Ratios P/Q of dictionary terms, by least squares of their linear form ``T*Q = P``.

:func:`rational_fits`: Q = 1 + (terms), both sides by forward selection. :func:`small_ratios`:
Q = m_a + c*m_b, a pair of low-degree monomials, P a short sum. Both return
:class:`.candidate.Candidate` objects. :func:`ratio_dictionary`: the terms a ratio is built of.
"""
from __future__ import annotations

import math
import time

import numpy as np
import sympy

from .candidate import Candidate
from .sparse import chosen_supports, forward_select, lstsq_on, prune_support
from .terms import Dictionary, sum_expr, term_expr

__all__ = ["ratio_dictionary", "rational_fits", "small_ratios"]

_RATIONAL_ALL = 200  # a dictionary this small enters the ratios whole (functions too)


def ratio_dictionary(D, max_terms: int = 1000) -> Dictionary:
    """The terms of ``D`` that ratios are built of, the linear form doubling them: those with
    integer powers only (roots stay in the sums), and of those the monomials and the bare
    functions, or all of them when they are few: ``(x**2 - 1)/(x + cos(theta))**2``,
    ``(1 - cos(n*theta))/(1 - cos(theta))``."""
    whole = [j for j, (v, _) in enumerate(D.terms) if all(e == int(e) for e in v)]
    cols = [j for j in whole if D.terms[j][1] is None or len(whole) <= _RATIONAL_ALL
            or not any(D.terms[j][0])][:max_terms]
    return Dictionary([D.terms[j] for j in cols], D.columns[:, cols])


def rational_fits(D, y, name, inverse, symbols, k_max, n, deadline):
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
