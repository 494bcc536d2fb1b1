"""Additive separability: y = g_1(x_G1) + g_2(x_G2) + ... over groups of inputs.

A split S | rest is additive iff ``y(a_S, a_rest) + y(b_S, b_rest) = y(a_S, b_rest) + y(b_S,
a_rest)`` for all pairs of points a, b (AI Feynman's test), checked on the surrogate; two inputs
share a group unless some additive split separates them. The attempt then reads each group's
term off the surrogate but the last (the inputs of the other groups held at reference rows, the
table's column means removed, averaged over the references), discovers each on its own, and the
last term on the data themselves: y minus the terms found, so only the others carry the
surrogate's error. The assembled sum is refitted and snapped on the data.

Groups may share a few inputs (:func:`_shared_groups`, when no disjoint split exists): a
term is then read as a difference that cancels the other groups' terms, and only its part that
holds the group's own inputs is kept (:func:`_read_term`, :func:`_own_part`).
"""
from __future__ import annotations

import math
import time
from itertools import combinations

import numpy as np
import sympy

from ..symbolic.formula import expression_size
from .cleanup import _finish
from .oracle import shown
from .result import _evaluate, _finite_between, _r2
from .structure import _join_unless_split, _sub_discover, components

__all__ = ["sum_groups", "sum_attempt"]

_MAX_NOISE = 3.0  # the swap defect in units of the surrogate's error, as for the symmetries
_SHARED_GAP = 0.25  # a pair apart has at most this times the defect of any pair that interacts


def sum_groups(f, X, err, ysd, live, seed: int = 0, n: int = 256):
    """The finest groups of ``live`` inputs over which ``f`` (raw inputs -> raw y) is a sum of
    functions, as a tuple of tuples, or None when it is not a sum of two or more."""
    if len(live) < 2:
        return None
    rng = np.random.default_rng(seed)
    a, b = X[rng.integers(0, len(X), n)], X[rng.integers(0, len(X), n)]
    fa, fb = f(a), f(b)
    unit = max(err * ysd, 1e-300) * 2.0
    spread = float(np.std(np.concatenate([fa, fb])))
    splits = []
    for r in range(1, len(live)):
        for S in combinations(live, r):
            if S[0] != live[0]:
                continue
            m = np.zeros(X.shape[1], dtype=bool)
            m[list(S)] = True
            ab, ba = np.where(m, a, b), np.where(m, b, a)
            defect = float(np.sqrt(np.mean((fa + fb - f(ab) - f(ba)) ** 2)))
            # a sum changes less under swaps than its own error; and the defect is small next to
            # the target's spread (a near-constant y passes every split trivially)
            splits.append((set(S), defect < _MAX_NOISE * unit and defect < 0.05 * spread))
    out = tuple(tuple(g) for g in _join_unless_split(live, splits))
    if len(out) > 1:
        return out
    return _shared_groups(f, X, unit, spread, live, rng, n)


