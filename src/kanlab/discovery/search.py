"""One call from data to formula: ``kanlab.discover(X, y)``.

Pipeline of one attempt (all on standardized data; the formula is mapped back at the end):

1. train   a KAN [d, h, 1] (h = 2d first) with sparsity regularization (LBFGS, adaptive grid);
2. prune   hidden nodes and edges whose output spread is negligible (:mod:`kanlab.prune`);
3. refine  the grid and retrain the pruned network without regularization;
4. symbolic  every edge snapped to its best library function (``auto_symbolic``), then all
   a, b, c, d retrained by LBFGS;
5. formula  the network as sympy in the caller's variables and units, constants refitted by
   least squares and snapped to simple exact values where the loss allows (:mod:`.symbolic.snap`),
   then simplified; scored on held-out data.

Attempts with other seeds and hidden widths follow while the time budget lasts and no attempt has
reached ``r2_target``; the result is the best attempt (held-out R2 first, then simplicity). The
second attempt tests, on a quickly trained surrogate network, whether y is a product of
functions of disjoint groups of inputs (``-m*B*cos(theta)``, ``m*(u**2 + v**2)/2``), or, failing
that, whether T(y) is a constant plus such a product or a sum, for T among y, 1/y, 1/y**2,
y**2 and sin y (``1/(1 - v/c)``, ``1/sqrt(1/v**2 - 1/c**2)``). If so, each factor is read off the
surrogate and discovered on its own, recursively (divide and conquer, as in AI Feynman), or
T(y) is discovered; T^-1 of the result is refitted and snapped on the data. This reaches
products whose factors change sign (out of reach of the exp-of-logs route of sum nodes) and
factors that are sums or nested products.
"""
from __future__ import annotations

import logging
import math
import time
import warnings

import numpy as np
import torch

from ..model import KAN
from ..symbolic.formula import make_symbols
from ..symbolic.library import check_lib
from .result import DiscoveryResult, _evaluate
from .candidates import algebraic_attempts
from .conditioning import Conditioning, _validated
from .runner import _attempt_job, _run_parallel
from .select import _final, _free_constants, _select, _settled, earns_its_length, white_residuals  # noqa: F401
from .structure import _product_groups, _structure_name, _surrogate
from .additive import sum_groups
from .affine import affine_input
from .symmetry import find_invariant, surrogate_function
from .groups import find_groups
from .index import find_index
from .oracle import sharpen
from .prepared import Prepared
from .schedule import STRUCTURES, hidden_list, structure_share, time_for

__all__ = ["discover", "DiscoveryResult"]

log = logging.getLogger("kanlab")
# a surrogate this rough (held-out RMSE in units of y's spread) leaves the structure tests
# blind; a single index is then looked for on the data (:mod:`.index`)
_INDEX_MIN_RMSE = 0.05
_SYM_MAX_RMSE = 0.1  # a rougher surrogate still shows a symmetry: its test is relative


