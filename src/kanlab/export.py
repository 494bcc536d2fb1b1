"""Exporting a KAN: its formula as LaTeX, numpy or torch code; its numeric model for deployment.

Formulas (the ``([expr per output], symbols)`` pair of ``model.symbolic_formula()``):

* :func:`formula_to_latex`: LaTeX text with constants shown to a chosen number of digits;
* :func:`formula_to_numpy`: a numpy callable ``f(X)`` on ``(n, d)`` arrays (sympy.lambdify);
* :func:`formula_to_torch`: a differentiable :class:`torch.nn.Module` on ``(n, d)`` tensors;
  the sympy tree is translated to torch operations once, so no sympy runs at call time and the
  module itself can be exported with :func:`export_torch`;
* :func:`formula_to_python_source`: the source text of a standalone numpy function.

Numeric models: the fast training path of a KAN (custom autograd nodes, cached basis plans,
Python-side caches) cannot be traced by ``torch.export``. :func:`inference_module` therefore
builds an :class:`InferenceKAN`, a plain module that recomputes the same function from a
snapshot of the model's tensors with ordinary torch operations (dense Cox-de Boor B-splines,
one matrix product per branch, one-hot matrices for symbolic edges), and :func:`export_torch`
and :func:`export_onnx` export that module with a dynamic batch dimension.
"""
from __future__ import annotations

import math
import operator
import os
from pathlib import Path
from typing import Callable

import numpy as np
import sympy
import torch
from torch import nn

from .symbolic.formula import make_symbols

__all__ = [
    "formula_to_latex",
    "formula_to_numpy",
    "formula_to_torch",
    "formula_to_python_source",
    "FormulaModule",
    "InferenceKAN",
    "inference_module",
    "export_torch",
    "export_onnx",
]


# ---------------------------------------------------------------------------------- formulas
def _as_exprs(exprs) -> tuple[list[sympy.Expr], bool]:
    """A list of sympy expressions and whether a single (bare) expression was given."""
    single = not isinstance(exprs, (list, tuple))
    items = [exprs] if single else list(exprs)
    if not items:
        raise ValueError("no expression given: pass a sympy expression or a non-empty list of them")
    out = []
    for e in items:
        try:
            out.append(sympy.sympify(e))
        except (sympy.SympifyError, TypeError) as err:
            raise ValueError(f"cannot read {e!r} as a sympy expression: {err}") from None
    return out, single


def _as_symbols(symbols, exprs: list[sympy.Expr]) -> list[sympy.Symbol]:
    """Input symbols in column order; every free symbol of ``exprs`` must be among them."""
    if symbols is None:
        raise ValueError("symbols are needed to fix the column order: pass the list returned "
                         "by model.symbolic_formula() (its second element)")
    if isinstance(symbols, (sympy.Symbol, str)):
        symbols = [symbols]
    symbols = list(symbols)
    try:
        out = make_symbols(len(symbols), symbols)
    except ValueError as err:
        raise ValueError(f"symbols: {err}") from None
    if len(set(out)) != len(out):
        raise ValueError(f"symbols must be distinct, got {out}")
    free = set().union(*(e.free_symbols for e in exprs))
    unknown = sorted(str(s) for s in free - set(out))
    if unknown:
        raise ValueError(f"the formula uses variables {unknown} that are not in symbols "
                         f"{[str(s) for s in out]}")
    return out


def _round_floats(expr: sympy.Expr, digits: int) -> sympy.Expr:
    """Every Float of ``expr`` rounded to ``digits`` significant digits."""
    repl = {}
    for a in sympy.preorder_traversal(expr):
        if isinstance(a, sympy.Float):
            v = float(a)
            if v == 0.0 or not math.isfinite(v):
                continue
            r = float(f"{v:.{digits}g}")
            repl[a] = sympy.Integer(int(r)) if r == int(r) and abs(r) < 1e15 else sympy.Float(r, digits)
    return expr.xreplace(repl)