def _shared_groups(f, X, unit, spread, live, rng, n, max_shared: int = 2):
    """Groups that share a few inputs: ``y = g(x_A, x_S) + h(x_B, x_S)`` (``q*Volt`` beside a
    root of ``p - q*A``: Volt meets only q). Two inputs interact when swapping the pair's
    values between two points, the other inputs held at a third, changes the sum of y there
    (the pairwise form of the swap test, with its thresholds); without the fewest inputs S
    (one, then two) whose removal leaves the interaction graph in pieces, each piece plus S is
    a group. None when no such S exists (or S would be all but one input), and when the pairs
    apart are not clearly apart: each pair's defect at most ``_SHARED_GAP`` times that of the
    weakest pair that interacts."""
    if len(live) < 3:
        return None
    a, b, c = (X[rng.integers(0, len(X), n)] for _ in range(3))
    pairs = list(combinations(live, 2))
    z = []
    for i, j in pairs:
        for u, v in ((a, a), (b, b), (a, b), (b, a)):
            w = c.copy()
            w[:, i], w[:, j] = u[:, i], v[:, j]
            z.append(w)
    fz = f(np.concatenate(z)).reshape(len(pairs), 4, n)
    defect = np.sqrt(np.mean((fz[:, 0] + fz[:, 1] - fz[:, 2] - fz[:, 3]) ** 2, axis=1))
    apart = np.array([e < _MAX_NOISE * unit and e < 0.05 * spread for e in defect])
    # and clearly so: a weak interaction (p in sqrt((p - q*A)**2*c**2 + m**2*c**4), 2-5% of
    # y's spread) looks like the surrogate's error when the error is a percent or two; only
    # where the pairs that interact stand well clear of those that do not is a graph read
    if not apart.any() or apart.all() or \
            defect[apart].max() > _SHARED_GAP * defect[~apart].min():
        return None
    apart = {pair for pair, ok in zip(pairs, apart) if ok}
    for k in range(1, min(max_shared, len(live) - 2) + 1):
        for S in combinations(live, k):
            # the pieces of the graph without S: any pair of inputs that interact joins two
            pieces = components([i for i in live if i not in S],
                                lambda i, j: (i, j) not in apart and (j, i) not in apart)
            if len(pieces) > 1:
                return tuple(tuple(sorted(set(p) | set(S))) for p in pieces)
    return None


def _no_constant(expr):
    """``expr`` without its additive number (itself where that would leave a constant)."""
    _, rest = expr.as_coeff_Add()
    return rest if rest.free_symbols else expr


