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

from ..symbolic.formula import make_symbols
from ..symbolic.library import check_lib
from .result import DiscoveryResult
from .conditioning import Conditioning, _validated
from .loop import SearchLoop, numeric_model as _numeric_model, try_surrogate
from .select import _settled  # noqa: F401  (tests reach it here)
from .oracle import sharpen
from .prepared import Prepared
from .schedule import STRUCTURES, hidden_list

__all__ = ["discover", "DiscoveryResult"]

log = logging.getLogger("kanlab")


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
    if prep.dataset is None:
        return prep.constant_result(symbols, grid, seed, dtype, snap)
    if prep.const_cols.any():
        log.info("discover: constant column(s) %s carry no information and are ignored",
                 [symbols[i].name for i in np.nonzero(prep.const_cols)[0]])
    dataset = prep.dataset
    zs, back = prep.back(symbols)  # the standardized symbols, mapped back to the caller's

    stages = {k: 0.0 for k in ("train", "prune", "refine", "symbolic", "formula")}
    # a small numeric network first: the oracle of the structure tests, and its held-out error
    # is the noise floor that decides whether a formula's constants may be snapped
    t = time.perf_counter()
    sur = try_surrogate(dataset, d, int(seed), t_start + 0.25 * float(time_budget)) \
        if len(prep.ytr) >= 20 else None
    # a rough surrogate: a perceptron may follow the law closer, as the tests' oracle
    sur = sharpen(dataset, sur, int(seed), min(t_start + 0.25 * float(time_budget),
                                               time.perf_counter() + 0.1 * float(time_budget)))
    stages["surrogate"] = time.perf_counter() - t
    floor = (sur[2] * prep.ysd) ** 2 if sur is not None and math.isfinite(sur[2]) else None
    common = (dataset, d, grid, refine_grid, lamb, steps, lib, zs, back, symbols, prep.ysd,
              prep.yc, prep.Xtr, prep.ytr, prep.Xte, prep.yte, snap, record_shares, floor)
    loop = SearchLoop(prep, symbols, sur, floor, common, hidden_list(hidden, d), seed=seed,
                      time_budget=time_budget, t_start=t_start, r2_target=r2_target,
                      max_attempts=max_attempts, stages=stages)
    if algebraic:
        loop.algebraic_stage(snap, lib, algebraic)
    loop.run(workers, backend)
    best, pareto = loop.select(model_selection, selection_floor)
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
                  for a in loop.attempts],
        history=history,
        x_center=prep.xc, x_scale=prep.xs, y_center=prep.yc, y_scale=prep.ysd,
        constant_columns=prep.const_cols,
    )
