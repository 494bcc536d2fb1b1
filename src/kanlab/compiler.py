"""The kanpiler: compile a sympy formula into a KAN that computes it exactly.

``expr2kan(inputs, expr)`` (alias ``kanpiler``, pykan's names) walks the expression tree and
builds a small layered graph:

- an *input* node per variable (layer 0);
- a *sum* node ``bias + sum_t c_t * f_t(a_t * child_t + b_t)``: one KAN node whose incoming
  edges are symbolic edges ``c*f(a*x+b)`` (``f`` a name of the symbolic library);
- a *product* node: a KAN multiplication node whose factors are sub-nodes of the same form.

A node sits one layer above its deepest child; a child needed higher up is carried by identity
edges (shared between all its uses). Two different functions of the same child cannot share
one edge, so the second one gets a node of its own (``x + x**2`` needs two layers). Terms of
a sum whose children sit two or more layers below are summed in one lower node first, so one
value is carried up instead of one per term. Numeric
constants and scalings go into the affine parameters and the node biases; identical
sub-expressions become one node. Every used edge is fixed symbolic; unused edges are switched
off (numeric and symbolic masks 0). The numeric branch keeps its random initialization, so an
edge returned to numeric form with ``unfix_symbolic`` trains like a fresh KAN edge.
"""
from __future__ import annotations

import math

import sympy

from .model import KAN
from .symbolic.library import SYMBOLIC_LIB

__all__ = ["expr2kan", "kanpiler", "sf2kan"]

# exponent -> library name (used only when the library holds that name)
_POWER_NAMES = {
    sympy.Integer(1): "x", sympy.Integer(2): "x^2", sympy.Integer(3): "x^3",
    sympy.Integer(4): "x^4", sympy.Integer(5): "x^5", sympy.Integer(-1): "1/x",
    sympy.Integer(-2): "1/x^2", sympy.Integer(-3): "1/x^3", sympy.Integer(-4): "1/x^4",
    sympy.Integer(-5): "1/x^5", sympy.Rational(1, 2): "sqrt", sympy.Rational(-1, 2): "1/sqrt(x)",
    sympy.Rational(3, 2): "x^1.5",
}


class _Node:
    """A node of the layered graph: kind 'in', 'sum' or 'mult'."""

    def __init__(self, kind: str, subs=(), var: int = -1, label=None):
        self.kind, self.subs, self.label = kind, list(subs), label
        self.index = var
        kids = [t[4].level for s in self.subs for t in s.terms]
        self.level = 0 if kind == "in" else 1 + max(kids, default=0)


class _Sub:
    """``bias + sum c * f(a * child + b)``; terms are lists [name, a, b, c, child]."""

    def __init__(self, bias: float = 0.0, terms=None):
        self.bias, self.terms = bias, terms or []

    def scaled(self, s: float) -> "_Sub":
        return _Sub(self.bias * s, [[n, a, b, c * s, ch] for n, a, b, c, ch in self.terms])

    def plus(self, other: "_Sub") -> "_Sub":
        return _Sub(self.bias + other.bias, self.terms + other.terms)


