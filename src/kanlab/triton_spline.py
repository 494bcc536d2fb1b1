"""A fused Triton kernel for the KAN layer (GPU; CPU tests run it in Triton's interpreter).

The layer computes ``y = sum_i F_i(x_i) @ W_i`` where, for input i, ``F_i`` holds the base value
``b(x_i)`` (column 0) and the B-spline values ``B_m(x_i)`` (columns 1..P), and ``W_i``
(NB, out) holds ``mask*scale_base`` (row 0) and ``mask*scale_sp*coef`` (rows 1..P); NB pads
1+P to a power of two >= 16. Only k+1 of the P spline values are non-zero for each x_i.

Forward, one program per (batch tile, output tile): for each input it finds the knot span of
every row, evaluates the k+1 live basis polynomials (the per-span tables of
:mod:`kanlab.basis`, Horner's rule in the span's local coordinate), places them and ``b(x_i)``
into a (BLOCK_B, NB) tile that lives in registers only, and accumulates ``tile @ W_i`` into the
output tile. The dense basis is never written to memory.

Backward, two kernels, no atomics:

* weight gradient, one program per (input, output tile): loops over the batch, rebuilding the
  basis tile and accumulating ``tile^T @ dY`` in registers (a block-local reduction), then one
  store of its (NB, BLOCK_O) slice of ``dW``;
* input gradient, one program per (batch tile, input): ``G = dY @ W_i^T`` over output tiles,
  then ``dx_i = sum_m F'_i[:, m] * G[:, m]`` with the analytic derivative of the basis
  polynomials and of the base function.

fp32 products run in IEEE precision (no TF32), so results match the PyTorch path to about 1e-5;
with ``precision="bf16"`` the two matrix products take bf16 operands and accumulate in fp32.

The PyTorch path (:mod:`kanlab.functional`) stays the reference and the fallback.
"""
from __future__ import annotations

import math
import os

import torch

try:  # Triton is optional: without it this module only reports that it is unavailable
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - depends on the environment
    triton = tl = None
    HAS_TRITON = False

__all__ = ["HAS_TRITON", "triton_available", "SplineTables", "kan_layer_triton",
           "combined_weights", "auto_ok"]

_BASES = {"zero": 0, "identity": 1, "silu": 2}


def triton_available(device: torch.device | None = None) -> bool:
    """Whether the kernel can run here: Triton installed and a CUDA device, or the interpreter
    (``TRITON_INTERPRET=1``) for CPU tensors."""
    if not HAS_TRITON:
        return False
    if os.environ.get("TRITON_INTERPRET") == "1":
        return True
    return device is not None and torch.device(device).type == "cuda"


_AUTO_OK: dict = {}


def auto_ok(device) -> bool:
    """Whether automatic selection may use the kernel on ``device``: once per device and
    process, a small layer's forward and backward through the kernel are compared with the
    PyTorch path; any compile or launch error, or a mismatch, turns the automatic choice off
    for that device with a logged warning (``use_triton=True`` still forces the kernel)."""
    import logging

    key = str(torch.device(device))
    if key in _AUTO_OK:
        return _AUTO_OK[key]
    ok = False
    try:
        from .layer import KANLayer

        gen = torch.Generator().manual_seed(0)
        layer = KANLayer(3, 5, num=4, k=3, device=device)
        layer.use_triton = False
        x = (torch.rand(37, 3, generator=gen) * 2.2 - 1.1).to(device).requires_grad_(True)
        tables = SplineTables(layer.grid, layer.k)
        y = kan_layer_triton(x, tables, layer.scale_base, layer.scale_sp, layer.coef, layer.mask,
                             layer.bias)
        ref = layer(x)
        g = torch.ones_like(y)
        got = torch.autograd.grad(y, [x, layer.coef], g)
        want = torch.autograd.grad(ref, [x, layer.coef], g)
        ok = bool(torch.allclose(y, ref, rtol=1e-4, atol=1e-4)) and all(
            torch.allclose(a, b, rtol=1e-4, atol=1e-4) for a, b in zip(got, want))
        if not ok:
            logging.getLogger("kanlab").warning(
                "the Triton kernel disagrees with the PyTorch path on %s; using the PyTorch "
                "path (set layer.use_triton=True to force the kernel)", key)
    except Exception as err:  # compile or launch failure: the PyTorch path takes over
        logging.getLogger("kanlab").warning(
            "the Triton kernel failed its check on %s (%s: %s); using the PyTorch path", key,
            type(err).__name__, err)
    _AUTO_OK[key] = ok
    return ok