def formula_to_latex(expr, precision: int | None = 4, **latex_kwargs):
    """LaTeX text of a formula.

    Args:
        expr: a sympy expression (or anything sympify reads), or a list of them.
        precision: significant digits shown for floating-point constants (integers, rationals
            and exact constants such as pi stay exact); None keeps every digit.
        latex_kwargs: passed to :func:`sympy.latex` (e.g. ``mul_symbol="dot"``).

    Returns:
        A string, or a list of strings for a list of expressions.
    """
    if precision is not None and (isinstance(precision, bool) or not isinstance(precision, int)
                                  or precision < 1):
        raise ValueError(f"precision must be a positive integer or None, got {precision!r}")
    exprs, single = _as_exprs(expr)
    out = []
    for e in exprs:
        if precision is not None:
            e = _round_floats(e, precision)
        out.append(sympy.latex(e, **latex_kwargs))
    return out[0] if single else out


def _check_matrix_np(X, n_var: int) -> np.ndarray:
    X = np.asarray(X)
    if X.dtype == object or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise ValueError(f"X must be a numeric array, got dtype {X.dtype}")
    if X.ndim == 1 and n_var == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[1] != n_var:
        raise ValueError(f"X must have shape (n, {n_var}) (one column per symbol), got {X.shape}")
    if np.iscomplexobj(X):
        raise ValueError("X must be real")
    return X.astype(np.float64, copy=False)


