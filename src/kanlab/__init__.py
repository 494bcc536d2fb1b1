"""kanlab: fast, side-effect free Kolmogorov-Arnold Networks on PyTorch."""
from .ablate import AblationResult, Task, ablate
from .datasets import create_dataset
from .discovery import DiscoveryResult, discover
from .layer import KANLayer
from .mlp import MLP
from .model import KAN
from .plot import plot_history, plot_shares
from .symbolic import SYMBOLIC_LIB, add_symbolic, ex_round, snap_constants
from .splines import bspline_basis, coef2curve, curve2coef, extend_grid, make_grid

MultKAN = KAN

__version__ = "0.1.0"

__all__ = [
    "KAN",
    "MLP",
    "MultKAN",
    "KANLayer",
    "create_dataset",
    "ablate",
    "AblationResult",
    "Task",
    "plot_history",
    "plot_shares",
    "discover",
    "DiscoveryResult",
    "bspline_basis",
    "coef2curve",
    "curve2coef",
    "extend_grid",
    "make_grid",
    "SYMBOLIC_LIB",
    "add_symbolic",
    "ex_round",
    "snap_constants",
    "__version__",
]


def __getattr__(name):  # the estimators need scikit-learn and pandas: imported on first use
    if name in ("KANRegressor", "KANClassifier"):
        from . import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'kanlab' has no attribute {name!r}")
