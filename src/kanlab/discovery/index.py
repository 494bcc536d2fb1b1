"""A single monomial index read off the data: y = x**m * f(x**a), with no network.

The structure tests of :mod:`.groups`, :mod:`.symmetry` and :mod:`.structure` ask a surrogate
network. An oscillating law over several inputs (``2*U*(1 - cos(k*d))`` with k*d over four
periods, ``sin(2*pi*E*t/h)**2``) is out of reach of a small network on a thousand points, and
then every one of those tests is silent. Such a law is still a curve in one index, and that can
be checked on the data themselves: order the rows by a candidate index u = prod x_i**a_i and
see whether z = y / prod x_i**m changes smoothly along it. The statistic is the von Neumann
ratio ``R = median((x**m * diff(z))**2) / (2 * 0.455 * var(y))`` (the steps in y's units): about 1 for an ordering unrelated to z, and for
z a function of u, the squared step of that function between neighbouring rows (plus the noise
variance), far below 1. The median of the squared steps is used, not their mean: where the
index is sparsely sampled (the tails of a product of inputs) a fast curve jumps between
neighbours, and a few such jumps would decide a mean. Every (a, m) with small integer entries is scored at once per a
(one sort, all m as a matrix), which costs well under a second for up to a few inputs.

The hypothesis goes on as a one-group structure of :mod:`.groups` (its attempt discovers the
curve on the data and substitutes back); it is only asked for when the surrogate is too rough
for the network's tests, and the curve stage must still fit the law.
"""
from __future__ import annotations

import time

import numpy as np

from .groups import _integer_vectors

__all__ = ["find_index"]

_MAX_R = 2e-3  # a (median) von Neumann ratio above this is not a curve along the index
_MEDIAN_CHI2 = 0.4549  # median of chi-square with one degree of freedom
_MAX_WORK = 6e7  # index vectors x prefactors x rows scored, at most
_MAX_INPUTS = 6  # wider problems are split first (products, sums, symmetries)


def _candidates(p: int, n: int):
    """Index vectors (first entry positive) and prefactor vectors (the zero vector first),
    simplest first, as many as ``_MAX_WORK`` allows for n rows."""
    for a_sup, m_sup, m_vals in ((3, p, (1, 2, -1, -2)), (3, 3, (1, 2, -1, -2)),
                                 (2, 3, (1, -1)), (2, 2, (1, -1))):
        A = _integer_vectors(p, a_sup)
        M = np.vstack([np.zeros((1, p)), _integer_vectors(p, m_sup, m_vals, False)])
        if len(A) * len(M) * n <= _MAX_WORK:
            break
    return A, M


def find_index(X, y, live, deadline: float = float("inf")):
    """``(cols, a, m, R)`` for the best index u = prod X[:, cols]**a and prefactor
    prod X[:, cols]**m with y / prefactor a curve in u (von Neumann ratio R <= ``_MAX_R``),
    or None. ``cols``: the inputs of ``live`` that keep away from zero (integer exponents
    only, so negative inputs are allowed)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    cols = [i for i in live if np.min(np.abs(X[:, i])) > 1e-9 * np.max(np.abs(X[:, i]))]
    if not 2 <= len(cols) <= _MAX_INPUTS or len(cols) != len(live) or len(y) < 50:
        return None
    P = X[:, cols]
    la = np.log(np.abs(P))
    neg = (P < 0).astype(np.float64)
    A, M = _candidates(len(cols), len(y))
    with np.errstate(all="ignore"):
        # z for every prefactor at once: (prefactors, rows), signs by parity of the exponents
        sgn = 1.0 - 2.0 * np.mod(np.rint(M) @ neg.T, 2)
        W = np.exp(M @ la.T) * sgn  # the prefactors' values
        Z = y[None, :] / W
        zvar = Z.var(1)
    okz = np.all(np.isfinite(Z), 1) & np.all(np.isfinite(W), 1) & (zvar > 1e-12 * np.mean(Z * Z, 1))
    if not okz.any():
        return None
    Z, W, M = Z[okz], W[okz], M[okz]
    # steps are judged in y's units (times the prefactor), against y's variance: a prefactor
    # that carries most of y's variation leaves z a near-curve of anything correlated with it
    var = float(np.var(y))
    if not var > 0:
        return None
    best = None
    for a in A:
        if time.perf_counter() > deadline:
            break
        with np.errstate(all="ignore"):
            u = np.exp(np.clip(la @ a, -700, 700)) * (1.0 - 2.0 * np.mod(np.rint(a) @ neg.T, 2))
        if not np.all(np.isfinite(u)):
            continue
        order = np.argsort(u, kind="stable")
        D = np.diff(Z[:, order], axis=1) * W[:, order[:-1]]
        R = np.median(D * D, 1) / (2.0 * _MEDIAN_CHI2 * var)
        # m and m + t*a state the same law: the simplest prefactor that passes
        ok = R <= _MAX_R
        if ok.any() and (best is None or np.min(R) < best[4] * 0.999):
            best = (cols, a, M[int(np.argmax(ok))], float(R[int(np.argmax(ok))]),
                    float(np.min(R)))
    return None if best is None else best[:4]
