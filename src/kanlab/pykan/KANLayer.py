"""pykan's ``kan.KANLayer``: kanlab's layer (same parameter names and shapes)."""
from ..layer import KANLayer

__all__ = ["KANLayer"]
