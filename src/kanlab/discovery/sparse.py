"""Sparse least squares: which few columns of a dictionary explain a target.

Forward selection by orthogonal least squares with a small beam (each step adds the column that
lowers the residual most once the chosen ones are refitted; the best pairs are also searched
exactly), backward elimination of columns the fit does not need, and BIC along the path of fits
(1, 2, ... columns), so noisy data get the short fit the data support.
"""
from __future__ import annotations

import functools
import math
import time

import numpy as np

__all__ = ["forward_select", "prune_support", "lstsq_on", "bic_pick", "chosen_supports",
           "EXACT_RSS"]

EXACT_RSS = 1e-24  # relative residual sum of squares of a fit exact to float precision


def forward_select(A, t, k_max: int, tol: float = 1e-11, deadline: float = math.inf,
                   beam: int = 6, score=None, max_pairs: int = 600, triples: bool = False,
                   order=None):
    """Forward selection by orthogonal least squares, with a beam: the path of supports (lists of
    column indices) with 1, 2, ... columns. Each step extends every support in the beam by each
    of its ``beam`` best columns (the ones that lower the residual most once the chosen columns
    are refitted) and keeps the ``beam`` best distinct supports; plain greedy selection
    (``beam=1``) is easily led astray by correlated monomials. Stops at ``k_max`` columns, at a
    relative residual below ``tol`` or at the deadline. Returns ``[(support, relative rss)]``,
    the best support of each size. ``score(support) -> relative error`` ranks the supports
    instead of the residual of ``t`` when given (a linearized target whose residual is not the
    error that matters: the ratios below).

    A support's state is its orthonormal basis Q (n, k), the projections P = Q^T A (k, M) and the
    residual r: a column's residual part has squared norm 1 - |P_j|^2 (columns are unit), so no
    residualized copy of A is kept. ``triples``: where three forward columns nearly explain t
    but not exactly, also search the triples that hold one of the simplest columns (or of those
    three) and any pair (:func:`_one_and_pair`); ``order`` ranks the columns simplest first for
    that search (default: their order in A)."""
    norms0 = np.sqrt(np.sum(A * A, axis=0))
    ok = norms0 > 0
    A = np.where(ok, A / np.where(ok, norms0, 1.0), 0.0)
    t = t.astype(np.float64)
    tss = float(t @ t) or 1.0
    M = A.shape[1]
    states = [_state((), np.zeros((len(t), 0)), np.zeros((0, M)), t.copy(), A)]
    path = []
    if score is None and k_max >= 2 and M >= 2:
        # every pair of the first max_pairs (the simplest) columns at once from their Gram
        # matrix: greedy steps miss pairs whose columns are each poor alone (u*c**2 + v*c**2
        # beside the column of u*v*y that they nearly cancel)
        states, path = _pair_states(A, t, tss, beam, ok, max_pairs)
        if path and path[-1][1] < tol:
            return path
    for _ in range(min(k_max, M) - len(path)):
        if time.perf_counter() > deadline:
            break
        children = {}
        for sup, Q, P, r, rss, atr, pp in states:
            left = 1.0 - pp
            gain = atr ** 2 / np.maximum(left, 1e-300)
            gain[(left < 1e-10) | ~ok] = -1.0  # in the span of the chosen columns already
            if sup:
                gain[list(sup)] = -1.0
            top = np.argpartition(-gain, min(beam, M - 1))[:beam]
            for j in top:
                if gain[j] <= 0:
                    continue
                key = tuple(sorted(sup + (int(j),)))
                new_rss = max(rss - float(gain[j]), 0.0)
                if key not in children or new_rss < children[key][0]:
                    children[key] = (new_rss, sup, Q, P, r, int(j), left[j], atr, pp)
        if not children:
            break
        if score is None:
            ranked = [(v[0] / tss, k, v) for k, v in children.items()]
        else:
            ranked = [(score(list(v[1]) + [v[5]]), k, v) for k, v in children.items()]
        ranked.sort(key=lambda e: e[0])
        states, scores = [], []
        for sc, key, (_, sup, Q, P, r, j, left_j, atr, pp) in ranked[:beam]:
            scores.append(sc)
            q = (A[:, j] - Q @ P[:, j]) / math.sqrt(left_j)
            qa, qr = q @ A, float(q @ r)
            r2 = r - q * qr
            # A^T r and the columns' squared projections, updated rather than recomputed
            states.append((sup + (j,), np.column_stack([Q, q]), np.vstack([P, qa]), r2,
                           float(r2 @ r2), atr - qa * qr, pp + qa * qa))
        path.append((list(states[0][0]), scores[0]))
        if scores[0] < tol:
            break
    if triples and score is None and len(path) >= 3 and tol <= path[2][1] < _TRIPLE_MAX \
            and time.perf_counter() < deadline:
        order = np.arange(A.shape[1]) if order is None else np.asarray(order)
        ones = list(dict.fromkeys([*(int(j) for j in order[:_ONES]), *path[2][0]]))
        found = _one_and_pair(A, t, tss, ok, ones, order)
        if found is not None and found[1] < tol:
            # only an exact triple is taken (it ends the path): a closer approximation would
            # end a sub-search that wants 0.9995 before it reaches the law
            path = path[:2] + [found]
    return path


