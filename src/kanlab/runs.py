"""Run folders written by ``kanlab fit`` and read by ``predict``, ``formula`` and ``plot``.

A run folder holds ``model.kan`` (the symbolic KAN, on standardized inputs), ``run.json``
(features, target, standardization, the formula, scores, timings), ``history.csv``,
``diagram.png`` and ``report.html``. Formulas are stored as sympy ``srepr`` text and read back by
a whitelisting parser (:func:`parse_srepr`): nothing in a run folder is ever executed.
"""
from __future__ import annotations

import ast
import json
import os

import numpy as np
import sympy

from .atomic import atomic_write

__all__ = ["parse_srepr", "write_json_atomic", "load_run", "Run"]

RUN_FORMAT = 1

_FUNCS = {name: getattr(sympy, name) for name in (
    "Add", "Mul", "Pow", "exp", "log", "sin", "cos", "tan", "tanh", "sinh", "cosh", "asin", "acos",
    "atan", "atanh", "asinh", "acosh", "Abs", "sign", "sqrt", "Heaviside", "Max", "Min")}
_CONSTS = {"pi": sympy.pi, "E": sympy.E}
# bounds on what a stored formula may hold, so that no file can make the parser or sympy run
# for long: kanlab's own formulas stay far inside them
_MAX_TEXT = 1_000_000  # characters
_MAX_DEPTH = 200  # nesting of calls
_MAX_NODES = 100_000
_MAX_DIGITS = 400  # of an integer literal
_MAX_PRECISION = 400  # bits of a Float
_MAX_EXPONENT = 1000  # |numeric exponent| of a Pow


def parse_srepr(text: str) -> sympy.Expr:
    """Rebuild a sympy expression from ``sympy.srepr`` text without ``eval``.

    Only calls to the functions of a fixed whitelist, ``Symbol``/``Integer``/``Rational``/
    ``Float`` with literal arguments, and the constants pi, E, oo are accepted; anything else is a
    ValueError.
    """
    if not isinstance(text, str) or len(text) > _MAX_TEXT:
        raise ValueError("a stored formula must be srepr text of at most 1e6 characters")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ValueError(f"not a sympy srepr expression: {text[:80]!r}") from None
    count = [0]

    def build(node, depth=0):
        count[0] += 1
        if depth > _MAX_DEPTH or count[0] > _MAX_NODES:
            raise ValueError("a stored formula nests too deeply or is too large")
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and \
                not isinstance(node.value, bool) and abs(node.value) >= 10 ** _MAX_DIGITS:
            raise ValueError("an integer in a stored formula is too large")
        if isinstance(node, ast.Name):
            if node.id in _CONSTS:
                return _CONSTS[node.id]
            raise ValueError(f"unexpected name {node.id!r} in a stored formula")
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and \
                isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, (int, float)):
            return -node.operand.value
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
            args = [build(a, depth + 1) for a in node.args]
            kwargs = {k.arg: build(k.value, depth + 1) for k in node.keywords}
            if name == "Symbol":
                if len(args) != 1 or not isinstance(args[0], str) or \
                        not all(isinstance(v, bool) for v in kwargs.values()):
                    raise ValueError("bad Symbol(...) in a stored formula")
                return sympy.Symbol(args[0], **kwargs)
            if name == "Integer" and len(args) == 1 and isinstance(args[0], int) and not kwargs:
                return sympy.Integer(args[0])
            if name == "Rational" and len(args) == 2 and all(isinstance(a, int) for a in args):
                return sympy.Rational(args[0], args[1])
            if name == "Float" and len(args) == 1 and isinstance(args[0], (str, float, int)) and \
                    set(kwargs) <= {"precision"} and all(isinstance(v, int) for v in kwargs.values()):
                precision = kwargs.get("precision", 53)
                if not 1 <= precision <= _MAX_PRECISION or len(str(args[0])) > 200:
                    raise ValueError("a Float in a stored formula has an unreasonable precision")
                value = sympy.Float(args[0], precision=precision)
                if not value.is_finite:
                    raise ValueError("a stored formula holds a non-finite number")
                return value
            if name in _FUNCS and not kwargs and all(isinstance(a, sympy.Basic) for a in args):
                if name == "Pow" and len(args) == 2 and args[1].is_Number and \
                        not abs(args[1]) <= _MAX_EXPONENT:
                    raise ValueError("an exponent in a stored formula is too large")
                return _FUNCS[name](*args)
            raise ValueError(f"unsupported call {name}(...) in a stored formula")
        raise ValueError(f"unsupported syntax in a stored formula: {ast.dump(node)[:60]}")

    try:
        expr = build(tree.body)
    except (TypeError, ArithmeticError, RecursionError) as err:
        raise ValueError(f"a stored formula cannot be rebuilt: {err}") from None
    if not isinstance(expr, sympy.Basic) or expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        raise ValueError("a stored formula must be a finite sympy expression")
    return expr


