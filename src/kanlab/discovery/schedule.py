"""The list of attempts and the budget rules of the search (:mod:`.search`).

The attempts are data: a list of hidden shapes (widths, lists of widths, ``"mult"``, and
``"separable"``, the placeholder that the structure tests replace by the structures they find),
cycled through with a new seed each time. Two rules share the budget among them: a structure's
first try with other structures queued gets half of what is left, and an attempt starts only
when it fits in the time left.
"""
from __future__ import annotations

import numpy as np

__all__ = ["STRUCTURES", "hidden_list", "structure_share", "time_for"]

STRUCTURE_SHARE = 0.5  # of the budget left, for a structure with more queued behind it
STRUCTURES = ("factors", "transform", "reduce", "sum(", "groups(", "affine(")  # their attempts' names


def hidden_ok(h) -> bool:
    if isinstance(h, list):  # several hidden layers, e.g. [5, 5]
        return bool(h) and all(v >= 1 for v in h)
    if isinstance(h, str):
        return h in ("mult", "separable")
    return isinstance(h, (int, np.integer)) and not isinstance(h, bool) and h >= 1


def hidden_list(hidden, d: int) -> list:
    """The attempts' hidden shapes, in order, from the caller's ``hidden`` (None: the default
    list for d inputs); checked."""
    if hidden is None:  # wide enough to train reliably; sparsity and pruning find the shape
        # from 3 inputs on, a plain network takes seconds and structure (groups, symmetries,
        # splits) is the likelier route, so the structure tests come first
        hidden = ([2 * d, "separable"] if d < 3 else ["separable", 2 * d]) + [2 * d + 1, d + 2] \
            if d > 1 else [2, 3]
    elif isinstance(hidden, (int, str)):
        hidden = [hidden]
    hidden = [[int(v) for v in h] if isinstance(h, list) else h for h in hidden]
    if not hidden or not all(hidden_ok(h) for h in hidden):
        raise ValueError(f"hidden must list positive ints, lists of them (several hidden "
                         f"layers, e.g. [5, 5]), 'mult' or 'separable', got {hidden}")
    if d == 1 or "separable" not in hidden:
        hidden = [h for h in hidden if h != "separable"] or [2, 3]
    return hidden


def structure_share(a, shapes) -> float:
    """The share of the budget left that attempt ``a`` (of the cycling list ``shapes``) gets:
    half for a structure's first try with other structures queued behind it, all of it
    otherwise. A sub-search that finds nothing exact runs to its deadline, and the next
    structure may be the one that explains the data (II.35.21 at noise 0.01: ``reduce(B/kb)``
    first, then ``factors(n_rho | ...)``)."""
    first = a < len(shapes) and isinstance(shapes[a], tuple)
    return STRUCTURE_SHARE if first and any(isinstance(e, tuple) for e in shapes[a + 1:]) \
        else 1.0


def time_for(a, shapes, runs, left: float) -> bool:
    """Whether attempt ``a`` fits in the ``left`` seconds: a structure's first try does when a
    second is left (it keeps to the share it is given); another attempt when the mean network
    attempt among ``runs`` does (a structure's sub-search, which ran to its share, aside)."""
    if left >= 1.0 and a < len(shapes) and isinstance(shapes[a], tuple):
        return True
    nets = [r for r in runs if not str(r["hidden"]).startswith(STRUCTURES)] or runs
    return sum(r["seconds"] for r in nets) / len(nets) <= left