def _real_part(v: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Real values of a possibly complex result: the real part where the imaginary part is
    negligible (rounding in e.g. ``(-8)**(1/3)`` chains), NaN where it is not."""
    if not np.iscomplexobj(v):
        return np.asarray(v, dtype=np.float64)
    re, im = v.real, v.imag
    ok = np.abs(im) <= tol * np.maximum(1.0, np.abs(re))
    return np.where(ok, re, np.nan).astype(np.float64)


def formula_to_numpy(exprs, symbols) -> Callable[[np.ndarray], np.ndarray]:
    """A numpy function ``f(X)`` evaluating the formula on ``(n, d)`` inputs.

    Args:
        exprs: one sympy expression, or a list (one per output) as returned by
            ``model.symbolic_formula()[0]``.
        symbols: the input symbols in column order (``model.symbolic_formula()[1]``).

    Returns:
        ``f(X)`` with ``X`` of shape ``(n, d)`` (or ``(n,)`` when ``d == 1``), returning ``(n,)``
        for a single expression and ``(n, n_out)`` for a list. Constant expressions are
        broadcast to ``n`` rows. Evaluation is in float64 and real: outside a function's
        domain (``log(-1)``, ``sqrt(-1)``) the value is NaN, as numpy gives it, without
        warnings; a complex intermediate result (a formula containing ``I``) keeps its real
        part where the imaginary part is negligible and is NaN elsewhere.
    """
    items, single = _as_exprs(exprs)
    syms = _as_symbols(symbols, items)
    fns = []
    for e in items:
        try:  # scipy (a kanlab dependency) first: it vectorizes erf, gamma, ... that numpy lacks
            fns.append(sympy.lambdify(syms, e, modules=["scipy", "numpy"], dummify=True))
        except Exception as err:  # noqa: BLE001 - sympy's printers raise many kinds
            raise ValueError(f"cannot write {e} as numpy code: {type(err).__name__}: {err}") from None
    n_var = len(syms)

    def f(X):
        X = _check_matrix_np(X, n_var)
        cols = [X[:, i] for i in range(n_var)]
        out = np.empty((X.shape[0], len(fns)), dtype=np.float64)
        with np.errstate(all="ignore"):
            for q, fn in enumerate(fns):
                v = np.asarray(fn(*cols))
                out[:, q] = np.broadcast_to(_real_part(v), (X.shape[0],))
        return out[:, 0] if single else out

    f.__doc__ = f"Evaluate {[str(e) for e in items] if not single else str(items[0])} on X (n, {n_var})."
    return f


def formula_to_python_source(exprs, symbols, name: str = "formula") -> str:
    """Source text of a standalone numpy function ``name(X)`` computing the formula.

    The function needs only numpy, takes ``X`` of shape ``(n, d)`` and returns ``(n,)`` for a
    single expression or ``(n, n_out)`` for a list (the same as :func:`formula_to_numpy`, without
    its handling of complex values). Variables are renamed ``x0, x1, ...`` in the code so any
    symbol name works; the original names appear in the docstring.
    """
    from sympy.printing.numpy import NumPyPrinter

    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be a Python identifier, got {name!r}")
    items, single = _as_exprs(exprs)
    syms = _as_symbols(symbols, items)
    plain = [sympy.Symbol(f"x{i}") for i in range(len(syms))]
    ren = dict(zip(syms, plain))
    printer = NumPyPrinter({"fully_qualified_modules": True, "allow_unknown_functions": False})
    lines = [
        "import numpy",
        "",
        "",
        f"def {name}(X):",
        f'    """Formula generated by kanlab; inputs {", ".join(f"x{i} = {s}" for i, s in enumerate(syms))}."""',
        "    X = numpy.asarray(X, dtype=numpy.float64)",
        "    if X.ndim == 1:",
        "        X = X[:, None]",
        f"    if X.ndim != 2 or X.shape[1] != {len(syms)}:",
        f"        raise ValueError('X must have shape (n, {len(syms)}), got %s' % (X.shape,))",
    ]
    lines += [f"    x{i} = X[:, {i}]" for i in range(len(syms))]
    lines.append(f"    out = numpy.empty((X.shape[0], {len(items)}))")
    lines.append("    with numpy.errstate(all='ignore'):")
    for q, e in enumerate(items):
        code = printer.doprint(e.xreplace(ren))
        if "not supported" in code.lower():
            raise ValueError(f"expression {e} cannot be written as numpy code: {code}")
        lines.append(f"        out[:, {q}] = {code}")
    lines.append("    return out[:, 0]" if single else "    return out")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- sympy -> torch
def _unary(name: str, fn: Callable):
    fn.__name__ = name
    return fn


_TORCH_FUNCS: dict[type, Callable[[torch.Tensor], torch.Tensor]] = {
    sympy.exp: torch.exp,
    sympy.log: torch.log,
    sympy.sin: torch.sin,
    sympy.cos: torch.cos,
    sympy.tan: torch.tan,
    sympy.cot: _unary("cot", lambda u: 1.0 / torch.tan(u)),
    sympy.sec: _unary("sec", lambda u: 1.0 / torch.cos(u)),
    sympy.csc: _unary("csc", lambda u: 1.0 / torch.sin(u)),
    sympy.sinh: torch.sinh,
    sympy.cosh: torch.cosh,
    sympy.tanh: torch.tanh,
    sympy.asin: torch.asin,
    sympy.acos: torch.acos,
    sympy.atan: torch.atan,
    sympy.asinh: torch.asinh,
    sympy.acosh: torch.acosh,
    sympy.atanh: torch.atanh,
    sympy.Abs: torch.abs,
    sympy.sign: torch.sign,
    sympy.erf: torch.erf,
}


def _compile(expr: sympy.Expr, index: dict) -> Callable:
    """Translate ``expr`` into a closure ``g(cols)`` of torch operations on the input columns.

    Constant subtrees (``sqrt(2)*pi``, ``exp(2)``) are folded by sympy into Python floats, which
    follow the input's dtype and device. Raises ValueError naming any node it cannot translate,
    and for complex or infinite constants.
    """
    if isinstance(expr, sympy.Symbol):
        i = index[expr]
        return lambda cols: cols[i]
    if not expr.free_symbols:
        if expr.is_infinite or expr.has(sympy.zoo, sympy.oo, -sympy.oo):
            raise ValueError(f"the formula contains the infinite constant {expr}: it has no "
                             "finite value to compute")
        if expr.is_real is False or expr.has(sympy.I):
            raise ValueError(f"the formula contains the complex number {expr}: a torch module "
                             "computes real values only")
        try:
            v = float(expr)
        except (TypeError, ValueError):
            raise ValueError(f"cannot read the constant {expr} as a real number") from None
        return lambda cols: v
    if isinstance(expr, (sympy.Add, sympy.Mul)):
        parts = [_compile(a, index) for a in expr.args]
        op = operator.add if isinstance(expr, sympy.Add) else operator.mul

        def fold(cols):
            acc = parts[0](cols)
            for p in parts[1:]:
                acc = op(acc, p(cols))
            return acc

        return fold
    if isinstance(expr, sympy.Pow):
        base, ex = expr.args
        g = _compile(base, index)
        if ex.is_Number:
            if ex == sympy.Rational(1, 2):
                return lambda cols: torch.sqrt(g(cols))
            if ex == sympy.Rational(-1, 2):
                return lambda cols: torch.rsqrt(g(cols))
            if ex == -1:
                return lambda cols: torch.reciprocal(g(cols))
            p = int(ex) if ex.is_Integer else float(ex)
            return lambda cols: torch.pow(g(cols), p)
        h = _compile(ex, index)
        if not base.free_symbols:  # c**f(x)
            c = float(base)
            return lambda cols: torch.pow(c, h(cols))
        return lambda cols: torch.pow(g(cols), h(cols))
    fn = _TORCH_FUNCS.get(expr.func)
    if fn is not None and len(expr.args) == 1:
        g = _compile(expr.args[0], index)
        return lambda cols: fn(g(cols))
    name = type(expr).__name__
    raise ValueError(
        f"cannot translate {name} ({expr}) to torch: supported are + * ** , numbers, pi, E and "
        f"{sorted(f.__name__ for f in _TORCH_FUNCS)}"
    )


class FormulaModule(nn.Module):
    """A sympy formula as a torch module: ``(n, d)`` tensor in, ``(n,)`` or ``(n, n_out)`` out.

    Built by :func:`formula_to_torch`. Differentiable, any floating dtype and device, exportable
    with :func:`export_torch`. Attributes: ``exprs`` (the sympy expressions, for reference),
    ``symbols``.
    """

    def __init__(self, exprs, symbols):
        super().__init__()
        items, single = _as_exprs(exprs)
        syms = _as_symbols(symbols, items)
        index = {s: i for i, s in enumerate(syms)}
        self._fns = [_compile(e, index) for e in items]
        self.exprs, self.symbols, self.single = items, syms, single
        self.n_var = len(syms)

    def extra_repr(self) -> str:
        return ", ".join(str(e) for e in self.exprs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluate on ``x`` of shape ``(n, d)`` (``(n,)`` is read as one column when d = 1)."""
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x), dtype=torch.get_default_dtype())
        if x.dim() == 1 and self.n_var == 1:
            x = x[:, None]
        if x.dim() != 2 or x.shape[1] != self.n_var:
            raise ValueError(f"input must have shape (n, {self.n_var}), got {tuple(x.shape)}")
        if not x.is_floating_point():
            x = x.to(torch.get_default_dtype())
        cols = [x[:, i] for i in range(self.n_var)]
        outs = []
        for fn in self._fns:
            v = fn(cols)
            if not isinstance(v, torch.Tensor):  # constant expression: broadcast to n rows
                v = torch.full((x.shape[0],), float(v), dtype=x.dtype, device=x.device)
            elif v.dim() == 0:
                v = v.expand(x.shape[0])
            outs.append(v)
        return outs[0] if self.single else torch.stack(outs, dim=1)


