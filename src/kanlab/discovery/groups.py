"""Dimensionless groups: y = M(x) * g(z_1, ..., z_k, others), each z_j a product of powers.

Physical laws depend on their positive inputs through a few monomial groups (``h*omega/(kb*T)``,
``v/c``) times a monomial prefactor (``n_0``, ``m*c**2``). On the positive inputs P, write
``L_i(x) = x_i * d log|y| / d x_i`` (read off the surrogate network by autograd). For such a law
``L(x) = m + sum_j s_j(x) * a_j``: m is the prefactor's exponent vector and a_j the groups'. So
the centred rows of L span the groups' exponent space; its dimension k (tried from 0 up) and a
basis of small integer vectors (entries -2..2, fewest inputs first) give the groups, and the
component of mean(L) off that space gives the prefactor, made a vector of halves by adding a
combination of the groups. The candidate is accepted only when moving points along the scalings
that keep every group (``x_i * exp(t * w_i)``, w orthogonal to the groups) changes the surrogate
by its prefactor's factor alone, to within the surrogate's own error (the symmetry test of
:mod:`.symmetry`, for any number of inputs at once).

The reduced problem, y / M(x) from z_1..z_k and the other inputs, is discovered on the data
(recursively), the groups and the prefactor substituted back, and the whole formula finished
on the data.
"""
from __future__ import annotations

import itertools
import math
import time
from fractions import Fraction

import numpy as np
import sympy
import torch

from .cleanup import finished_attempt
from .structure import _surrogate

__all__ = ["find_groups", "group_attempt", "group_name"]

_MAX_ANGLE = 0.08  # an integer vector this far (sine of the angle) from the group space is not in it
_MAX_DEFECT = 0.15  # of the change that moving along a group makes
_MAX_NOISE = 3.0  # the defect in units of the surrogate's held-out error
_ONE_DIM = 0.05  # second singular value of the log-derivatives' spread, of the first, for one group
_MAX_HALF = 0.12  # prefactor exponents this close to halves are halves


def _value_grad(model, rows, xc, xs, const_cols, ysd, yc, dtype):
    """Surrogate values and gradients (raw units) at raw ``rows``."""
    z = (rows - xc) / xs
    z[:, const_cols] = 0.0
    t = torch.as_tensor(z, dtype=dtype).requires_grad_(True)
    with torch.enable_grad():
        out = model(t)[:, 0]
        (g,) = torch.autograd.grad(out.sum(), t)
    f = out.detach().double().numpy() * ysd + yc
    grad = g.double().numpy() * ysd / xs
    grad[:, const_cols] = 0.0
    return f, grad


def _integer_vectors(p: int, max_support: int, values=(1, 2, -1, -2),
                     positive_first: bool = True):
    """Integer vectors of length p, nonzero entries from ``values`` (first one positive unless
    ``positive_first`` is False), at most ``max_support`` nonzero entries; simplest (fewest
    entries, smallest) first."""
    out = []
    for s in range(1, min(max_support, p) + 1):
        for idx in itertools.combinations(range(p), s):
            for vals in itertools.product(values, repeat=s):
                if positive_first and vals[0] < 0:
                    continue
                v = np.zeros(p)
                v[list(idx)] = vals
                out.append(v)
    if not out:
        return np.zeros((0, p))
    V = np.array(out)
    return V[np.argsort(_vector_cost(V), kind="stable")]


def _read_vector(v, max_entry: int = 8):
    """Integer vectors along the direction ``v`` as read off the data (entries up to
    ``max_entry``, any number of inputs): the enumerated candidates stop at a few inputs and
    entries of 2, and ``eps**2*E*L**2/(m*Z1**2*Z2**2*q**4)`` has seven, one of them -4."""
    out = []
    big = np.abs(v).max()
    if not big > 0:
        return np.zeros((0, len(v)))
    for j in np.flatnonzero(np.abs(v) > 0.1 * big):
        for mult in (1, 2):
            w = v / abs(v[j]) * mult
            r = np.round(w)
            if np.max(np.abs(w - r)) < 0.1 and np.abs(r).max() <= max_entry:
                r = r if r[np.flatnonzero(r)[0]] > 0 else -r
                if not any(np.array_equal(r, o) for o in out):
                    out.append(r)
                break
    return np.array(out).reshape(-1, len(v))


