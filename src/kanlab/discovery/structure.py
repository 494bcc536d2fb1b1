"""Structure tests on a surrogate network and divide and conquer."""
from __future__ import annotations

import math
import time
from itertools import combinations

import numpy as np
import sympy
import torch

from ..model import KAN
from ..symbolic.formula import expression_size
from .cleanup import _finish
from .oracle import shown
from .result import _evaluate, _finite_between, _r2


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
    if h[0] == "sum":
        return "sum(" + " + ".join(",".join(symbols[i].name for i in g) for g in h[1]) + ")"
    if h[0] == "affine":
        return f"affine({symbols[h[1]].name})"
    if h[0] == "groups":
        from .groups import group_name
        return group_name(h, symbols)
    if h[0] == "reduce":
        from .symmetry import INVARIANTS
        return f"reduce({INVARIANTS[h[1]][0](symbols[h[2]], symbols[h[3]])})"
    kind, tname = h[0], h[4]
    if kind == "transform":
        return f"transform({tname})"
    groups = " | ".join(",".join(symbols[i].name for i in g) for g in h[1])
    return f"factors({groups}{'' if tname == 'id' else ', ' + tname}" \
        f"{', shift' if h[3] else ''})"


def _sub_discover(X, y, names, budget, seed, separable, opts, read=True):
    """A smaller search inside a structured attempt, with the caller's options (``lib``, grids,
    steps, dtype). Its target values may carry a surrogate's error (``read``: they were read
    off it), so it stops at R2 0.9995 and does not snap: the whole formula's constants are
    refitted and snapped on the data afterwards."""
    n = X.shape[1]
    from .search import discover  # the whole search, recursively

    hidden = [2 * n, 2 * n + 1, n + 2] if n > 1 else None
    if separable and n > 1:  # cheap next to a failed attempt, so first
        hidden = ["separable"] + hidden
    # its targets carry the surrogate's error, which a long series of terms would fit: a factor
    # gets short algebraic candidates only
    opts = dict(opts)
    if read and opts.get("algebraic", True):
        opts["algebraic"] = 4
    res = discover(X, y, var_names=names, time_budget=budget, seed=seed, hidden=hidden,
                   r2_target=0.9995, snap=False, max_attempts=3, numeric_model=False,
                   selection_floor=5e-4, **opts)
    return res.formula, res.variables


def _structured_attempt(dataset, h, seed, stages, symbols, ysd, yc, Xtr, ytr, Xte, yte, snap,
                        deadline, opts, floor=None):
    """Divide and conquer on a structure ``_product_groups`` found in the surrogate.

    ``("factors", groups, surrogate, delta, T)``: T(y) = delta + f_1(x_G1) * ... * f_m(x_Gm).
    Each factor's values on the training rows are read off the surrogate: with the other
    groups' inputs held at K reference rows, the (rows x K) table of T(surrogate) - delta is
    f_j(rows) times a per-reference constant, so its leading singular vector is f_j up to scale
    (averaging the surrogate's error over the K references). The last factor is read off the
    data instead, T(y) - delta divided by the other factors' formulas, where those follow
    their readings to the surrogate's error (:func:`_last_factor`): its sub-search then sees
    the law itself and gets the whole algebraic stage. Each factor is its own, smaller
    discovery (which may divide again), and T^-1(delta + c * product), delta and c by least
    squares, goes through the usual last stage on the data: constants refitted, then snapped.

    ``("transform", T)``: T(y) is a sum over groups of inputs, the sum networks' home ground:
    T(y) of the data itself is discovered, and T^-1 of its formula finishes as above."""
    kind, groups, surrogate, delta, tname, hists = h
    fwd, _, inverse = _TRANSFORMS[tname]
    sign = sympy.Integer(1 if float(np.mean(ytr)) >= 0 else -1)  # exact: no fitted 1.0
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
        exprs, vals, fits = [], [], []  # each factor's formula, its values, R2 on its reading
        # the largest group last: it is the hardest to read off the surrogate, and the last
        # factor may be read off the data divided by the others (p_d*Ef*t*sinc((w-w0)*t)/h:
        # the three one-input power laws first, then the factor of t, w, w0 off the data)
        groups = sorted(groups, key=len)
        for j, g in enumerate(groups):
            # the last factor off the data divided by the others' formulas, when they follow
            # the surrogate's readings to its own error; else, as the others, off the surrogate
            f = _last_factor(vals, fits, yt, delta, floor, ysd) \
                if j == len(groups) - 1 else None
            read = f is None
            if read:
                f = _factor_reading(surrogate, x, refs, g, ysd, yc, fwd, delta)
            # the factor's share of the time left; a sub-search's first attempt always returns
            # a formula (cut short at its deadline), so a late factor is rough, not missing
            budget = max(deadline - time.perf_counter(), 0.0) * len(g) / sum(map(len, groups[j:]))
            sub, sub_syms = _sub_discover(Xtr[:, list(g)], f, [names[i] for i in g],
                                          max(budget, 0.5), seed, True, opts, read)
            exprs.append(sub.xreplace({a: symbols[i] for a, i in zip(sub_syms, g)}))
            vals.append(_evaluate(exprs[-1], symbols, Xtr))
            fits.append(_r2(vals[-1], f))
        prod = sympy.Mul(*exprs)
        p = np.prod(vals, axis=0)
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
    # expanded, a product of long factors multiplies out into a formula of 10**4 nodes that
    # sympy then needs minutes to refit and print (bonus test_17: 375 s of a 60 s budget)
    if expression_size(expr) <= _EXPAND_MAX:
        expr = sympy.expand(expr)
    expr = _finish(expr, clean, symbols, Xtr, ytr, snap, deadline, floor)
    r2 = _r2(_evaluate(expr, symbols, Xte), yte)
    between_ok = _finite_between(expr, symbols, Xtr, ytr)
    stages["formula"] += time.perf_counter() - t
    return {"seed": seed, "hidden": _structure_name(h, symbols), "r2": r2,
            "between_ok": between_ok,
            "complexity": expression_size(expr), "formula": str(expr), "expr": expr,
            "model": shown(surrogate), "histories": hists,
            "width": [list(w) if w[1] else w[0] for w in surrogate.width]}


