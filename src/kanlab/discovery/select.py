"""Model selection: the complexity/loss Pareto front of candidate formulas and PySR's rules.

A formula's complexity here is its cost: its nodes plus one for each fitted float (an exact
constant is short to write, a fitted one is not).

A formula that fits the noise loses to a simpler one: along the front (each row simpler than the
next and worse), PySR's score is the drop in log loss per unit of complexity against the previous
row, and its "best" rule takes the highest score among the rows whose loss is within 1.5 times
the lowest; here, the row of the lowest loss is taken outright when it keeps no fitted constant
(every constant exact: it cannot have fitted the noise). Losses are floored at what float64 can
tell apart (``1e-24`` of the target's variance), so exact formulas tie and the simplest of them
wins instead of the one whose rounding error happens to be smallest.
"""
from __future__ import annotations

import math

import numpy as np

from ..symbolic.snap import _floats

__all__ = ["pareto_front", "choose", "RULES"]

RULES = ("best", "accuracy", "score")
_FLOOR = 1e-24
_MAX_FREE = 3  # floats a formula may keep and still end the search
_FLOOR_SLACK = 1.2  # see _settled
_WHITE_MAX = 0.1  # residual correlation with the nearest neighbours' that is still noise
_WHITE_K = 10  # neighbours averaged


def pareto_front(rows, variance: float = 1.0, floor: float = 0.0):
    """``rows``: dicts with at least ``complexity`` and ``loss`` (MSE), optionally ``cost`` (what
    orders them when present, see :func:`_select`). Returns the front as new dicts, simplest
    first, each with ``score`` added; rows with a non-finite loss are left out.
    ``variance``: the target's variance, which sets the loss floor (float precision, or
    ``floor`` times the variance when that is larger: losses below it count as equal)."""
    floor = max(_FLOOR, float(floor)) * max(float(variance), 1e-300)
    rows = sorted((dict(r, loss=max(float(r["loss"]), floor)) for r in rows
                   if math.isfinite(float(r["loss"]))),
                  key=lambda r: (_cost(r), r["loss"]))
    front = []
    for r in rows:
        if front and (r["loss"] >= front[-1]["loss"] or _cost(r) == _cost(front[-1])):
            continue  # not better than something at least as simple
        front.append(r)
    for k, r in enumerate(front):
        if k == 0:
            r["score"] = 0.0
        else:
            p = front[k - 1]
            r["score"] = -(math.log(r["loss"]) - math.log(p["loss"])) / (_cost(r) - _cost(p))
    return front


def _cost(row):
    """What a row's formula costs to write: its ``cost`` where given (see :func:`_select`),
    else its complexity."""
    return row.get("cost", row["complexity"])


def choose(front, rule: str = "best") -> int:
    """Index of the chosen row of ``front``: ``"best"`` (PySR's rule, above), ``"accuracy"``
    (the lowest loss) or ``"score"`` (the highest score)."""
    if rule not in RULES:
        raise ValueError(f"model_selection must be one of {RULES}, got {rule!r}")
    if not front:
        raise ValueError("no candidate formula has a finite loss")
    losses = [r["loss"] for r in front]
    if rule == "accuracy":
        return min(range(len(front)), key=lambda k: losses[k])
    if rule == "score":
        return max(range(len(front)), key=lambda k: front[k]["score"])
    lowest = min(range(len(front)), key=lambda k: losses[k])
    if _fits_nothing(front[lowest]):
        # no constant of it was fitted, so no noise of the data either: nothing simpler
        # explains the held-out rows better (II.24.17 at noise 0.01: the law, every constant
        # exact, lost on score to a within-noise mimic four nodes shorter)
        return lowest
    ok = [k for k in range(len(front)) if losses[k] <= 1.5 * min(losses)]
    return max(ok, key=lambda k: front[k]["score"])


def _fits_nothing(row) -> bool:
    """Whether a front row's formula keeps no fitted float (its ``cost``, where given, is its
    complexity plus one per fitted float; see :func:`_select`)."""
    return "cost" in row and row["cost"] == row["complexity"]


# ---- when the search stops, and what it returns

def _final(res, r2_target) -> bool:
    """Whether attempt ``res`` ends the search: its held-out R2 reaches ``r2_target`` with at
    most ``_MAX_FREE`` floats left. An algebraic fit must also be exact to float precision
    (1 - R2 <= 1e-12 with every constant exact, 1e-14 with floats left): a short series of
    fitted terms can reach 1 - 1e-13 on smooth data without being the law, so a network
    attempt gets its chance."""
    if res["r2"] < r2_target or _free_constants(res["expr"]) > _MAX_FREE:
        return False
    if not str(res["hidden"]).startswith("algebraic"):
        return True
    # an algebraic fit with floats left (a series of fitted terms) must be exact to 1e-14:
    # 4-5 fitted terms reach 1 - 1e-13 on sin(3x) over [-1, 1]
    return res["r2"] >= 1 - 1e-12 and (_free_constants(res["expr"]) == 0 or
                                       res["r2"] >= 1 - 1e-14)