def _group_basis(V, k, cands):
    """k independent integer vectors inside span(V) (rows of V orthonormal), simplest first."""
    if k == 0:
        return np.zeros((0, V.shape[1]))
    norms = np.linalg.norm(cands, axis=1)
    resid = np.linalg.norm(cands - (cands @ V.T) @ V, axis=1) / norms
    chosen = []
    for v in cands[resid < _MAX_ANGLE]:
        trial = np.array(chosen + [v])
        if np.linalg.matrix_rank(trial, tol=1e-8) == len(trial):
            chosen.append(v)
            if len(chosen) == k:
                return np.array(chosen)
    return None


def _vector_cost(v):
    """How complex exponent vector(s) ``v`` are (along the last axis): inputs first, then size."""
    return np.sum(v != 0, axis=-1) * 10 + np.abs(v).sum(axis=-1)


def _simplest_basis(A):
    """The same lattice of groups with each vector made as short as adding or subtracting
    (once or twice) the others makes it: a rough span may be matched by ``beta`` and
    ``beta*omega/omega_0`` where ``beta`` and ``omega/omega_0`` are the law's groups."""
    A = np.array(A, dtype=np.float64)
    changed = True
    while changed:
        changed = False
        for i, j in itertools.permutations(range(len(A)), 2):
            for c in (1, -1, 2, -2):
                v = A[i] + c * A[j]
                if np.any(v) and _vector_cost(v) < _vector_cost(A[i]):
                    A[i], changed = v, True
    return A


def _other_bases(A, cands, limit=1, deadline: float = math.inf):
    """Up to ``limit`` other bases of the lattice of groups ``A`` (made of ``cands``), cheapest
    first, no costlier than ``A`` plus one input: ``u/c`` with ``x/(c*t)`` beside ``u/c`` with
    ``x/(t*u)``; which one makes the reduced law simpler only the sub-search can tell."""
    k = len(A)
    if k < 2:
        return []
    # a candidate is in the lattice when its rounded coordinates in A rebuild it exactly
    coords_r = np.round(cands @ np.linalg.pinv(A))
    inside = np.all(np.abs(coords_r @ A - cands) < 1e-9, 1)
    pool = list(np.flatnonzero(inside)[:40])
    top = float(_vector_cost(A).sum()) + 10.0
    out = []
    combos = itertools.combinations(pool, k)
    while time.perf_counter() < deadline:  # C(40, 5) = 658008 bases for five groups: batched
        chunk = np.array(list(itertools.islice(combos, 20000)), dtype=np.int64).reshape(-1, k)
        if not len(chunk):
            break
        unimodular = np.abs(np.abs(np.linalg.det(coords_r[chunk])) - 1.0) <= 1e-9
        for S in chunk[unimodular]:
            B = cands[S]
            cost = float(_vector_cost(B).sum())
            if cost <= top and {tuple(v) for v in B} != {tuple(v) for v in A}:
                out.append((cost, B))
    out.sort(key=lambda t: t[0])
    return [B for _, B in out[:limit]]


