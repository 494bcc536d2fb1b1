"""Network shapes: ``width`` (with multiplication nodes), arities and per-layer settings.

Parsed here, below the model, so that the model, its file format and the ablation tools share
one check without importing each other.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np

__all__ = ["parse_width", "parse_arity", "per_layer"]


def parse_width(width) -> list[list[int]]:
    if width is None or isinstance(width, (str, bytes)) or not isinstance(width, Sequence):
        raise ValueError(f"width must be a list such as [2, 5, 1], got {width!r}")
    if len(width) < 2:
        raise ValueError(f"width needs at least two entries (inputs and outputs), got {list(width)!r}")
    out = []
    for i, w in enumerate(width):
        if isinstance(w, (numbers.Integral, np.integer)) and not isinstance(w, bool):
            pair = [int(w), 0]
        elif isinstance(w, Sequence) and len(w) == 2 and all(
            isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, bool) for v in w
        ):
            pair = [int(w[0]), int(w[1])]
        else:
            raise ValueError(f"width[{i}] must be an int or a pair [n_sum, n_mult], got {w!r}")
        if pair[0] < 0 or pair[1] < 0 or pair[0] + pair[1] < 1:
            raise ValueError(f"width[{i}] must have at least one node, got {w!r}")
        out.append(pair)
    if out[0][1] > 0:
        raise ValueError(f"width[0] = {width[0]!r}: the input layer cannot have multiplication nodes")
    return out


def parse_arity(mult_arity, width: list[list[int]]) -> list[list[int]]:
    """Arity of every multiplication node, per width entry: ``[[...], [2, 2], ...]``."""
    def check(a):
        if isinstance(a, bool) or not isinstance(a, (numbers.Integral, np.integer)) or a < 2:
            raise ValueError(f"mult_arity entries must be integers >= 2, got {a!r}")
        return int(a)

    if isinstance(mult_arity, (numbers.Integral, np.integer)) and not isinstance(mult_arity, bool):
        a = check(mult_arity)
        return [[a] * w[1] for w in width]
    if not isinstance(mult_arity, Sequence) or len(mult_arity) != len(width):
        raise ValueError(
            f"mult_arity must be an int or one list per width entry ({len(width)}), got {mult_arity!r}"
        )
    out = []
    for l, (w, ar) in enumerate(zip(width, mult_arity)):
        ar = [ar] * w[1] if isinstance(ar, (numbers.Integral, np.integer)) else list(ar)
        if len(ar) != w[1]:
            raise ValueError(f"mult_arity[{l}] needs {w[1]} entries (one per multiplication node), got {ar!r}")
        out.append([check(a) for a in ar])
    return out


def per_layer(name: str, value, depth: int) -> list[int]:
    if isinstance(value, (list, tuple)):
        if len(value) != depth:
            raise ValueError(f"{name} given per layer needs {depth} entries, got {len(value)}")
        return [v for v in value]
    return [value] * depth