def formula_to_torch(exprs, symbols) -> FormulaModule:
    """A differentiable torch module computing the formula on ``(n, d)`` tensors.

    The sympy tree is translated once into torch operations (Add, Mul, Pow, exp, log, sin, cos,
    tan, tanh, sinh, cosh, asin, acos, atan, atanh, Abs, sign, erf; integers, rationals, floats,
    pi and E), so no sympy runs at call time. An unsupported node raises ValueError naming it.
    Returns ``(n,)`` for a single expression and ``(n, n_out)`` for a list.
    """
    return FormulaModule(exprs, symbols)


# -------------------------------------------------------------------- numeric inference
class _LayerInference(nn.Module):
    """One KAN layer (numeric plus symbolic edges, bias) with plain torch operations."""

    def __init__(self, layer, sym):
        super().__init__()
        dt = layer.grid.dtype
        self.base_fun = layer.base_fun
        self.k = int(layer.k)
        self.out_dim = int(layer.out_dim)
        mask = layer.mask.detach()
        self.numeric = bool((mask != 0).any())
        if self.numeric:
            t = layer.grid.detach().clone()
            self.register_buffer("t_lo", t[:, :-1].contiguous())
            self.register_buffer("t_hi", t[:, 1:].contiguous())
            n_knots = t.shape[1]
            for d in range(1, self.k + 1):
                n = n_knots - d - 1
                left = t[:, d:d + n] - t[:, :n]
                right = t[:, d + 1:d + 1 + n] - t[:, 1:1 + n]
                self.register_buffer(f"a{d}", t[:, :n].contiguous())
                self.register_buffer(f"b{d}", t[:, d + 1:d + 1 + n].contiguous())
                self.register_buffer(f"il{d}", _safe_recip(left))
                self.register_buffer(f"ir{d}", _safe_recip(right))
            w_base = (layer.scale_base.detach() * mask).clone()
            w_sp = layer.coef.detach() * (layer.scale_sp.detach() * mask).unsqueeze(-1)  # (in, out, P)
            self.register_buffer("w_base", w_base)
            self.register_buffer("w_sp", w_sp.permute(0, 2, 1).reshape(-1, self.out_dim).contiguous())
        bias = layer.bias
        self.register_buffer("bias", bias.detach().clone() if bias is not None else None)
        # symbolic edges, grouped by function: gather inputs, elementwise op, one-hot sum
        self.groups = []
        smask = sym.mask.detach()
        if bool((smask != 0).any()):
            from .symbolic.library import get_symbolic

            by_name: dict = {}
            on = (smask != 0).nonzero().tolist()
            for j, i in on:
                by_name.setdefault(sym.funs_name[j][i], []).append((j, i))
            for g, (name, edges) in enumerate(by_name.items()):
                jj = torch.tensor([e[0] for e in edges], dtype=torch.long)
                ii = torch.tensor([e[1] for e in edges], dtype=torch.long)
                aff = sym.affine.detach()[jj, ii].to(dt).clone()  # (E, 4)
                scat = torch.zeros(len(edges), self.out_dim, dtype=dt)
                scat[torch.arange(len(edges)), jj] = 1.0
                self.register_buffer(f"s{g}_in", ii.to(smask.device))
                self.register_buffer(f"s{g}_aff", aff)
                self.register_buffer(f"s{g}_m", smask[jj.to(smask.device), ii.to(smask.device)].clone())
                self.register_buffer(f"s{g}_out", scat.to(smask.device))
                self.groups.append(get_symbolic(name).safe_fn)

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """All B-splines of every input, (batch, in, G+k), by the Cox-de Boor recursion."""
        xe = x.unsqueeze(-1)
        b = ((xe >= self.t_lo) & (xe < self.t_hi)).to(x.dtype)
        for d in range(1, self.k + 1):
            a, hi = getattr(self, f"a{d}"), getattr(self, f"b{d}")
            il, ir = getattr(self, f"il{d}"), getattr(self, f"ir{d}")
            b = (xe - a) * il * b[..., :-1] + (hi - xe) * ir * b[..., 1:]
        return b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = None
        if self.numeric:
            feats = self.basis(x).reshape(x.shape[0], -1)
            y = self.base_fun(x) @ self.w_base + feats @ self.w_sp
        for g, fn in enumerate(self.groups):
            aff = getattr(self, f"s{g}_aff")
            u = x.index_select(1, getattr(self, f"s{g}_in")) * aff[:, 0] + aff[:, 1]
            v = (aff[:, 2] * fn(u) + aff[:, 3]) * getattr(self, f"s{g}_m")
            s = v @ getattr(self, f"s{g}_out")
            y = s if y is None else y + s
        if y is None:
            y = x.new_zeros(x.shape[0], self.out_dim)
        if self.bias is not None:
            y = y + self.bias
        return y


