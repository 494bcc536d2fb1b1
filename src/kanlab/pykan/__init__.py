"""pykan's namespace on kanlab's engine.

``from kanlab.pykan import *`` gives the names ``from kan import *`` gives (torch, np, plt, nn,
sympy and its functions, ``LBFGS``, the utils, ``KAN``/``MultKAN``), and the submodules mirror
pykan's (``kanlab.pykan.utils``, ``.spline``, ``.MultKAN``, ``.KANLayer``, ``.Symbolic_KANLayer``,
``.hypothesis``, ``.compiler``, ``.LBFGS``, ``.MLP``), so a pykan script runs with only its
import lines changed (``kan`` -> ``kanlab.pykan``). This package holds names and thin adapters;
the engine is kanlab's, and ``kanlab``'s own namespace is not touched by it.
"""
from .MultKAN import *  # noqa: F401,F403
from .utils import *  # noqa: F401,F403
