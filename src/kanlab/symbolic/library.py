"""The symbolic function library: name -> torch function, sympy function, complexity.

Every entry has
- ``torch_fn``: the exact function on tensors (NaN/Inf outside its domain, like numpy);
- ``safe_fn``: the same function made finite everywhere, used by the model's forward pass while
  training (log, 1/x, sqrt, arcsin, ... never produce NaN/Inf or infinite gradients); it equals
  ``torch_fn`` on the domain away from singularities;
- ``sympy_fn``: the sympy counterpart, for formulas;
- ``complexity``: a small integer used to prefer simpler functions;
- ``degree``: ``p`` when ``f(s*u) = s**p * f(u)`` for ``s > 0`` (powers), else ``None``; lets the
  fitter write power edges with ``a = +-1``, which keeps formulas free of redundant constants.

Models store function *names* only. :func:`add_symbolic` registers new functions; loading a model
that uses an unregistered name raises an error naming it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy
import torch

__all__ = ["SymbolicFunction", "SYMBOLIC_LIB", "add_symbolic", "get_symbolic", "default_lib",
           "check_lib", "describe_lib"]

# singularity guards: |u| below _TINY counts as 0 for 1/u; arguments kept inside (-1, 1) by _EDGE
_TINY = 1e-4
_EDGE = 1e-6
_EXP_MAX = 40.0


@dataclass(frozen=True)
class SymbolicFunction:
    name: str
    torch_fn: Callable[[torch.Tensor], torch.Tensor]
    sympy_fn: Callable
    complexity: int
    safe_fn: Callable[[torch.Tensor], torch.Tensor]
    degree: float | None = None
    parity: str | None = None  # "even": f(-u) = f(u); "odd": f(-u) = -f(u)


def _away_from_zero(u: torch.Tensor) -> torch.Tensor:
    """u with |u| >= _TINY, keeping its sign (0 maps to +_TINY)."""
    sign = torch.where(u < 0, -torch.ones_like(u), torch.ones_like(u))
    return sign * torch.clamp(u.abs(), min=_TINY)


def _inv_power(n: int):
    def exact(u):
        return u ** (-n)

    def safe(u):
        return _away_from_zero(u) ** (-n)

    return exact, safe


def _safe_pow_pos(p: float):
    def safe(u):
        return torch.clamp(u, min=_TINY) ** p

    return safe


def _safe_unit(fn):
    def safe(u):
        return fn(torch.clamp(u, -1 + _EDGE, 1 - _EDGE))

    return safe


def _safe_tan(u):
    c = torch.cos(u)
    c = torch.where(c.abs() < _TINY, torch.where(c < 0, -_TINY, _TINY) * torch.ones_like(c), c)
    return torch.sin(u) / c


def _sgn(u):
    return torch.sign(u)


def _zero(u):
    return torch.zeros_like(u)


def _gaussian(u):
    return torch.exp(-(u**2))


SYMBOLIC_LIB: dict[str, SymbolicFunction] = {}


def add_symbolic(name: str, torch_fn: Callable, sympy_fn: Callable, complexity: int = 2,
                 safe_fn: Callable | None = None, degree: float | None = None,
                 parity: str | None = None) -> None:
    """Register a function for symbolic edges (pykan's ``add_symbolic``).

    Args:
        name: the name edges will use (``model.symbolic_fun[l].funs_name``).
        torch_fn: elementwise function on tensors.
        sympy_fn: the same function on sympy expressions (e.g. ``sympy.cosh``).
        complexity: cost used when ranking candidates (x is 1, sin is 2, arcsin 4).
        safe_fn: a version that stays finite everywhere, for training; default ``torch_fn``.
        degree: ``p`` if ``f(s*u) = s**p f(u)`` for ``s > 0`` (power functions), else None.
        parity: ``"even"`` or ``"odd"`` when f is, so fits can be written with a > 0.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"symbolic function name must be a non-empty string, got {name!r}")
    if not callable(torch_fn) or not callable(sympy_fn):
        raise ValueError("add_symbolic needs a callable torch_fn and a callable sympy_fn")
    if safe_fn is not None and not callable(safe_fn):
        raise ValueError("safe_fn must be callable")
    if isinstance(complexity, bool) or not isinstance(complexity, (int, float)) or complexity < 0:
        raise ValueError(f"complexity must be a non-negative number, got {complexity!r}")
    if parity not in (None, "even", "odd"):
        raise ValueError(f"parity must be None, 'even' or 'odd', got {parity!r}")
    SYMBOLIC_LIB[name] = SymbolicFunction(name, torch_fn, sympy_fn, complexity,
                                          safe_fn or torch_fn, degree, parity)


def get_symbolic(name: str) -> SymbolicFunction:
    """The library entry for ``name``; a clear error for unknown names."""
    try:
        return SYMBOLIC_LIB[name]
    except KeyError:
        raise ValueError(
            f"unknown symbolic function {name!r}: register it with "
            f"kanlab.add_symbolic({name!r}, torch_fn, sympy_fn, complexity) "
            f"(known: {', '.join(sorted(SYMBOLIC_LIB))})"
        ) from None