def write_json_atomic(path, obj) -> None:
    """Write JSON to ``path`` via a temporary file and a rename."""
    def write(fh):
        json.dump(obj, fh, indent=2, default=_jsonable)
        fh.write("\n")
    atomic_write(path, write, keep_mode=False)


def _jsonable(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def _strings(info, key, n=None) -> list:
    v = info[key]
    if not isinstance(v, list) or not all(isinstance(s, str) and s for s in v) or \
            (n is not None and len(v) != n):
        want = f"{n} names" if n is not None else "a list of names"
        raise ValueError(f"field {key!r} must be {want}, got {str(v)[:60]}")
    return list(v)


def _numbers(info, key, n=None) -> np.ndarray:
    v = info[key]
    items = v if n is not None and isinstance(v, list) and len(v) == n else \
        [v] if n is None else None
    ok = items is not None and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                   for x in items)
    arr = np.asarray(v, dtype=np.float64) if ok else None
    if arr is None or not np.all(np.isfinite(arr)):
        want = f"{n} finite numbers" if n is not None else "a finite number"
        raise ValueError(f"field {key!r} must be {want}, got {str(v)[:60]}")
    return arr


class Run:
    """A loaded run folder: ``features``, ``target``, ``formula`` (sympy), ``symbols``,
    ``model`` (loaded on first use), standardization and the stored ``info`` dict."""

    def __init__(self, folder, info):
        self.folder = folder
        self.info = info
        self.features = _strings(info, "features")
        d = len(self.features)
        self.target = info["target"]
        if not isinstance(self.target, str):
            raise ValueError(f"field 'target' must be a column name, got {self.target!r}")
        self.formula = parse_srepr(info["formula_srepr"])
        self.symbols = [sympy.Symbol(n) for n in _strings(info, "symbols", d)]
        self.x_center = _numbers(info, "x_center", d)
        self.x_scale = _numbers(info, "x_scale", d)
        if not np.all(self.x_scale > 0):
            raise ValueError("field 'x_scale' must be positive")
        flags = info["constant_columns"]
        if not isinstance(flags, list) or len(flags) != d or \
                not all(isinstance(v, bool) for v in flags):
            raise ValueError(f"field 'constant_columns' must be {d} true/false values")
        self.constant_columns = np.asarray(flags, dtype=bool)
        self.y_center = float(_numbers(info, "y_center"))
        self.y_scale = float(_numbers(info, "y_scale"))
        if not self.formula.free_symbols <= set(self.symbols):
            raise ValueError("the stored formula uses variables that are not in 'symbols'")
        self._model = None

    @property
    def model(self):
        if self._model is None:
            from .model import KAN

            self._model = KAN.load(os.path.join(self.folder, "model.kan"))
        return self._model

    def predict(self, X, use: str = "formula") -> np.ndarray:
        """Predictions on raw inputs X (n, d): from the formula or the symbolic network."""
        X = np.asarray(X, dtype=np.float64)
        if use == "formula":
            fn = sympy.lambdify(self.symbols, self.formula, modules="numpy", dummify=True)
            with np.errstate(all="ignore"):
                out = np.asarray(fn(*[X[:, i] for i in range(X.shape[1])]))
            if np.iscomplexobj(out):
                out = np.where(np.abs(out.imag) < 1e-9 * (1 + np.abs(out.real)), out.real, np.nan)
            return np.broadcast_to(out.astype(np.float64), (X.shape[0],)).copy()
        if use != "model":
            raise ValueError(f"use must be 'formula' or 'model', got {use!r}")
        import torch

        z = (X - self.x_center) / self.x_scale
        z[:, self.constant_columns] = 0.0
        m = self.model
        with torch.no_grad():
            out = m(torch.as_tensor(z, dtype=m.dtype)).double().numpy()[:, 0]
        return out * self.y_scale + self.y_center


def load_run(path) -> Run:
    """Open a run folder (or the model.kan / run.json inside one)."""
    path = os.fspath(path)
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    meta = os.path.join(folder, "run.json")
    if not os.path.exists(meta):
        raise FileNotFoundError(f"{path} is not a kanlab run folder (no run.json); "
                                "create one with 'kanlab fit'")
    try:
        with open(meta, encoding="utf-8") as fh:
            info = json.load(fh)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{meta} is damaged: {err}") from None
    version = info.get("kanlab_run") if isinstance(info, dict) else None
    if not isinstance(version, int):
        raise ValueError(f"{meta} is not a kanlab run description")
    if version > RUN_FORMAT:
        raise ValueError(f"{meta} was written by a newer kanlab (run format {version}, this one "
                         f"reads {RUN_FORMAT}): upgrade kanlab")
    try:
        return Run(folder, info)
    except KeyError as err:
        raise ValueError(f"{meta} lacks the field {err.args[0]!r}") from None
    except ValueError as err:
        raise ValueError(f"{meta} is damaged: {err}") from None
