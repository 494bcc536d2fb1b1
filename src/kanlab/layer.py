"""KANLayer: the numeric branch of one KAN layer.

Edge i -> j computes ``mask_ij * (scale_base_ij * b(x_i) + scale_sp_ij * sum_m coef_ijm B_m(x_i))``
and output j sums its incoming edges plus ``bias_j``. The forward pass is one fused matrix
product (see :mod:`kanlab.functional`); per-edge activations are computed only on request.
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from .basis import BasisPlan
from .bases import resolve_base_fun
from .functional import LayerFeatures, kan_layer, kan_layer_cached
from .reference import in_functorch_transform, layer_reference
from .regularize import var_to_std
from .splines import coef2curve, curve2coef, make_grid

__all__ = ["KANLayer"]


class KANLayer(nn.Module):
    """One KAN layer (numeric branch), pykan's ``KANLayer`` with a fused fast path.

    Args:
        in_dim: number of inputs.
        out_dim: number of outputs.
        num: number of grid intervals G.
        k: spline order.
        noise_scale: scale of the random initial spline values.
        scale_base_mu, scale_base_sigma: ``scale_base`` starts at
            ``mu/sqrt(in) + sigma * U(-1, 1)/sqrt(in)``.
        scale_sp: ``scale_sp`` starts at ``scale_sp/sqrt(in)``.
        base_fun: ``"silu"`` (default), ``"identity"``, ``"zero"`` or a callable.
        grid_eps: 1 for uniform grid updates, 0 for sample quantiles, in between mixes them.
        grid_range: initial grid range.
        sp_trainable, sb_trainable: whether ``scale_sp`` / ``scale_base`` are trained.
        sparse_init: start with a sparse random mask.
        bias: add a trainable bias per output.
        generator: torch.Generator for the random initialization.
        dtype, device: parameter dtype and device.

    Shapes: ``grid`` (in, G+2k+1), ``coef`` (in, out, G+k), ``scale_base``/``scale_sp``/``mask``
    (in, out), ``bias`` (out,).
    """

    def __init__(
        self,
        in_dim: int = 2,
        out_dim: int = 3,
        num: int = 5,
        k: int = 3,
        noise_scale: float = 0.5,
        scale_base_mu: float = 0.0,
        scale_base_sigma: float = 1.0,
        scale_sp: float = 1.0,
        base_fun="silu",
        grid_eps: float = 0.02,
        grid_range=(-1.0, 1.0),
        sp_trainable: bool = True,
        sb_trainable: bool = True,
        sparse_init: bool = False,
        bias: bool = True,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device=None,
    ):
        super().__init__()
        _check_int("in_dim", in_dim, 1)
        _check_int("out_dim", out_dim, 1)
        _check_int("grid (number of intervals)", num, 1)
        _check_int("k (spline order)", k, 1)
        lo, hi = _check_range(grid_range)
        if not 0.0 <= float(grid_eps) <= 1.0:
            raise ValueError(f"grid_eps must lie in [0, 1], got {grid_eps}")
        for name, v in (("noise_scale", noise_scale), ("scale_base_mu", scale_base_mu),
                        ("scale_base_sigma", scale_base_sigma), ("scale_sp", scale_sp)):
            _check_finite(name, v)
        _check_dtype(dtype)
        self.in_dim, self.out_dim, self.num, self.k = int(in_dim), int(out_dim), int(num), int(k)
        self.grid_eps = float(grid_eps)
        self.grid_range = (lo, hi)
        self.base_fun_name, self.base_fun = resolve_base_fun(base_fun)
        dtype = dtype or torch.get_default_dtype()
        n_basis = self.num + self.k
        self.register_buffer("grid", make_grid(in_dim, num, k, (lo, hi), dtype=dtype, device=device))
        g = self.grid
        if not bool(torch.isfinite(g).all()) or not bool((g[:, 1:] > g[:, :-1]).all()):
            raise ValueError(
                f"grid_range {grid_range!r} with {num} intervals and {k} extension knots per side "
                f"cannot be represented in {dtype}: the knots overflow or coincide; choose a "
                f"range on the scale of the data (grid updates move the knots to it anyway)"
            )
        self.coef = nn.Parameter(torch.zeros(in_dim, out_dim, n_basis, dtype=dtype, device=device))
        self.scale_base = nn.Parameter(torch.zeros(in_dim, out_dim, dtype=dtype, device=device))
        self.scale_sp = nn.Parameter(torch.zeros(in_dim, out_dim, dtype=dtype, device=device))
        self.register_buffer("mask", torch.ones(in_dim, out_dim, dtype=dtype, device=device))
        self.bias = nn.Parameter(torch.zeros(out_dim, dtype=dtype, device=device)) if bias else None
        self._plan: BasisPlan | None = None
        self._feat_cache: LayerFeatures | None = None
        self._feat_cache_candidate: torch.Tensor | None = None
        self.reset_parameters(
            noise_scale, scale_base_mu, scale_base_sigma, scale_sp, sparse_init, generator
        )
        self.scale_base.requires_grad_(sb_trainable)
        self.scale_sp.requires_grad_(sp_trainable)

    # ------------------------------------------------------------------ setup
    @torch.no_grad()
    def reset_parameters(
        self,
        noise_scale: float = 0.5,
        scale_base_mu: float = 0.0,
        scale_base_sigma: float = 1.0,
        scale_sp: float = 1.0,
        sparse_init: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        """Initialize as pykan does: small random splines fitted through noise at the knots."""
        g = generator
        n_in, n_out = self.in_dim, self.out_dim
        cpu = dict(dtype=torch.float64)
        pts = self.grid[:, self.k : -self.k].t().to(torch.float64).cpu()  # (G+1, in)
        noise = (torch.rand(self.num + 1, n_in, n_out, generator=g, **cpu) - 0.5) * noise_scale / self.num
        coef = curve2coef(pts, noise, self.grid.to(torch.float64).cpu(), self.k, smooth=0.0, ridge=1e-10)
        self.coef.copy_(coef)
        if sparse_init:
            self.mask.copy_(_sparse_mask(n_in, n_out))
        else:
            self.mask.fill_(1.0)
        sb = scale_base_mu / math.sqrt(n_in) + scale_base_sigma * (
            torch.rand(n_in, n_out, generator=g, **cpu) * 2 - 1
        ) / math.sqrt(n_in)
        self.scale_base.copy_(sb)
        self.scale_sp.copy_(torch.full((n_in, n_out), scale_sp / math.sqrt(n_in)) * self.mask.cpu())
        if self.bias is not None:
            self.bias.zero_()

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, out_dim={self.out_dim}, grid={self.num}, k={self.k}, "
            f"base_fun={self.base_fun_name!r}, bias={self.bias is not None}"
        )

    @property
    def n_basis(self) -> int:
        return self.num + self.k

    def plan(self) -> BasisPlan:
        """The span-local evaluation plan of the current grid (rebuilt when the grid changes)."""
        plan = self._plan
        if plan is None or not plan.matches(self.grid):
            plan = self._plan = BasisPlan(self.grid, self.k)
        return plan

    def is_uniform(self) -> bool:
        """Whether the knots are uniform per input."""
        return self.plan().uniform

    def set_grid(self, grid: torch.Tensor) -> None:
        """Replace the knots (in, G+2k+1), keeping dtype and device."""
        if grid.shape != self.grid.shape:
            raise ValueError(f"grid must have shape {tuple(self.grid.shape)}, got {tuple(grid.shape)}")
        with torch.no_grad():
            self.grid.copy_(grid)

    # ---------------------------------------------------------------- compute
    # features of a fixed input are cached up to this many elements (128 MiB in float32)
    feature_cache_limit = 32 * 2**20

    def _cached(self, x: torch.Tensor) -> LayerFeatures | None:
        """Cached features when ``x`` needs no gradient and was seen before with this grid."""
        # a custom base function may hold parameters or state: never cache its values
        if x.requires_grad or not self.training or self.base_fun_name == "custom":
            return None
        plan = self.plan()
        cache = self._feat_cache
        if cache is not None and cache.matches(x, plan) and cache.base_fun is self.base_fun:
            return cache
        if self._feat_cache_candidate is x and x.numel() * plan.width <= self.feature_cache_limit:
            self._feat_cache = LayerFeatures(x, self.base_fun(x), plan)
            self._feat_cache.base_fun = self.base_fun
            return self._feat_cache
        self._feat_cache_candidate = x
        return None

    def clear_cache(self) -> None:
        """Drop cached input features."""
        self._feat_cache = None
        self._feat_cache_candidate = None

    # The fused Triton kernel (kanlab.triton_spline): None = automatic (CUDA tensors, Triton
    # installed, base silu/identity/zero, bfloat16 inputs, or float32 inputs of at most
    # TRITON_AUTO_MAX_WORK = batch*in*out), True = whenever Triton can run it (including its CPU
    # interpreter under TRITON_INTERPRET=1), False = never. On an H100 the kernel took 1.0-1.4
    # ms against the PyTorch path's 1.8-2.3 ms for fwd+bwd at in=out=64, batch 1024 (launch
    # bound), but 32.4 ms against 23.7 ms at in=out=1024, batch 8192 in IEEE float32 (cuBLAS
    # wins the large products); the crossover lies between, unmeasured, and the bound keeps the
    # automatic choice on the measured winning side.
    use_triton: bool | None = None
    TRITON_AUTO_MAX_WORK = 1 << 26

    def _triton_auto_size(self, x: torch.Tensor) -> bool:
        """Whether automatic selection takes the kernel for this input's size and dtype."""
        return x.dtype == torch.bfloat16 or \
            x.shape[0] * self.in_dim * self.out_dim <= self.TRITON_AUTO_MAX_WORK

    def _triton_tables(self, x: torch.Tensor):
        """Kernel tables of the current grid when the fused kernel should run on ``x``, else None."""
        if self.use_triton is False or (self.use_triton is None and not x.is_cuda):
            return None
        if self.base_fun_name not in ("silu", "identity", "zero") or x.dim() != 2 or \
                x.dtype not in (torch.float32, torch.bfloat16) or self.coef.dtype != torch.float32:
            return None
        from . import triton_spline

        if not triton_spline.triton_available(x.device):
            return None
        if self.use_triton is None and (not self._triton_auto_size(x)
                                        or not triton_spline.auto_ok(x.device)):
            return None
        key = (self.grid._version, self.grid.data_ptr(), self.grid.device)
        cached = getattr(self, "_tri_tables", None)
        if cached is None or cached[0] != key:
            cached = (key, triton_spline.SplineTables(self.grid, self.k))
            self._tri_tables = cached
        return cached[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, in) -> (batch, out)."""
        if in_functorch_transform():  # torch.func: plain operations it can transform
            return layer_reference(x, self.base_fun(x), self.scale_base, self.scale_sp,
                                   self.coef, self.mask, self.bias, self.grid, self.k)
        tables = self._triton_tables(x)
        if tables is not None:
            from . import triton_spline

            return triton_spline.kan_layer_triton(
                x, tables, self.scale_base, self.scale_sp, self.coef, self.mask, self.bias,
                base_fun=self.base_fun_name,
                precision="bf16" if x.dtype == torch.bfloat16 else "fp32")
        cache = self._cached(x) if torch.is_grad_enabled() else None
        if cache is not None:
            return kan_layer_cached(cache, self.scale_base, self.scale_sp, self.coef, self.mask,
                                    self.bias)
        return kan_layer(x, self.base_fun(x), self.scale_base, self.scale_sp, self.coef, self.mask,
                         self.bias, self.plan())

    def forward_with_var(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Output (batch, out) and the exact batch variance (unbiased) of every edge (in, out)."""
        if in_functorch_transform():
            return layer_reference(x, self.base_fun(x), self.scale_base, self.scale_sp,
                                   self.coef, self.mask, self.bias, self.grid, self.k,
                                   want_var=True)
        cache = self._cached(x) if torch.is_grad_enabled() else None
        if cache is not None:
            return kan_layer_cached(cache, self.scale_base, self.scale_sp, self.coef, self.mask,
                                    self.bias, want_var=True)
        return kan_layer(x, self.base_fun(x), self.scale_base, self.scale_sp, self.coef, self.mask,
                         self.bias, self.plan(), want_var=True)

    def spline(self, x: torch.Tensor) -> torch.Tensor:
        """Raw per-edge spline values sum_m coef B_m(x): (batch, in, out)."""
        return coef2curve(x, self.grid, self.coef, self.k)

    def activations(self, x: torch.Tensor, parts: bool = False):
        """Per-edge outputs phi_ij(x_i): (batch, in, out), masked.

        With ``parts=True`` returns ``(total, base_part, spline_part)``, where
        ``base_part = mask*scale_base*b(x)`` and ``spline_part = mask*scale_sp*spline(x)``.
        """
        base = self.base_fun(x).unsqueeze(-1) * (self.scale_base * self.mask)
        sp = self.spline(x) * (self.scale_sp * self.mask)
        total = base + sp
        return (total, base, sp) if parts else total

    def edge_values(self, x: torch.Tensor, in_idx: torch.Tensor, out_idx: torch.Tensor,
                    masked: bool = True) -> torch.Tensor:
        """Numeric outputs of the edges ``in_idx[e] -> out_idx[e]`` only: (batch, E).

        With ``masked=False`` the mask is ignored (the learned curve of a switched-off edge).
        """
        xs = x[:, in_idx]  # (batch, E)
        sp = coef2curve(xs, self.grid[in_idx], self.coef[in_idx, out_idx][:, None, :], self.k)[..., 0]
        w_b = self.scale_base[in_idx, out_idx]
        w_s = self.scale_sp[in_idx, out_idx]
        if masked:
            m = self.mask[in_idx, out_idx]
            w_b, w_s = w_b * m, w_s * m
        return self.base_fun(xs) * w_b + sp * w_s

    def edge_std(self, x: torch.Tensor) -> torch.Tensor:
        """Batch standard deviation (unbiased) of every edge's output: (in, out).

        Exact and differentiable, via Var(phi_ij) = w_ij^T Cov(F_i) w_ij; never builds the
        (batch, in, out) activations.
        """
        return var_to_std(self.forward_with_var(x)[1])

    # ------------------------------------------------------------------ grids
    @torch.no_grad()
    def update_grid_from_samples(self, x: torch.Tensor, mode: str = "sample") -> None:
        """Move the knots to the data and refit coefficients so the spline barely moves.

        Interior knots mix sample quantiles and a uniform grid over the sample range with weight
        ``grid_eps`` on the uniform part; the spline is refit by least squares on the samples.
        """
        from .grid import adaptive_grid

        x = x.detach().to(self.grid.dtype)
        y = self.spline(x)  # (batch, in, out) curve to preserve
        new = adaptive_grid(x, self.num, self.k, self.grid_eps)
        if mode == "grid":
            pts = adaptive_grid(x, 2 * self.num, 0, self.grid_eps).t()
            y = self.spline(pts)
            x = pts
        coef = curve2coef(x, y, new, self.k) if bool(torch.isfinite(new).all()) else None
        if coef is None or not bool(torch.isfinite(coef).all()):
            raise ValueError(
                f"grid update: knots or coefficients for these samples are not finite in "
                f"{self.grid.dtype} (NaN/Inf samples, or values near the dtype's limit, "
                f"|x| up to {float(x.abs().max()):.3g}); the layer is unchanged"
            )
        self.set_grid(new)
        self.coef.copy_(coef)

    def get_subset(self, in_id, out_id) -> "KANLayer":
        """A smaller layer keeping inputs ``in_id`` and outputs ``out_id``."""
        in_id, out_id = list(in_id), list(out_id)
        sub = KANLayer(
            len(in_id), len(out_id), self.num, self.k, base_fun=self._base_spec(),
            grid_eps=self.grid_eps, grid_range=self.grid_range, bias=self.bias is not None,
            dtype=self.grid.dtype, device=self.grid.device,
        )
        with torch.no_grad():
            sub.grid.copy_(self.grid[in_id])
            sub.coef.copy_(self.coef[in_id][:, out_id])
            sub.scale_base.copy_(self.scale_base[in_id][:, out_id])
            sub.scale_sp.copy_(self.scale_sp[in_id][:, out_id])
            sub.mask.copy_(self.mask[in_id][:, out_id])
            if self.bias is not None:
                sub.bias.copy_(self.bias[out_id])
        sub.scale_base.requires_grad_(self.scale_base.requires_grad)
        sub.scale_sp.requires_grad_(self.scale_sp.requires_grad)
        return sub

    def _base_spec(self):
        return self.base_fun if self.base_fun_name == "custom" else self.base_fun_name


