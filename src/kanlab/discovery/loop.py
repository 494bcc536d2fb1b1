"""The search loop of :func:`.search.discover`: the surrogate and the structure tests, the
algebraic stage, the attempts (cycled through the list of hidden shapes, in this process or on
workers), and the selection among them.

:class:`SearchLoop` holds the state between attempts: the list of shapes (a "separable" entry
is replaced by the structures the tests find when first reached), the attempts so far and the
best one, and the stage timings.
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np

from ..model import KAN
from .additive import sum_groups
from .affine import affine_input
from .candidates import algebraic_attempts
from .groups import find_groups
from .index import find_index
from .result import _evaluate
from .runner import _attempt_job, _run_parallel
from .schedule import structure_share, time_for
from .select import _final, _select, _settled, earns_its_length, white_residuals
from .structure import _product_groups, _structure_name, _surrogate
from .symmetry import find_invariant, surrogate_function

__all__ = ["SearchLoop"]

log = logging.getLogger("kanlab")
# a surrogate this rough (held-out RMSE in units of y's spread) leaves the structure tests
# blind; a single index is then looked for on the data (:mod:`.index`)
_INDEX_MIN_RMSE = 0.05
_SYM_MAX_RMSE = 0.1  # a rougher surrogate still shows a symmetry: its test is relative
# an algebraic formula's held-out RMSE within these bounds of the surrogate's: both stopped at
# the data's noise (a formula clearly better than the surrogate says the surrogate is rough)
_SAME_FLOOR = (0.8, 1.25)


class SearchLoop:
    """Attempts on the prepared data ``prep`` until one is final, the residuals are white, the
    budget is spent or ``max_attempts`` ran. ``common``: what every attempt job takes."""

    def __init__(self, prep, symbols, sur, floor, common, hidden, *, seed, time_budget, t_start,
                 r2_target, max_attempts, stages):
        self.prep, self.symbols, self.sur, self.floor, self.common = \
            prep, symbols, sur, floor, common
        self.seed, self.time_budget, self.t_start = int(seed), float(time_budget), t_start
        self.r2_target, self.max_attempts, self.stages = r2_target, max_attempts, stages
        self.shapes = hidden
        self.attempts: list = []
        self.best = None

    def shape(self, a):
        """Hidden shape of attempt ``a``. A 'separable' entry is resolved when first reached
        (the attempts before it may already have found the formula): the structures that
        :func:`_structures` finds take its place (divide-and-conquer attempts); none, and it
        is dropped."""
        lst, p = self.shapes, self.prep
        while "separable" in lst[: a % len(lst) + 1]:
            t = time.perf_counter()
            # the affine structure is a last resort: not where a formula already reaches
            # r2_target (an algebraic fit with floats left, awaiting an exact form)
            reached = self.best is not None and self.best["r2"] >= self.r2_target
            found = _structures(p.dataset, p.Xtr.shape[1], p.const_cols, p.ysd, p.yc, self.seed,
                                p.Xtr, p.ytr, p.xc, p.xs, p.dataset["train_input"].dtype,
                                self.sur, self.t_start + 0.5 * self.time_budget,
                                affine=not reached, noisy=self.at_noise_floor())
            self.stages["separability"] = self.stages.get("separability", 0.0) + \
                time.perf_counter() - t
            i = lst.index("separable")
            if not found:
                log.info("discover: no symmetry, and y does not factor over groups of inputs")
                lst = lst[:i] + lst[i + 1:] or [2 * p.Xtr.shape[1]]
            else:
                log.info("discover: structure found: %s", ", ".join(map(self.shape_name, found)))
                lst = lst[:i] + found + lst[i + 1:]
                if all(isinstance(e, tuple) or e == "separable" for e in lst):
                    lst.append(2 * p.Xtr.shape[1])  # a plain network too, should it fail
            self.shapes = lst
        return lst[a % len(lst)]

    def at_noise_floor(self) -> bool:
        """Whether the surrogate's held-out error looks like the data's noise: a formula of the
        algebraic stage (another kind of model) predicts the held-out rows about as well
        (RMSE within ``_SAME_FLOOR`` times the surrogate's, both in units of y's spread)."""
        if self.sur is None or not math.isfinite(self.sur[2]):
            return False
        r2s = [a["r2"] for a in self.attempts if str(a["hidden"]).startswith("algebraic")
               and math.isfinite(a["r2"])]
        if not r2s:
            return False
        e = math.sqrt(max(1.0 - max(r2s), 0.0)) * float(np.std(self.prep.yte)) / self.prep.ysd
        lo, hi = _SAME_FLOOR
        return lo * self.sur[2] <= e <= hi * self.sur[2]

    def shape_name(self, h):
        return _structure_name(h, self.symbols) if isinstance(h, tuple) else h

    def fold(self, res):
        self.attempts.append(res)
        # a record that ends the search ranks first: a shorter series of fitted terms that
        # also reaches r2_target must not hide an exact law found beside it
        key = (res["r2"] >= self.r2_target, _final(res, self.r2_target),
               res.get("between_ok", True),
               res["r2"] if res["r2"] < self.r2_target else 0.0, -res["complexity"])
        if self.best is None or key > self.best["key"]:
            self.best = {**res, "key": key}

    def record(self, a, out):
        """Fold attempt ``a``'s outcome into attempts/best, in attempt order (as the serial
        loop does, so parallel runs choose what the serial run would)."""
        res, err, dt, st = out
        for k, v in st.items():
            self.stages[k] += v
        h, s = self.shape_name(self.shape(a)), self.seed + a
        if res is None:
            log.info("discover: attempt %d (seed %d, hidden %s) failed: %s", a, s, h,
                     str(err).splitlines()[0][:120] if str(err) else type(err).__name__)
            self.attempts.append({"seed": s, "hidden": h, "r2": -math.inf, "complexity": 0,
                                  "formula": None, "seconds": dt})
            return
        res["seconds"] = dt
        log.info("discover: attempt %d seed %d hidden %s: r2=%.6g complexity %d (%.1f s)",
                 a, s, h, res["r2"], res["complexity"], dt)
        log.debug("discover: attempt %d formula %s", a, res["formula"])
        self.fold(res)

    def left(self):
        return self.t_start + self.time_budget - time.perf_counter()

    def go_on(self, n_started):
        """Whether the serial loop would start attempt number ``n_started``."""
        best = self.best
        if best is not None and _final(best, self.r2_target):
            return False
        if _settled(self.attempts, self.floor, float(np.var(self.prep.yte)),
                    time.perf_counter() - self.t_start >= self.time_budget / 3, self.white):
            return False
        runs = [a for a in self.attempts if not str(a["hidden"]).startswith("algebraic")]
        if not runs:  # one network attempt, unless the algebraic stage has left too little
            # of the budget for one (an attempt takes about a second at the least)
            left = self.left()
            return best is None or left >= min(1.0, 0.5 * self.time_budget) and left > 0
        if self.max_attempts is not None and n_started >= self.max_attempts:
            return False
        left = self.left()
        if left >= 1.0:
            self.shape(n_started)  # a pending structure test is resolved: is the next one?
        return time_for(n_started, self.shapes, runs, left)

    def white(self, a):
        p = self.prep
        resid = p.ytr - _evaluate(a["expr"], self.symbols, p.Xtr)
        return white_residuals(resid, np.where(p.const_cols, 0.0, (p.Xtr - p.xc) / p.xs))

    def job(self, a):
        h = self.shape(a)
        remaining = self.left()  # after any resolving
        return (a, h, self.seed + a, remaining * structure_share(a, self.shapes), self.common)

    def algebraic_stage(self, snap, lib, algebraic):
        """The algebraic stage (cheap, so first; a few seconds at most)."""
        p = self.prep
        share = time.perf_counter() + min(0.25 * self.time_budget, 8.0)
        recs, dt = algebraic_attempts(p.Xtr, p.ytr, p.Xte, p.yte, self.symbols, seed=self.seed,
                                      snap=snap, deadline=share, lib=lib, floor=self.floor,
                                      max_terms=10 if algebraic is True else int(algebraic))
        self.stages["algebraic"] = dt
        for res in recs:
            res["seconds"] = dt / len(recs)
            log.info("discover: %s: r2=%.6g complexity %d", res["hidden"], res["r2"],
                     res["complexity"])
            self.fold(res)

    def run(self, workers, backend):
        if workers == 1:
            a = 0
            while self.go_on(a):
                self.record(a, _attempt_job(self.job(a))[1])
                a += 1
                if self.best is None and time.perf_counter() - self.t_start > self.time_budget:
                    break
        else:
            _run_parallel(self.job, self.go_on, self.record, workers, backend,
                          self.max_attempts if self.max_attempts is not None else 10**9)
        if self.best is None:
            raise RuntimeError("discover() found no formula within the time budget: raise "
                               "time_budget")

    def select(self, model_selection, selection_floor):
        """(the chosen attempt, the Pareto front) by the rules of :mod:`.select`."""
        p = self.prep

        def significant(simple, longer):
            return earns_its_length(simple["expr"], longer["expr"],
                                    lambda e: p.yte - _evaluate(e, self.symbols, p.Xte))

        return _select(self.attempts, float(np.var(p.yte)), model_selection, selection_floor,
                       significant) or (self.best, [])


def try_surrogate(dataset, d, seed, deadline):
    """The surrogate of :func:`_surrogate`, or None when it fails or cannot finish by
    ``deadline`` (a quarter of the budget): a half-trained oracle would mislead the structure
    tests and the noise floor."""
    try:
        return _surrogate(dataset, d, seed, deadline)
    except (RuntimeError, ValueError, ArithmeticError) as err:
        log.info("discover: the surrogate network failed: %s", err)
        return None


def _structures(dataset, d, const_cols, ysd, yc, seed, Xtr, ytr, xc, xs, dtype, sur, deadline,
                affine=True, noisy=False):
    """The structures the data show, surest first: dimensionless groups
    (:func:`.groups.find_groups`, on a network of log|y|, or on the surrogate ``sur``), a
    symmetry that removes a variable (:func:`.symmetry.find_invariant`), a product split
    (``_product_groups``), a sum split (:func:`.additive.sum_groups`), and where neither shows
    (and ``affine``), a law affine in a function of one input (:func:`.affine.affine_input`).
    ``noisy``: the surrogate's error is the data's noise (a plain product is then still tested)."""
    out, late = [], []
    live = [i for i in range(d) if not const_cols[i]]
    model, hists, err = sur if sur is not None else (None, [], math.inf)
    f = None
    try:
        if sur is not None:
            log.info("discover: surrogate held-out RMSE %.3g (of y's spread)", err)
        if err < _SYM_MAX_RMSE:
            f = surrogate_function(model, xc, xs, const_cols, ysd, yc, dtype)
        grps = find_groups(model, f, Xtr, ytr, err, ysd, live, xc, xs, const_cols, yc, dtype,
                           seed=seed, deadline=deadline, alternatives=True) or [None]
        grp = grps[0]
        # one group first (unambiguous up to a power; a single input with a power prefactor
        # divided off exactly on the data, 3*p_d*sin(theta)*cos(theta)/(4*pi*epsilon*r**3),
        # is a curve left to find). Several groups come after the pair symmetries and the
        # product split: their basis is one choice among many (sigma/theta, sigma/theta1 for a
        # law in (theta - theta1)/sigma), and the sub-problem may be harder than the pair's
        if grp is not None:
            (out if len(grp[1]) == 1 else late).append(("groups", *grp, model, hists))
            late.extend(("groups", *g, model, hists) for g in grps[1:])
        elif err > _INDEX_MIN_RMSE:  # a law the surrogate cannot follow: ask the data
            idx = find_index(Xtr, ytr, live, deadline=deadline)
            if idx is not None:
                out.append(("groups", idx[0], idx[1][None, :], idx[2], [], model, hists))
        if sur is None:
            return out + late
        if f is not None:
            sym = find_invariant(f, Xtr, err, ysd, seed=seed, live=live)
            if sym is not None:
                out.append(("reduce", sym[0], sym[1], sym[2], model, hists))
        found = _product_groups(dataset, d, const_cols, ysd, yc, seed, surrogate=sur,
                                noisy=noisy)
        if found is not None:
            out.append(found)
        scaling = (xc, xs, const_cols, ysd, yc, dtype)
        if f is not None:
            groups = sum_groups(f, Xtr, err, ysd, live, seed=seed)
            if groups is not None:
                out.append(("sum", groups, model, hists, scaling))
            shared = groups is not None and len(set().union(*groups)) < sum(map(len, groups))
            if (groups is None or shared) and found is None and affine:
                # neither a disjoint sum nor a product: affine in one input?
                # (last: on a rough oracle many smooth laws look affine in some input)
                j = affine_input(f, Xtr, err, ysd, live, seed=seed)
                if j is not None:
                    late.append(("affine", j, model, hists, scaling))
    except (RuntimeError, ValueError, ArithmeticError, np.linalg.LinAlgError) as err:
        log.info("discover: structure tests failed: %s", err)
    return out + late


def numeric_model(dataset, d, grid, refine_grid, seed, dtype, deadline, record_shares=False):
    """A small numeric KAN of the standardized data (40 L-BFGS steps, then 40 more on the
    ``refine_grid``; a second on small data, cut at ``deadline``) and its fit history: the
    model of a result whose formula came from the algebraic stage, for the plots, reports and
    model files that want a network."""
    model = KAN(width=[d, 2 * d + 1, 1], grid=grid, k=3, seed=seed, dtype=dtype)
    # a few steps at least, even past a spent budget: a network of the data, not a random one
    t_end = max(deadline, time.perf_counter() + 0.2)

    def fit(m):
        return m.fit(dataset, opt="LBFGS", steps=40, progress=False, spline_share_warning=0.0,
                     track_shares=record_shares, callback=lambda *_: time.perf_counter() > t_end)
    hists = [dict(fit(model), stage="surrogate")]
    model = model.refine(refine_grid, x=dataset["train_input"])
    hists.append(dict(fit(model), stage="surrogate_refine"))
    return model, hists
