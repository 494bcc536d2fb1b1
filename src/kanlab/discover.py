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
from dataclasses import dataclass, field

import numpy as np
import sympy
import torch

from .model import KAN
from .grid import adaptive_grid
from .prune import prune_by_spread
from .splines import curve2coef
from .symbolic.formula import expression_size, make_symbols, tidy
from .symbolic.snap import refine_constants, snap_constants

__all__ = ["discover", "DiscoveryResult"]

log = logging.getLogger("kanlab")
_PRUNE_LAMB, _PRUNE_ENT = 2.0, 2.0


@dataclass
class DiscoveryResult:
    """What :func:`discover` found.

    Attributes:
        formula: sympy expression of the target in the given variables.
        r2: R2 of ``formula`` on the held-out split.
        complexity: number of nodes of the formula's expression tree.
        model: the trained symbolic KAN (it works on standardized inputs; see ``x_center``...);
            when the formula came from a divide-and-conquer attempt (``attempts[i]["hidden"]``
            reads ``factors(...)`` or ``transform(...)``), the numeric surrogate network the
            structure was read from, on the same standardized inputs and target.
        stages: seconds spent per stage, summed over attempts.
        variables: the sympy symbols of the inputs.
        attempts: one dict per attempt: seed, hidden, width, r2, complexity, formula (str),
            expr (sympy; absent for a failed attempt), between_ok (finite between the training
            points, see ``_finite_between``), seconds.
        x_center, x_scale, constant_columns: the input standardization the model works in
            (:func:`minmax_scaling`; constant columns are fed as 0).
        history: the fit histories of the chosen attempt's stages (train, pruning rounds,
            refine, symbolic), on standardized data; with ``record_shares`` each also has
            ``spline_share`` per step.
    """

    formula: sympy.Expr
    r2: float
    complexity: int
    model: KAN
    stages: dict
    variables: list
    attempts: list = field(default_factory=list)
    x_center: np.ndarray | None = None
    x_scale: np.ndarray | None = None
    y_center: float = 0.0
    y_scale: float = 1.0
    history: list = field(default_factory=list)
    constant_columns: np.ndarray | None = None

    def predict(self, X) -> np.ndarray:
        """Evaluate the formula on (n, d) inputs."""
        X = np.asarray(X, dtype=np.float64)
        fn = sympy.lambdify(self.variables, self.formula, modules="numpy")
        with np.errstate(all="ignore"):
            out = fn(*[X[:, i] for i in range(X.shape[1])])
        return np.broadcast_to(np.asarray(out, dtype=np.float64), (X.shape[0],)).copy()

    def __repr__(self) -> str:
        return (f"DiscoveryResult(formula={self.formula}, r2={self.r2:.6g}, "
                f"complexity={self.complexity}, attempts={len(self.attempts)})")


def _as_array(a, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric (an array or tensor of numbers)") from None
    return arr


def minmax_scaling(X: np.ndarray):
    """Per column: center and half-range mapping the data to [-1, 1], and which columns are
    constant (their scale is set to 1). Returns ``(center, scale, constant)``."""
    lo, hi = X.min(0), X.max(0)
    center = (lo + hi) / 2
    half = (hi - lo) / 2
    constant = half <= 1e-12 * np.maximum(np.abs(center), 1.0)
    return center, np.where(constant, 1.0, half), constant


def _r2(pred: np.ndarray, y: np.ndarray) -> float:
    if not np.all(np.isfinite(pred)):
        return -math.inf
    sst = float(np.sum((y - y.mean()) ** 2))
    sse = float(np.sum((pred - y) ** 2))
    if sst <= 0:
        return 1.0 if sse <= 1e-24 * max(1.0, float(np.sum(y * y))) else -math.inf
    return 1.0 - sse / sst


def _finite_between(expr, symbols, Xtr, ytr) -> bool:
    """Whether the formula stays finite, and within 100 times the data's spread, between the
    training points (2000 random points on segments joining random pairs of rows). A pole or
    the root of a negative number inside the data's hull may miss the held-out rows but not new
    data from the same range; such formulas rank below the others that miss ``r2_target``.
    (Not a hard rule: a true pole can sit in a gap of the data, 1/x on [-2,-1] and [1,2].)"""
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(Xtr), (2, 2000))
    t = rng.random((2000, 1))
    between = _evaluate(expr, symbols, Xtr[i] + t * (Xtr[j] - Xtr[i]))
    centre, spread = float(np.mean(ytr)), float(np.max(np.abs(ytr - np.mean(ytr))))
    return bool(np.all(np.isfinite(between)) and
                float(np.max(np.abs(between - centre))) <= 100.0 * spread + 1e-12)