_ONES = 40  # the simplest columns, each tried as the fixed one of a triple (with the forward three)
_TRIPLE_MAX = 0.05  # a triple is searched for only where three forward columns come this close


def _one_and_pair(A, t, tss, ok, ones, order, max_pairs: int = 300):
    """``(support, relative rss)`` of the best three columns that hold one of ``ones`` and a pair
    from a pool of ``max_pairs`` columns (the simplest half by ``order``, and the half of the
    others that correlate most with t), by exact least squares of every pair once the one is
    projected out; None if there is none. Forward steps, even with a beam, keep the supports
    that are best at every size on the way, and miss laws whose terms are poor alone and good
    together:
    ``cos(u) + alpha - alpha*sin(u)**2``, where ``alpha`` and ``alpha*sin(u)**2`` nearly
    cancel. The pool's Gram matrix is formed once: projecting a unit column q out of every
    column changes it by a rank-one term (``G - c c^T``, c = the pool's cosines with q), so each
    of ``ones`` costs a pass over the pool's pairs, not a product with the data."""
    M = A.shape[1]
    half = max_pairs // 2
    if M <= max_pairs:
        pool = np.arange(M)
    else:
        rest = order[half:]
        corr = np.abs(A[:, rest].T @ t)
        corr[~ok[rest]] = -1.0
        pool = np.concatenate([order[:half], rest[np.argsort(-corr)[: max_pairs - half]]])
    Ap = A[:, pool]
    G, g = Ap.T @ Ap, Ap.T @ t
    best = None
    for c in ones:
        q = A[:, c]
        cos, qt = q @ Ap, float(q @ t)
        norms = np.sqrt(np.maximum(1.0 - cos * cos, 0.0))
        keep = ok[pool] & (norms > 1e-6) & (pool != c)  # c itself is projected out
        inv = np.where(keep, 1.0 / np.where(keep, norms, 1.0), 0.0)
        pair = _best_pairs((G - np.outer(cos, cos)) * np.outer(inv, inv),
                           (g - cos * qt) * inv, 1)
        if pair:
            (i, j), gain = pair[0]
            rss = tss - qt * qt - gain
            if best is None or rss < best[1]:
                best = (sorted([int(c), int(pool[i]), int(pool[j])]), rss)
    if best is None:
        return None
    _, rss = lstsq_on(A, t, best[0])  # the winner's residual exactly, not as a difference
    return best[0], rss / tss