def discover(
    X,
    y,
    var_names=None,
    *,
    time_budget: float = 60.0,
    seed: int = 0,
    lib=None,
    test_size: float = 0.2,
    hidden=None,
    grid: int = 5,
    refine_grid: int = 10,
    lamb: float = 0.003,
    steps: tuple = (30, 30, 30),
    r2_target: float = 1 - 1e-9,
    max_attempts: int | None = None,
    snap: bool = True,
    dtype=torch.float32,
    workers: int = 1,
    backend: str = "process",
    record_shares: bool = False,
    algebraic: bool | int = True,
    model_selection: str = "best",
    numeric_model: bool = True,
    selection_floor: float = 0.0,
) -> DiscoveryResult:
    """Find a formula ``y = f(X)`` with a KAN.

    Args:
        X: (n, d) inputs (array, tensor or nested lists); any scale and offset: columns far
            from zero against their spread are shifted, extreme magnitudes scaled by powers of
            ten, and the formula keeps the shifts inside ``(x - c)`` (:mod:`.conditioning`).
        y: (n,) or (n, 1) target, likewise.
        var_names: names of the d inputs (default ``x_1 ... x_d``); any names, ``pi`` and ``E``
            included (the formula's symbols carry them; no newlines or tabs).
        time_budget: seconds. No new attempt starts once it would likely overrun, and the running
            attempt cuts its training and constant snapping short at the deadline (the first
            attempt still returns a formula, possibly a rougher one, snapped to a few functions
            only). The network attempt starts only with a second of the budget left (or half
            of it) once the algebraic stage has a formula; without one, it always runs, and may
            then end up to a second past a budget below about 2 s.
            A result that scores worse than the mean on held-out data comes with a warning.
        seed: first seed; attempts use seed, seed+1, ...
        lib: candidate function names (default: the whole library).
        test_size: held-out fraction for the reported R2.
        hidden: hidden shapes to try in turn, cycling with a new seed each attempt: an int is a
            layer of that many sum nodes, ``"mult"`` one node multiplying d sub-nodes (products
            of one-variable factors, including factors that change sign, which the exp-of-logs
            route of sum nodes cannot take; it trains less reliably, so it is not in the
            default), ``"separable"`` divide and conquer: when the search first reaches this
            entry, a quickly trained surrogate network is tested for y (or T(y), T = 1/y,
            1/y**2, y**2, sin y, less a constant) being a product of functions of disjoint groups of
            inputs, or T(y) a sum; if so, each factor is read off the surrogate and discovered
            on its own (or T(y) is), and the result is refitted and snapped on the data (the
            entry is dropped when no such structure shows). Default
            ``[2d, "separable", 2d+1, d+2]`` for two inputs, ``["separable", 2d, 2d+1, d+2]``
            from three on (structure first: a plain network of many inputs takes seconds and
            finds fewer laws); sparsity training and pruning remove what is
            not needed.
        grid, refine_grid: grid intervals for training and after pruning.
        lamb: sparsity regularization strength of the first training stage.
        steps: LBFGS steps of the train, refine and symbolic stages.
        r2_target: an attempt whose formula reaches this held-out R2 with at most
            ``_MAX_FREE`` constants left as floats ends the search (a long series of fitted
            terms can reach it too; it is kept, but the search goes on for an exact law).
        max_attempts: cap on attempts (default: as many as the budget allows).
        snap: snap constants to simple exact values.
        dtype: the network's dtype (float32 trains faster; the formula's constants are
            refitted in float64 either way).
        workers: attempts run at once, each in its own process on one thread (``forkserver``
            or ``spawn`` workers: call discover from a script's ``if __name__ == "__main__":``
            block). Outcomes are taken in attempt order and the search stops where the serial
            search would, so for the same seeds the result is the serial one (bit for bit when
            the serial run also uses one thread and no time limit cuts an attempt short).
        backend: ``"process"`` (a local process pool) or ``"ray"`` (Ray tasks on a running Ray
            cluster, or a local one; needs ``ray``).
        record_shares: record every layer's spline share per step in ``history`` (for plots
            and reports; costs a pass over up to 1024 rows per step).
        algebraic: start with the algebraic stage (:mod:`kanlab.discovery.algebraic`: sparse
            sums of monomial terms of y, 1/y, y**2, log y ..., and ratios P/Q, by least
            squares; about a second), before any network is trained. An int caps the number
            of terms (``True``: 10).
        model_selection: how the result is chosen from the Pareto front (complexity against
            held-out squared error) of every attempt's formula: ``"best"`` (PySR's rule: the
            largest drop in log loss per unit of complexity among the formulas within 1.5 times
            the lowest loss; a formula that fits the noise loses to a simpler one),
            ``"accuracy"`` or ``"score"`` (:mod:`kanlab.discovery.select`). Formulas that blow up
            between the training points (``_finite_between``) are chosen only if all do.
        numeric_model: when the chosen formula comes from the algebraic stage (no network
            made it), train a small numeric network of the data as the result's ``model``
            (``model_kind`` "surrogate"; about a second); False leaves ``model`` None.
        selection_floor: held-out squared error, as a fraction of the target's variance, below
            which formulas count as equally accurate in the selection (the simplest wins);
            0: float precision. The sub-searches of divide and conquer, whose targets are read
            off a surrogate, use ``1 - r2_target``.

    Returns:
        :class:`DiscoveryResult`.
    """
    options = dict(locals())
    t_start = time.perf_counter()
    X, y, symbols = _validated(X, y, var_names, test_size, time_budget, backend, workers,
                               model_selection)
    options["lib"] = check_lib(lib)  # checked once, before any work (the search takes it as is)
    if workers > 1 and backend == "process":
        from ..parallel import unguarded_main_call

        where = unguarded_main_call()
        if where:
            warnings.warn(f"discover(workers={workers}) is called at {where}, outside an "
                          "`if __name__ == \"__main__\":` block: worker processes would run that "
                          "line again, so the attempts run in this process, one at a time. Put "
                          "the call under the guard to use several workers.", RuntimeWarning,
                          stacklevel=2)
            options["workers"] = 1
    cond = Conditioning.of(X, y, symbols)
    if cond.rescales:
        log.info("discover: searching on rescaled data (offsets %s, powers of ten %s, target "
                 "offset %s, target power of ten %s)", [str(c) for c in cond.offsets],
                 cond.xexp, cond.y_offset, cond.yexp)
    U, v = cond.data(X, y)
    options.update(X=U, y=v, var_names=cond.inner,
                   time_budget=float(time_budget) - (time.perf_counter() - t_start))
    res = cond.result(_search(**options))
    if res.r2 < 0:
        warnings.warn(f"discover: the best formula found scores R2 {res.r2:.3g} on held-out data, "
                      "worse than predicting the mean; it is not a law of the data (raise "
                      "time_budget, or check the data)", RuntimeWarning, stacklevel=2)
    return res