def _evaluate(expr, symbols, X) -> np.ndarray:
    fn = sympy.lambdify(symbols, expr, modules="numpy")
    with np.errstate(all="ignore"):
        out = fn(*[X[:, i] for i in range(X.shape[1])])
    out = np.asarray(out)
    if np.iscomplexobj(out):
        out = np.where(np.abs(out.imag) < 1e-9 * (1 + np.abs(out.real)), out.real, np.nan)
    return np.broadcast_to(out.astype(np.float64), (X.shape[0],))


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
) -> DiscoveryResult:
    """Find a formula ``y = f(X)`` with a KAN.

    Args:
        X: (n, d) inputs (array, tensor or nested lists); any scale.
        y: (n,) or (n, 1) target.
        var_names: names of the d inputs (default ``x_1 ... x_d``).
        time_budget: seconds. No new attempt starts once it would likely overrun, and the running
            attempt cuts its training and constant snapping short at the deadline (the first
            attempt still returns a formula, possibly a rougher one).
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
            ``[2d, "separable", 2d+1, d+2]``; sparsity training and pruning remove what is
            not needed.
        grid, refine_grid: grid intervals for training and after pruning.
        lamb: sparsity regularization strength of the first training stage.
        steps: LBFGS steps of the train, refine and symbolic stages.
        r2_target: an attempt whose formula reaches this held-out R2 ends the search.
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

    Returns:
        :class:`DiscoveryResult`.
    """
    t_start = time.perf_counter()
    X = _as_array(X, "X")
    y = _as_array(y, "y")
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (n_samples, n_features), got shape {X.shape}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"y must have shape (n,) or (n, 1), got {y.shape}")
    n, d = X.shape
    if n != y.shape[0]:
        raise ValueError(f"X has {n} rows but y has {y.shape[0]}: they must match")
    if n < 10:
        raise ValueError(f"discover() needs at least 10 samples, got {n}")
    if d < 1:
        raise ValueError("X has no columns")
    if not np.all(np.isfinite(X)) or not np.all(np.isfinite(y)):
        raise ValueError("X and y must be finite: remove or impute rows with NaN/Inf first")
    if not 0.0 < float(test_size) < 0.9:
        raise ValueError(f"test_size must be in (0, 0.9), got {test_size}")
    if not float(time_budget) > 0:
        raise ValueError(f"time_budget must be positive, got {time_budget}")
    from .parallel import check_backend

    check_backend(backend, workers)
    if var_names is not None and (isinstance(var_names, str) or len(list(var_names)) != d):
        raise ValueError(f"var_names needs {d} names (one per column of X), got {var_names!r}")
    symbols = make_symbols(d, var_names)
    if var_names is not None and len({s.name for s in symbols}) != d:
        raise ValueError(f"var_names must be distinct, got {list(var_names)}")

    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_test = max(1, int(round(n * test_size)))
    te, tr = perm[:n_test], perm[n_test:]
    Xtr, ytr, Xte, yte = X[tr], y[tr], X[te], y[te]

    # standardize: inputs to about [-1, 1], target to zero mean and unit spread
    xc, xs, const_cols = minmax_scaling(Xtr)
    yc, ysd = float(ytr.mean()), float(ytr.std())
    if not ysd > 0:
        expr = sympy.Float(yc, 15)
        expr = snap_constants(expr, symbols, Xtr, ytr) if snap else expr
        r2 = _r2(_evaluate(expr, symbols, Xte), yte)
        model = KAN(width=[d, 1], grid=grid, seed=seed, dtype=dtype)
        return DiscoveryResult(expr, r2, expression_size(expr), model, {}, symbols, [],
                               xc, xs, yc, 1.0, constant_columns=const_cols)
    if const_cols.any():
        log.info("discover: constant column(s) %s carry no information and are ignored",
                 [symbols[i].name for i in np.nonzero(const_cols)[0]])
    to_t = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    xtr_s = (Xtr - xc) / xs
    xtr_s[:, const_cols] = 0.0
    xte_s = (Xte - xc) / xs
    xte_s[:, const_cols] = 0.0
    dataset = dict(train_input=to_t(xtr_s), train_label=to_t((ytr - yc) / ysd)[:, None],
                   test_input=to_t(xte_s), test_label=to_t((yte - yc) / ysd)[:, None])
    # the standardized symbols, mapped back to the caller's variables
    back = {}
    zs = make_symbols(d, [f"_z{i}" for i in range(d)])
    for i in range(d):
        back[zs[i]] = sympy.Integer(0) if const_cols[i] else (symbols[i] - _exact(xc[i])) / _exact(xs[i])

    if hidden is None:  # wide enough to train reliably; sparsity and pruning find the shape
        hidden = [2 * d, "separable", 2 * d + 1, d + 2] if d > 1 else [2, 3]
    elif isinstance(hidden, (int, str)):
        hidden = [hidden]
    hidden = list(hidden)
    if not hidden or any(not (h in ("mult", "separable") or
                              (isinstance(h, (int, np.integer)) and h >= 1)) for h in hidden):
        raise ValueError(f"hidden must list positive ints, 'mult' or 'separable', got {hidden}")
    if d == 1 or "separable" not in hidden:
        hidden = [h for h in hidden if h != "separable"] or [2, 3]

    stages = {k: 0.0 for k in ("train", "prune", "refine", "symbolic", "formula")}
    common = (dataset, d, grid, refine_grid, lamb, steps, lib, zs, back, symbols, ysd, yc, Xtr,
              ytr, Xte, yte, snap, record_shares)
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
            try:
                found = _product_groups(dataset, d, const_cols, ysd, yc, seed)
            except (RuntimeError, ValueError, ArithmeticError, np.linalg.LinAlgError) as err:
                log.info("discover: separability test failed: %s", err)
                found = None
            stages["separability"] = stages.get("separability", 0.0) + time.perf_counter() - t
            i = lst.index("separable")
            if found is None:
                log.info("discover: y does not factor into products of variable groups")
                lst = lst[:i] + lst[i + 1:] or [2 * d]
            else:
                log.info("discover: structure found: %s", shape_name(found))
                lst = lst[:i] + [found] + lst[i + 1:]
                if all(isinstance(e, tuple) or e == "separable" for e in lst):
                    lst.append(2 * d)  # a plain network too, should the structure fail
            shapes["list"] = lst
        return lst[a % len(lst)]

    def shape_name(h):
        return _structure_name(h, symbols) if isinstance(h, tuple) else h

    def record(a, out):
        """Fold attempt ``a``'s outcome into attempts/best, in attempt order (as the serial
        loop does, so parallel runs choose what the serial run would)."""
        nonlocal best
        res, err, dt, st = out
        for k, v in st.items():
            stages[k] += v
        h, s = shape_name(shape(a)), int(seed) + a
        if res is None:
            log.info("discover: attempt %d (seed %d, hidden %s) failed: %s", a, s, h, err)
            attempts.append({"seed": s, "hidden": h, "r2": -math.inf, "complexity": 0,
                             "formula": None, "seconds": dt})
            return
        res["seconds"] = dt
        attempts.append(res)
        log.info("discover: attempt %d seed %d hidden %s: r2=%.6g size=%d  %s (%.1fs)",
                 a, s, h, res["r2"], res["complexity"], res["formula"], dt)
        key = (res["r2"] >= r2_target, res.get("between_ok", True),
               res["r2"] if res["r2"] < r2_target else 0.0,
               -res["complexity"])
        if best is None or key > best["key"]:
            best = {**res, "key": key}

    def go_on(n_started):
        """Whether the serial loop would start attempt number ``n_started``."""
        if not attempts:
            return True
        if best is not None and best["r2"] >= r2_target:
            return False
        if max_attempts is not None and n_started >= max_attempts:
            return False
        mean = sum(a["seconds"] for a in attempts) / len(attempts)
        return time.perf_counter() - t_start + mean <= time_budget

    def job(a):
        remaining = t_start + float(time_budget) - time.perf_counter()
        h = shape(a)
        remaining = t_start + float(time_budget) - time.perf_counter()  # after any resolving
        return (a, h, int(seed) + a, remaining, common)

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
    return DiscoveryResult(
        formula=best["expr"], r2=best["r2"], complexity=best["complexity"], model=best["model"],
        stages=stages, variables=symbols,
        attempts=[{k: v for k, v in a.items() if k not in ("model", "histories")}
                  for a in attempts],
        history=best["histories"],
        x_center=xc, x_scale=xs, y_center=yc, y_scale=ysd, constant_columns=const_cols,
    )


