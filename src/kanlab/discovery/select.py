"""Model selection: the complexity/loss Pareto front of candidate formulas and PySR's rules.

A formula that fits the noise loses to a simpler one: along the front (each row simpler than the
next and worse), PySR's score is the drop in log loss per unit of complexity against the previous
row, and its "best" rule takes the highest score among the rows whose loss is within 1.5 times
the lowest. Losses are floored at what float64 can tell apart (``1e-24`` of the target's
variance), so exact formulas tie and the simplest of them wins instead of the one whose
rounding error happens to be smallest.
"""
from __future__ import annotations

import math

__all__ = ["pareto_front", "choose", "RULES"]

RULES = ("best", "accuracy", "score")
_FLOOR = 1e-24


def pareto_front(rows, variance: float = 1.0, floor: float = 0.0):
    """``rows``: dicts with at least ``complexity`` and ``loss`` (MSE). Returns the front as new
    dicts, simplest first, each with ``score`` added; rows with a non-finite loss are left out.
    ``variance``: the target's variance, which sets the loss floor (float precision, or
    ``floor`` times the variance when that is larger: losses below it count as equal)."""
    floor = max(_FLOOR, float(floor)) * max(float(variance), 1e-300)
    rows = sorted((dict(r, loss=max(float(r["loss"]), floor)) for r in rows
                   if math.isfinite(float(r["loss"]))),
                  key=lambda r: (r["complexity"], r["loss"]))
    front = []
    for r in rows:
        if front and (r["loss"] >= front[-1]["loss"] or r["complexity"] == front[-1]["complexity"]):
            continue  # not better than something at least as simple
        front.append(r)
    for k, r in enumerate(front):
        if k == 0:
            r["score"] = 0.0
        else:
            p = front[k - 1]
            r["score"] = -(math.log(r["loss"]) - math.log(p["loss"])) / \
                (r["complexity"] - p["complexity"])
    return front


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
    ok = [k for k in range(len(front)) if losses[k] <= 1.5 * min(losses)]
    return max(ok, key=lambda k: front[k]["score"])