def describe_lib() -> str:
    """The registered names, each alias beside its first name (``sqrt (= x^0.5)``)."""
    import sympy

    u = sympy.Symbol("u")
    groups: dict = {}
    for name, fn in SYMBOLIC_LIB.items():
        try:
            key = sympy.srepr(fn.sympy_fn(u))
        except Exception:  # noqa: BLE001 - a user function sympy cannot apply: its own entry
            key = name
        groups.setdefault(key, []).append(name)
    return ", ".join(g[0] + (f" (= {', '.join(g[1:])})" if len(g) > 1 else "")
                     for g in groups.values())


def check_lib(lib) -> list[str] | None:
    """``lib`` (None, or names of registered functions) checked before any work: a ValueError
    naming every unknown entry and the known names, never a failure deep inside a search."""
    if lib is None:
        return None
    if isinstance(lib, str):
        lib = [t.strip() for t in lib.split(",") if t.strip()]
    try:
        names = list(lib)
    except TypeError:
        raise ValueError(f"lib must be a list of function names, got {lib!r}") from None
    if not names:
        raise ValueError("lib is empty: give at least one function name, e.g. ['x', 'x^2', 'sin']")
    bad = [n for n in names if not isinstance(n, str) or n not in SYMBOLIC_LIB]
    if bad:
        raise ValueError(
            f"unknown function name(s) in lib: {', '.join(repr(b) for b in bad)}; known: "
            f"{describe_lib()} (register others with kanlab.add_symbolic)")
    return list(dict.fromkeys(names))


def default_lib() -> list[str]:
    """Names of every registered function (the default candidate set)."""
    return list(SYMBOLIC_LIB)


def _register_builtins() -> None:
    def S(name, t, s, c, safe=None, degree=None, parity=None):
        if parity is None and degree is not None and float(degree).is_integer():
            parity = "even" if int(degree) % 2 == 0 else "odd"
        add_symbolic(name, t, s, c, safe, degree, parity)

    S("x", lambda u: u, lambda u: u, 1, degree=1.0)
    S("x^2", lambda u: u**2, lambda u: u**2, 2, degree=2.0)
    S("x^3", lambda u: u**3, lambda u: u**3, 3, degree=3.0)
    S("x^4", lambda u: u**4, lambda u: u**4, 3, degree=4.0)
    S("x^5", lambda u: u**5, lambda u: u**5, 3, degree=5.0)
    for n in range(1, 6):
        exact, safe = _inv_power(n)
        S("1/x" if n == 1 else f"1/x^{n}", exact, (lambda m: lambda u: u ** (-m))(n),
          2 if n <= 2 else 3, safe, degree=float(-n))
    S("sqrt", torch.sqrt, sympy.sqrt, 2, _safe_pow_pos(0.5), degree=0.5)
    S("x^0.5", torch.sqrt, sympy.sqrt, 2, _safe_pow_pos(0.5), degree=0.5)
    S("x^1.5", lambda u: u**1.5, lambda u: u ** sympy.Rational(3, 2), 3, _safe_pow_pos(1.5),
      degree=1.5)
    S("1/sqrt(x)", lambda u: u**-0.5, lambda u: 1 / sympy.sqrt(u), 2, _safe_pow_pos(-0.5),
      degree=-0.5)
    S("1/x^0.5", lambda u: u**-0.5, lambda u: 1 / sympy.sqrt(u), 2, _safe_pow_pos(-0.5),
      degree=-0.5)
    S("exp", torch.exp, sympy.exp, 2, lambda u: torch.exp(torch.clamp(u, max=_EXP_MAX)))
    S("log", torch.log, sympy.log, 2, lambda u: torch.log(torch.clamp(u, min=_TINY)))
    S("abs", torch.abs, sympy.Abs, 3, degree=1.0, parity="even")
    S("sin", torch.sin, sympy.sin, 2, parity="odd")
    S("cos", torch.cos, sympy.cos, 2, parity="even")
    S("tan", torch.tan, sympy.tan, 3, _safe_tan, parity="odd")
    S("tanh", torch.tanh, sympy.tanh, 3, parity="odd")
    S("sgn", _sgn, sympy.sign, 3, degree=0.0, parity="odd")
    S("arcsin", torch.arcsin, sympy.asin, 4, _safe_unit(torch.arcsin), parity="odd")
    S("arccos", torch.arccos, sympy.acos, 4, _safe_unit(torch.arccos))
    S("arctan", torch.arctan, sympy.atan, 4, parity="odd")
    S("arctanh", torch.arctanh, sympy.atanh, 4, _safe_unit(torch.arctanh), parity="odd")
    S("0", _zero, lambda u: sympy.Integer(0), 0)
    S("gaussian", _gaussian, lambda u: sympy.exp(-(u**2)), 3, parity="even")


_register_builtins()
