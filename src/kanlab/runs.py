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
import tempfile

import numpy as np
import sympy

__all__ = ["parse_srepr", "write_json_atomic", "load_run", "Run"]

RUN_FORMAT = 1

_FUNCS = {name: getattr(sympy, name) for name in (
    "Add", "Mul", "Pow", "exp", "log", "sin", "cos", "tan", "tanh", "sinh", "cosh", "asin", "acos",
    "atan", "atanh", "asinh", "acosh", "Abs", "sign", "sqrt", "Heaviside", "Max", "Min")}
_CONSTS = {"pi": sympy.pi, "E": sympy.E, "oo": sympy.oo, "zoo": sympy.zoo, "nan": sympy.nan,
           "I": sympy.I}


def parse_srepr(text: str) -> sympy.Expr:
    """Rebuild a sympy expression from ``sympy.srepr`` text without ``eval``.

    Only calls to the functions of a fixed whitelist, ``Symbol``/``Integer``/``Rational``/
    ``Float`` with literal arguments, and the constants pi, E, oo are accepted; anything else is a
    ValueError.
    """
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ValueError(f"not a sympy srepr expression: {text[:80]!r}") from None

    def build(node):
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
            args = [build(a) for a in node.args]
            kwargs = {k.arg: build(k.value) for k in node.keywords}
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
                return sympy.Float(args[0], precision=kwargs.get("precision", 53))
            if name in _FUNCS and not kwargs and all(isinstance(a, sympy.Basic) for a in args):
                return _FUNCS[name](*args)
            raise ValueError(f"unsupported call {name}(...) in a stored formula")
        raise ValueError(f"unsupported syntax in a stored formula: {ast.dump(node)[:60]}")

    expr = build(tree.body)
    if not isinstance(expr, sympy.Basic):
        raise ValueError("a stored formula must be a sympy expression")
    return expr


def write_json_atomic(path, obj) -> None:
    """Write JSON to ``path`` via a temporary file and a rename."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, default=_jsonable)
            fh.write("\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _jsonable(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


class Run:
    """A loaded run folder: ``features``, ``target``, ``formula`` (sympy), ``symbols``,
    ``model`` (loaded on first use), standardization and the stored ``info`` dict."""

    def __init__(self, folder, info):
        self.folder = folder
        self.info = info
        self.features = list(info["features"])
        self.target = info["target"]
        self.formula = parse_srepr(info["formula_srepr"])
        self.symbols = [sympy.Symbol(n) for n in info["symbols"]]
        self.x_center = np.asarray(info["x_center"], dtype=np.float64)
        self.x_scale = np.asarray(info["x_scale"], dtype=np.float64)
        self.constant_columns = np.asarray(info["constant_columns"], dtype=bool)
        self.y_center = float(info["y_center"])
        self.y_scale = float(info["y_scale"])
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
