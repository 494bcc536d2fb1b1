"""One KAN attempt: train, prune, refine, symbolic edges, formula."""
from __future__ import annotations

import logging
import math
import time

import sympy
import torch

from ..grid import adaptive_grid
from ..model import KAN
from ..prune import prune_by_spread
from ..splines import curve2coef
from ..symbolic.formula import expression_size
from .cleanup import _finish
from .result import _evaluate, _exact, _finite_between, _r2

log = logging.getLogger("kanlab")
_PRUNE_LAMB, _PRUNE_ENT = 2.0, 2.0


# the functions an attempt snaps to once the budget is spent (a tenth of the whole library's cost)
_QUICK_LIB = ("x", "x^2", "x^3", "exp", "sin", "tanh")


def _attempt(dataset, d, h, seed, grid, refine_grid, lamb, steps, lib, stages, zs, back, symbols,
             ysd, yc, Xtr, ytr, Xte, yte, snap, record_shares=False, deadline=math.inf,
             floor=None):
    dtype = dataset["train_input"].dtype
    t = time.perf_counter()
    if h == "mult":
        model = KAN(width=[d, [0, 1], 1], mult_arity=d, grid=grid, k=3, seed=seed, dtype=dtype)
    elif isinstance(h, list):  # several hidden layers
        model = KAN(width=[d, *[int(v) for v in h], 1], grid=grid, k=3, seed=seed, dtype=dtype)
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
    def hidden_nodes():
        return sum(w[0] for w in model.width[1:-1])

    for _ in range(2 if h != "mult" else 0):
        before = hidden_nodes()
        if before <= model.depth - 1:
            break
        histories.append(fit(steps=max(steps[0] // 2, 1), lamb=_PRUNE_LAMB * lamb,
                             lamb_entropy=_PRUNE_ENT, update_grid=False))
        model = prune_by_spread(model, dataset["train_input"])
        if hidden_nodes() == before:
            break
    _collapse_single_input_nodes(model, dataset["train_input"])
    stages["prune"] += time.perf_counter() - t

    t = time.perf_counter()
    model = model.refine(refine_grid, x=dataset["train_input"])
    histories.append(fit(steps=steps[1], update_grid=False))
    stages["refine"] += time.perf_counter() - t

    t = time.perf_counter()
    if t > deadline:  # the budget is spent: a rough formula from a few functions, in time
        quick = [n for n in _QUICK_LIB if lib is None or n in lib]
        lib = quick or lib
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
    # multiplied out, a deep network's formula can grow to 10**4 nodes, which takes sympy and
    # lambdify tens of seconds past the deadline (test_20 at noise 0.01: 19 s in one attempt)
    if expression_size(expr) <= _EXPAND_MAX and time.perf_counter() < deadline:
        expr = sympy.expand(expr)
    expr = _finish(expr, clean, symbols, Xtr, ytr, snap, deadline, floor)
    r2 = _r2(_evaluate(expr, symbols, Xte), yte)
    between_ok = _finite_between(expr, symbols, Xtr, ytr)
    stages["formula"] += time.perf_counter() - t
    return {"seed": seed, "hidden": h, "r2": r2, "between_ok": between_ok,
            "complexity": expression_size(expr),
            "formula": str(expr), "expr": expr, "model": model, "histories": histories,
            "width": [list(w) if w[1] else w[0] for w in model.width]}


_EXPAND_MAX = 300  # nodes of a network's formula past which it is not multiplied out


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


def _num(v: float) -> sympy.Expr:
    return _exact(v)
