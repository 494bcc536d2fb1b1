"""Data-parallel training on torch.distributed (torchrun), used by :func:`kanlab.train.fit`.

Under ``torchrun --nproc_per_node N script.py`` every rank calls ``model.fit(dataset)`` with the
same dataset and model seed. ``fit`` then

* starts the process group if torchrun's environment asks for one and none exists (gloo on CPU,
  nccl on CUDA);
* broadcasts rank 0's parameters and buffers, so replicas start identical;
* trains each rank on its contiguous shard of the training (and test) rows;
* weighs each rank's loss by its share of the rows and all-reduces the loss and the gradients
  in one flat buffer, so every rank (and L-BFGS's line search on every rank) sees the loss and
  gradient of the whole data: the parameters follow single-process training on the union of
  the shards;
* updates grids collectively: the batch rows of every rank are all-gathered (in rank order) and
  every rank computes the same knots and refits the same coefficients from that union; a
  checksum all-reduce then verifies that the grids agree and raises if they do not (nothing is
  broadcast over a mismatch);
* shows progress and logs on rank 0 only.

The sparsity regularizer uses the statistics of all ranks' rows (edge variances and input
spreads from all-reduced feature sums, see :meth:`DistContext.global_stats`), so with ``lamb > 0``
too the parameters follow single-process training on the union; this builds the dense
(batch, in, G+k) features of the rank's rows, which single-process training avoids.
"""
from __future__ import annotations

import os

import torch

__all__ = ["DistContext", "context"]


class DistContext:
    """The process group as fit() uses it."""

    def __init__(self, group=None):
        import torch.distributed as dist

        self.dist = dist
        self.group = group
        self.rank = dist.get_rank(group)
        self.world = dist.get_world_size(group)

    # -- data
    def shard(self, t: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous block of rows (blocks differ by at most one row)."""
        return torch.tensor_split(t, self.world)[self.rank]

    def total(self, n: int, device) -> int:
        t = torch.tensor([float(n)], dtype=torch.float64, device=device)
        self.dist.all_reduce(t, group=self.group)
        return int(t.item())

    def gather_rows(self, x: torch.Tensor) -> torch.Tensor:
        """All ranks' rows of ``x``, concatenated in rank order (shapes may differ by rank)."""
        n = torch.tensor([x.shape[0]], dtype=torch.long, device=x.device)
        sizes = [torch.zeros_like(n) for _ in range(self.world)]
        self.dist.all_gather(sizes, n, group=self.group)
        sizes = [int(s.item()) for s in sizes]
        m = max(sizes)
        pad = torch.zeros(m, *x.shape[1:], dtype=x.dtype, device=x.device)
        pad[: x.shape[0]] = x
        parts = [torch.empty_like(pad) for _ in range(self.world)]
        self.dist.all_gather(parts, pad.contiguous(), group=self.group)
        return torch.cat([p[:s] for p, s in zip(parts, sizes)], 0)

    # -- model state
    @torch.no_grad()
    def broadcast_model(self, model) -> None:
        for t in list(model.parameters()) + list(model.buffers()):
            self.dist.broadcast(t.data, src=0, group=self.group)

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        self.dist.all_reduce(t, group=self.group)
        return t

    def allreduce_grads(self, params) -> None:
        """Sum every parameter's gradient over ranks (one flat buffer)."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        self.dist.all_reduce(flat, group=self.group)
        off = 0
        for p, g in zip(params, grads):
            n = g.numel()
            if p.grad is None:
                p.grad = flat[off:off + n].view_as(p).clone()
            else:
                p.grad.copy_(flat[off:off + n].view_as(p))
            off += n

    def global_stats(self, model, inputs, n_total: int):
        """Edge variances (in, out) and input stds (in,) of every layer over ALL ranks' rows.

        The regularizer's statistics of the union of the shards: per input, the sums of the
        features ``F = [b(x), B_1(x)..B_P(x)]`` and of ``F F^T`` (about the detached global mean,
        which keeps float32 accurate) are all-reduced with autograd-aware collectives, then
        ``var_io = w_io^T Cov_i w_io``. Every rank computes the same penalty; fit() divides it by
        the world size and sums gradients, and the collectives' backward sums the ranks'
        contributions, so the gradient is that of one process on the union.
        """
        from torch.distributed.nn.functional import all_reduce

        from .splines import bspline_basis

        N = float(n_total)
        grp = self.group or torch.distributed.group.WORLD
        variances, stds = [], []
        for layer, x in zip(model.act_fun, inputs):
            F = torch.cat([layer.base_fun(x).unsqueeze(-1), bspline_basis(x, layer.grid, layer.k)],
                          -1)  # (batch, in, 1+P)
            with torch.no_grad():
                c = self.sum_(F.sum(0).detach().clone()) / N
            Fc = F - c
            s1 = all_reduce(Fc.sum(0), group=grp)
            s2 = all_reduce(torch.einsum("bip,biq->ipq", Fc, Fc),
                            group=grp)
            cov = (s2 - s1.unsqueeze(-1) * s1.unsqueeze(-2) / N) / max(N - 1.0, 1.0)
            m = layer.mask
            w = torch.cat([(layer.scale_base * m).unsqueeze(1),
                           (layer.coef * (layer.scale_sp * m).unsqueeze(-1)).transpose(1, 2)], 1)
            variances.append(torch.einsum("ipo,ipq,iqo->io", w, cov, w))
            with torch.no_grad():
                cx = self.sum_(x.sum(0).detach().clone()) / N
            xc = x - cx
            t1 = all_reduce(xc.sum(0), group=grp)
            t2 = all_reduce((xc * xc).sum(0), group=grp)
            xvar = (t2 - t1 * t1 / N) / max(N - 1.0, 1.0)
            stds.append(torch.sqrt(xvar.clamp_min(0.0)) if N > 1 else torch.zeros_like(xvar))
        return variances, stds

    @torch.no_grad()
    def check_same(self, tensors, what: str) -> None:
        """Raise if ``tensors`` differ between ranks (max and min of a checksum)."""
        s = torch.stack([t.double().sum() + (t.double() ** 2).sum() for t in tensors]).cpu()
        hi, lo = s.clone(), s.clone()
        dev = tensors[0].device
        hi, lo = hi.to(dev), lo.to(dev)
        self.dist.all_reduce(hi, op=self.dist.ReduceOp.MAX, group=self.group)
        self.dist.all_reduce(lo, op=self.dist.ReduceOp.MIN, group=self.group)
        if not torch.equal(hi, lo):
            raise RuntimeError(f"distributed fit: {what} differ between ranks after a collective "
                               "update; replicas would diverge")


def context(model) -> DistContext | None:
    """The distributed context for fit(), or None for single-process training.

    Starts the default process group when torchrun's variables say there are several processes
    (WORLD_SIZE > 1) and none is running yet.
    """
    if not torch.distributed.is_available():
        return None
    import torch.distributed as dist

    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return None
        backend = "nccl" if model_device(model).type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    if dist.get_world_size() <= 1:
        return None
    return DistContext()


def model_device(model) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")