class SplineTables:
    """Per-span polynomial tables of one layer's knots, laid out for the kernel.

    ``knots`` (in, NKP) padded with +inf; ``tab`` (in, S+2, 2 + K*K): inv_h, t_j and the
    coefficients ``c[p*K + r]`` of ``B_{j-k+r}(t_j + u h) = sum_p c[p*K + r] u^p``; rows 0 and
    S+1 (outside the knots) are zero.
    """

    def __init__(self, grid: torch.Tensor, k: int):
        from .basis import _span_polys

        n_in, n_knots = grid.shape
        self.k = k
        self.n_knots = n_knots
        self.n_spans = S = n_knots - 1
        self.n_basis = n_knots - k - 1
        K = k + 1
        g64 = grid.detach().to(torch.float64)
        polys = _span_polys(g64, k)  # (in, S, powers, functions)
        inv_h = 1.0 / (g64[:, 1:] - g64[:, :-1])
        inv_h = torch.where(torch.isfinite(inv_h), inv_h, torch.zeros_like(inv_h))
        body = torch.cat([inv_h.unsqueeze(-1), g64[:, :-1].unsqueeze(-1),
                          polys.reshape(n_in, S, K * K)], -1)
        zero = torch.zeros(n_in, 1, body.shape[-1], dtype=torch.float64, device=grid.device)
        self.tab = torch.cat([zero, body, zero], 1).to(torch.float32).contiguous()
        nkp = max(16, triton.next_power_of_2(n_knots)) if HAS_TRITON else n_knots
        knots = torch.full((n_in, nkp), math.inf, dtype=torch.float32, device=grid.device)
        knots[:, :n_knots] = grid.detach().to(torch.float32)
        self.knots = knots.contiguous()
        self.nkp = nkp
        self.nb = max(16, triton.next_power_of_2(1 + self.n_basis)) if HAS_TRITON else 1 + self.n_basis


def combined_weights(scale_base, scale_sp, coef, mask, nb: int) -> torch.Tensor:
    """W (in, NB, out): row 0 ``mask*scale_base``, rows 1..P ``mask*scale_sp*coef``, then zeros
    (differentiable in the parameters)."""
    n_in, n_out, P = coef.shape
    rows = [(scale_base * mask).unsqueeze(1), (coef * (scale_sp * mask).unsqueeze(-1)).transpose(1, 2)]
    if nb > 1 + P:
        rows.append(coef.new_zeros(n_in, nb - 1 - P, n_out))
    return torch.cat(rows, 1).contiguous()