def _prefactor(A, mean_L):
    """Exponents m (halves) with mean_L - m inside the rows' span of A, or None."""
    p = len(mean_L)
    P = np.eye(p) - (np.linalg.pinv(A) @ A if len(A) else 0.0)
    pm = P @ mean_L
    tries = [pm]
    k = len(A)
    for S in itertools.combinations(range(p), k) if k else []:
        sub = A[:, list(S)].T  # (k, k): m_S = pm_S + sub @ t = 0
        if abs(np.linalg.det(sub)) < 1e-9:
            continue
        t = np.linalg.solve(sub, -pm[list(S)])
        tries.append(pm + A.T @ t)
    best = None
    for m in tries:
        r = np.round(2 * m) / 2
        err = float(np.max(np.abs(m - r))) if p else 0.0
        # whole exponents first, then the fewest inputs, then the smallest
        key = (err > _MAX_HALF, int(np.sum(r != np.round(r))), int(np.sum(r != 0)),
               float(np.abs(r).sum()), err)
        if best is None or key < best[0]:
            best = (key, r)
    return None if best is None or best[0][0] else best[1]


def _monomial(X, e):
    with np.errstate(all="ignore"):
        return np.prod(X ** e[None, :], axis=1)


def _move_test(f, rows, f0, pos, A, m, lo, hi, noise, rng, log_domain=False):
    """Relative defect of the group hypothesis on the surrogate ``f`` (see the module doc), or
    inf when no move fits inside the data's box or the defect exceeds the surrogate's noise.
    ``log_domain``: f gives log|y| (the prefactor's change is then added, not multiplied)."""
    p = len(pos)
    if len(A):
        _, _, vt = np.linalg.svd(A)
        W = vt[len(A):]  # orthonormal basis of the scalings that keep every group
    else:
        W = np.eye(p)
    if len(W) == 0:
        return np.inf
    lx = np.log(rows[:, pos])
    llo, lhi = np.log(lo[pos]), np.log(hi[pos])

    def step(dirs):
        # largest |t| with log x + t*dir inside the box, per row; a random share of it
        with np.errstate(divide="ignore", invalid="ignore"):
            pos_d, neg_d = dirs > 1e-12, dirs < -1e-12
            up = np.where(pos_d, (lhi - lx) / dirs, np.where(neg_d, (llo - lx) / dirs, np.inf))
            dn = np.where(pos_d, (llo - lx) / dirs, np.where(neg_d, (lhi - lx) / dirs, -np.inf))
        tmax, tmin = up.min(1), dn.max(1)
        u = rng.uniform(0.3, 1.0, len(rows))
        return np.where(rng.random(len(rows)) < 0.5, u * tmax, u * tmin)

    def defect_along(dirs):
        t = step(dirs)
        ok = np.isfinite(t) & (np.abs(t) > 1e-3)
        if ok.sum() < len(rows) // 4:
            return None
        moved = rows[ok].copy()
        moved[:, pos] = rows[ok][:, pos] * np.exp(t[ok, None] * dirs[ok])
        shift = t[ok] * (dirs[ok] @ m)  # the prefactor's change, in logs
        if log_domain:
            diff = f(moved) - f0[ok] - shift
        else:
            ratio = np.exp(shift)
            diff = (f(moved) - f0[ok] * ratio) / ratio
        return float(np.sqrt(np.mean(diff * diff)))

    w = rng.standard_normal((len(rows), len(W))) @ W
    defect = defect_along(w / np.linalg.norm(w, axis=1, keepdims=True))
    # control: the same kind of step along a group's own direction (one input, without groups)
    g = A[rng.integers(0, len(A), len(rows))] if len(A) else np.eye(p)[rng.integers(0, p, len(rows))]
    change = defect_along(g / np.linalg.norm(g, axis=1, keepdims=True))
    if defect is None or not change:
        return np.inf
    rel = defect / change
    return rel if defect < _MAX_NOISE * max(noise, 1e-300) or rel < 0.02 else np.inf


