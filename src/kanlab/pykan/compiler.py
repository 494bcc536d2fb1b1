"""pykan's ``kan.compiler``: the kanpiler (a KAN initialised to compute a sympy formula)."""
from ..compiler import expr2kan, kanpiler  # noqa: F401

__all__ = ["expr2kan", "kanpiler"]
