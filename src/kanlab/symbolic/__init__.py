"""Symbolic edges: the function library, batched fits, formulas and constant snapping."""
from .fit import fit_functions, score_candidates
from .formula import ex_round, expression_size, network_formula
from .layer import SymbolicLayer
from .library import SYMBOLIC_LIB, add_symbolic, get_symbolic
from .snap import refine_constants, snap_constants

__all__ = [
    "SYMBOLIC_LIB",
    "SymbolicLayer",
    "add_symbolic",
    "ex_round",
    "expression_size",
    "fit_functions",
    "get_symbolic",
    "network_formula",
    "refine_constants",
    "score_candidates",
    "snap_constants",
]