def _attempt_job(job):
    """One attempt in this process or a worker: (index, (result, error, seconds, stages))."""
    a, h, s, remaining, common = job
    (dataset, d, grid, refine_grid, lamb, steps, lib, zs, back, symbols, ysd, yc, Xtr, ytr, Xte,
     yte, snap, record_shares) = common
    st = {k: 0.0 for k in ("train", "prune", "refine", "symbolic", "formula")}
    t0 = time.perf_counter()
    try:
        deadline = t0 + max(remaining, 0.0)
        if isinstance(h, tuple):
            opts = dict(lib=lib, grid=grid, refine_grid=refine_grid, lamb=lamb, steps=steps,
                        dtype=dataset["train_input"].dtype)
            res = _structured_attempt(dataset, h, s, st, symbols, ysd, yc, Xtr, ytr, Xte, yte,
                                      snap, deadline, opts)
        else:
            res = _attempt(dataset, d, h, s, grid, refine_grid, lamb, steps, lib, st, zs, back,
                           symbols, ysd, yc, Xtr, ytr, Xte, yte, snap, record_shares,
                           deadline=deadline)
        err = None
    except (RuntimeError, ValueError, ArithmeticError) as e:  # keep searching
        res, err = None, f"{type(e).__name__}: {e}"
    return a, (res, err, time.perf_counter() - t0, st)


