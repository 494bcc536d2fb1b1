"""What discover returns, and the numeric helpers every stage shares."""
from __future__ import annotations

import math

import numpy as np
import sympy
import torch
from dataclasses import dataclass, field

from ..model import KAN


@dataclass
class DiscoveryResult:
    """What :func:`discover` found.

    Attributes:
        formula: sympy expression of the target in the given variables.
        r2: R2 of ``formula`` on the held-out split.
        complexity: number of nodes of the formula's expression tree.
        model: a KAN on standardized inputs and target (see ``x_center``...): the trained
            symbolic KAN whose formula this is (``model_kind == "symbolic"``), or a numeric
            network of the data (``"surrogate"``) when the formula came from the algebraic
            stage or from divide and conquer (``attempts[i]["hidden"]`` reads ``algebraic(...)``,
            ``factors(...)`` or ``transform(...)``): for a divide-and-conquer formula, the
            surrogate the structure was read from.
        model_kind: ``"symbolic"`` or ``"surrogate"``, as above.
        pareto: the complexity/held-out-loss Pareto front of all attempts' formulas, simplest
            first (by cost: nodes plus one per fitted float): dicts with complexity, cost,
            loss (held-out MSE), score (PySR's, per unit of cost), r2, formula,
            hidden (the attempt that found it); ``formula`` is the row ``model_selection`` chose.
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
    model_kind: str = "symbolic"
    pareto: list = field(default_factory=list)

    def predict(self, X) -> np.ndarray:
        """Evaluate the formula on (n, d) inputs."""
        X = np.asarray(X, dtype=np.float64)
        fn = sympy.lambdify(self.variables, self.formula, modules="numpy", dummify=True)
        with np.errstate(all="ignore"):
            out = fn(*[X[:, i] for i in range(X.shape[1])])
        return np.broadcast_to(np.asarray(out, dtype=np.float64), (X.shape[0],)).copy()

    def __repr__(self) -> str:
        return (f"DiscoveryResult(formula={self.formula}, r2={self.r2:.6g}, "
                f"complexity={self.complexity}, attempts={len(self.attempts)})")


def _as_array(a, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    message = f"{name} must be numeric (an array or tensor of numbers)"
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if np.iscomplexobj(arr):
        if np.any(arr.imag != 0):
            raise ValueError(f"{name} is complex: discovery needs real numbers (pass the real "
                             "and imaginary parts as separate columns)")
        arr = arr.real
    try:
        arr = np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    return arr


def minmax_scaling(X: np.ndarray):
    """Per column: center and half-range mapping the data to [-1, 1], and which columns are
    constant (their scale is set to 1). Returns ``(center, scale, constant)``."""
    lo, hi = X.min(0), X.max(0)
    center = (lo + hi) / 2
    half = (hi - lo) / 2
    # relative to the column's own magnitude only: a column of values ~1e-13 that vary is data
    constant = (half == 0) | (half <= 1e-12 * np.abs(center))
    return center, np.where(constant, 1.0, half), constant


def _r2(pred: np.ndarray, y: np.ndarray) -> float:
    if not np.all(np.isfinite(pred)):
        return -math.inf
    scale = float(np.max(np.abs(y))) if y.size else 0.0
    if math.isfinite(scale) and scale > 0 and not 1e-100 < scale < 1e100:
        pred, y = pred / scale, y / scale  # squares of huge or tiny targets over/underflow
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
    fn = sympy.lambdify(symbols, expr, modules="numpy", dummify=True)
    with np.errstate(all="ignore"):
        out = fn(*[X[:, i] for i in range(X.shape[1])])
    out = np.asarray(out)
    if np.iscomplexobj(out):
        out = np.where(np.abs(out.imag) < 1e-9 * (1 + np.abs(out.real)), out.real, np.nan)
    return np.broadcast_to(out.astype(np.float64), (X.shape[0],))


def _exact(v: float) -> sympy.Expr:
    """A data statistic as a sympy number: exact when it is a short decimal."""
    r = round(float(v), 10)
    if abs(r - v) <= 1e-12 * max(1.0, abs(v)):
        return sympy.nsimplify(r, rational=True) if abs(r) < 1e6 else sympy.Float(v, 15)
    return sympy.Float(v, 15)


