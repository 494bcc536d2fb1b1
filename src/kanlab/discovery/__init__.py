"""From data to formula: ``kanlab.discover(X, y)``.

search.py   the search: validation, standardization, the list of attempts, selection
attempt.py  one KAN attempt (train, prune, refine, symbolic edges, formula)
structure.py  separability tests on a surrogate network, divide and conquer
groups.py   dimensionless groups: y = monomial prefactor * g(monomial groups, other inputs)
symmetry.py pair symmetries that remove a variable; additive.py: sum splits
algebraic.py, terms.py, sparse.py  the algebraic stage; univariate.py: the curve stage
candidates.py  their formulas scored; cleanup.py: refit, snapping, shortest form
select.py   Pareto front and selection; conditioning.py: scales, offsets, names
runner.py   attempts in this process, a process pool or Ray
result.py   DiscoveryResult and the numeric helpers the stages share
"""
from .result import DiscoveryResult
from .search import discover

__all__ = ["discover", "DiscoveryResult"]
