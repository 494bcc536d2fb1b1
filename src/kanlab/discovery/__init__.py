"""From data to formula: ``kanlab.discover(X, y)``.

search.py   the search: validation, standardization, the list of attempts, selection
attempt.py  one KAN attempt (train, prune, refine, symbolic edges, formula)
structure.py  separability tests on a surrogate network, divide and conquer
runner.py   attempts in this process, a process pool or Ray
result.py   DiscoveryResult and the numeric helpers the stages share
"""
from .result import DiscoveryResult
from .search import discover

__all__ = ["discover", "DiscoveryResult"]