if HAS_TRITON:

    @triton.jit
    def _basis_tile(x, i, knots_ptr, tab_ptr, NKP: tl.constexpr, S: tl.constexpr,
                    NB: tl.constexpr, P: tl.constexpr, K: tl.constexpr, TW: tl.constexpr,
                    BASE: tl.constexpr, DERIV: tl.constexpr):
        """(BLOCK_B, NB) tile of [b(x), B_1(x), ..., B_P(x), 0...] (or its x-derivative)."""
        q = tl.arange(0, NKP)
        t = tl.load(knots_ptr + i * NKP + q)
        row = tl.sum((x[:, None] >= t[None, :]).to(tl.int32), axis=1)  # 0..NK: searchsorted right
        base_ptr = tab_ptr + (i * (S + 2) + row) * TW
        inv_h = tl.load(base_ptr)
        tj = tl.load(base_ptr + 1)
        u = (x - tj) * inv_h
        cols = tl.arange(0, NB)
        tile = tl.zeros((x.shape[0], NB), dtype=tl.float32)
        inside = (row >= 1) & (row <= S)
        for r in tl.static_range(K):
            val = tl.zeros_like(x)
            if DERIV:
                for p in tl.static_range(K - 1, 0, -1):
                    val = val * u + p * tl.load(base_ptr + 2 + p * K + r)
                val = val * inv_h
            else:
                for p in tl.static_range(K - 1, -1, -1):
                    val = val * u + tl.load(base_ptr + 2 + p * K + r)
            m = row - 1 - (K - 1) + r  # basis index B_m, column 1 + m
            ok = inside & (m >= 0) & (m < P)
            tile += tl.where((cols[None, :] == (m + 1)[:, None]) & ok[:, None], val[:, None], 0.0)
        if BASE == 1:
            b = tl.full(x.shape, 1.0, tl.float32) if DERIV else x
            tile += tl.where(cols[None, :] == 0, b[:, None], 0.0)
        if BASE == 2:
            sig = 1.0 / (1.0 + tl.exp(-x))
            b = sig * (1.0 + x * (1.0 - sig)) if DERIV else x * sig
            tile += tl.where(cols[None, :] == 0, b[:, None], 0.0)
        return tile

    @triton.jit
    def _dot_bf16(a, b, acc, EMU: tl.constexpr):
        """acc + a @ b with bf16 operands and fp32 accumulation. EMU (Triton's CPU interpreter,
        whose bf16 dot is wrong) rounds the operands to bf16 and multiplies in fp32: the same
        numbers, since a product of two bf16 values is exact in fp32."""
        if EMU:
            return tl.dot(a.to(tl.bfloat16).to(tl.float32), b.to(tl.bfloat16).to(tl.float32), acc,
                          input_precision="ieee")
        return tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16), acc, out_dtype=tl.float32)

    @triton.jit
    def _fwd_kernel(x_ptr, knots_ptr, tab_ptr, w_ptr, y_ptr, B, IN, OUT,
                    NKP: tl.constexpr, S: tl.constexpr, NB: tl.constexpr, P: tl.constexpr,
                    K: tl.constexpr, TW: tl.constexpr, BASE: tl.constexpr, BF16: tl.constexpr, EMU: tl.constexpr,
                    BLOCK_B: tl.constexpr, BLOCK_O: tl.constexpr):
        pid_b = tl.program_id(0)
        pid_o = tl.program_id(1)
        rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
        outs = pid_o * BLOCK_O + tl.arange(0, BLOCK_O)
        rmask = rows < B
        omask = outs < OUT
        nbs = tl.arange(0, NB)
        acc = tl.zeros((BLOCK_B, BLOCK_O), dtype=tl.float32)
        for i in range(IN):
            x = tl.load(x_ptr + rows * IN + i, mask=rmask, other=0.0).to(tl.float32)
            tile = _basis_tile(x, i, knots_ptr, tab_ptr, NKP, S, NB, P, K, TW, BASE, False)
            w = tl.load(w_ptr + (i * NB + nbs[:, None]) * OUT + outs[None, :],
                        mask=omask[None, :], other=0.0)
            if BF16:
                acc = _dot_bf16(tile, w, acc, EMU)
            else:
                acc += tl.dot(tile, w.to(tl.float32), input_precision="ieee")
        tl.store(y_ptr + rows[:, None] * OUT + outs[None, :], acc,
                 mask=rmask[:, None] & omask[None, :])

    @triton.jit
    def _dw_kernel(x_ptr, knots_ptr, tab_ptr, dy_ptr, dw_ptr, B, IN, OUT,
                   NKP: tl.constexpr, S: tl.constexpr, NB: tl.constexpr, P: tl.constexpr,
                   K: tl.constexpr, TW: tl.constexpr, BASE: tl.constexpr, BF16: tl.constexpr, EMU: tl.constexpr,
                   BLOCK_B: tl.constexpr, BLOCK_O: tl.constexpr):
        i = tl.program_id(0)
        pid_o = tl.program_id(1)
        outs = pid_o * BLOCK_O + tl.arange(0, BLOCK_O)
        omask = outs < OUT
        nbs = tl.arange(0, NB)
        acc = tl.zeros((NB, BLOCK_O), dtype=tl.float32)
        for b0 in range(0, B, BLOCK_B):
            rows = b0 + tl.arange(0, BLOCK_B)
            rmask = rows < B
            x = tl.load(x_ptr + rows * IN + i, mask=rmask, other=0.0).to(tl.float32)
            tile = _basis_tile(x, i, knots_ptr, tab_ptr, NKP, S, NB, P, K, TW, BASE, False)
            tile = tl.where(rmask[:, None], tile, 0.0)
            dy = tl.load(dy_ptr + rows[:, None] * OUT + outs[None, :],
                         mask=rmask[:, None] & omask[None, :], other=0.0)
            if BF16:
                acc = _dot_bf16(tl.trans(tile), dy, acc, EMU)
            else:
                acc += tl.dot(tl.trans(tile), dy.to(tl.float32), input_precision="ieee")
        tl.store(dw_ptr + (i * NB + nbs[:, None]) * OUT + outs[None, :], acc, mask=omask[None, :])

    @triton.jit
    def _dx_kernel(x_ptr, knots_ptr, tab_ptr, w_ptr, dy_ptr, dx_ptr, B, IN, OUT,
                   NKP: tl.constexpr, S: tl.constexpr, NB: tl.constexpr, P: tl.constexpr,
                   K: tl.constexpr, TW: tl.constexpr, BASE: tl.constexpr, BF16: tl.constexpr, EMU: tl.constexpr,
                   BLOCK_B: tl.constexpr, BLOCK_O: tl.constexpr):
        pid_b = tl.program_id(0)
        i = tl.program_id(1)
        rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
        rmask = rows < B
        nbs = tl.arange(0, NB)
        g = tl.zeros((BLOCK_B, NB), dtype=tl.float32)
        for o0 in range(0, OUT, BLOCK_O):
            outs = o0 + tl.arange(0, BLOCK_O)
            omask = outs < OUT
            dy = tl.load(dy_ptr + rows[:, None] * OUT + outs[None, :],
                         mask=rmask[:, None] & omask[None, :], other=0.0)
            w = tl.load(w_ptr + (i * NB + nbs[:, None]) * OUT + outs[None, :],
                        mask=omask[None, :], other=0.0)
            if BF16:
                g = _dot_bf16(dy, tl.trans(w), g, EMU)
            else:
                g += tl.dot(dy.to(tl.float32), tl.trans(w).to(tl.float32), input_precision="ieee")
        x = tl.load(x_ptr + rows * IN + i, mask=rmask, other=0.0).to(tl.float32)
        dtile = _basis_tile(x, i, knots_ptr, tab_ptr, NKP, S, NB, P, K, TW, BASE, True)
        dx = tl.sum(dtile * g, axis=1)
        tl.store(dx_ptr + rows * IN + i, dx, mask=rmask)