def _search(X, y, var_names, *, time_budget, seed, lib, test_size, hidden, grid, refine_grid, lamb,
            steps, r2_target, max_attempts, snap, dtype, workers, backend, record_shares,
            algebraic, model_selection, numeric_model, selection_floor) -> DiscoveryResult:
    """The search of :func:`discover` on validated, conditioned data, in the symbols
    ``var_names`` (names sympy and NumPy read as themselves, see :mod:`.conditioning`)."""
    t_start = time.perf_counter()
    d = X.shape[1]
    symbols = make_symbols(d, var_names)

    prep = Prepared(X, y, seed, test_size, dtype)
    Xtr, ytr, Xte, yte = prep.Xtr, prep.ytr, prep.Xte, prep.yte
    xc, xs, const_cols, yc, ysd = prep.xc, prep.xs, prep.const_cols, prep.yc, prep.ysd
    if prep.dataset is None:
        return prep.constant_result(symbols, grid, seed, dtype, snap)
    if const_cols.any():
        log.info("discover: constant column(s) %s carry no information and are ignored",
                 [symbols[i].name for i in np.nonzero(const_cols)[0]])
    dataset = prep.dataset
    zs, back = prep.back(symbols)  # the standardized symbols, mapped back to the caller's
    hidden = hidden_list(hidden, d)

    stages = {k: 0.0 for k in ("train", "prune", "refine", "symbolic", "formula")}
    # a small numeric network first: the oracle of the structure tests, and its held-out error
    # is the noise floor that decides whether a formula's constants may be snapped
    t = time.perf_counter()
    sur = _try_surrogate(dataset, d, int(seed), t_start + 0.25 * float(time_budget)) \
        if len(ytr) >= 20 else None
    # a rough surrogate: a perceptron may follow the law closer, as the tests' oracle
    sur = sharpen(dataset, sur, int(seed), min(t_start + 0.25 * float(time_budget),
                                               time.perf_counter() + 0.1 * float(time_budget)))
    stages["surrogate"] = time.perf_counter() - t
    floor = (sur[2] * ysd) ** 2 if sur is not None and math.isfinite(sur[2]) else None
    common = (dataset, d, grid, refine_grid, lamb, steps, lib, zs, back, symbols, ysd, yc, Xtr,
              ytr, Xte, yte, snap, record_shares, floor)
    attempts, best = [], None
    shapes = {"list": hidden}

    def shape(a):
        """Hidden shape of attempt ``a``. A 'separable' entry is resolved when first reached
        (the attempts before it may already have found the formula): when a surrogate shows
        that y factors over groups of inputs (``_product_groups``), it becomes a
        divide-and-conquer attempt (``_structured_attempt``); otherwise it is dropped."""
        lst = shapes["list"]
        while "separable" in lst[: a % len(lst) + 1]:
            t = time.perf_counter()
            found = _structures(dataset, d, const_cols, ysd, yc, seed, Xtr, ytr, xc, xs, dtype, sur,
                                t_start + 0.5 * float(time_budget))
            stages["separability"] = stages.get("separability", 0.0) + time.perf_counter() - t
            i = lst.index("separable")
            if not found:
                log.info("discover: no symmetry, and y does not factor over groups of inputs")
                lst = lst[:i] + lst[i + 1:] or [2 * d]
            else:
                log.info("discover: structure found: %s", ", ".join(map(shape_name, found)))
                lst = lst[:i] + found + lst[i + 1:]
                if all(isinstance(e, tuple) or e == "separable" for e in lst):
                    lst.append(2 * d)  # a plain network too, should the structure fail
            shapes["list"] = lst
        return lst[a % len(lst)]

    def shape_name(h):
        return _structure_name(h, symbols) if isinstance(h, tuple) else h

    def fold(res):
        nonlocal best
        attempts.append(res)
        # a record that ends the search ranks first: a shorter series of fitted terms that
        # also reaches r2_target must not hide an exact law found beside it
        key = (res["r2"] >= r2_target, _final(res, r2_target), res.get("between_ok", True),
               res["r2"] if res["r2"] < r2_target else 0.0,
               -res["complexity"])
        if best is None or key > best["key"]:
            best = {**res, "key": key}

    def record(a, out):
        """Fold attempt ``a``'s outcome into attempts/best, in attempt order (as the serial
        loop does, so parallel runs choose what the serial run would)."""
        res, err, dt, st = out
        for k, v in st.items():
            stages[k] += v
        h, s = shape_name(shape(a)), int(seed) + a
        if res is None:
            log.info("discover: attempt %d (seed %d, hidden %s) failed: %s", a, s, h,
                     str(err).splitlines()[0][:120] if str(err) else type(err).__name__)
            attempts.append({"seed": s, "hidden": h, "r2": -math.inf, "complexity": 0,
                             "formula": None, "seconds": dt})
            return
        res["seconds"] = dt
        log.info("discover: attempt %d seed %d hidden %s: r2=%.6g complexity %d (%.1f s)",
                 a, s, h, res["r2"], res["complexity"], dt)
        log.debug("discover: attempt %d formula %s", a, res["formula"])
        fold(res)

    def go_on(n_started):
        """Whether the serial loop would start attempt number ``n_started``."""
        if best is not None and _final(best, r2_target):
            return False
        if _settled(attempts, floor, float(np.var(yte)),
                    time.perf_counter() - t_start >= time_budget / 3, white):
            return False
        runs = [a for a in attempts if not str(a["hidden"]).startswith("algebraic")]
        if not runs:  # one network attempt, unless the algebraic stage has left too little
            # of the budget for one (an attempt takes about a second at the least)
            left = t_start + time_budget - time.perf_counter()
            return best is None or left >= min(1.0, 0.5 * time_budget) and left > 0
        if max_attempts is not None and n_started >= max_attempts:
            return False
        left = t_start + time_budget - time.perf_counter()
        if left >= 1.0:
            shape(n_started)  # a pending structure test is resolved: is the next a structure?
        return time_for(n_started, shapes["list"], runs, left)

    def white(a):
        resid = ytr - _evaluate(a["expr"], symbols, Xtr)
        return white_residuals(resid, np.where(const_cols, 0.0, (Xtr - xc) / xs))

    def job(a):
        h = shape(a)
        remaining = t_start + float(time_budget) - time.perf_counter()  # after any resolving
        return (a, h, int(seed) + a, remaining * structure_share(a, shapes["list"]), common)

    if algebraic:  # cheap, so first; a few seconds at most
        share = time.perf_counter() + min(0.25 * float(time_budget), 8.0)
        recs, dt = algebraic_attempts(Xtr, ytr, Xte, yte, symbols, seed=int(seed), snap=snap,
                                      deadline=share, lib=lib, floor=floor,
                                      max_terms=10 if algebraic is True else int(algebraic))
        stages["algebraic"] = dt
        for res in recs:
            res["seconds"] = dt / len(recs)
            log.info("discover: %s: r2=%.6g complexity %d", res["hidden"], res["r2"],
                     res["complexity"])
            fold(res)
    if workers == 1:
        a = 0
        while go_on(a):
            record(a, _attempt_job(job(a))[1])
            a += 1
            if best is None and time.perf_counter() - t_start > time_budget:
                break
    else:
        _run_parallel(job, go_on, record, workers, backend,
                      max_attempts if max_attempts is not None else 10**9)
    if best is None:
        raise RuntimeError("discover() found no formula within the time budget: raise time_budget")
    def significant(simple, longer):
        return earns_its_length(simple["expr"], longer["expr"],
                                lambda e: yte - _evaluate(e, symbols, Xte))

    best, pareto = _select(attempts, float(np.var(yte)), model_selection,
                           selection_floor, significant) or (best, [])
    model, kind, history = best["model"], "symbolic", best["histories"]
    if str(best["hidden"]).startswith(STRUCTURES):
        kind = "surrogate"
    if model is None and numeric_model:  # an algebraic formula: a network of the data beside it
        model, history = _numeric_model(dataset, d, grid, refine_grid, int(seed), dtype,
                                        t_start + float(time_budget), record_shares)
        kind = "surrogate"
    return DiscoveryResult(
        formula=best["expr"], r2=best["r2"], complexity=best["complexity"], model=model,
        model_kind=kind, stages=stages, variables=symbols, pareto=pareto,
        attempts=[{k: v for k, v in a.items() if k not in ("model", "histories")}
                  for a in attempts],
        history=history,
        x_center=xc, x_scale=xs, y_center=yc, y_scale=ysd, constant_columns=const_cols,
    )