def log_surrogate(Xtr, ytr, pos, seed, deadline):
    """A small KAN of log|y| on (log x_pos, the other inputs), standardized, or None when y
    changes sign or comes near 0. Returns (function of raw rows -> log|y|, function of raw
    rows -> (log|y|, d log|y| / d log x_pos), held-out RMSE in log units)."""
    y = np.asarray(ytr, dtype=np.float64)
    a = np.abs(y)
    if not (np.all(y > 0) or np.all(y < 0)) or not a.min() > 1e-12 * a.max():
        return None
    ly = np.log(a)
    Z = np.asarray(Xtr, dtype=np.float64).copy()
    Z[:, pos] = np.log(Z[:, pos])
    zc, zs = Z.mean(0), Z.std(0)
    zs[zs == 0] = 1.0
    lc, ls = float(ly.mean()), float(ly.std()) or 1.0
    rng = np.random.default_rng(seed + 11)
    perm = rng.permutation(len(y))
    nte = max(len(y) // 5, 1)
    te, tr = perm[:nte], perm[nte:]
    T = lambda v: torch.as_tensor(v, dtype=torch.float64)  # noqa: E731
    zn, yn = (Z - zc) / zs, (ly - lc) / ls
    data = dict(train_input=T(zn[tr]), train_label=T(yn[tr])[:, None],
                test_input=T(zn[te]), test_label=T(yn[te])[:, None])
    try:  # the structure tests' surrogate recipe, five more L-BFGS steps per stage
        model, _, rmse = _surrogate(data, Z.shape[1], seed, deadline, steps=20)
    except RuntimeError:  # out of time
        return None
    if not np.isfinite(rmse):
        return None
    err = float(rmse) * ls

    def norm(rows):
        z = np.asarray(rows, dtype=np.float64).copy()
        z[:, pos] = np.log(z[:, pos])
        return (z - zc) / zs

    def logf(rows):
        with torch.no_grad():
            return model(T(norm(rows)))[:, 0].numpy() * ls + lc

    def value_grad(rows):
        t = T(norm(rows)).requires_grad_(True)
        with torch.enable_grad():
            out = model(t)[:, 0]
            (g,) = torch.autograd.grad(out.sum(), t)
        return out.detach().numpy() * ls + lc, g.numpy()[:, pos] * ls / zs[pos]

    return logf, value_grad, err


def find_groups(sur_model, f, X, y, err, ysd, live, xc, xs, const_cols, yc, dtype,
                seed: int = 0, n: int = 384, deadline: float = float("inf"),
                alternatives: bool = False):
    """``(pos, A, m, others)`` when the data show y = prod x_pos**m * g(groups A, others) with
    fewer inputs than ``live`` (see the module doc), else None. With ``alternatives``, a list of
    such hypotheses: the simplest basis of the groups, then another basis of the same groups
    about as simple, when there is one. The oracle is a network of
    log|y| on the logs of the positive inputs (:func:`log_surrogate`) when y keeps one sign,
    else the surrogate ``sur_model`` (``f``: it as a function of raw inputs; ``err``: its
    held-out RMSE in units of ``ysd``)."""
    pos = [i for i in live if X[:, i].min() > 0]
    others = [i for i in live if i not in pos]
    if len(pos) < 2:
        return None
    rng = np.random.default_rng(seed + 7)
    rows = X[rng.integers(0, len(X), n)].astype(np.float64)
    logs = None
    try:
        logs = log_surrogate(X, y, pos, seed, deadline)
    except (RuntimeError, ValueError, ArithmeticError):
        logs = None
    if logs is not None:
        oracle, value_grad, noise = logs
        f0, L = value_grad(rows)
        keep = np.isfinite(f0) & np.all(np.isfinite(L), 1)
        rows, f0, L = rows[keep], f0[keep], L[keep]
    else:
        if sur_model is None or f is None:
            return None
        g0, grad = _value_grad(sur_model, rows.copy(), xc, xs, const_cols, ysd, yc, dtype)
        a0 = np.abs(g0)
        keep = np.isfinite(g0) & np.all(np.isfinite(grad), 1) & (a0 > 0.2 * np.median(a0))
        rows, f0 = rows[keep], g0[keep]
        L = rows[:, pos] * grad[keep][:, pos] / f0[:, None]
        oracle, noise = f, 2.0 * err * ysd
    if len(rows) < 32:
        return None
    mean_L = L.mean(0)
    _, sv, vt = np.linalg.svd(L - mean_L, full_matrices=False)
    # a single group is read off the direction only when the spread is one-dimensional: a
    # rounded mixture of two groups' directions may pass a rough move test
    one_dim = len(sv) < 2 or sv[1] < _ONE_DIM * sv[0]
    p = len(pos)
    cands = _integer_vectors(p, 4 if p > 7 else 5)
    lo, hi = X.min(0), X.max(0)
    for k in range(0, p):
        if k + len(others) >= len(live) or time.perf_counter() > deadline:
            break
        read = k == 1 and one_dim
        A0 = _group_basis(vt[:k], k, np.vstack([cands, _read_vector(vt[0])]) if read else cands)
        if A0 is None:
            continue
        found = []
        A1 = _simplest_basis(A0)
        # the reduced basis first, then another as simple when there is one: the law's own
        # groups may be either (u/c with x/(t*u), or u/c with x/(c*t))
        for A in [A1] + (_other_bases(A1, cands, deadline=deadline) if alternatives else []):
            if found and time.perf_counter() > deadline:
                break
            m = _prefactor(A, mean_L)
            if m is None:
                continue
            rel = _move_test(oracle, rows, f0, pos, A, m, lo, hi, noise, rng,
                             log_domain=logs is not None)
            if rel < _MAX_DEFECT:
                found.append((pos, A, m, others))
        if found:
            return found if alternatives else found[0]
    return None


def _powers(symbols, pos, e):
    out = sympy.Integer(1)
    for i, v in zip(pos, e):
        if v:
            out *= symbols[i] ** sympy.Rational(Fraction(float(v)).limit_denominator(4))
    return out


def group_name(h, symbols) -> str:
    _, pos, A, m, others = h[:5]
    parts = [str(_powers(symbols, pos, a)) for a in A] + [symbols[i].name for i in others]
    pre = _powers(symbols, pos, m)
    return f"groups({', '.join(parts)}{'' if pre == 1 else '; times ' + str(pre)})"


def group_attempt(h, seed, stages, symbols, Xtr, ytr, Xte, yte, snap, deadline, opts,
                  floor=None):
    """``("groups", pos, A, m, others, surrogate, histories)``: discover y / M from the groups
    and the other inputs on the data, substitute back, finish on the data."""
    from .search import discover  # the whole search, recursively

    _, pos, A, m, others = h[:5]
    t = time.perf_counter()
    P = Xtr[:, pos]
    with np.errstate(all="ignore"):
        cols = [_monomial(P, a) for a in A] + [Xtr[:, i] for i in others]
        target = ytr / _monomial(P, m)
    Z = np.column_stack(cols) if cols else np.zeros((len(ytr), 0))
    if not (np.all(np.isfinite(Z)) and np.all(np.isfinite(target))):
        raise ValueError("the groups are not finite on the data")
    exprs = [_powers(symbols, pos, a) for a in A] + [symbols[i] for i in others]
    pre = _powers(symbols, pos, m)
    if Z.shape[1] == 0:  # a pure power law: y = C * M
        c = float(np.dot(target, np.ones_like(target)) / len(target))
        expr = sympy.Float(c, 15) * pre
    else:
        names = [f"_g{j}" for j in range(Z.shape[1])]
        budget = max(deadline - time.perf_counter(), 0.5)
        res = discover(Z, target, var_names=names, time_budget=budget * 0.7, seed=seed,
                       snap=snap, numeric_model=False, **opts)
        expr = res.formula.xreplace(dict(zip(res.variables, exprs))) * pre
    stages["train"] += time.perf_counter() - t
    return finished_attempt(expr, group_name(h, symbols), seed, stages, symbols, Xtr, ytr, Xte,
                            yte, snap, deadline, floor, h[5], h[6])
