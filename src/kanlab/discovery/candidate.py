"""The algebraic stage's unit of output: one formula and how it was found."""
from __future__ import annotations

from dataclasses import dataclass

import sympy

__all__ = ["Candidate"]


@dataclass
class Candidate:
    """One algebraic formula: ``expr`` in the caller's symbols, with ``label`` saying how."""

    expr: sympy.Expr
    label: str
    n_terms: int
    train_rel_rss: float  # residual sum of squares of the transformed target, relative
