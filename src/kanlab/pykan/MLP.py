"""pykan's ``kan.MLP``: kanlab's MLP."""
from ..mlp import MLP

__all__ = ["MLP"]
