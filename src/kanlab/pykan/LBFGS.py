"""pykan's ``LBFGS`` optimizer: a ``torch.optim.Optimizer`` with pykan's signature.

pykan ships a modified copy of PyTorch's L-BFGS that adds ``tolerance_ys`` (curvature pairs with
``s.y`` at or below it are skipped). This adapter is PyTorch's L-BFGS with that argument
accepted; PyTorch skips pairs with ``s.y <= 1e-10``, which only matters for tolerances above
that. kanlab's own trainer uses :class:`kanlab.optim.LBFGS` (flat parameters, less overhead).
"""
import torch

__all__ = ["LBFGS"]


class LBFGS(torch.optim.LBFGS):
    """``torch.optim.LBFGS(params, lr, max_iter, max_eval, tolerance_grad, tolerance_change,
    history_size, line_search_fn)`` plus pykan's ``tolerance_ys``."""

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7,
                 tolerance_change=1e-9, tolerance_ys=1e-32, history_size=100,
                 line_search_fn=None):
        super().__init__(params, lr=lr, max_iter=max_iter, max_eval=max_eval,
                         tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
                         history_size=history_size, line_search_fn=line_search_fn)
        self.tolerance_ys = tolerance_ys
