"""Symmetries that remove a variable: y depends on x_i - x_j, x_i + x_j, x_i / x_j or x_i * x_j.

Tested on a surrogate network (AI Feynman's symmetry tests): move training points along the
invariant (``x_i + t, x_j + t`` keeps ``x_i - x_j``; ``x_i * s, x_j * s`` keeps ``x_i / x_j`` ...),
staying inside the data's box, and compare how much the surrogate changes with how much it
changes when x_i alone moves as far. A true invariant changes it by the surrogate's own error
only. The reduced problem, with the pair replaced by the one new input, is then discovered on the
data themselves (no surrogate in the target), recursively, and the new input substituted back.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from .cleanup import finished_attempt

__all__ = ["find_invariant", "reduced_attempt", "INVARIANTS"]

# name: (sympy of the new input, whether the pair must keep one sign each)
INVARIANTS = {
    "diff": (lambda a, b: a - b, False),
    "sum": (lambda a, b: a + b, False),
    "ratio": (lambda a, b: a / b, True),
    "product": (lambda a, b: a * b, True),
}
# a true invariant changes the surrogate by its own error (measured 0.9 of its held-out RMSE,
# against 6 and more for the closest false one) and far less than moving x_i alone does
_MAX_DEFECT = 0.15  # of the change that moving x_i alone makes
_MAX_NOISE = 3.0  # the defect in units of the surrogate's held-out error


def _moves(kind, xi, xj, lo, hi, rng):
    """New (x_i, x_j) along the invariant ``kind`` inside [lo, hi] (two-vectors), and the same
    step applied to x_i alone, for each row; NaN where no step fits."""
    u = rng.uniform(0.2, 1.0, len(xi)) * rng.choice([-1.0, 1.0], len(xi))
    with np.errstate(all="ignore"):
        if kind in ("diff", "sum"):
            sj = 1.0 if kind == "diff" else -1.0
            # x_i + t in [lo_i, hi_i] and x_j + sj*t in [lo_j, hi_j]
            a = np.maximum(lo[0] - xi, lo[1] - xj if sj > 0 else xj - hi[1])
            b = np.minimum(hi[0] - xi, hi[1] - xj if sj > 0 else xj - lo[1])
            t = np.where(u > 0, u * b, -u * a)
            return xi + t, xj + sj * t, xi + t
        sj = 1.0 if kind == "ratio" else -1.0
        # x_i * s and x_j * s**sj inside the box (one sign each): log s in [a, b]
        li, lj = np.log(np.abs(xi)), np.log(np.abs(xj))
        lo_i, hi_i = np.log(min(abs(lo[0]), abs(hi[0]))), np.log(max(abs(lo[0]), abs(hi[0])))
        lo_j, hi_j = np.log(min(abs(lo[1]), abs(hi[1]))), np.log(max(abs(lo[1]), abs(hi[1])))
        a = np.maximum(lo_i - li, lo_j - lj if sj > 0 else lj - hi_j)
        b = np.minimum(hi_i - li, hi_j - lj if sj > 0 else lj - lo_j)
        s = np.exp(np.where(u > 0, u * b, -u * a))
        return xi * s, xj * s ** sj, xi * s


def find_invariant(f, X, err, ysd, seed: int = 0, n: int = 256, live=None):
    """The best (kind, i, j, defect) such that ``f`` (the surrogate, a function of raw (m, d)
    inputs to raw y) depends on the pair only through ``INVARIANTS[kind]``, or None.
    ``err``: the surrogate's held-out RMSE in units of ``ysd`` (the target's spread)."""
    d = X.shape[1]
    live = list(range(d)) if live is None else list(live)
    if len(live) < 2:
        return None
    rng = np.random.default_rng(seed)
    rows = X[rng.integers(0, len(X), n)]
    lo, hi = X.min(0), X.max(0)
    one_sign = ((lo > 0) | (hi < 0)) & (np.minimum(np.abs(lo), np.abs(hi)) > 0)
    f0 = f(rows)
    best = None
    for ii, i in enumerate(live):
        for j in live[ii + 1:]:
            for kind, (_, needs_sign) in INVARIANTS.items():
                if needs_sign and not (one_sign[i] and one_sign[j]):
                    continue
                ni, nj, alone = _moves(kind, rows[:, i], rows[:, j], (lo[i], lo[j]),
                                       (hi[i], hi[j]), rng)
                ok = np.isfinite(ni) & np.isfinite(nj) & (np.abs(ni - rows[:, i]) >
                                                         1e-3 * (hi[i] - lo[i]))
                if ok.sum() < n // 4:
                    continue
                moved, ctrl = rows[ok].copy(), rows[ok].copy()
                moved[:, i], moved[:, j] = ni[ok], nj[ok]
                ctrl[:, i] = alone[ok]
                defect = float(np.sqrt(np.mean((f(moved) - f0[ok]) ** 2)))
                change = float(np.sqrt(np.mean((f(ctrl) - f0[ok]) ** 2)))
                if not change > 0:
                    continue
                rel = defect / change
                noise = defect / max(err * ysd, 1e-300)
                if rel < _MAX_DEFECT and noise < _MAX_NOISE and (best is None or rel < best[3]):
                    best = (kind, i, j, rel)
    return best


def reduced_attempt(h, seed, stages, symbols, Xtr, ytr, Xte, yte, snap, deadline, opts,
                    floor=None):
    """``("reduce", kind, i, j, surrogate, surrogate histories)``: discover y from the inputs with x_i, x_j replaced by the one
    input ``INVARIANTS[kind](x_i, x_j)`` (on the data), then substitute it back and finish the
    whole formula on the data (constants refitted and snapped). The result's model is the
    surrogate (the reduced search's networks take other inputs)."""
    from .search import discover  # the whole search, recursively

    _, kind, i, j = h[:4]
    make = INVARIANTS[kind][0]
    t = time.perf_counter()
    keep = [k for k in range(len(symbols)) if k not in (i, j)]
    with np.errstate(all="ignore"):
        u_tr = make(Xtr[:, i], Xtr[:, j])
    if not np.all(np.isfinite(u_tr)):
        raise ValueError(f"the invariant {kind} is not finite on the data")
    names = [symbols[k].name for k in keep] + [f"_u{i}_{j}"]
    budget = max(deadline - time.perf_counter(), 0.5)
    res = discover(np.column_stack([Xtr[:, keep], u_tr]), ytr, var_names=names,
                   time_budget=budget * 0.9, seed=seed, snap=snap, numeric_model=False, **opts)
    sub = res.variables
    expr = res.formula.xreplace({**{sub[a]: symbols[k] for a, k in enumerate(keep)},
                                 sub[-1]: make(symbols[i], symbols[j])})
    stages["train"] += time.perf_counter() - t
    return finished_attempt(expr, f"reduce({make(symbols[i], symbols[j])})", seed, stages,
                            symbols, Xtr, ytr, Xte, yte, snap, deadline, floor, h[4], h[5])


def surrogate_function(model, xc, xs, const_cols, ysd, yc, dtype):
    """Raw inputs (m, d) -> raw predictions of a network trained on standardized data."""
    def f(Xraw):
        z = (np.asarray(Xraw, dtype=np.float64) - xc) / xs
        z[:, const_cols] = 0.0
        with torch.no_grad():
            out = model(torch.as_tensor(z, dtype=dtype))[:, 0].double().numpy()
        return out * ysd + yc
    return f