def _sparse_mask(in_dim: int, out_dim: int) -> torch.Tensor:
    """pykan's sparse initialization: each output connects to its nearest input and vice versa."""
    in_coord = torch.arange(in_dim, dtype=torch.float64) * 1 / in_dim + 1 / (2 * in_dim)
    out_coord = torch.arange(out_dim, dtype=torch.float64) * 1 / out_dim + 1 / (2 * out_dim)
    dist = torch.abs(out_coord[:, None] - in_coord[None, :])
    in_nearest = torch.argmin(dist, dim=0)
    out_nearest = torch.argmin(dist, dim=1)
    mask = torch.zeros(in_dim, out_dim, dtype=torch.float64)
    mask[torch.arange(in_dim), in_nearest] = 1.0
    mask[out_nearest, torch.arange(out_dim)] = 1.0
    return mask


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_finite(name: str, value) -> None:
    """A finite real number (NaN or Inf here would make every output NaN)."""
    try:
        ok = not isinstance(value, (bool, str, bytes)) and math.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def _check_dtype(dtype) -> None:
    """None (torch's default) or a floating-point torch dtype."""
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise ValueError(
            f"dtype must be a floating-point torch dtype (torch.float32, torch.float64, ...), "
            f"got {dtype!r}"
        )


def _check_range(grid_range) -> tuple[float, float]:
    try:
        lo, hi = float(grid_range[0]), float(grid_range[1])
    except (TypeError, IndexError, ValueError):
        raise ValueError(f"grid_range must be a pair (low, high), got {grid_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
        raise ValueError(f"grid_range must be finite with low < high, got {grid_range!r}")
    return lo, hi
