"""SymbolicLayer: the symbolic branch of one KAN layer (pykan's ``Symbolic_KANLayer`` names).

Edge i -> j computes ``mask[j, i] * (c * f(a * x_i + b) + d)`` with ``(a, b, c, d) =
affine[j, i]`` and ``f`` named by ``funs_name[j][i]``. The forward pass groups active edges by
function name and evaluates each group as one batched tensor op; with no active edge it returns
``None`` and costs one cached Python check.
"""
from __future__ import annotations

import torch
from torch import nn

from .library import get_symbolic

__all__ = ["SymbolicLayer"]


class SymbolicLayer(nn.Module):
    """Symbolic edges of one layer.

    Attributes:
        funs_name: list (out) of lists (in) of function names; '0' for unused edges.
        affine: parameter (out, in, 4) holding a, b, c, d of ``c*f(a*x+b)+d``.
        mask: buffer (out, in), 1 where the symbolic edge is on.
    """

    def __init__(self, in_dim: int, out_dim: int, dtype=None, device=None, trainable: bool = True):
        super().__init__()
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        self.funs_name = [["0"] * self.in_dim for _ in range(self.out_dim)]
        self.affine = nn.Parameter(torch.zeros(out_dim, in_dim, 4, dtype=dtype, device=device),
                                   requires_grad=trainable)
        self.register_buffer("mask", torch.zeros(out_dim, in_dim, dtype=dtype, device=device))
        self._active_key = None
        self._active = False
        self._groups_key = None
        self._groups = []

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, out_dim={self.out_dim}, active={int((self.mask > 0).sum())}"

    @property
    def funs_sympy(self):
        return [[get_symbolic(n).sympy_fn for n in row] for row in self.funs_name]

    @property
    def funs(self):
        return [[get_symbolic(n).torch_fn for n in row] for row in self.funs_name]

    def is_active(self) -> bool:
        """Whether any symbolic edge is on (cached on the mask's version)."""
        key = (self.mask._version, self.mask.data_ptr())
        if key != self._active_key:
            self._active = bool((self.mask != 0).any())
            self._active_key = key
        return self._active

    def set_edge(self, j: int, i: int, name: str, affine=None) -> None:
        """Set edge i -> j to function ``name`` (and its a, b, c, d when given)."""
        get_symbolic(name)  # validates
        self.funs_name[j][i] = name
        if affine is not None:
            with torch.no_grad():
                self.affine[j, i] = torch.as_tensor(affine, dtype=self.affine.dtype)

    def __getstate__(self):
        # the group cache holds library function objects (lambdas do not pickle): drop it,
        # it is rebuilt from funs_name on first use
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        state = dict(state)
        state["_groups"], state["_groups_key"] = [], None
        return state

    def _group_index(self):
        key = (self.mask._version, self.mask.data_ptr(), tuple(map(tuple, self.funs_name)))
        if key == self._groups_key:
            return self._groups
        on = (self.mask != 0).cpu()
        groups = {}
        for j in range(self.out_dim):
            for i in range(self.in_dim):
                if on[j, i]:
                    groups.setdefault(self.funs_name[j][i], ([], []))
                    groups[self.funs_name[j][i]][0].append(j)
                    groups[self.funs_name[j][i]][1].append(i)
        dev = self.mask.device
        out = []
        for name, (jj, ii) in groups.items():
            fn = get_symbolic(name)
            jt = torch.tensor(jj, dtype=torch.long, device=dev)
            it = torch.tensor(ii, dtype=torch.long, device=dev)
            out.append((fn, jt, it, jt * self.in_dim + it))
        self._groups, self._groups_key = out, key
        return out

    def edge_values(self, x: torch.Tensor, safe: bool = True):
        """Per-group values: list of (out_idx, in_idx, (batch, E) values), masked."""
        res = []
        aff = self.affine.reshape(-1, 4)
        m = self.mask.reshape(-1)
        for fn, jt, it, flat in self._group_index():
            p = aff[flat]
            u = x[:, it] * p[:, 0] + p[:, 1]
            f = fn.safe_fn if safe else fn.torch_fn
            v = (p[:, 2] * f(u) + p[:, 3]) * m[flat]
            res.append((jt, it, v))
        return res

    def forward(self, x: torch.Tensor) -> torch.Tensor | None:
        """(batch, in) -> (batch, out) sum of symbolic edges, or None when none is on."""
        if not self.is_active():
            return None
        out = x.new_zeros(x.shape[0], self.out_dim)
        for jt, _, v in self.edge_values(x):
            out = out.index_add(1, jt, v)
        return out

    def activations(self, x: torch.Tensor) -> torch.Tensor:
        """Per-edge symbolic outputs (batch, in, out); zeros where the edge is off."""
        acts = x.new_zeros(x.shape[0], self.in_dim, self.out_dim)
        if self.is_active():
            for jt, it, v in self.edge_values(x):
                acts[:, it, jt] = v
        return acts

    def get_subset(self, in_id, out_id) -> "SymbolicLayer":
        """A smaller symbolic layer keeping inputs ``in_id`` and outputs ``out_id``."""
        in_id, out_id = list(in_id), list(out_id)
        sub = SymbolicLayer(len(in_id), len(out_id), dtype=self.affine.dtype,
                            device=self.affine.device, trainable=self.affine.requires_grad)
        sub.funs_name = [[self.funs_name[j][i] for i in in_id] for j in out_id]
        with torch.no_grad():
            sub.affine.copy_(self.affine[out_id][:, in_id])
            sub.mask.copy_(self.mask[out_id][:, in_id])
        return sub
