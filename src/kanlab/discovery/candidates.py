"""From the algebraic stage's candidate expressions to scored attempts.

Every candidate is checked on the training data in the caller's units; the few best (exact fits
first, then shorter ones) have their constants refitted on all training rows, cleaned and
snapped (:func:`.attempt._finish`), and are scored on the held-out rows like any KAN attempt.
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np

from ..symbolic.formula import expression_size
from .algebraic import Candidate, algebraic_candidates
from .univariate import univariate_candidates
from .cleanup import _finish, _float_count
from .result import _evaluate, _finite_between, _r2

log = logging.getLogger("kanlab")

_ALWAYS_FLOATS = 2  # a candidate this short is finished past any deadline (milliseconds)


def algebraic_attempts(Xtr, ytr, Xte, yte, symbols, *, seed: int, snap: bool, deadline: float,
                       lib=None, keep: int = 6, max_terms: int = 10,
                       floor=None) -> tuple[list[dict], float]:
    """Attempt records (as :func:`.attempt._attempt` makes them, with no model) for the best
    ``keep`` candidates of the algebraic stage, and the seconds it took."""
    t0 = time.perf_counter()
    # one live input: the curve stage (run after) keeps half the share; it is the exhaustive
    # search of a curve, and the sums and ratios of one input are quick (started past the
    # deadline, it fitted nothing: II.35.18's 1/(2*cosh(z)) was found in some runs only)
    live = [i for i in range(Xtr.shape[1]) if np.ptp(Xtr[:, i]) > 0]
    one = len(live) == 1
    first = t0 + 0.5 * (deadline - t0) if one and math.isfinite(deadline) else deadline
    try:
        cands = algebraic_candidates(Xtr, ytr, symbols, deadline=first, seed=seed, allowed=lib,
                                     k_max=max_terms)
    except (ValueError, ArithmeticError, MemoryError) as err:  # a failed stage is no formula
        log.info("discover: algebraic stage failed: %s", err)
        return [], time.perf_counter() - t0
    curves = _curves(Xtr[:, live[0]], ytr, symbols[live[0]], lib, deadline) if one else []
    cands = curves + list(cands)
    scored, seen = [], set()
    for c in cands:
        key = str(c.expr)
        if key in seen:
            continue
        seen.add(key)
        r2 = _r2(_evaluate(c.expr, symbols, Xtr), ytr)
        if math.isfinite(r2):
            scored.append((r2, expression_size(c.expr), c))
    # exact fits (the shortest first), then by BIC on the training rows: the closest fits
    # first would be the longest ones on noisy data, and the law would not be among those kept
    n = len(ytr)

    def bic(e):
        resid = max(1.0 - e[0], 1e-300)
        return n * math.log(resid) + e[1] * math.log(max(n, 2))

    scored.sort(key=lambda e: (e[0] < 1 - 1e-9, e[1] if e[0] >= 1 - 1e-9 else bic(e)))
    out = []
    # the best candidate is finished even when the search used the whole share, and the next
    # two as well where they keep at most three floats (a refit and a snap: milliseconds each),
    # up to a quarter of the share past it: the law may be second (II.13.23's two power laws
    # of 1/y**2 behind a ratio of three terms, at noise 0.01); any of them with at most two
    # floats is finished however late: a factor's line c*x1 + d behind a four-float curve
    late = deadline + 0.25 * max(deadline - t0, 0.0)
    for k, (r2_train, _, c) in enumerate(scored[:keep]):
        now, floats = time.perf_counter(), _float_count(c.expr)
        if out and now > deadline and floats > _ALWAYS_FLOATS and (
                now > late or k >= 3 or floats > 3):
            continue
        expr = _finish(c.expr, r2_train > 0.99, symbols, Xtr, ytr, snap, deadline, floor)
        r2 = _r2(_evaluate(expr, symbols, Xte), yte)
        out.append({"seed": seed, "hidden": f"algebraic({c.label})", "r2": r2,
                    "between_ok": _finite_between(expr, symbols, Xtr, ytr),
                    "complexity": expression_size(expr), "formula": str(expr), "expr": expr,
                    "model": None, "histories": [], "width": None})
    return out, time.perf_counter() - t0


def _curves(x, ytr, symbol, lib, deadline):
    """The univariate stage's candidates (:mod:`.univariate`) for y against its one live
    input x."""
    try:
        found = univariate_candidates(x, ytr, symbol, lib=lib, deadline=deadline)
    except (ValueError, ArithmeticError, RuntimeError) as err:
        log.info("discover: univariate stage failed: %s", err)
        return []
    return [Candidate(expr, label, 1, math.nan) for label, expr in found]