def _run_parallel(job, go_on, record, workers, backend, max_attempts):
    """Attempts 0, 1, ... on ``workers`` processes (or Ray), at most ``workers`` in flight;
    outcomes are folded in attempt order and nothing starts once the serial loop would stop.
    Attempts running past that point are dropped, so the chosen formula is the serial one."""
    done: dict = {}
    nxt = 0  # next attempt to record
    started = 0

    def fold():
        nonlocal nxt
        while nxt in done:
            record(nxt, done.pop(nxt))
            nxt += 1

    if backend == "ray":
        import ray

        own = not ray.is_initialized()
        if own:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        try:
            remote = ray.remote(num_cpus=1)(_attempt_job)
            pending = []
            while True:
                while len(pending) < workers and started < max_attempts and go_on(started):
                    pending.append(remote.remote(job(started)))
                    started += 1
                if not pending:
                    break
                ready, pending = ray.wait(pending, num_returns=1)
                a, out = ray.get(ready[0])
                done[a] = out
                fold()
                if not go_on(nxt):
                    for ref in pending:
                        ray.cancel(ref, force=True)
                    break
        finally:
            if own:
                ray.shutdown()
        return

    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from .parallel import _init_worker, _mp_context, _single_thread_env

    with _single_thread_env():
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context(),
                                   initializer=_init_worker)
    try:
        pending = set()
        while True:
            while len(pending) < workers and started < max_attempts and go_on(started):
                pending.add(pool.submit(_attempt_job, job(started)))
                started += 1
            if not pending:
                break
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                a, out = f.result()
                done[a] = out
            fold()
            if not go_on(nxt):
                # the serial loop would stop here: what is still running is not needed
                for f in pending:
                    f.cancel()
                break
    finally:
        # attempts still running are not needed (the serial search would not have run them):
        # stop their processes instead of letting them compete with the caller for the cores
        procs = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)


def _exact(v: float) -> sympy.Expr:
    """A data statistic as a sympy number: exact when it is a short decimal."""
    r = round(float(v), 10)
    if abs(r - v) <= 1e-12 * max(1.0, abs(v)):
        return sympy.nsimplify(r, rational=True) if abs(r) < 1e6 else sympy.Float(v, 15)
    return sympy.Float(v, 15)


