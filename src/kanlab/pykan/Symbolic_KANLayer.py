"""pykan's ``kan.Symbolic_KANLayer``: kanlab's symbolic layer under pykan's name and signature."""
from ..symbolic.layer import SymbolicLayer

__all__ = ["Symbolic_KANLayer"]


class Symbolic_KANLayer(SymbolicLayer):
    """Symbolic edges of one layer: ``funs_name`` (out x in), ``affine`` (out, in, 4), ``mask``."""

    def __init__(self, in_dim=3, out_dim=2, device="cpu"):
        super().__init__(in_dim, out_dim, device=device)
