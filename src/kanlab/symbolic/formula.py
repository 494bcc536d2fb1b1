"""From a symbolic network to sympy expressions, and helpers on those expressions."""
from __future__ import annotations

import sympy

from .library import get_symbolic

__all__ = ["network_formula", "ex_round", "make_symbols", "expression_size"]


def make_symbols(n: int, var=None) -> list[sympy.Symbol]:
    """Input symbols: ``var`` as names or symbols, default ``x_1 ... x_n`` (pykan's names)."""
    if var is None:
        return [sympy.Symbol(f"x_{i + 1}") for i in range(n)]
    var = list(var)
    if len(var) != n:
        raise ValueError(f"var needs {n} names (one per input), got {len(var)}")
    out = []
    for v in var:
        if isinstance(v, sympy.Symbol):
            out.append(v)
        elif isinstance(v, str) and v:
            out.append(sympy.Symbol(v))
        else:
            raise ValueError(f"variable names must be non-empty strings or sympy Symbols, got {v!r}")
    return out


def _num(v: float) -> sympy.Expr:
    """A float as a sympy number (exact zero/one stay integers, so they vanish cleanly)."""
    if v == 0.0:
        return sympy.Integer(0)
    if v == 1.0:
        return sympy.Integer(1)
    if v == -1.0:
        return sympy.Integer(-1)
    return sympy.Float(v, 15)


def _pairs(norm, n: int, name: str):
    try:
        mean, std = norm
        mean = [float(v) for v in (mean.tolist() if hasattr(mean, "tolist") else mean)] \
            if not isinstance(mean, (int, float)) else [float(mean)] * n
        std = [float(v) for v in (std.tolist() if hasattr(std, "tolist") else std)] \
            if not isinstance(std, (int, float)) else [float(std)] * n
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (mean, std), each a number or {n} numbers") from None
    if len(mean) != n or len(std) != n or any(s == 0 for s in std):
        raise ValueError(f"{name} needs {n} means and {n} non-zero stds")
    return mean, std


def numeric_edges(model) -> list:
    """(l, i, j) of every active numeric edge."""
    out = []
    for l in range(model.depth):
        out += [(l, i, j) for i, j in (model.act_fun[l].mask != 0).nonzero().tolist()]
    return out


def network_formula(model, var=None, simplify: bool = True, n_digits: int | None = None,
                    normalizer=None, output_normalizer=None, numeric: str = "raise"):
    """Sympy expressions of every output of a fully symbolic ``model``.

    Raises ValueError naming the edges that are still numeric; ``numeric="zero"`` writes them
    as 0 instead (pykan's behaviour, for its namespace).
    """
    left = numeric_edges(model) if numeric == "raise" else []
    if left:
        shown = ", ".join(str(e) for e in left[:6]) + (" ..." if len(left) > 6 else "")
        raise ValueError(
            f"{len(left)} active edge(s) are still numeric (l, i, j): {shown}. Call "
            "model.auto_symbolic() or model.fix_symbolic(l, i, j, name) first, or mask them out"
        )
    symbols = make_symbols(model.width_in[0], var)
    nodes: list[sympy.Expr] = list(symbols)
    if normalizer is not None:
        mean, std = _pairs(normalizer, len(nodes), "normalizer")
        nodes = [(v - _num(m)) / _num(s) for v, m, s in zip(nodes, mean, std)]
    for l in range(model.depth):
        sym = model.symbolic_fun[l]
        aff = sym.affine.detach().double().cpu().tolist()
        smask = sym.mask.detach().cpu().tolist()
        bias = model.act_fun[l].bias
        bias = bias.detach().double().cpu().tolist() if bias is not None else None
        sub = []
        for j in range(model.width_out[l + 1]):
            terms = [_num(bias[j])] if bias is not None else []
            for i in range(model.width_in[l]):
                if smask[j][i] == 0:
                    continue
                a, b, c, d = aff[j][i]
                fn = get_symbolic(sym.funs_name[j][i])
                m = smask[j][i]
                inner = _num(a) * nodes[i] + _num(b)
                terms.append(_num(m) * (_num(c) * fn.sympy_fn(inner) + _num(d)))
            sub.append(sympy.Add(*terms) if terms else sympy.Integer(0))
        n_sum = model.width[l + 1][0]
        nxt = sub[:n_sum]
        start = n_sum
        for a in model._arity[l + 1]:
            nxt.append(sympy.Mul(*sub[start:start + a]))
            start += a
        nodes = nxt
    out = nodes
    if output_normalizer is not None:
        mean, std = _pairs(output_normalizer, len(out), "output_normalizer")
        out = [e * _num(s) + _num(m) for e, m, s in zip(out, mean, std)]
    if n_digits is not None:
        out = [ex_round(e, n_digits) for e in out]
    if simplify:
        out = [tidy(e) for e in out]
    return out, symbols