def _factor_reading(surrogate, x, refs, g, ysd, yc, fwd, delta):
    """Factor g's values on the training rows ``x`` read off the surrogate, up to scale: the
    leading singular vector of the (rows x references) table of T(surrogate) - delta with the
    other inputs held at each reference row."""
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
    return -f if f.mean() < 0 else f


def _last_factor(vals, fits, yt, delta, floor, ysd):
    """The last factor's values, up to scale, off the data: (T(y) - delta) divided by the
    product of the other factors' formulas (``vals``: their values on the rows). Only where each of those follows its reading to
    within the surrogate's error (R2 against it, ``floor`` the surrogate's squared error in
    y's units) and their product stays away from zero (it divides); else None. The data carry
    no surrogate error: the sub-search of ``(1 - cos(n*delta))/(1 - cos(delta))`` behind two
    exact one-input factors sees the law, not a network's rendering of it."""
    if not vals or floor is None or not fits:
        return None
    if min(fits) < 1.0 - max(_LAST_R2_SLACK * floor / ysd ** 2, 1e-10):
        return None
    p = np.prod(vals, axis=0)
    a = np.abs(p)
    if not np.all(np.isfinite(p)) or not (np.all(p > 0) or np.all(p < 0)) or \
            not a.min() >= _LAST_MIN_DIVISOR * a.max():
        return None
    with np.errstate(all="ignore"):
        f = (yt - delta) / p
    if not np.all(np.isfinite(f)):
        return None
    f = f / (np.std(f) or 1.0)
    return -f if f.mean() < 0 else f


# the other factors' formulas may miss their readings by this many times the surrogate's
# squared error, and their product must keep one sign and this share of its largest magnitude
# everywhere (three power laws of inputs in [1, 3], p_d*Ef/h, span 1/27: the 5% once asked
# for left III.9.52's factor of (t, w, w0) to the surrogate's rendering, and unfound)
_LAST_R2_SLACK, _LAST_MIN_DIVISOR = 4.0, 0.01
_EXPAND_MAX = 80  # nodes of a product that is multiplied out before its constants are refitted
_SEP_RATIO, _SEP_MAX_RMSE = 4.0, 3e-2
# ... and where that error is the data's noise (see _product_groups), with a tighter ratio:
# measured 0.40-0.61 for true products at noise of 3-10% of y's spread, 1.2-2.9 for false
# ones at 6% (0.86-1.67 at 10%, hence the cap)
_SEP_MAX_NOISY, _SEP_RATIO_NOISY = 0.08, 0.8
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


def _join_unless_split(live, splits):
    """The groups of ``live`` inputs, as sorted lists, in which two inputs share a group unless
    some split ``(S, passed)`` that passed the test puts one in S and the other outside."""
    return components(live, lambda i, j: not any(ok and ((i in S) != (j in S))
                                                 for S, ok in splits))