def _settled(attempts, floor, variance, late, white=None) -> bool:
    """Whether noisy data have their law: a formula with every constant exact, finite between
    the training points, that is as accurate on held-out rows as the surrogate network (whose
    held-out squared error ``floor`` is the noise plus the network's own error;
    ``_FLOOR_SLACK`` allows for the two sharing the held-out noise, which can favour either)
    ends the search: a longer search would only find formulas that fit the noise. It does so
    at once when its residuals are white (``white(attempt)``: no input explains them, see
    :func:`white_residuals`), else once ``late`` (a third of the budget spent): before that,
    clean data may still give a law exact to float precision, which ends the search by
    :func:`_final`."""
    if floor is None:
        return False
    for a in attempts:
        if (a.get("expr") is not None and a.get("between_ok", True)
                and math.isfinite(a["r2"]) and (1.0 - a["r2"]) * variance <= _FLOOR_SLACK * floor
                and _free_constants(a["expr"]) == 0):
            if late:
                return True
            if white is not None:
                if "white" not in a:
                    a["white"] = bool(white(a))
                if a["white"]:
                    return True
    return False


def white_residuals(resid, Z, k: int = _WHITE_K) -> bool:
    """Whether residuals ``resid`` at standardized points ``Z`` look like noise: their
    correlation with the mean residual of each row's ``k`` nearest neighbours stays within
    four standard errors (``4/sqrt(n)``, at least ``_WHITE_MAX``). A formula that misses part
    of the law leaves a smooth residual, which neighbours share; averaging over k neighbours
    keeps a part of it well below the noise detectable (with one neighbour, a missed part of
    a tenth of the noise variance correlates at 0.09, with ten at about 0.2)."""
    r = np.asarray(resid, dtype=np.float64)
    Z = np.asarray(Z, dtype=np.float64)
    n = len(r)
    if n < 50 or not np.all(np.isfinite(r)) or not np.ptp(r) > 0:
        return False
    rng = np.random.default_rng(0)
    rows = rng.choice(n, min(n, 1500), replace=False)
    r, Z = r[rows], Z[rows]
    sq = np.sum(Z * Z, 1)
    D = sq[:, None] + sq[None, :] - 2.0 * Z @ Z.T
    np.fill_diagonal(D, np.inf)
    k = max(1, min(int(k), len(r) // 10))
    nn = np.argpartition(D, k, axis=1)[:, :k]
    near = r[nn].mean(1)
    corr = float(np.corrcoef(r, near)[0, 1])
    return bool(np.isfinite(corr)) and corr <= max(_WHITE_MAX, 4.0 / math.sqrt(len(r)))


def _free_constants(expr) -> int:
    """How many distinct floats (constants not snapped to exact values) ``expr`` holds."""
    return len(_floats(expr))


def _select(attempts, variance, rule, floor=0.0, significant=None):
    """(chosen attempt, Pareto table) over the attempts with a formula, on held-out squared
    error; None when no attempt has one. ``significant(simpler, longer)``, when given, says
    whether the longer row's gain on the held-out rows is more than their noise (a paired
    test, or fewer fitted constants); a row that only gains by chance is left out of the
    choice, so an extra term that shaves 1% off a noise-dominated loss does not win by PySR's
    score."""
    # a fitted float costs more to write than a node: at equal loss, 1/(2*pi*(exp(z/(2*pi)) - 1))
    # (16 nodes, every constant exact) is simpler than its mimic 502.19/(cosh(z/(2*pi) + 35/4) -
    # 3155.34) (15 nodes, two floats)
    rows = [dict(a, loss=(1.0 - a["r2"]) * variance,
                 cost=a["complexity"] + _free_constants(a["expr"]))
            for a in attempts if a.get("expr") is not None and math.isfinite(a["r2"])]
    if not rows:
        return None
    if any(r.get("between_ok", True) for r in rows):
        rows = [r for r in rows if r.get("between_ok", True)]
    front = pareto_front(rows, variance, floor)
    table = [{"complexity": r["complexity"], "cost": r["cost"], "loss": r["loss"],
              "score": r["score"],
              "r2": r["r2"], "formula": r["formula"], "hidden": r["hidden"]} for r in front]
    if significant is not None and len(front) > 1:
        kept = [front[0]]
        for r in front[1:]:
            if significant(kept[-1], r):
                kept.append(r)
        front = pareto_front(kept, variance, floor)
    k = choose(front, rule)
    chosen = next(a for a in attempts if a.get("expr") is not None
                  and a["formula"] == front[k]["formula"] and a["hidden"] == front[k]["hidden"])
    return chosen, table


def earns_its_length(simple, longer, residuals) -> bool:
    """Whether formula ``longer`` may be chosen over the simpler ``simple``: it fits fewer
    constants to the data (then it is not longer in what it fits), or its held-out residuals
    (``residuals(expr)``) are smaller by more than their noise (:func:`paired_gain`)."""
    if _free_constants(longer) < _free_constants(simple):
        return True
    return paired_gain(residuals(simple), residuals(longer))


def paired_gain(e_simple, e_long, z: float = 3.0) -> bool:
    """Whether residuals ``e_long`` have a smaller mean square than ``e_simple`` on the same
    rows by a clear margin (half or less) or by more than ``z`` standard errors of the paired
    difference (a small gain on many rows)."""
    e_simple = np.asarray(e_simple, dtype=np.float64)
    e_long = np.asarray(e_long, dtype=np.float64)
    d = e_simple ** 2 - e_long ** 2
    if len(d) < 2 or not np.all(np.isfinite(d)):
        return bool(np.all(np.isfinite(e_long)))
    if np.mean(e_long ** 2) <= 0.5 * np.mean(e_simple ** 2):
        return True
    se = float(np.std(d, ddof=1)) / math.sqrt(len(d))
    return float(np.mean(d)) > z * se