def _launch_cfg(B, OUT):
    block_b = 32 if B <= 32 else 64
    block_o = 32 if OUT <= 32 else 64
    return block_b, block_o


class _TritonKANLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, tables, base_code, bf16):
        B, n_in = x.shape
        n_out = w.shape[2]
        xc = x.contiguous()
        wc = w.contiguous()
        y = torch.empty(B, n_out, dtype=torch.float32, device=x.device)
        bb, bo = _launch_cfg(B, n_out)
        meta = dict(NKP=tables.nkp, S=tables.n_spans, NB=tables.nb, P=tables.n_basis,
                    K=tables.k + 1, TW=tables.tab.shape[-1], BASE=base_code, BF16=bf16,
                    EMU=bool(triton.knobs.runtime.interpret))
        _fwd_kernel[(triton.cdiv(B, bb), triton.cdiv(n_out, bo))](
            xc, tables.knots, tables.tab, wc, y, B, n_in, n_out, BLOCK_B=bb, BLOCK_O=bo, **meta)
        ctx.save_for_backward(xc, wc)
        ctx.tables, ctx.meta, ctx.blocks = tables, meta, (bb, bo)
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        xc, wc = ctx.saved_tensors
        tables, meta = ctx.tables, ctx.meta
        bb, bo = ctx.blocks
        B, n_in = xc.shape
        n_out = wc.shape[2]
        dy = dy.contiguous()
        dx = dw = None
        if ctx.needs_input_grad[1]:
            dw = torch.empty(n_in, tables.nb, n_out, dtype=torch.float32, device=xc.device)
            _dw_kernel[(n_in, triton.cdiv(n_out, bo))](
                xc, tables.knots, tables.tab, dy, dw, B, n_in, n_out, BLOCK_B=bb, BLOCK_O=bo, **meta)
            dw = dw.to(wc.dtype)
        if ctx.needs_input_grad[0]:
            dx = torch.empty(B, n_in, dtype=torch.float32, device=xc.device)
            _dx_kernel[(triton.cdiv(B, bb), n_in)](
                xc, tables.knots, tables.tab, wc, dy, dx, B, n_in, n_out, BLOCK_B=bb, BLOCK_O=bo,
                **meta)
            dx = dx.to(xc.dtype)
        return dx, dw, None, None, None


def kan_layer_triton(x, tables: SplineTables, scale_base, scale_sp, coef, mask, bias=None,
                     base_fun: str = "silu", precision: str = "fp32"):
    """KAN layer forward with the fused kernel; differentiable in x and every parameter.

    Args:
        x: (batch, in) float32 (or bfloat16) inputs on a CUDA device, or on the CPU under
            ``TRITON_INTERPRET=1``.
        tables: :class:`SplineTables` of the layer's current grid.
        base_fun: 'silu', 'identity' or 'zero' (others: use the PyTorch path).
        precision: 'fp32' (IEEE products) or 'bf16' (bf16 products, fp32 accumulation).
    """
    if not HAS_TRITON:
        raise RuntimeError("the fused kernel needs triton: pip install triton")
    if base_fun not in _BASES:
        raise ValueError(f"the Triton kernel supports base functions {sorted(_BASES)}, "
                         f"got {base_fun!r}")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    w = combined_weights(scale_base, scale_sp, coef, mask, tables.nb).to(torch.float32)
    y = _TritonKANLayer.apply(x, w, tables, _BASES[base_fun], precision == "bf16")
    if bias is not None:
        y = y + bias
    return y
