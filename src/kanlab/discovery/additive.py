"""Additive separability: y = g_1(x_G1) + g_2(x_G2) + ... over disjoint groups of inputs.

A split S | rest is additive iff ``y(a_S, a_rest) + y(b_S, b_rest) = y(a_S, b_rest) + y(b_S,
a_rest)`` for all pairs of points a, b (AI Feynman's test), checked on the surrogate; two inputs
share a group unless some additive split separates them. The attempt then reads each group's
term off the surrogate but the last (the inputs of the other groups held at reference rows, the
table's column means removed, averaged over the references), discovers each on its own, and the
last term on the data themselves: y minus the terms found, so only the others carry the
surrogate's error. The assembled sum is refitted and snapped on the data.
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
from .structure import _join_unless_split, _sub_discover

__all__ = ["sum_groups", "sum_attempt"]

_MAX_NOISE = 3.0  # the swap defect in units of the surrogate's error, as for the symmetries


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
    return out if len(out) > 1 else None


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
    terms = []
    for k, g in enumerate(order):
        cols = list(g)
        left = max(deadline - time.perf_counter(), 0.0)
        budget = max(left * len(g) / sum(map(len, order[k:])), 0.5)
        if k < len(order) - 1:
            table = np.empty((len(Xtr), len(refs)))
            for r, ref in enumerate(refs):
                z = np.repeat(ref[None, :], len(Xtr), axis=0)
                z[:, cols] = Xtr[:, cols]
                table[:, r] = f(z)
            target = (table - table.mean(0)).mean(1)
        else:  # the data minus the terms found so far, each at its own least-squares scale
            target = ytr - _found_part(terms, symbols, Xtr, ytr, cols) if terms else ytr
        if not np.all(np.isfinite(target)):
            raise ValueError("a term of the sum is not finite on the data")
        sub, sub_syms = _sub_discover(Xtr[:, cols], target, [names[i] for i in cols], budget,
                                      seed, True, opts)
        terms.append(sub.xreplace({s: symbols[i] for s, i in zip(sub_syms, cols)}))
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