def tidy(expr: sympy.Expr, max_ops: int = 60, time_limit: float = 2.0) -> sympy.Expr:
    """A simpler equal form of ``expr``, in bounded time.

    Always tries cheap rewrites (expand, then merge powers/exponentials). ``sympy.simplify`` is
    tried too when the expression has at most ``max_ops`` operations, but it can take minutes on
    some small trigonometric expressions, so it runs under a ``time_limit`` (seconds; a SIGALRM
    timer, only possible in the main thread: elsewhere only the cheap rewrites run). The form
    with the fewest operations wins.
    """
    try:
        best = _cheap_tidy(expr)
    except Exception:  # pragma: no cover - sympy internals
        best = expr
    try:
        if sympy.count_ops(expr) <= max_ops:
            full = _time_limited(sympy.simplify, expr, time_limit)
            if full is not None and sympy.count_ops(full) <= sympy.count_ops(best):
                best = full
    except Exception:  # pragma: no cover - sympy internals
        pass
    return best


# a product of sums is multiplied out only when it makes at most this many terms: a product of
# six sums of four terms is 4096 of them, which sympy takes minutes over, and never shorter
# (bonus test_17 at noise 0.001: 39 s of a 60 s budget in one attempt's tidying)
_EXPAND_MAX_TERMS = 64


def _expanded_terms(e) -> int:
    """An upper bound on the number of top-level terms of ``sympy.expand(e)``, capped at one
    past the limit (so a huge integer power is not raised in full: 2**64 already exceeds it).
    Function arguments count as one term each; expand rewrites them too, but the products
    that cost minutes are those of the formula's own sums."""
    cap = _EXPAND_MAX_TERMS + 1
    if isinstance(e, sympy.Add):
        return min(sum(_expanded_terms(a) for a in e.args), cap)
    if isinstance(e, sympy.Mul):
        n = 1
        for a in e.args:
            n = min(n * _expanded_terms(a), cap)
        return n
    if isinstance(e, sympy.Pow) and e.exp.is_Integer and e.exp > 1:
        return min(_expanded_terms(e.base) ** min(int(e.exp), 64), cap)
    return 1


def _cheap_tidy(expr):
    e = sympy.expand(expr) if _expanded_terms(expr) <= _EXPAND_MAX_TERMS else expr
    e = sympy.powsimp(e, combine="exp")
    return e if sympy.count_ops(e) <= sympy.count_ops(expr) else expr


class _Timeout(BaseException):  # not Exception: sympy must not swallow it
    pass


def _time_limited(fn, arg, seconds: float):
    """``fn(arg)``, or None when it runs past ``seconds`` (or cannot be timed safely)."""
    import signal
    import threading

    if (threading.current_thread() is not threading.main_thread()
            or not hasattr(signal, "setitimer") or seconds <= 0):
        return None
    if signal.getitimer(signal.ITIMER_REAL)[0] > 0:  # the caller's own timer: leave it alone
        return None

    def on_alarm(signum, frame):
        raise _Timeout

    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return fn(arg)
        except _Timeout:
            return None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, old)


def ex_round(ex1: sympy.Expr, n_digit: int = 4) -> sympy.Expr:
    """Round every floating-point constant of ``ex1`` to ``n_digit`` decimals (pykan's names)."""
    if isinstance(n_digit, bool) or not isinstance(n_digit, int) or n_digit < 0:
        raise ValueError(f"n_digit must be a non-negative integer, got {n_digit!r}")
    expr = sympy.sympify(ex1)
    repl = {}
    for a in sympy.preorder_traversal(expr):
        if isinstance(a, sympy.Float):
            r = round(float(a), n_digit)
            repl[a] = sympy.Integer(int(r)) if r == int(r) else sympy.Float(r, 15)
    return expr.xreplace(repl)


def expression_size(expr: sympy.Expr) -> int:
    """Number of nodes in the expression tree (SRBench's model size)."""
    return sum(1 for _ in sympy.preorder_traversal(expr))