def _num(v, where) -> float:
    """A sympy number as a finite float, or a ValueError naming ``where``."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"cannot compile {where}: the constant {v} is not a real number") from None
    if not math.isfinite(f):
        raise ValueError(f"cannot compile {where}: the constant {v} is not finite")
    return f


def _split(expr, op):
    """(numeric part, rest) of an Add (op=Add) or Mul (op=Mul) by ``is_number``."""
    if expr.func is not op:
        return (sympy.Integer(0) if op is sympy.Add else sympy.Integer(1)), expr
    nums = [a for a in expr.args if a.is_number]
    rest = [a for a in expr.args if not a.is_number]
    return op(*nums), op(*rest)


def _function_names() -> dict:
    """sympy function class -> library name, from the current library (first name wins)."""
    out = {}
    for name, fn in SYMBOLIC_LIB.items():
        if isinstance(fn.sympy_fn, sympy.FunctionClass):
            out.setdefault(fn.sympy_fn, name)
    return out


class _Builder:
    """Expression -> graph of _Node, with one node per distinct sub-expression."""

    def __init__(self, inputs, expr_text: str):
        self.inputs = {s: _Node("in", var=i, label=s) for i, s in enumerate(inputs)}
        self.cache: dict = {}
        self.funcs = _function_names()
        self.powers = {e: n for e, n in _POWER_NAMES.items() if n in SYMBOLIC_LIB}
        self.expr_text = expr_text

    # ------------------------------------------------------------------ nodes
    def node(self, expr) -> _Node:
        """The node computing ``expr`` (an input, a product or a sum node)."""
        if expr in self.inputs:
            return self.inputs[expr]
        if isinstance(expr, sympy.Symbol):
            raise ValueError(f"cannot compile {self.expr_text}: symbol {expr} is not one of "
                             f"input_variables {list(self.inputs)}")
        if expr not in self.cache:
            coef, rest = _split(expr, sympy.Mul)
            if rest.func is sympy.Mul:  # two or more non-numeric factors: a product node
                subs = [self.finish(self.lin(f)) for f in rest.args]
                subs[0] = subs[0].scaled(_num(coef, expr))
                self.cache[expr] = _Node("mult", subs, label=expr)
            else:
                self.cache[expr] = _Node("sum", [self.finish(self.lin(expr))], label=expr)
        return self.cache[expr]

    def term(self, name: str, arg, where, scale: float = 1.0) -> _Sub:
        """``f(arg)`` as one term, the affine part of ``arg`` moved into a and b."""
        b, rest = _split(arg, sympy.Add)
        a, core = _split(rest, sympy.Mul)
        a, b = _num(a, where) * scale, _num(b, where) * scale
        return _Sub(0.0, [[name, a, b, 1.0, self.node(core)]])

    def finish(self, sub: _Sub) -> _Sub:
        """Merge terms that can share an edge; give the others a node of their own."""
        merged: dict = {}
        for name, a, b, c, ch in sub.terms:
            if name == "x":  # c*(a*u+b) = (c*a)*u + c*b
                sub.bias += c * b
                name, a, b, c = "x", 1.0, 0.0, c * a
            key = (id(ch), name, a, b)
            if key in merged:
                merged[key][3] += c
            else:
                merged[key] = [name, a, b, c, ch]
        terms, used = [], set()
        # identity terms keep the direct edge (their child is carried), functions move
        for t in sorted(merged.values(), key=lambda t: t[0] != "x"):
            if t[3] == 0.0:
                continue
            if id(t[4]) in used:  # the edge from this child is taken: own node for this term
                key = ("term", id(t[4]), t[0], t[1], t[2])
                if key not in self.cache:
                    self.cache[key] = _Node("sum", [_Sub(0.0, [[t[0], t[1], t[2], 1.0, t[4]]])],
                                            label=f"{t[0]} of {t[4].label}")
                t = ["x", 1.0, 0.0, t[3], self.cache[key]]
            used.add(id(t[4]))
            terms.append(t)
        return _Sub(sub.bias, self.group_low(terms))

    def group_low(self, terms: list) -> list:
        """Terms whose children sit two or more layers below this node are summed in one
        lower node, so one value is carried up instead of one per term."""
        level = 1 + max((t[4].level for t in terms), default=0)
        low = [t for t in terms if t[4].level <= level - 2]
        if len(low) < 2:
            return terms
        part = _Node("sum", [_Sub(0.0, self.group_low(low))], label="partial sum")
        return [t for t in terms if t[4].level > level - 2] + [["x", 1.0, 0.0, 1.0, part]]

    # ----------------------------------------------------------- expressions
    def lin(self, expr) -> _Sub:
        """``expr`` as bias + terms on child nodes."""
        if expr.is_number:
            return _Sub(_num(expr, expr))
        if isinstance(expr, sympy.Symbol):
            return _Sub(0.0, [["x", 1.0, 0.0, 1.0, self.node(expr)]])
        if expr.func is sympy.Add:
            out = _Sub()
            for arg in expr.args:
                out = out.plus(self.lin(arg))
            return out
        if expr.func is sympy.Mul:
            coef, rest = _split(expr, sympy.Mul)
            c = _num(coef, expr)
            if rest.func is sympy.Mul:
                return _Sub(0.0, [["x", 1.0, 0.0, c, self.node(rest)]])
            return self.lin(rest).scaled(c)
        if expr.func is sympy.Pow:
            return self.power(expr)
        if expr.func in self.funcs and len(expr.args) == 1:
            return self.term(self.funcs[expr.func], expr.args[0], expr)
        raise ValueError(
            f"cannot compile {expr} (in {self.expr_text}): {expr.func.__name__} is not in kanlab's "
            f"symbolic library; register it with kanlab.add_symbolic(name, torch_fn, "
            f"sympy_fn) (known functions: {', '.join(sorted(str(f) for f in self.funcs))})"
        )

    def power(self, expr) -> _Sub:
        base, ex = expr.args
        if not ex.is_number:
            if not base.is_number:  # base**ex = exp(ex * log(base)), for base > 0
                return self.term("exp", ex * sympy.log(base), expr)
            lb = _num(base, expr)
            if lb <= 0:
                raise ValueError(f"cannot compile {expr}: {base}**(...) needs a positive base")
            return self.term("exp", ex, expr, scale=math.log(lb))
        e = sympy.nsimplify(ex) if isinstance(ex, sympy.Float) else ex
        if e in self.powers:
            return self.term(self.powers[e], base, expr)
        # (base**q)**p: q must be an integer unless e is not (then base >= 0 anyway)
        for q, inner in self.powers.items():
            p = e / q
            if q != 1 and (q.is_integer or not e.is_integer) and p in self.powers:
                key = ("pow", base, q)
                if key not in self.cache:
                    self.cache[key] = _Node("sum", [self.finish(self.term(inner, base, expr))],
                                            label=base**q)
                return _Sub(0.0, [[self.powers[p], 1.0, 0.0, 1.0, self.cache[key]]])
        raise ValueError(
            f"cannot compile {expr} (in {self.expr_text}): exponent {ex} is not in kanlab's "
            f"symbolic library (supported: {', '.join(str(k) for k in self.powers)}, and "
            f"products of two of them)"
        )


def _layout(outputs: list[_Node]):
    """Nodes per level (inputs, then sum nodes before product nodes), carrying children."""
    depth = max(1, max(o.level for o in outputs))
    carries: dict = {}

    def carry(node: _Node, level: int) -> _Node:
        if node.level == level:
            return node
        key = (id(node), level)
        if key not in carries:
            below = carry(node, level - 1)
            carries[key] = _Node("sum", [_Sub(0.0, [["x", 1.0, 0.0, 1.0, below]])],
                                 label=node.label)
        return carries[key]

    levels = [dict() for _ in range(depth + 1)]
    for o in outputs:
        top = carry(o, depth) if o.level < depth else o
        levels[depth][id(top)] = top
    for lev in range(depth, 0, -1):
        for node in levels[lev].values():
            for sub in node.subs:
                for t in sub.terms:
                    t[4] = carry(t[4], lev - 1)
                    if lev - 1 > 0:
                        levels[lev - 1].setdefault(id(t[4]), t[4])
    out = []
    for lev in range(1, depth + 1):
        nodes = list(levels[lev].values())
        nodes = [n for n in nodes if n.kind == "sum"] + [n for n in nodes if n.kind == "mult"]
        for i, n in enumerate(nodes):
            n.index = i
        out.append(nodes)
    return out


def _configure(model: KAN, layers) -> None:
    """Fix the edges, affine parameters and biases of the freshly built ``model``."""
    import torch

    with torch.no_grad():
        for l in range(model.depth):
            model.act_fun[l].mask.zero_()
            sym = model.symbolic_fun[l]
            sym.mask.zero_()
            sym.affine.zero_()
            sym.funs_name = [["0"] * sym.in_dim for _ in range(sym.out_dim)]
    for l, nodes in enumerate(layers):
        layer = model.act_fun[l]
        n_sum = sum(1 for n in nodes if n.kind == "sum")
        subs = [n.subs[0] for n in nodes[:n_sum]] + [s for n in nodes[n_sum:] for s in n.subs]
        for j, sub in enumerate(subs):
            bias = sub.bias
            for name, a, b, c, child in sub.terms:
                model.symbolic_fun[l].set_edge(j, child.index, name, [a, b, c, 0.0])
                model.set_mode(l, child.index, j, "s")
            if layer.bias is not None:
                with torch.no_grad():
                    layer.bias[j] = bias
            elif sub.terms:  # no bias parameter: the constant goes into one edge's d
                with torch.no_grad():
                    model.symbolic_fun[l].affine[j, sub.terms[0][4].index, 3] = bias
            elif bias != 0.0:  # a constant and no bias: a '0' edge whose d is the constant
                model.symbolic_fun[l].set_edge(j, 0, "0", [0.0, 0.0, 0.0, bias])
                model.set_mode(l, 0, j, "s")


def expr2kan(input_variables, expr, grid=5, k=3, auto_save=False, **kan_kwargs) -> KAN:
    """Compile the sympy formula ``expr`` of ``input_variables`` into a KAN computing it.

    Args:
        input_variables: sympy Symbols, in the order of the model's inputs (a single Symbol
            is accepted). Variables the formula does not use get no edges.
        expr: a sympy expression (or a string sympy can parse), or a list of them for a
            model with one output per expression.
        grid, k: grid intervals and spline order of the (numeric) spline branch.
        auto_save: accepted for pykan compatibility and ignored (kanlab writes no files).
        **kan_kwargs: further :class:`~kanlab.model.KAN` arguments (``dtype``, ``device``,
            ``seed``, ``grid_range``, ``base_fun``, ...).

    Supported: sums, numeric constants and scalings (folded into affine parameters and
    biases), products (multiplication nodes of any arity), powers whose exponent the library
    has (2..5, -1..-5, 1/2, -1/2, 3/2, and products of two of them such as 6, 1/4 or 5/2
    via two edges), ``c**expr`` with a constant ``c > 0`` (one exp edge), ``u**v`` of two
    expressions as ``exp(v*log(u))`` (for ``u > 0``), and every one-argument
    function of the library (sin, cos, tan, tanh, exp, log, Abs, sign, asin, acos, atan,
    atanh, and any registered with ``add_symbolic`` whose sympy function is a sympy class).

    Raises:
        ValueError: naming the sub-expression that cannot be compiled (a function or exponent
            not in the library, a symbol not in ``input_variables``, a non-real constant).

    Returns:
        KAN whose forward computes ``expr`` (up to floating point and the library's domain
        guards near singularities: log, 1/x, sqrt... clamp arguments within 1e-4 of them),
        with every used edge symbolic and trainable (affine parameters, node biases).
    """
    del auto_save
    for bad in ("width", "mult_arity"):
        if bad in kan_kwargs:
            raise ValueError(f"expr2kan sets {bad} itself from the expression")
    if isinstance(input_variables, sympy.Symbol):
        input_variables = [input_variables]
    inputs = list(input_variables)
    if not inputs or not all(isinstance(s, sympy.Symbol) for s in inputs):
        raise ValueError(f"input_variables must be a non-empty list of sympy Symbols, got "
                         f"{input_variables!r}")
    if len(set(inputs)) != len(inputs):
        raise ValueError(f"input_variables has repeated symbols: {inputs}")
    exprs = list(expr) if isinstance(expr, (list, tuple)) else [expr]
    if not exprs:
        raise ValueError("expr must be an expression or a non-empty list of expressions")
    try:
        exprs = [sympy.sympify(e) for e in exprs]
    except (sympy.SympifyError, TypeError) as err:
        raise ValueError(f"expr must be a sympy expression: {err}") from None
    builder = _Builder(inputs, ", ".join(str(e) for e in exprs))
    for e in exprs:
        if not isinstance(e, sympy.Expr):
            raise ValueError(f"cannot compile {e}: not a scalar sympy expression")
        missing = sorted(map(str, e.free_symbols - set(inputs)))
        if missing:
            raise ValueError(f"cannot compile {e}: symbol(s) {', '.join(missing)} not in "
                             f"input_variables {inputs}")
    outputs = []
    for e in exprs:
        node = builder.node(e)
        if node.kind == "in":  # the output needs at least one layer: an identity edge
            node = _Node("sum", [_Sub(0.0, [["x", 1.0, 0.0, 1.0, node]])], label=e)
        elif any(node is o for o in outputs):  # a repeated output gets its own copy
            node = _Node(node.kind, [_Sub(s.bias, [list(t) for t in s.terms])
                                     for s in node.subs], label=e)
        outputs.append(node)
    top = max(o.level for o in outputs)
    kinds = [o.kind == "mult" and o.level == top for o in outputs]
    if kinds != sorted(kinds):  # the last layer lists sum nodes first: wrap the products
        outputs = [_Node("sum", [_Sub(0.0, [["x", 1.0, 0.0, 1.0, o]])], label=o.label)
                   if o.kind == "mult" else o for o in outputs]
    layers = _layout(outputs)
    width = [[len(inputs), 0]] + [[sum(n.kind == "sum" for n in ns), sum(n.kind == "mult"
                                                                         for n in ns)]
                                  for ns in layers]
    arity = [[]] + [[len(n.subs) for n in ns if n.kind == "mult"] for ns in layers]
    mult_arity = arity if any(arity) else 2
    model = KAN(width=width, grid=grid, k=k, mult_arity=mult_arity, **kan_kwargs)
    _configure(model, layers)
    return model


kanpiler = sf2kan = expr2kan
