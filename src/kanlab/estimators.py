"""scikit-learn estimators: :class:`KANRegressor` (symbolic regression) and :class:`KANClassifier`.

Both follow scikit-learn's conventions (parameters stored untouched by ``__init__``, learned
state in attributes ending in ``_``, ``validate_data`` for inputs, clone and pickle work) and
keep a PySR-style table of formulas after ``fit``:

``formulas_`` is a pandas DataFrame, one row per candidate formula on the complexity/loss Pareto
front, simplest first, with columns ``complexity`` (nodes of the expression tree), ``loss``
(training MSE for the regressor, log loss for the classifier), ``score`` (PySR's: the drop in
log loss per unit of complexity against the previous row), ``equation`` (text) and
``sympy_format``. ``best_`` is the chosen row's index (``model_selection``: ``"best"`` as PySR
picks, the highest score among formulas whose loss is within 1.5x of the lowest; ``"accuracy"``
the lowest loss; ``"score"`` the highest score). ``sympy(i)`` and ``latex(i)`` give a row's
formula (default the chosen one).

Needs scikit-learn and pandas: ``pip install 'kanlab[sklearn]'``.
"""
from __future__ import annotations

import math
import re

import numpy as np
import sympy
import torch

try:
    import pandas as pd
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as err:  # pragma: no cover - only without the optional dependencies
    raise ImportError("kanlab's scikit-learn estimators need scikit-learn>=1.6 and pandas: "
                      "pip install 'kanlab[sklearn]'") from err

from .symbolic.formula import expression_size, make_symbols, tidy

__all__ = ["KANRegressor", "KANClassifier"]

_MIN_SAMPLES = 10


def _var_names(est, d):
    """Input symbols: ``var_names``, else the DataFrame's column names, else x_1..x_d."""
    names = est.var_names
    if names is None and hasattr(est, "feature_names_in_"):
        names = [re.sub(r"\W", "_", str(c)) or f"x_{i + 1}" for i, c in
                 enumerate(est.feature_names_in_)]
        names = [n if not n[0].isdigit() else f"x_{n}" for n in names]
        if len(set(names)) != d:
            names = None
    if names is not None and len(list(names)) != d:
        raise ValueError(f"var_names needs {d} names (one per feature), got {len(list(names))}")
    return make_symbols(d, names)


def _check_n(n):
    if n < _MIN_SAMPLES:
        raise ValueError(f"needs at least {_MIN_SAMPLES} samples to fit, got {n} sample"
                         f"{'s' if n != 1 else ''} (n_samples = {n})")


def _seed(random_state) -> int:
    if isinstance(random_state, (int, np.integer)):
        return int(random_state)
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


def _lambdify(symbols, expr):
    fn = sympy.lambdify(symbols, expr, modules="numpy", dummify=True)

    def f(X):
        with np.errstate(all="ignore"):
            out = fn(*[X[:, i] for i in range(X.shape[1])])
        out = np.asarray(out)
        if np.iscomplexobj(out):
            out = np.where(np.abs(out.imag) < 1e-9 * (1 + np.abs(out.real)), out.real, np.nan)
        return np.broadcast_to(out.astype(np.float64), (X.shape[0],)).copy()

    return f


def _pareto_table(rows, model_selection, variance=1.0):
    """rows: dicts with complexity, loss, equation, sympy_format (+ extra keys) -> DataFrame, best
    (:mod:`kanlab.discovery.select`: losses floored at float64's resolution of ``variance``)."""
    from .discovery.select import choose, pareto_front

    front = pareto_front(rows, variance)
    best = choose(front, model_selection)
    cols = ["complexity", "loss", "score", "equation", "sympy_format"]
    extra = [c for c in front[0] if c not in cols]
    df = pd.DataFrame(front, columns=cols + extra)
    return df, best


def _check_selection(v):
    if v not in ("best", "accuracy", "score"):
        raise ValueError(f"model_selection must be 'best', 'accuracy' or 'score', got {v!r}")


