"""MLP baseline with the KAN's training interface, so KAN-vs-MLP comparisons are one line.

``MLP(width=[2, 5, 1]).fit(dataset, ...)`` runs the same :func:`kanlab.train.fit` (same
optimizers, batching, history, metrics, callbacks). Its "edges" are the weights: edge i -> j of
layer l outputs ``W_ji * h_i``, whose spread over the batch is ``|W_ji| * std(h_i)``, so pykan's
sparsity regularizer (``lamb``, ``lamb_l1``, ``lamb_entropy``) applies unchanged.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


__all__ = ["MLP"]

_ACTS = {"silu": nn.SiLU, "relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU,
         "sigmoid": nn.Sigmoid, "identity": nn.Identity}


class MLP(nn.Module):
    """Fully connected network ``Linear -> act -> ... -> Linear``.

    Args:
        width: nodes per layer, inputs first, e.g. ``[2, 5, 1]``.
        act: ``"silu"`` (default), ``"relu"``, ``"tanh"``, ``"gelu"``, ``"sigmoid"``,
            ``"identity"`` or a callable.
        bias: biases in the linear layers.
        seed: seed of a private generator for the initialization.
        dtype, device: parameter dtype and device.
    """

    def __init__(self, width, act="silu", bias: bool = True, seed: int = 1, dtype=None,
                 device="cpu"):
        super().__init__()
        if not isinstance(width, (list, tuple)) or len(width) < 2 or any(
                isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1 for w in width):
            raise ValueError(f"width must be a list of at least two positive ints, got {width!r}")
        self.width = [int(w) for w in width]
        self.depth = len(width) - 1
        if isinstance(act, str):
            if act not in _ACTS:
                raise ValueError(f"unknown activation {act!r}: use one of {sorted(_ACTS)} or a callable")
            self.act_name, self.act = act, _ACTS[act]()
        elif callable(act):
            self.act_name, self.act = "custom", act
        else:
            raise ValueError(f"act must be a name or a callable, got {act!r}")
        self.seed = int(seed)
        dtype = dtype or torch.get_default_dtype()
        gen = torch.Generator().manual_seed(self.seed)
        self.linears = nn.ModuleList()
        for l in range(self.depth):
            lin = nn.Linear(self.width[l], self.width[l + 1], bias=bias, dtype=dtype, device=device)
            bound = 1 / math.sqrt(self.width[l])  # torch's default range, from a private generator
            with torch.no_grad():
                lin.weight.copy_((torch.rand(lin.weight.shape, generator=gen, dtype=torch.float64)
                                  * 2 - 1) * bound)
                if bias:
                    lin.bias.copy_((torch.rand(lin.bias.shape, generator=gen, dtype=torch.float64)
                                    * 2 - 1) * bound)
            self.linears.append(lin)
        self._cache_x = None

    # the attributes kanlab.train.fit reads
    @property
    def width_in(self) -> list[int]:
        return list(self.width)

    @property
    def width_out(self) -> list[int]:
        return list(self.width)

    @property
    def dtype(self) -> torch.dtype:
        return self.linears[0].weight.dtype

    @property
    def device(self) -> torch.device:
        return self.linears[0].weight.device

    @property
    def n_edge(self) -> int:
        return int(sum(int((lin.weight != 0).sum()) for lin in self.linears))

    def extra_repr(self) -> str:
        return f"width={self.width}, act={self.act_name!r}"

    def _forward_unchecked(self, x: torch.Tensor) -> torch.Tensor:
        for l, lin in enumerate(self.linears):
            x = lin(x)
            if l < self.depth - 1:
                x = self.act(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, width[0]) -> (batch, width[-1])."""
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x), dtype=self.dtype, device=self.device)
        if x.dim() != 2 or x.shape[1] != self.width[0]:
            raise ValueError(f"input must have shape (batch, {self.width[0]}), got {tuple(x.shape)}")
        return self._forward_unchecked(x.to(self.dtype))

    def forward_with_stats(self, x: torch.Tensor):
        """Output, every linear layer's input and its edges' batch variances (in, out)."""
        acts, variances = [], []
        for l, lin in enumerate(self.linears):
            acts.append(x)
            var_in = x.var(0) if x.shape[0] > 1 else torch.zeros_like(x[0])
            variances.append(lin.weight.t() ** 2 * var_in.unsqueeze(-1))
            x = lin(x)
            if l < self.depth - 1:
                x = self.act(x)
        return x, acts, variances

    def fit(self, dataset: dict, **kwargs) -> dict:
        """Train with :func:`kanlab.train.fit` (grid options do not apply and are ignored)."""
        from .train import fit

        if kwargs.get("lamb_coef", 0) or kwargs.get("lamb_coefdiff", 0):
            raise ValueError("lamb_coef and lamb_coefdiff penalize spline coefficients: an MLP has none")
        if kwargs.get("track_shares"):
            raise ValueError("track_shares needs a KAN: an MLP has no spline to share with")
        return fit(self, dataset, **kwargs)

    @torch.no_grad()
    def evaluate(self, dataset: dict) -> dict:
        """Train and test RMSE on a pykan-style dataset dict."""
        from .train import prepare_dataset

        ds = prepare_dataset(self, dataset, need_labels_match=True)
        return {f"{s}_loss": float(torch.sqrt(torch.mean((self(ds[f"{s}_input"]) - ds[f"{s}_label"]) ** 2)))
                for s in ("train", "test")}