def _attempt(dataset, d, h, seed, grid, refine_grid, lamb, steps, lib, stages, zs, back, symbols,
             ysd, yc, Xtr, ytr, Xte, yte, snap, record_shares=False, deadline=math.inf):
    dtype = dataset["train_input"].dtype
    t = time.perf_counter()
    if h == "mult":
        model = KAN(width=[d, [0, 1], 1], mult_arity=d, grid=grid, k=3, seed=seed, dtype=dtype)
    else:
        model = KAN(width=[d, int(h), 1], grid=grid, k=3, seed=seed, dtype=dtype)
    def over(*_):  # stops a fit once the time budget is spent
        return time.perf_counter() > deadline

    def fit(**kw):  # every stage: LBFGS, no bar, stops at the deadline, shares when asked
        return model.fit(dataset, opt="LBFGS", progress=False, callback=over,
                         track_shares=record_shares, spline_share_warning=0.0, **kw)

    histories = [fit(steps=steps[0], lamb=lamb)]
    stages["train"] += time.perf_counter() - t

    # prune, then keep training the smaller network with sparsity and prune again while it
    # still shrinks: one long regularized run rarely converges to the sparsest shape
    t = time.perf_counter()
    model = prune_by_spread(model, dataset["train_input"])
    for _ in range(2 if h != "mult" else 0):
        before = model.width[1][0]
        if before == 1:
            break
        histories.append(fit(steps=max(steps[0] // 2, 1), lamb=_PRUNE_LAMB * lamb,
                             lamb_entropy=_PRUNE_ENT, update_grid=False))
        model = prune_by_spread(model, dataset["train_input"])
        if model.width[1][0] == before:
            break
    _collapse_single_input_nodes(model, dataset["train_input"])
    stages["prune"] += time.perf_counter() - t

    t = time.perf_counter()
    model = model.refine(refine_grid, x=dataset["train_input"])
    histories.append(fit(steps=steps[1], update_grid=False))
    stages["refine"] += time.perf_counter() - t

    t = time.perf_counter()
    fixed = model.auto_symbolic(lib=lib, verbose=0, x=dataset["train_input"])
    log.debug("discover: width %s, edges %s", model.width, fixed)
    hist = fit(steps=steps[2], update_grid=False)
    histories.append(hist)
    stages["symbolic"] += time.perf_counter() - t
    # on standardized data: a symbolic network this far off will not give an exact formula, so
    # spend no time snapping its constants (the time goes to the next attempt instead)
    clean = bool(hist["test_loss"]) and hist["test_loss"][-1] < 1e-2

    t = time.perf_counter()
    (expr_z,), _ = model.symbolic_formula(var=zs, simplify=False)
    expr = _num(ysd) * expr_z.xreplace(back) + _num(yc)
    expr = _finish(sympy.expand(expr), clean, symbols, Xtr, ytr, snap, deadline)
    r2 = _r2(_evaluate(expr, symbols, Xte), yte)
    between_ok = _finite_between(expr, symbols, Xtr, ytr)
    stages["formula"] += time.perf_counter() - t
    return {"seed": seed, "hidden": h, "r2": r2, "between_ok": between_ok,
            "complexity": expression_size(expr),
            "formula": str(expr), "expr": expr, "model": model, "histories": histories,
            "width": [list(w) if w[1] else w[0] for w in model.width]}


def _finish(expr, clean, symbols, Xtr, ytr, snap, deadline):
    """A candidate formula's last stage: constants refitted by least squares on the data, then
    snapped to simple exact values when the formula is (nearly) exact, else tidied."""
    if clean and time.perf_counter() < deadline:
        expr = refine_constants(expr, symbols, Xtr, ytr)
        # snapping constants of a formula that is not (nearly) exact only dresses up its error
        if snap and _r2(_evaluate(expr, symbols, Xtr), ytr) >= 1 - 1e-6:
            forms = [expr]
            if expr.has(sympy.atanh, sympy.asinh, sympy.acosh):
                # inverse hyperbolics are logs in disguise (exp(-2*atanh(u)) = (1-u)/(1+u)):
                # written as logs, exp/log pairs cancel and the constants become snappable
                forms.append(_logs(expr))
            best_form = None
            for form in forms:
                if time.perf_counter() > deadline:
                    break
                cand = snap_constants(form, symbols, Xtr, ytr, deadline=deadline)
                key = (_r2(_evaluate(cand, symbols, Xtr), ytr) >= 1 - 1e-9, -expression_size(cand))
                if best_form is None or key > best_form[0]:
                    best_form = (key, cand)
            expr = best_form[1] if best_form is not None else expr
        elif time.perf_counter() < deadline:
            expr = tidy(expr)
    return expr


def _pull_scales(expr):
    """Scale factors out of powers of sums: ``(a*X + b*Y)**e -> |a|**e * (X + b/a*Y)**e`` (a the
    largest float coefficient). An assembled formula multiplies scales from several sub-searches
    (each factor's, the product's, the transform's); pulled out, they merge into one coefficient
    and the ratios left inside are the simple numbers that constant snapping can find."""
    def pull(e):
        parts = [t.as_coeff_Mul() for t in e.base.args]
        lead = max(range(len(parts)), key=lambda i: abs(float(parts[i][0])))
        k = parts[lead][0]
        if not k.is_Float or k == 0:
            return e
        # the leading term's coefficient becomes an exact +-1, not a float 1.0: a float there
        # would be one more free constant, redundant with the pulled-out scale, and refitting
        # would spread the scale over both again
        terms = [(sympy.sign(c) if i == lead else c / abs(k)) * rest
                 for i, (c, rest) in enumerate(parts)]
        return abs(k) ** e.exp * sympy.Pow(sympy.Add(*terms), e.exp)

    try:
        return expr.replace(lambda e: isinstance(e, sympy.Pow) and isinstance(e.base, sympy.Add)
                            and e.exp.is_number, pull)
    except Exception:  # pragma: no cover - sympy internals; the formula stays as it was
        return expr


def _structure_name(h, symbols) -> str:
    kind, tname = h[0], h[4]
    if kind == "transform":
        return f"transform({tname})"
    groups = " | ".join(",".join(symbols[i].name for i in g) for g in h[1])
    return f"factors({groups}{'' if tname == 'id' else ', ' + tname}" \
        f"{', shift' if h[3] else ''})"


def _sub_discover(X, y, names, budget, seed, separable, opts):
    """A smaller search inside a structured attempt, with the caller's options (``lib``, grids,
    steps, dtype). Its target values may carry a surrogate's error, so it stops at R2 0.9995
    and does not snap: the whole formula's constants are refitted and snapped on the data
    afterwards."""
    n = X.shape[1]
    hidden = [2 * n, 2 * n + 1, n + 2] if n > 1 else None
    if separable and n > 1:  # cheap next to a failed attempt, so first
        hidden = ["separable"] + hidden
    res = discover(X, y, var_names=names, time_budget=budget, seed=seed, hidden=hidden,
                   r2_target=0.9995, snap=False, max_attempts=3, **opts)
    return res.formula, res.variables


def _structured_attempt(dataset, h, seed, stages, symbols, ysd, yc, Xtr, ytr, Xte, yte, snap,
                        deadline, opts):
    """Divide and conquer on a structure ``_product_groups`` found in the surrogate.

    ``("factors", groups, surrogate, delta, T)``: T(y) = delta + f_1(x_G1) * ... * f_m(x_Gm).
    Each factor's values on the training rows are read off the surrogate: with the other
    groups' inputs held at K reference rows, the (rows x K) table of T(surrogate) - delta is
    f_j(rows) times a per-reference constant, so its leading singular vector is f_j up to scale
    (averaging the surrogate's error over the K references). Each factor is its own, smaller
    discovery (which may divide again), and T^-1(delta + c * product), delta and c by least
    squares, goes through the usual last stage on the data: constants refitted, then snapped.

    ``("transform", T)``: T(y) is a sum over groups of inputs, the sum networks' home ground:
    T(y) of the data itself is discovered, and T^-1 of its formula finishes as above."""
    kind, groups, surrogate, delta, tname, hists = h
    fwd, _, inverse = _TRANSFORMS[tname]
    sign = 1.0 if float(np.mean(ytr)) >= 0 else -1.0
    names = [s.name for s in symbols]
    t = time.perf_counter()
    with np.errstate(all="ignore"):
        yt = fwd(ytr)
    if not np.all(np.isfinite(yt)):
        raise ValueError(f"the transform {tname} is not finite on the data")
    if kind == "transform":
        budget = max(deadline - time.perf_counter(), 0.0)
        expr_t, sub_syms = _sub_discover(Xtr, yt, names, max(budget, 0.5), seed, False, opts)
        expr = inverse(expr_t.xreplace(dict(zip(sub_syms, symbols))), sign)
    else:
        x = dataset["train_input"]
        rng = np.random.default_rng(seed)
        refs = x[torch.as_tensor(rng.integers(0, x.shape[0], 24))]
        exprs = []
        for j, g in enumerate(groups):
            cols = torch.as_tensor(list(g))
            table = np.empty((x.shape[0], len(refs)))  # (rows, K): f_j(rows) F(refs)
            with torch.no_grad():
                for k, ref in enumerate(refs):  # one reference at a time: memory of one pass
                    z = ref.repeat(x.shape[0], 1)
                    z[:, cols] = x[:, cols]
                    raw = surrogate(z)[:, 0].double() * ysd + yc
                    table[:, k] = (fwd(raw) - delta).numpy()
            if not np.all(np.isfinite(table)):
                raise ValueError("the surrogate leaves the transform's domain off the data")
            u, sv, _ = np.linalg.svd(table, full_matrices=False)
            f = u[:, 0] * sv[0]
            f = f / (np.std(f) or 1.0)
            if f.mean() < 0:
                f = -f
            # the factor's share of the time left; a sub-search's first attempt always returns
            # a formula (cut short at its deadline), so a late factor is rough, not missing
            budget = max(deadline - time.perf_counter(), 0.0) * len(g) / sum(map(len, groups[j:]))
            sub, sub_syms = _sub_discover(Xtr[:, list(g)], f, [names[i] for i in g],
                                          max(budget, 0.5), seed, True, opts)
            exprs.append(sub.xreplace({a: symbols[i] for a, i in zip(sub_syms, g)}))
        prod = sympy.Mul(*exprs)
        p = _evaluate(prod, symbols, Xtr)
        ok = np.isfinite(p) & np.isfinite(yt)
        if delta:  # T(y) = shift + c * product, both by least squares
            (shift, c), *_ = np.linalg.lstsq(np.column_stack([np.ones(ok.sum()), p[ok]]),
                                             yt[ok], rcond=None)
            expr_t = sympy.Float(float(shift), 15) + sympy.Float(float(c), 15) * prod
        else:
            c = float(np.dot(p[ok], yt[ok]) / max(np.dot(p[ok], p[ok]), 1e-300))
            expr_t = sympy.Float(c, 15) * prod
        expr = inverse(expr_t, sign)
    stages["train"] += time.perf_counter() - t
    t = time.perf_counter()
    expr = _pull_scales(expr)
    clean = _r2(_evaluate(expr, symbols, Xtr), ytr) > 0.99  # worth refitting its constants
    expr = _finish(sympy.expand(expr), clean, symbols, Xtr, ytr, snap, deadline)
    r2 = _r2(_evaluate(expr, symbols, Xte), yte)
    between_ok = _finite_between(expr, symbols, Xtr, ytr)
    stages["formula"] += time.perf_counter() - t
    return {"seed": seed, "hidden": _structure_name(h, symbols), "r2": r2,
            "between_ok": between_ok,
            "complexity": expression_size(expr), "formula": str(expr), "expr": expr,
            "model": surrogate, "histories": hists,
            "width": [list(w) if w[1] else w[0] for w in surrogate.width]}


_SEP_RATIO, _SEP_MAX_RMSE = 4.0, 3e-2
# a shifted (or transformed) product has a fitted constant, so it must fit closer: true ones
# measured 0.8, a sum read as (x0+x1+x2+3)**2 + 144 ~ product measured 3.0-3.5
_SEP_RATIO_SHIFT = 2.0
# target transforms T for the separability test: (T on tensors and arrays, dT/dy on tensors,
# inverse as sympy of (e, sign)), the invertible ones among AI Feynman's
_TRANSFORMS = {
    "id": (lambda y: y, lambda y: torch.ones_like(y), lambda e, sg: e),
    "inv": (lambda y: 1.0 / y, lambda y: -1.0 / y ** 2, lambda e, sg: 1 / e),
    "inv2": (lambda y: y ** -2.0, lambda y: -2.0 * y ** -3.0, lambda e, sg: sg / sympy.sqrt(e)),
    "sq": (lambda y: y ** 2, lambda y: 2.0 * y, lambda e, sg: sg * sympy.sqrt(e)),
    "sin": (lambda y: torch.sin(y) if torch.is_tensor(y) else np.sin(y), torch.cos,
            lambda e, sg: sympy.asin(e)),
}


def _product_groups(dataset, d, const_cols, ysd, yc, seed):
    """Finest grouping of the inputs over which y is a product ``f_1(x_G1) * f_2(x_G2) * ...``,
    or a constant plus one, ``delta + f_1(x_G1) * ...`` (AI Feynman's separability test, with a
    quickly trained KAN as the oracle). Returns ``(kind, groups, surrogate, delta, T,
    surrogate fit histories)`` for :func:`_structured_attempt`, or None.

    A split S | rest is multiplicative iff ``y(a_S, a_rest) y(b_S, b_rest) = y(a_S, b_rest)
    y(b_S, a_rest)`` for all pairs of points a, b. The surrogate (a small KAN fitted without
    sparsity, then refined) is evaluated on 256 random pairs of training rows and their
    swaps; the defect, in units of the target's spread and divided by the surrogate's own
    held-out error, is about 1 for a true product and 10 or more otherwise. Two inputs share a
    group unless some multiplicative split separates them. Only when no split is a plain
    product is a shift tried: ``y - delta`` has the defect of y minus ``delta * (y(a) + y(b) -
    y(a_S, b_rest) - y(b_S, a_rest))``, so each split has a least-squares delta (an additive y,
    whose second factor is zero, cannot pass this way)."""
    from itertools import combinations

    live = [i for i in range(d) if not const_cols[i]]
    if len(live) < 2 or len(live) > 8:
        return None
    x = dataset["train_input"]
    model = KAN(width=[d, 2 * d + 1, 1], grid=5, k=3, seed=seed, dtype=x.dtype)
    # the thresholds below were calibrated on surrogates trained by plain L-BFGS (no bias
    # preconditioning); the defect ratios sit close enough to them that a surrogate ending
    # 2x more or less accurate flips borderline cases (tests/test_discover.py), so keep it
    plain = dict(opt="LBFGS", steps=15, progress=False, spline_share_warning=0.0,
                 lbfgs_bias_scale=1.0)
    hists = [model.fit(dataset, **plain)]
    model = model.refine(12, x=x)
    h = model.fit(dataset, update_grid=False, **plain)
    hists.append(h)
    hists[0]["stage"], hists[1]["stage"] = "surrogate", "surrogate_refine"
    err = h["test_loss"][-1] if h["test_loss"] else math.inf
    if not err < _SEP_MAX_RMSE:  # too rough an oracle to tell
        return None
    rng = np.random.default_rng(seed)
    xa = x[torch.as_tensor(rng.integers(0, x.shape[0], 256))]
    xb = x[torch.as_tensor(rng.integers(0, x.shape[0], 256))]

    @torch.no_grad()
    def f(z):  # the surrogate on the caller's scale of y (a product is not one after centering)
        return model(z)[:, 0].double() * ysd + yc

    fa, fb = f(xa), f(xb)
    swaps = []  # (split, f(a_S, b_rest), f(b_S, a_rest))
    for r in range(1, len(live)):
        for S in combinations(live, r):
            if S[0] != live[0]:
                continue  # each split once
            m = torch.zeros(d, dtype=torch.bool)
            m[list(S)] = True
            swaps.append((set(S), f(torch.where(m, xa, xb)), f(torch.where(m, xb, xa))))

    def ratio(delta, fab, fba):
        """Product defect of y - delta on one split, in units of the surrogate's error."""
        scale = 2.0 * float(torch.cat([fa, fb]).sub(delta).square().mean().sqrt()) * ysd
        defect = (fa - delta) * (fb - delta) - (fab - delta) * (fba - delta)
        return float(defect.square().mean().sqrt()) / max(scale, 1e-300) / max(err, 1e-6)

    def partition(oks):
        parent = list(range(d))

        def root(i):
            while parent[i] != i:
                i = parent[i]
            return i

        for i, j in combinations(live, 2):  # together unless a product split parts them
            if not any(ok and ((i in S) != (j in S)) for (S, _, _), ok in zip(swaps, oks)):
                parent[root(j)] = root(i)
        groups: dict = {}
        for i in live:
            groups.setdefault(root(i), []).append(i)
        return sorted(groups.values())

    # a plain product of y first: no constant to choose, so the surest reading
    ratios = [ratio(0.0, fab, fba) for _, fab, fba in swaps]
    groups = partition([r < _SEP_RATIO for r in ratios])
    if len(groups) > 1:
        return ("factors", tuple(map(tuple, groups)), model, 0.0, "id", hists)
    # else: a constant plus a product of T(y), or a sum of T(y), for T = 1/y, 1/y**2, y**2 or
    # sin: the reading whose best split fits best (1/sqrt(1 - v**2/c**2): 1/y**2 = 1 - v**2 * c**-2)
    best, key = None, _SEP_RATIO
    for name, (fwd, deriv, _) in _TRANSFORMS.items():
        ta, tb = fwd(fa), fwd(fb)
        both = torch.cat([fa, fb])
        if name == "sin":  # asin(n*sin(t)): sin is invertible while |y| < pi/2, and only
            # worth trying where it bends (for small y, sin y is y)
            if not 0.3 < float(both.abs().max()) <= 1.5:
                continue
        elif name != "id":
            if not (both.min() > 0 or both.max() < 0) or \
                    float(both.abs().min()) < 0.05 * float(both.abs().max()):
                continue  # T must be smooth and invertible on the data's range of y
        noise = 2.0 * float(deriv(torch.cat([fa, fb])).abs().square().mean().sqrt()) * ysd * \
            max(err, 1e-6)
        tswaps = [(S, fwd(fab), fwd(fba)) for S, fab, fba in swaps]
        for S, tab_, tba in tswaps:
            A = ta + tb - tab_ - tba
            if name != "id":  # T(y) a sum over this split: for the sum networks, after T
                r = float(A.square().mean().sqrt()) / max(noise, 1e-300)
                if r < key:
                    best, key = ("transform", name), r
            # a shift shows as A = T(a) + T(b) - T(a_S, b_rest) - T(b_S, a_rest) well above the
            # noise (A is the product part's own swap sum); for a sum T(y), A is pure noise and
            # its least-squares delta a huge number that would make every split "pass"
            if float(A.square().mean().sqrt()) < 10.0 * noise:
                continue
            delta = float(((ta * tb - tab_ * tba) * A).sum()) / float(A.square().sum())
            if abs(delta) > 3.0 * float(torch.cat([ta, tb]).abs().max()):
                continue
            scale = float(torch.cat([ta, tb]).sub(delta).square().mean().sqrt())
            oks = []
            for _, u, v in tswaps:
                defect = (ta - delta) * (tb - delta) - (u - delta) * (v - delta)
                oks.append(float(defect.square().mean().sqrt()) / max(scale * noise, 1e-300))
            r = float(((ta - delta) * (tb - delta) - (tab_ - delta) * (tba - delta))
                      .square().mean().sqrt()) / max(scale * noise, 1e-300)
            groups = partition([o < _SEP_RATIO_SHIFT for o in oks])
            if len(groups) > 1 and r < min(key, _SEP_RATIO_SHIFT):
                best, key = ("factors", tuple(map(tuple, groups)), model, delta, name, hists), r
    if best is not None and best[0] == "transform":
        best = ("transform", None, model, None, best[1], hists)
    return best


@torch.no_grad()
def _collapse_single_input_nodes(model, x) -> None:
    """A hidden node fed by one input computes F(phi(x_i)): any invertible warp phi fits, so the
    two edges rarely read as clean functions. Make phi the identity (an exact 'x' edge) and let
    the outgoing edges learn the composite F(phi(x_i)) directly in the refine stage."""
    if model.depth != 2 or any(w[1] for w in model.width):
        return
    first, second = model.act_fun
    acts = model.layer_inputs(x)
    for n in range(model.width_in[1]):
        ins = (first.mask[:, n] != 0).nonzero().flatten().tolist()
        if len(ins) != 1 or model.symbolic_fun[0].mask[n].any():
            continue
        i = ins[0]
        outs = torch.arange(model.width_out[2], device=x.device)
        # what the outgoing edges compute on the data, as functions of x_i
        target = second.edge_values(acts[1], torch.full_like(outs, n), outs)  # (batch, out)
        model.fix_symbolic(0, i, n, "x", fit_params=False)
        if first.bias is not None:
            first.bias[n] = 0.0
        xi = acts[0][:, i]
        grid = adaptive_grid(xi[:, None], second.num, second.k, second.grid_eps)
        second.grid[n] = grid[0]
        second.coef[n] = curve2coef(xi[:, None], target[:, None, :], grid, second.k)[0]
        second.scale_base[n] = 0.0
        second.scale_sp[n] = 1.0


def _logs(expr):
    """``expr`` with inverse hyperbolic functions written as logs, exp/log pairs merged."""
    try:
        e = expr.rewrite(sympy.log)
        return sympy.powsimp(sympy.expand_log(sympy.expand(e), force=True), combine="exp")
    except Exception:  # pragma: no cover - sympy internals
        return expr


def _num(v: float) -> sympy.Expr:
    return _exact(v)