def _safe_recip(d: torch.Tensor) -> torch.Tensor:
    """1/d, with 0 where d == 0 (repeated knots: the term vanishes, as in Cox-de Boor)."""
    return torch.where(d != 0, 1.0 / torch.where(d != 0, d, torch.ones_like(d)), torch.zeros_like(d))


class InferenceKAN(nn.Module):
    """A snapshot of a KAN's function with plain torch operations, for torch.export and ONNX.

    Computes what ``model(x)`` computes (numeric and symbolic edges, biases, multiplication
    nodes) from copies of the model's tensors taken at construction: later training of the
    model does not change it. No custom autograd, caches or data-dependent control flow, so it
    traces with a dynamic batch dimension. Built by :func:`inference_module`.
    """

    def __init__(self, model):
        super().__init__()
        self.n_in = int(model.width_in[0])
        self.n_out = int(model.width_out[-1])
        self.layers = nn.ModuleList(_LayerInference(model.act_fun[l], model.symbolic_fun[l])
                                    for l in range(model.depth))
        # multiplication nodes after each layer: (n_sum, [arities])
        self.mult = [(int(model.width[l + 1][0]), [int(a) for a in model._arity[l + 1]])
                     for l in range(model.depth)]

    @staticmethod
    def _products(y: torch.Tensor, n_sum: int, arity: list[int]) -> torch.Tensor:
        if not arity:
            return y
        cols, start = [y[:, :n_sum]], n_sum
        for a in arity:
            cols.append(y[:, start:start + a].prod(-1, keepdim=True))
            start += a
        return torch.cat(cols, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, n_in) -> (batch, n_out)."""
        for layer, (n_sum, arity) in zip(self.layers, self.mult):
            x = self._products(layer(x), n_sum, arity)
        return x


def _is_kan(model) -> bool:
    """A kanlab KAN (or subclass), recognised by its parts: export sits below the model and
    does not import it."""
    return isinstance(model, nn.Module) and all(
        hasattr(model, a) for a in ("act_fun", "symbolic_fun", "width_in", "_mult", "config"))


def inference_module(model) -> InferenceKAN:
    """An export-friendly :class:`InferenceKAN` computing ``model``'s function (a snapshot)."""
    if not _is_kan(model):
        raise ValueError(f"inference_module needs a kanlab KAN, got {type(model).__name__}")
    return InferenceKAN(model).eval()