def components(nodes, joined):
    """The connected pieces of the graph on ``nodes`` whose edges are the pairs ``(i, j)`` with
    ``joined(i, j)``, each a list in ``nodes``' order, the pieces sorted."""
    parent = {i: i for i in nodes}

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i, j in combinations(nodes, 2):
        if joined(i, j):
            parent[root(j)] = root(i)
    groups: dict = {}
    for i in nodes:
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values())


def _surrogate(dataset, d, seed, deadline=math.inf, steps: int = 15):
    """A small KAN of the standardized data, fitted without sparsity and refined: the oracle
    of the structure tests (and, with ``steps=20``, of the group test on log|y|, see
    :func:`.groups.log_surrogate`). Returns (model, fit histories, held-out RMSE in units of
    y's spread); a RuntimeError when ``deadline`` passes first."""
    x = dataset["train_input"]
    model = KAN(width=[d, 2 * d + 1, 1], grid=5, k=3, seed=seed, dtype=x.dtype)
    # the thresholds below were calibrated on surrogates trained by plain L-BFGS (no bias
    # preconditioning); the defect ratios sit close enough to them that a surrogate ending
    # 2x more or less accurate flips borderline cases (tests/test_discover.py), so keep it
    plain = dict(opt="LBFGS", steps=steps, progress=False, spline_share_warning=0.0,
                 lbfgs_bias_scale=1.0)
    late = lambda *_: time.perf_counter() > deadline  # noqa: E731
    hists = [model.fit(dataset, callback=late, **plain)]
    model = model.refine(12, x=x)
    h = model.fit(dataset, update_grid=False, callback=late, **plain)
    if late():
        raise RuntimeError("no time left to train it (a quarter of the budget)")
    hists.append(h)
    hists[0]["stage"], hists[1]["stage"] = "surrogate", "surrogate_refine"
    err = h["test_loss"][-1] if h["test_loss"] else math.inf
    return model, hists, err


def _product_groups(dataset, d, const_cols, ysd, yc, seed, surrogate=None, noisy=False):
    """Finest grouping of the inputs over which y is a product ``f_1(x_G1) * f_2(x_G2) * ...``,
    or a constant plus one, ``delta + f_1(x_G1) * ...`` (AI Feynman's separability test, with a
    quickly trained KAN as the oracle). Returns ``(kind, groups, surrogate, delta, T,
    surrogate fit histories)`` for :func:`_structured_attempt`, or None. ``surrogate``: the
    result of :func:`_surrogate` when the caller has one.

    A split S | rest is multiplicative iff ``y(a_S, a_rest) y(b_S, b_rest) = y(a_S, b_rest)
    y(b_S, a_rest)`` for all pairs of points a, b. The surrogate (a small KAN fitted without
    sparsity, then refined) is evaluated on 256 random pairs of training rows and their
    swaps; the defect, in units of the target's spread and divided by the surrogate's own
    held-out error, is about 1 for a true product and 10 or more otherwise. Two inputs share a
    group unless some multiplicative split separates them. Only when no split is a plain
    product is a shift tried: ``y - delta`` has the defect of y minus ``delta * (y(a) + y(b) -
    y(a_S, b_rest) - y(b_S, a_rest))``, so each split has a least-squares delta (an additive y,
    whose second factor is zero, cannot pass this way).

    A surrogate rougher than ``_SEP_MAX_RMSE`` tells nothing, unless ``noisy``: the caller
    has seen a formula of another kind stop at about the same held-out error, so that error is
    the data's noise, not the surrogate's failure to follow the law (``x1*exp(-u)`` with noise
    at 6% of its spread: no split was ever tried). The surrogate then averages the noise out
    and still shows a plain product (up to ``_SEP_MAX_NOISY``); the shifted and transformed
    readings, with a constant fitted to the noise, are left out."""
    from itertools import combinations

    live = [i for i in range(d) if not const_cols[i]]
    if len(live) < 2 or len(live) > 8:
        return None
    x = dataset["train_input"]
    model, hists, err = surrogate if surrogate is not None else _surrogate(dataset, d, seed)
    plain_only = noisy and _SEP_MAX_RMSE <= err < _SEP_MAX_NOISY
    if not err < _SEP_MAX_RMSE and not plain_only:  # too rough an oracle to tell
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

    def partition(oks):  # together unless a product split parts them
        return _join_unless_split(live, [(S, ok) for (S, _, _), ok in zip(swaps, oks)])

    # a plain product of y first: no constant to choose, so the surest reading
    ratios = [ratio(0.0, fab, fba) for _, fab, fba in swaps]
    groups = partition([r < (_SEP_RATIO_NOISY if plain_only else _SEP_RATIO) for r in ratios])
    if len(groups) > 1:
        return ("factors", tuple(map(tuple, groups)), model, 0.0, "id", hists)
    if plain_only:
        return None
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