def _try_surrogate(dataset, d, seed, deadline):
    """The surrogate of :func:`_surrogate`, or None when it fails or cannot finish by
    ``deadline`` (a quarter of the budget): a half-trained oracle would mislead the structure
    tests and the noise floor."""
    try:
        return _surrogate(dataset, d, seed, deadline)
    except (RuntimeError, ValueError, ArithmeticError) as err:
        log.info("discover: the surrogate network failed: %s", err)
        return None


def _structures(dataset, d, const_cols, ysd, yc, seed, Xtr, ytr, xc, xs, dtype, sur, deadline):
    """The structures the data show, surest first: dimensionless groups
    (:func:`.groups.find_groups`, on a network of log|y|, or on the surrogate ``sur``), a
    symmetry that removes a variable (:func:`.symmetry.find_invariant`), a product split
    (``_product_groups``), a sum split (:func:`.additive.sum_groups`), and where neither shows,
    a law affine in a function of one input (:func:`.affine.affine_input`)."""
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
        found = _product_groups(dataset, d, const_cols, ysd, yc, seed, surrogate=sur)
        if found is not None:
            out.append(found)
        scaling = (xc, xs, const_cols, ysd, yc, dtype)
        if f is not None:
            groups = sum_groups(f, Xtr, err, ysd, live, seed=seed)
            if groups is not None:
                out.append(("sum", groups, model, hists, scaling))
            elif found is None:  # neither a sum nor a product: affine in a function of one?
                # (last: on a rough oracle many smooth laws look affine in some input)
                j = affine_input(f, Xtr, err, ysd, live, seed=seed)
                if j is not None:
                    late.append(("affine", j, model, hists, scaling))
    except (RuntimeError, ValueError, ArithmeticError, np.linalg.LinAlgError) as err:
        log.info("discover: structure tests failed: %s", err)
    return out + late


def _numeric_model(dataset, d, grid, refine_grid, seed, dtype, deadline, record_shares=False):
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