def _exportable(model) -> nn.Module:
    if _is_kan(model):
        return inference_module(model)
    if isinstance(model, nn.Module):
        return model
    raise ValueError(f"expected a kanlab KAN or a torch nn.Module, got {type(model).__name__}")


def _example(module: nn.Module, example_x, model) -> torch.Tensor:
    """Example input as a 2-D tensor with at least 2 rows (a batch of 1 would be specialized)."""
    dtype = getattr(model, "dtype", None)
    if not isinstance(dtype, torch.dtype):
        dtype = next((p.dtype for p in module.parameters()), None) or \
            next((b.dtype for b in module.buffers() if b.is_floating_point()), torch.get_default_dtype())
    if not isinstance(example_x, torch.Tensor):
        example_x = torch.as_tensor(np.asarray(example_x), dtype=dtype)
    x = example_x.detach()
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"example_x must be a non-empty (batch, n_in) tensor, got shape {tuple(x.shape)}")
    n_in = getattr(module, "n_in", None) or getattr(module, "n_var", None)
    if n_in is not None and x.shape[1] != n_in:
        raise ValueError(f"example_x must have shape (batch, {n_in}), got {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.to(dtype)
    if x.shape[0] < 2:
        x = x.expand(2, x.shape[1]).contiguous()
    return x


def export_torch(model, example_x, path=None, dynamic_batch: bool = True):
    """Export ``model`` with ``torch.export`` and return the ``ExportedProgram``.

    Args:
        model: a kanlab KAN (exported through :func:`inference_module`, since its training path
            is not traceable) or any traceable ``nn.Module`` such as a :class:`FormulaModule`.
        example_x: an example input ``(batch, n_in)`` (its values do not matter).
        path: when given, the program is also written there with ``torch.export.save``
            (read it back with ``torch.export.load(path).module()``).
        dynamic_batch: export with a symbolic batch dimension, so the program accepts any batch
            size (otherwise it is fixed to the example's).

    Returns:
        ``torch.export.ExportedProgram``; ``program.module()(x)`` evaluates it.
    """
    module = _exportable(model)
    x = _example(module, example_x, model)
    dyn = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
    with torch.no_grad():
        program = torch.export.export(module, (x,), dynamic_shapes=dyn)
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise ValueError(f"{path} is a folder: give a file name such as {path / 'model.pt2'}")
        torch.export.save(program, str(path))
    return program


def export_onnx(model, example_x, path, dynamic_batch: bool = True,
                opset_version: int | None = None, dynamo: bool | None = None):
    """Write ``model`` as an ONNX file (needs the ``onnx`` package) and return its path.

    Args:
        model: a kanlab KAN (through :func:`inference_module`) or a traceable ``nn.Module``.
        example_x: an example input ``(batch, n_in)``.
        path: the ``.onnx`` file to write.
        dynamic_batch: make the batch dimension symbolic (named ``batch``).
        opset_version: ONNX opset (default: the exporter's).
        dynamo: use torch's ``torch.export``-based exporter (needs ``onnxscript``) or, with
            False, the older TorchScript-based one; default: the former when ``onnxscript``
            is installed.

    The input is named ``x`` and the output ``y``. The written graph is checked with
    ``onnx.checker``.
    """
    try:
        import onnx
    except ImportError:
        raise ImportError("export_onnx needs the 'onnx' package: pip install onnx "
                          "(and onnxscript for the newer exporter)") from None
    module = _exportable(model)
    x = _example(module, example_x, model)
    from .io import check_output_path

    path = check_output_path(path, "model.onnx")
    if dynamo is None or dynamo:
        try:
            import onnxscript  # noqa: F401

            dynamo = True
        except ImportError:
            if dynamo:
                raise ImportError("export_onnx(dynamo=True) needs the 'onnxscript' package: "
                                  "pip install onnxscript, or pass dynamo=False") from None
            dynamo = False
    kw = {} if opset_version is None else {"opset_version": int(opset_version)}
    with torch.no_grad():
        if dynamo:
            dyn = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
            program = torch.onnx.export(module, (x,), dynamo=True, input_names=["x"],
                                        output_names=["y"], dynamic_shapes=dyn, verbose=False,
                                        **kw)
            program.save(os.fspath(path))
        else:
            axes = {"x": {0: "batch"}, "y": {0: "batch"}} if dynamic_batch else None
            torch.onnx.export(module, (x,), os.fspath(path), dynamo=False, input_names=["x"],
                              output_names=["y"], dynamic_axes=axes, **kw)
    onnx.checker.check_model(os.fspath(path))
    return path