def _best_pairs(G, g, beam):
    """``[((i, j), gain)]``: the ``beam`` pairs of unit columns (Gram matrix G, inner products
    with the target g) whose least-squares fit lowers the target's squared norm most, best
    first; columns with zero inner products everywhere take no part."""
    n = G.shape[1]
    det = 1.0 - G * G
    with np.errstate(all="ignore"):
        gain = G * g[:, None]
        gain *= -2.0 * g[None, :]
        sq = g * g
        gain += sq[:, None]
        gain += sq[None, :]
        gain /= det
    gain[~np.isfinite(gain) | (det < 1e-10) | _lower(n)] = -1.0
    if beam == 1:
        flat = np.array([int(np.argmax(gain))])
    else:
        flat = np.argpartition(-gain.ravel(), min(beam, gain.size - 1))[:beam]
        flat = flat[np.argsort(-gain.ravel()[flat])]
    out = []
    for f in flat:
        i, j = divmod(int(f), n)
        if gain[i, j] > 0:
            out.append(((i, j), float(gain[i, j])))
    return out


@functools.lru_cache(maxsize=8)
def _lower(n):
    """The (n, n) mask of the diagonal and below: each pair once."""
    m = np.tril(np.ones((n, n), dtype=bool))
    m.flags.writeable = False
    return m


def _pair_states(A, t, tss, beam, ok, max_pairs):
    """The best single column and the ``beam`` best pairs among the first ``max_pairs`` unit
    columns of A (exact least squares of every pair, from the Gram matrix), as forward-selection
    states and a two-entry path."""
    g = A.T @ t
    g[~ok] = 0.0
    single = g * g
    full, A = A, A[:, :max_pairs]
    i1 = int(np.argmax(single))
    states = []
    for (i, j), _ in _best_pairs(A.T @ A, g[:max_pairs], beam):
        Q, _ = np.linalg.qr(A[:, [i, j]])
        r = t - Q @ (Q.T @ t)
        states.append(_state((i, j), Q, Q.T @ full, r, full))
    if not states:
        return [_state((), np.zeros((len(t), 0)), np.zeros((0, full.shape[1])), t.copy(),
                       full)], []
    states.sort(key=lambda s: s[4])
    path = [([i1], max(tss - float(single[i1]), 0.0) / tss), (list(states[0][0]), states[0][4] / tss)]
    return states, path


def _state(sup, Q, P, r, A):
    """A forward-selection state: the support, its orthonormal basis Q, the projections
    P = Q^T A, the residual r and its squared norm, A^T r, and each column's squared norm in
    the span of Q."""
    return sup, Q, P, r, float(r @ r), A.T @ r, np.sum(P * P, axis=0)


def lstsq_on(A, t, support):
    coef, *_ = np.linalg.lstsq(A[:, support], t, rcond=None)
    res = A[:, support] @ coef - t
    return coef, float(res @ res)


def prune_support(A, t, support, tol: float):
    """Backward elimination: drop columns whose removal keeps the relative residual below tol."""
    tss = float(t @ t) or 1.0
    support = list(support)
    changed = True
    while changed and len(support) > 1:
        changed = False
        for j in sorted(support, key=lambda c: -c):
            rest = [c for c in support if c != j]
            _, rss = lstsq_on(A, t, rest)
            if rss / tss < tol:
                support, changed = rest, True
                break
    return support


def bic_pick(path, n):
    """Index into ``path`` minimizing BIC (n log rss + k log n); exact fits win outright."""
    best, key = 0, math.inf
    for i, (sup, rel) in enumerate(path):
        b = n * math.log(max(rel, 1e-30)) + len(sup) * math.log(n)
        if b < key - 1e-9:
            best, key = i, b
    return best


def chosen_supports(A, t, path, n):
    """The supports worth a formula: the BIC choice (pruned of idle columns when exact) and the
    one before it (a shorter fallback for the caller's held-out selection)."""
    i = bic_pick(path, n)
    sups = []
    sup, rel = path[i]
    if rel < 1e-11:
        sup = prune_support(A, t, sup, 1e-11)
    sups.append(sup)
    if i > 0:
        sups.append(path[i - 1][0])
    return sups