class _FormulaMixin:
    def sympy(self, index=None):
        """The chosen formula (or row ``index`` of ``formulas_``) as sympy."""
        check_is_fitted(self, "formulas_")
        i = self.best_ if index is None else index
        return self.formulas_.loc[i, "sympy_format"]

    def latex(self, index=None, precision: int = 3) -> str:
        """LaTeX of the chosen formula (or row ``index``), constants to ``precision`` digits."""
        from .symbolic.formula import ex_round

        e = self.sympy(index)
        if isinstance(e, (list, tuple)):
            return r" \\ ".join(sympy.latex(ex_round(v, precision)) for v in e)
        return sympy.latex(ex_round(e, precision))

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_predict_fn", None)  # lambdified code does not pickle: rebuilt on load
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "formulas_" in state:
            self._build_predict()


class KANRegressor(_FormulaMixin, RegressorMixin, BaseEstimator):
    """Symbolic regression with a KAN: ``fit`` runs :func:`kanlab.discover`.

    ``predict`` evaluates the chosen formula of ``formulas_`` (``sympy()``), whose rows are the
    constant model and every discovery attempt's formula on the Pareto front.

    Parameters:
        hidden: hidden widths to try (int or list; default discover's ``[2d, 2d+1, d+2]``).
        grid, refine_grid: grid intervals for training and after pruning.
        steps: LBFGS steps per stage (train, refine, symbolic); an int or a 3-tuple.
        lamb: sparsity regularization.
        time_budget: seconds for the whole search.
        max_attempts: cap on discovery attempts (None: as many as the budget allows).
        lib: symbolic function names (default: the whole library).
        snap: snap constants to exact values (pi, ratios, ...).
        test_size: held-out fraction discover uses to rank its attempts.
        model_selection: 'best', 'accuracy' or 'score' (see the module docstring).
        random_state: int seed (None draws one).
        var_names: names of the features in the formulas (default: DataFrame columns or x_i).
        algebraic: run discover's algebraic stage first (sums of terms, ratios P/Q by least
            squares). A search is reproducible for a given ``random_state`` as long as no
            stage is cut short by ``time_budget``; on a small budget, the algebraic stage is
            the one most often cut.

    Attributes after fit: ``formulas_``, ``best_``, ``result_`` (the DiscoveryResult),
    ``model_`` (its KAN), ``n_features_in_`` (and ``feature_names_in_`` for DataFrames).
    """

    def __init__(self, hidden=None, grid=5, refine_grid=10, steps=30, lamb=0.003,
                 time_budget=60.0, max_attempts=None, lib=None, snap=True, test_size=0.2,
                 model_selection="best", random_state=0, var_names=None, algebraic=True):
        self.hidden = hidden
        self.grid = grid
        self.refine_grid = refine_grid
        self.steps = steps
        self.lamb = lamb
        self.time_budget = time_budget
        self.max_attempts = max_attempts
        self.lib = lib
        self.snap = snap
        self.test_size = test_size
        self.model_selection = model_selection
        self.random_state = random_state
        self.var_names = var_names
        self.algebraic = algebraic

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

    def fit(self, X, y):
        """Search formulas for ``y = f(X)``; returns self."""
        from .discovery import discover

        _check_selection(self.model_selection)
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        _check_n(X.shape[0])
        steps = tuple(self.steps) if isinstance(self.steps, (tuple, list)) else (int(self.steps),) * 3
        symbols = _var_names(self, X.shape[1])
        res = discover(X, y, var_names=[s.name for s in symbols], time_budget=self.time_budget,
                       seed=_seed(self.random_state), lib=self.lib, test_size=self.test_size,
                       hidden=self.hidden, grid=self.grid, refine_grid=self.refine_grid,
                       lamb=self.lamb, steps=steps, max_attempts=self.max_attempts,
                       snap=self.snap, algebraic=self.algebraic)
        rows = [self._row(sympy.Float(float(np.mean(y)), 15), res.variables, X, y, attempt=None)]
        for a in res.attempts:
            if a.get("expr") is not None:
                rows.append(self._row(a["expr"], res.variables, X, y, attempt=a))
        self.formulas_, self.best_ = _pareto_table(rows, self.model_selection,
                                                   float(np.var(y)))
        self.result_ = res
        self.model_ = res.model
        self.variables_ = list(res.variables)
        self._build_predict()
        return self

    @staticmethod
    def _row(expr, symbols, X, y, attempt):
        pred = _lambdify(symbols, expr)(X)
        loss = float(np.mean((pred - y) ** 2)) if np.all(np.isfinite(pred)) else math.inf
        return {"complexity": expression_size(expr), "loss": loss, "equation": str(expr),
                "sympy_format": expr,
                "r2_heldout": float(attempt["r2"]) if attempt else float("nan"),
                "seed": attempt["seed"] if attempt else None}

    def _build_predict(self):
        self._predict_fn = _lambdify(self.variables_, self.formulas_.loc[self.best_, "sympy_format"])

    def predict(self, X, index=None):
        """Evaluate the chosen formula (or row ``index`` of ``formulas_``) on X."""
        check_is_fitted(self, "formulas_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        if index is None:
            return self._predict_fn(X)
        return _lambdify(self.variables_, self.formulas_.loc[index, "sympy_format"])(X)


class KANClassifier(_FormulaMixin, ClassifierMixin, BaseEstimator):
    """A KAN classifier trained with cross-entropy (binary: one logit; K classes: K logits).

    ``fit`` trains a numeric KAN on inputs scaled to [-1, 1]; with ``symbolic=True`` it then
    prunes it and snaps its edges to library functions at several simplicity weights, retrains
    each, and keeps the logit formulas (in the raw features) on a complexity/log-loss Pareto front
    in ``formulas_``. ``predict``/``predict_proba`` use the numeric network
    (``predict_with='model'``, the most accurate) or the chosen formula's network
    (``predict_with='formula'``).

    Parameters:
        hidden: width of the hidden layer (default 2d+1; 0 means no hidden layer).
        grid, k: spline grid intervals and order.
        steps: LBFGS steps (numeric training; half as many for each symbolic retraining).
        lamb: sparsity regularization of the numeric training.
        symbolic: also build formulas.
        weights_simple: simplicity weights of the symbolic variants.
        model_selection: 'best', 'accuracy' or 'score'.
        predict_with: 'model' or 'formula'.
        random_state: int seed (None draws one).
        var_names: names of the features in the formulas.
    """

    def __init__(self, hidden=None, grid=5, k=3, steps=50, lamb=0.0, symbolic=True,
                 weights_simple=(0.0, 0.8), model_selection="best", predict_with="model",
                 random_state=0, var_names=None):
        self.hidden = hidden
        self.grid = grid
        self.k = k
        self.steps = steps
        self.lamb = lamb
        self.symbolic = symbolic
        self.weights_simple = weights_simple
        self.model_selection = model_selection
        self.predict_with = predict_with
        self.random_state = random_state
        self.var_names = var_names

    def fit(self, X, y):
        """Train on X (n, d) and class labels y (n,); returns self."""
        from . import KAN
        from .discovery.result import minmax_scaling

        _check_selection(self.model_selection)
        if self.predict_with not in ("model", "formula"):
            raise ValueError(f"predict_with must be 'model' or 'formula', got {self.predict_with!r}")
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        _check_n(X.shape[0])
        self.classes_, yi = np.unique(y, return_inverse=True)
        n_classes = len(self.classes_)
        if n_classes < 2:
            raise ValueError(f"KANClassifier needs samples of at least 2 classes in y; got 1 class "
                             f"({self.classes_[0]!r})")
        d = X.shape[1]
        seed = _seed(self.random_state)
        self._x_center, self._x_scale, _ = minmax_scaling(X)
        xs = torch.as_tensor(self._scale(X), dtype=torch.float64)
        n_out = 1 if n_classes == 2 else n_classes
        target = torch.as_tensor(yi, dtype=torch.long)
        hidden = 2 * d + 1 if self.hidden is None else int(self.hidden)
        width = [d, hidden, n_out] if hidden > 0 else [d, n_out]
        model = KAN(width=width, grid=int(self.grid), k=int(self.k), seed=seed, dtype=torch.float64)
        ds = dict(train_input=xs, train_label=target, test_input=xs, test_label=target)
        loss_fn = self._loss_fn(n_out)
        model.fit(ds, opt="LBFGS", steps=int(self.steps), lamb=float(self.lamb), loss_fn=loss_fn,
                  progress=False)
        self.model_ = model
        self.n_iter_ = int(self.steps)
        symbols = _var_names(self, d)
        self.variables_ = list(symbols)
        rows = [self._prior_row(yi, n_classes)]
        if self.symbolic:
            rows += self._symbolic_rows(model, ds, loss_fn, symbols, xs, yi, n_out)
        self.formulas_, self.best_ = _pareto_table(rows, self.model_selection)
        self._build_predict()
        return self

    # -- helpers
    def _scale(self, X):
        return (X - self._x_center) / self._x_scale

    @staticmethod
    def _loss_fn(n_out):
        if n_out == 1:
            return lambda pred, y: torch.nn.functional.binary_cross_entropy_with_logits(
                pred[:, 0], y.to(pred.dtype))
        return lambda pred, y: torch.nn.functional.cross_entropy(pred, y)

    @staticmethod
    def _log_loss(logits, yi):
        logits = torch.as_tensor(logits, dtype=torch.float64)
        if not torch.isfinite(logits).all():
            return math.inf
        if logits.shape[1] == 1:
            logits = torch.cat([torch.zeros_like(logits), logits], 1)
        return float(torch.nn.functional.cross_entropy(logits, torch.as_tensor(yi)))

    def _prior_row(self, yi, n_classes):
        p = np.bincount(yi, minlength=n_classes) / len(yi)
        if n_classes == 2:
            exprs = [sympy.Float(math.log(p[1] / p[0]), 15)]
        else:
            exprs = [sympy.Float(math.log(v), 15) for v in p]
        logits = np.tile([float(e) for e in exprs], (len(yi), 1))
        return {"complexity": len(exprs), "loss": self._log_loss(logits, yi),
                "equation": self._text(exprs), "sympy_format": exprs, "model": None}

    @staticmethod
    def _text(exprs):
        return str(exprs[0]) if len(exprs) == 1 else "[" + ", ".join(str(e) for e in exprs) + "]"

    def _symbolic_rows(self, model, ds, loss_fn, symbols, xs, yi, n_out):
        from .prune import prune_by_spread

        rows, seen = [], set()
        try:
            base = prune_by_spread(model, xs) if model.depth > 1 else model.copy()
        except (ValueError, RuntimeError):
            base = model.copy()
        for w in self.weights_simple:
            m = base.copy()
            try:
                m.auto_symbolic(weight_simple=float(w), verbose=0, x=xs)
                m.fit(ds, opt="LBFGS", steps=max(int(self.steps) // 2, 1), loss_fn=loss_fn,
                      progress=False, update_grid=False)
                exprs, _ = m.symbolic_formula(var=symbols, simplify=False,
                                              normalizer=(self._x_center, self._x_scale))
                exprs = [tidy(e, time_limit=0.5) for e in exprs]
            except (ValueError, RuntimeError, ArithmeticError):
                continue
            key = self._text(exprs)
            if key in seen:
                continue
            seen.add(key)
            with torch.no_grad():
                logits = m(xs).numpy()
            rows.append({"complexity": sum(expression_size(e) for e in exprs),
                         "loss": self._log_loss(logits, yi), "equation": key,
                         "sympy_format": list(exprs), "model": m})
        return rows

    def _build_predict(self):
        pass  # predictions go through torch models, which pickle as they are

    def decision_function(self, X):
        """Logits: (n,) for two classes, (n, n_classes) otherwise."""
        check_is_fitted(self, "formulas_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        model = self.model_
        if self.predict_with == "formula":
            model = self.formulas_.loc[self.best_, "model"]
            if model is None:  # the prior row: constant logits
                exprs = self.formulas_.loc[self.best_, "sympy_format"]
                out = np.tile([float(e) for e in exprs], (X.shape[0], 1))
                return out[:, 0] if out.shape[1] == 1 else out
        with torch.no_grad():
            out = model(torch.as_tensor(self._scale(X), dtype=torch.float64)).numpy()
        return out[:, 0] if out.shape[1] == 1 else out

    def predict_proba(self, X):
        """Class probabilities (n, n_classes), columns in the order of ``classes_``."""
        z = torch.as_tensor(self.decision_function(X))
        if z.dim() == 1:
            p1 = torch.sigmoid(z)
            return torch.stack([1 - p1, p1], 1).numpy()
        return torch.softmax(z, 1).numpy()

    def predict(self, X):
        """Most probable class of every row."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]