def _found_part(terms, symbols, X, y, cols, max_degree: int = 4):
    """The terms found so far at the training rows (without their additive constants), each
    scaled by least squares of y on them beside a polynomial (of ``degree``) in the inputs
    ``cols`` of the term still to find (the highest degree up to ``max_degree`` whose columns
    are at most a tenth of the rows: ``b*sin(a)`` beside ``exp(c)/d`` comes out 0.35% off
    its scale with degree 3, 0.001% with 4). Read off the surrogate, a term's formula is right but
    its scale is the surrogate's (``b*sin(a)`` at 0.9997): subtracted as it is, the rest left
    in the last term's target keeps it from being exact. The polynomial stands in for that
    last term, so the scales are not biased by it."""
    from itertools import combinations_with_replacement

    # without their constants: a term read off the surrogate was centred there, so its constant
    # is an artefact, and left in the target it hides the last term (log(exp(c)/d + 1.49) is
    # no short sum; log(exp(c)/d) is c - log(d))
    vals = np.column_stack([_evaluate(_no_constant(e), symbols, X) for e in terms])
    z = X[:, cols]
    z = (z - z.mean(0)) / np.where(z.std(0) > 0, z.std(0), 1.0)
    degree = max_degree
    while degree > 1 and math.comb(len(cols) + degree, degree) > len(y) // 10:
        degree -= 1
    poly = [np.ones(len(y))] + [np.prod(z[:, list(c)], axis=1)
                                for k in range(1, degree + 1)
                                for c in combinations_with_replacement(range(len(cols)), k)]
    A = np.column_stack([vals] + poly)
    if not np.all(np.isfinite(A)) or A.shape[1] >= len(y) // 4:
        return vals.sum(1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    return vals @ coef[:vals.shape[1]]


def _read_term(f, X, refs, cols, own):
    """A group's term read off the surrogate ``f`` at the rows ``X``, the other inputs at each
    reference row in turn. Without shared inputs (``own`` is all of ``cols``): centred per
    reference, then averaged. With them: minus the same at the group's own inputs held at the
    first reference, which cancels the other groups' terms (they see the same shared values)
    and leaves ``h(x_own, x_S) - h(own_0, x_S)``."""
    table = np.empty((len(X), len(refs)))
    for r, ref in enumerate(refs):
        z = np.repeat(ref[None, :], len(X), axis=0)
        z[:, cols] = X[:, cols]
        table[:, r] = f(z)
        if len(own) < len(cols):
            z[:, own] = refs[0][own]
            table[:, r] -= f(z)
    if len(own) < len(cols):
        return table.mean(1)
    return (table - table.mean(0)).mean(1)


def _own_part(expr, own):
    """The additive terms of ``expr`` (expanded) that hold one of the symbols ``own``: a term
    read as ``h(x_own, x_S) - h(own_0, x_S)`` loses the part that is a function of the shared
    inputs alone, which the last group's term takes up (``q*Volt - 2.98*q`` -> ``q*Volt``).
    ``expr`` itself where no term is free of them."""
    try:
        parts = sympy.Add.make_args(sympy.expand(expr))
    except Exception:  # pragma: no cover - sympy internals
        return expr
    keep = [t for t in parts if t.free_symbols & set(own)]
    return sympy.Add(*keep) if keep and len(keep) < len(parts) else expr


def sum_attempt(h, seed, stages, symbols, Xtr, ytr, Xte, yte, snap, deadline, opts, floor=None):
    """``("sum", groups, surrogate, surrogate histories, (xc, xs, const_cols, ysd, yc, dtype))``:
    the attempt of the module doc (the surrogate's scalings travel with it, not a closure, so
    the attempt can run in another process)."""
    from .symmetry import surrogate_function

    _, groups, surrogate, hists, scaling = h
    f = surrogate_function(surrogate, *scaling)
    t = time.perf_counter()
    names = [s.name for s in symbols]
    rng = np.random.default_rng(seed)
    refs = Xtr[rng.integers(0, len(Xtr), 16)]
    order = sorted(groups, key=len)  # the largest group last: found on the data
    shared = [i for i in range(len(symbols)) if sum(i in g for g in groups) > 1]
    terms = []
    for k, g in enumerate(order):
        cols = list(g)
        left = max(deadline - time.perf_counter(), 0.0)
        budget = max(left * len(g) / sum(map(len, order[k:])), 0.5)
        own = [i for i in cols if i not in shared]
        if k < len(order) - 1:
            target = _read_term(f, Xtr, refs, cols, own)
        else:  # the data minus the terms found so far, each at its own least-squares scale
            target = ytr - _found_part(terms, symbols, Xtr, ytr, cols) if terms else ytr
        if not np.all(np.isfinite(target)):
            raise ValueError("a term of the sum is not finite on the data")
        sub, sub_syms = _sub_discover(Xtr[:, cols], target, [names[i] for i in cols], budget,
                                      seed, True, opts)
        term = sub.xreplace({s: symbols[i] for s, i in zip(sub_syms, cols)})
        if k < len(order) - 1 and shared:
            term = _own_part(term, [symbols[i] for i in own])
        terms.append(term)
    # the terms' offsets are arbitrary: one constant and a scale per term, by least squares
    P = np.column_stack([_evaluate(e, symbols, Xtr) for e in terms] + [np.ones(len(ytr))])
    coef, *_ = np.linalg.lstsq(P, ytr, rcond=None)
    expr = sympy.Add(*[sympy.Float(float(c), 15) * e for c, e in zip(coef[:-1], terms)]) + \
        sympy.Float(float(coef[-1]), 15)
    stages["train"] += time.perf_counter() - t
    t = time.perf_counter()
    clean = _r2(_evaluate(expr, symbols, Xtr), ytr) > 0.99
    expr = _finish(sympy.expand(expr), clean, symbols, Xtr, ytr, snap, deadline, floor)
    r2 = _r2(_evaluate(expr, symbols, Xte), yte)
    stages["formula"] += time.perf_counter() - t
    label = " + ".join(",".join(symbols[i].name for i in g) for g in groups)
    return {"seed": seed, "hidden": f"sum({label})", "r2": r2,
            "between_ok": _finite_between(expr, symbols, Xtr, ytr),
            "complexity": expression_size(expr), "formula": str(expr), "expr": expr,
            "model": shown(surrogate), "histories": hists, "width": None}
