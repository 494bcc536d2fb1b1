"""A fused Triton kernel for the KAN layer (GPU; CPU tests run it in Triton's interpreter).

The layer computes ``y = sum_i F_i(x_i) @ W_i`` where, for input i, ``F_i`` holds the base value
``b(x_i)`` and the B-spline values ``B_1(x_i)..B_P(x_i)`` (P = G + k), and ``W_i`` (1+P, out)
holds ``mask*scale_base`` (row 0) and ``mask*scale_sp*coef`` (rows 1..P): ``W`` is the
(in, 1+P, out) array of :func:`combined_weights`, unpadded. Only k+1 of the P spline values are
non-zero for each x_i.

Every kernel works on a block of ``BLOCK_I`` inputs at a time (a power of two; inputs past
``in`` are masked). For a (BLOCK_B, BLOCK_I) tile of x, loaded in one piece (rows contiguous
along the inputs), it

* finds the knot span of every element by counting the knots at or below it (the block's knots
  are loaded once per knot, as a (BLOCK_I,) vector shared by all rows);
* gathers the span's tables (inverse width, left knot and the (k+1)^2 polynomial coefficients
  of :mod:`kanlab.basis`, stored field-major so that one field of a block of inputs is one
  short contiguous run) and evaluates the k+1 live basis polynomials by Horner's rule in the
  span's local coordinate;
* places them into a 3-D (NC, BLOCK_B, BLOCK_I) register tile, NC = next power of two >= P
  basis columns per input. The basis index leads so that it stays within each thread (with it
  last, Triton 3.6 spread it over lanes and every (BLOCK_B, BLOCK_I) intermediate was held NC
  times over: register spills; the bf16 weight-gradient kernel ran 4x slower on an H100). The
  tile is permuted and reshaped to
  (BLOCK_B, NC*BLOCK_I), product column c = j*BLOCK_I + i for basis column j of input i, for a
  single ``tl.dot`` with the matching (NC*BLOCK_I, BLOCK_O) rows of W (row i*(1+P) + j + off of
  W; rows past 1+P are masked to zero).

The base value has no column of its own when P is a power of two (G=5, k=3: P=8, NC=8): then
``b(x)`` is a (BLOCK_B, BLOCK_I) tile with its own small product against W's row 0 of each input
(so BLOCK_I >= 16). Otherwise (P < NC) column 0 of each input holds ``b(x)`` and columns 1..P the
splines. Either way every product has K = BLOCK_I*NC >= 16 and at most NC - P - 1 padded
columns per input (none for G=5, k=3, against 7 of 16 with a base column and padding to 16).
The dense basis is never written to memory.

* Forward, one program per (output tile, batch tile): loops over the input blocks,
  accumulating ``tile @ W_block`` into a (BLOCK_B, BLOCK_O) tile.
* Weight gradient, one program per (input block, output tile, batch part): loops over its
  part of the batch accumulating ``tile^T @ dY``; with more than one batch part (chosen when
  there are too few (input block, output tile) pairs to fill the GPU) the parts' partial sums
  are added by one ``torch.sum``. No atomics.
* Input gradient, one program per (input block, batch tile): ``G = dY @ W_block^T`` over the
  output tiles, a (BLOCK_B, NC*BLOCK_I) tile reshaped and permuted to (NC, BLOCK_B, BLOCK_I),
  then ``dx = sum_j F'[j] * G[j]`` (plus ``b'(x) * (dY @ W_base^T)`` when the base has its own
  product) with the analytic derivative of the basis polynomials and of the base function. dY
  is read once per input block (not once per input).

On an H100 (Triton 3.6) at in=out=1024, batch 8192, G=5, k=3, forward+backward took 32 ms
(fp32), 19 ms (tf32) and 13 ms (bf16), against 122 and 42 ms for the one-input-per-iteration
kernels this design replaced; the forward kernel is the slowest of the three on the tensor
cores (about 9 ms of the bf16 13), dx the fastest.

Precision (``precision=``):

* ``"fp32"`` (default): IEEE fp32 products (``input_precision="ieee"``, no TF32); results
  match the PyTorch path to about 1e-5;
* ``"tf32"``: the products on the tensor cores in TF32 (10-bit mantissa operands, fp32
  accumulation), about 1e-3 relative error; Triton's CPU interpreter computes it like fp32;
* ``"bf16"``: bf16 operands (the basis tile, W, dY), fp32 accumulation, under 1% error. The
  interpreter's bf16 dot is wrong, so there the operands are rounded to bf16 and multiplied in
  fp32 (the same numbers: a product of two bf16 values is exact in fp32).

Block sizes, warps and pipeline stages are chosen from the layer size by :func:`_launch_cfg`.

The PyTorch path (:mod:`kanlab.functional`) stays the reference and the fallback.
"""
from __future__ import annotations

import os
from functools import partial

import torch

from .reference import _edge_weights, reference_vjp, triton_reference

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

    * ``knots`` (n_knots, in): knot q of every input in row q (one coalesced vector per knot
      for a block of inputs);
    * ``tab`` (TW, in*(S+2)) with TW = 2 + K*K, K = k+1, field-major: column ``i*(S+2) + s``
      is span row s of input i, field 0 its inv_h, field 1 its left knot t_j and field
      ``2 + p*K + r`` the coefficient c of ``B_{j-k+r}(t_j + u h) = sum_p c u^p``; rows 0 and
      S+1 (outside the knots) are zero;
    * ``nb`` = 1 + P: rows of W per input (base, then the P = n_knots - k - 1 splines);
    * ``nc``: basis columns per input in the kernel's tile, the next power of two >= P;
      ``split``: whether the base function has its own product (P == nc) instead of column 0.
    """

    def __init__(self, grid: torch.Tensor, k: int):
        from .basis import _span_polys

        n_in, n_knots = grid.shape
        self.k = k
        self.n_knots = n_knots
        self.n_spans = S = n_knots - 1
        self.n_basis = P = n_knots - k - 1
        K = k + 1
        g64 = grid.detach().to(torch.float64)
        polys = _span_polys(g64, k)  # (in, S, powers, functions)
        inv_h = 1.0 / (g64[:, 1:] - g64[:, :-1])
        inv_h = torch.where(torch.isfinite(inv_h), inv_h, torch.zeros_like(inv_h))
        body = torch.cat([inv_h.unsqueeze(-1), g64[:, :-1].unsqueeze(-1),
                          polys.reshape(n_in, S, K * K)], -1)
        zero = torch.zeros(n_in, 1, body.shape[-1], dtype=torch.float64, device=grid.device)
        tab = torch.cat([zero, body, zero], 1)  # (in, S+2, TW)
        self.tw = tab.shape[-1]
        self.tab = tab.reshape(n_in * (S + 2), self.tw).t().to(torch.float32).contiguous()
        self.knots = grid.detach().to(torch.float32).t().contiguous()
        self.grid = grid.detach()  # for the differentiable reference (second derivatives)
        self.nb = 1 + P
        self.nc = 1 << max(0, (P - 1).bit_length())  # next power of two >= P
        self.split = self.nc == P


def combined_weights(scale_base, scale_sp, coef, mask, nb: int) -> torch.Tensor:
    """W (in, nb, out): row 0 ``mask*scale_base``, rows 1..P ``mask*scale_sp*coef``, then zeros
    up to ``nb`` rows (the kernel uses nb = 1+P: no padding); differentiable in the
    parameters."""
    n_in, n_out, P = coef.shape
    w = _edge_weights(scale_base, scale_sp, coef, mask)
    if nb > 1 + P:
        w = torch.cat([w, coef.new_zeros(n_in, nb - 1 - P, n_out)], 1)
    return w.contiguous()


_PRECISIONS = {"fp32": 0, "tf32": 1, "bf16": 2}

if HAS_TRITON:

    @triton.jit
    def _basis_tile(x, ins, imask, IN, knots_ptr, tab_ptr, NK: tl.constexpr, S: tl.constexpr,
                    NC: tl.constexpr, P: tl.constexpr, K: tl.constexpr, OFF: tl.constexpr,
                    BASE: tl.constexpr, DERIV: tl.constexpr):
        """Basis of a (BLOCK_B, BLOCK_I) tile x of inputs ``ins``: a (NC, BLOCK_B, BLOCK_I) tile
        whose slice c is B_{c+OFF}(x) (1-based spline index; OFF=0 puts b(x) in slice 0), and
        the (BLOCK_B, BLOCK_I) base values b(x); x-derivatives if DERIV. The basis index is the
        leading axis so that it stays within each thread: the (BLOCK_B, BLOCK_I) values are then
        held once, not once per basis column."""
        row = tl.zeros(x.shape, dtype=tl.int32)
        for q in tl.static_range(NK):  # searchsorted right: number of knots <= x, 0..NK
            t = tl.load(knots_ptr + q * IN + ins, mask=imask, other=float("inf"))
            row += (x >= t[None, :]).to(tl.int32)
        fs = IN * (S + 2)  # stride of one table field
        idx = ins[None, :] * (S + 2) + row
        lm = imask[None, :]
        inv_h = tl.load(tab_ptr + idx, mask=lm, other=0.0)
        tj = tl.load(tab_ptr + fs + idx, mask=lm, other=0.0)
        u = (x - tj) * inv_h
        cols = tl.arange(0, NC)
        # column of the span's first live function B_{row-K+1} (1-based), minus OFF
        d = cols[:, None, None] - (row - K + 1 - OFF)[None, :, :]
        tile = tl.zeros((NC, x.shape[0], x.shape[1]), dtype=tl.float32)
        for r in tl.static_range(K):
            val = tl.zeros_like(x)
            if DERIV:
                for p in tl.static_range(K - 1, 0, -1):
                    c = tl.load(tab_ptr + (2 + p * K + r) * fs + idx, mask=lm, other=0.0)
                    val = val * u + p * c
                val = val * inv_h
            else:
                for p in tl.static_range(K - 1, -1, -1):
                    c = tl.load(tab_ptr + (2 + p * K + r) * fs + idx, mask=lm, other=0.0)
                    val = val * u + c
            tile = tl.where(d == r, val[None, :, :], tile)
        b = tl.zeros_like(x)
        if BASE == 1:
            if DERIV:
                b = b + 1.0
            else:
                b = x
        if BASE == 2:
            sig = 1.0 / (1.0 + tl.exp(-x))
            if DERIV:
                b = sig * (1.0 + x * (1.0 - sig))
            else:
                b = x * sig
        if OFF == 0:
            # only columns 1..P are splines (the span's functions past either end are not);
            # column 0 is the base function
            keep = (cols >= 1) & (cols <= P)
            tile = tl.where(keep[:, None, None], tile, 0.0)
            tile = tl.where(cols[:, None, None] == 0, b[None, :, :], tile)
        return tile, b

    @triton.jit
    def _mm(a, b, acc, PREC: tl.constexpr, EMU: tl.constexpr):
        """acc + a @ b, fp32 accumulation. PREC 0: IEEE fp32; 1: TF32; 2: bf16 operands. EMU
        (Triton's CPU interpreter, whose bf16 dot is wrong) rounds the operands to bf16 and
        multiplies in fp32 (the same numbers: a product of two bf16 values is exact in fp32),
        and computes TF32 as IEEE fp32."""
        if PREC == 2:
            if EMU:
                out = tl.dot(a.to(tl.bfloat16).to(tl.float32), b.to(tl.bfloat16).to(tl.float32),
                             acc, input_precision="ieee")
            else:
                out = tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16), acc, out_dtype=tl.float32)
        elif PREC == 1:
            if EMU:
                out = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
            else:
                out = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="tf32")
        else:
            out = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
        return out

    @triton.jit
    def _fwd_kernel(x_ptr, knots_ptr, tab_ptr, w_ptr, y_ptr, B, IN, OUT,
                    NK: tl.constexpr, S: tl.constexpr, NC: tl.constexpr, P: tl.constexpr,
                    K: tl.constexpr, OFF: tl.constexpr, BASE: tl.constexpr, PREC: tl.constexpr,
                    EMU: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_I: tl.constexpr,
                    BLOCK_O: tl.constexpr):
        pid_o = tl.program_id(0)
        pid_b = tl.program_id(1)
        rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
        outs = pid_o * BLOCK_O + tl.arange(0, BLOCK_O)
        rmask = rows < B
        omask = outs < OUT
        xrow = rows.to(tl.int64) * IN
        ii = tl.arange(0, BLOCK_I)
        cc = tl.arange(0, BLOCK_I * NC)  # product column: basis cc // BLOCK_I, input cc % BLOCK_I
        ci = cc % BLOCK_I
        wrel = ci * (P + 1) + cc // BLOCK_I + OFF  # its row of W, relative to the block's first
        cok = (cc // BLOCK_I + OFF) <= P
        acc = tl.zeros((BLOCK_B, BLOCK_O), dtype=tl.float32)
        accb = tl.zeros((BLOCK_B, BLOCK_O), dtype=tl.float32)  # base products (own layout)
        for i0 in range(0, IN, BLOCK_I):
            ins = i0 + ii
            imask = ins < IN
            x = tl.load(x_ptr + xrow[:, None] + ins[None, :],
                        mask=rmask[:, None] & imask[None, :], other=0.0).to(tl.float32)
            tile3, b = _basis_tile(x, ins, imask, IN, knots_ptr, tab_ptr, NK, S, NC, P, K, OFF,
                                   BASE, False)
            tile = tl.reshape(tl.permute(tile3, (1, 0, 2)), (BLOCK_B, NC * BLOCK_I))
            wrow = (i0 * (P + 1) + wrel).to(tl.int64) * OUT
            w = tl.load(w_ptr + wrow[:, None] + outs[None, :],
                        mask=(cok & (i0 + ci < IN))[:, None] & omask[None, :], other=0.0)
            acc = _mm(tile, w, acc, PREC, EMU)
            if OFF == 1:
                if BASE != 0:
                    wbrow = (ins * (P + 1)).to(tl.int64) * OUT
                    wb = tl.load(w_ptr + wbrow[:, None] + outs[None, :],
                                 mask=imask[:, None] & omask[None, :], other=0.0)
                    accb = _mm(b, wb, accb, PREC, EMU)
        if OFF == 1:
            if BASE != 0:
                acc += accb
        tl.store(y_ptr + rows.to(tl.int64)[:, None] * OUT + outs[None, :], acc,
                 mask=rmask[:, None] & omask[None, :])

    @triton.jit
    def _dw_kernel(x_ptr, knots_ptr, tab_ptr, dy_ptr, dw_ptr, B, IN, OUT, ITERS,
                   NK: tl.constexpr, S: tl.constexpr, NC: tl.constexpr, P: tl.constexpr,
                   K: tl.constexpr, OFF: tl.constexpr, BASE: tl.constexpr, PREC: tl.constexpr,
                   EMU: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_I: tl.constexpr,
                   BLOCK_O: tl.constexpr):
        pid_i = tl.program_id(0)
        pid_o = tl.program_id(1)
        pid_s = tl.program_id(2)  # batch part: batch tiles pid_s*ITERS .. (pid_s+1)*ITERS - 1
        i0 = pid_i * BLOCK_I
        ins = i0 + tl.arange(0, BLOCK_I)
        imask = ins < IN
        outs = pid_o * BLOCK_O + tl.arange(0, BLOCK_O)
        omask = outs < OUT
        acc = tl.zeros((BLOCK_I * NC, BLOCK_O), dtype=tl.float32)
        accb = tl.zeros((BLOCK_I, BLOCK_O), dtype=tl.float32)
        for t in range(0, ITERS):
            rows = (pid_s * ITERS + t) * BLOCK_B + tl.arange(0, BLOCK_B)
            rmask = rows < B
            x = tl.load(x_ptr + rows.to(tl.int64)[:, None] * IN + ins[None, :],
                        mask=rmask[:, None] & imask[None, :], other=0.0).to(tl.float32)
            tile3, b = _basis_tile(x, ins, imask, IN, knots_ptr, tab_ptr, NK, S, NC, P, K, OFF,
                                   BASE, False)
            tile = tl.reshape(tl.permute(tile3, (1, 0, 2)), (BLOCK_B, NC * BLOCK_I))
            # rows past B: dY is loaded as 0 there, so they add nothing
            dy = tl.load(dy_ptr + rows.to(tl.int64)[:, None] * OUT + outs[None, :],
                         mask=rmask[:, None] & omask[None, :], other=0.0)
            acc = _mm(tl.trans(tile), dy, acc, PREC, EMU)
            if OFF == 1:
                if BASE != 0:
                    accb = _mm(tl.trans(b), dy, accb, PREC, EMU)
        cc = tl.arange(0, BLOCK_I * NC)
        ci = cc % BLOCK_I
        wrow = (pid_s * IN * (P + 1) + (i0 + ci) * (P + 1) + cc // BLOCK_I + OFF).to(tl.int64) * OUT
        tl.store(dw_ptr + wrow[:, None] + outs[None, :], acc,
                 mask=(((cc // BLOCK_I + OFF) <= P) & (i0 + ci < IN))[:, None] & omask[None, :])
        if OFF == 1:  # the base rows (zero for base 'zero': dw is not pre-filled)
            wbrow = (pid_s * IN * (P + 1) + ins * (P + 1)).to(tl.int64) * OUT
            tl.store(dw_ptr + wbrow[:, None] + outs[None, :], accb,
                     mask=imask[:, None] & omask[None, :])

    @triton.jit
    def _dx_kernel(x_ptr, knots_ptr, tab_ptr, w_ptr, dy_ptr, dx_ptr, B, IN, OUT,
                   NK: tl.constexpr, S: tl.constexpr, NC: tl.constexpr, P: tl.constexpr,
                   K: tl.constexpr, OFF: tl.constexpr, BASE: tl.constexpr, PREC: tl.constexpr,
                   EMU: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_I: tl.constexpr,
                   BLOCK_O: tl.constexpr):
        pid_i = tl.program_id(0)
        pid_b = tl.program_id(1)
        i0 = pid_i * BLOCK_I
        ins = i0 + tl.arange(0, BLOCK_I)
        imask = ins < IN
        rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
        rmask = rows < B
        cc = tl.arange(0, BLOCK_I * NC)
        ci = cc % BLOCK_I
        wrow = ((i0 + ci) * (P + 1) + cc // BLOCK_I + OFF).to(tl.int64) * OUT
        wmask = ((cc // BLOCK_I + OFF) <= P) & (i0 + ci < IN)
        wbrow = (ins * (P + 1)).to(tl.int64) * OUT
        dyrow = rows.to(tl.int64) * OUT
        g = tl.zeros((BLOCK_B, BLOCK_I * NC), dtype=tl.float32)
        gb = tl.zeros((BLOCK_B, BLOCK_I), dtype=tl.float32)
        for o0 in range(0, OUT, BLOCK_O):
            outs = o0 + tl.arange(0, BLOCK_O)
            omask = outs < OUT
            dy = tl.load(dy_ptr + dyrow[:, None] + outs[None, :],
                         mask=rmask[:, None] & omask[None, :], other=0.0)
            w = tl.load(w_ptr + wrow[:, None] + outs[None, :],
                        mask=wmask[:, None] & omask[None, :], other=0.0)
            g = _mm(dy, tl.trans(w), g, PREC, EMU)
            if OFF == 1:
                if BASE != 0:
                    wb = tl.load(w_ptr + wbrow[:, None] + outs[None, :],
                                 mask=imask[:, None] & omask[None, :], other=0.0)
                    gb = _mm(dy, tl.trans(wb), gb, PREC, EMU)
        x = tl.load(x_ptr + rows.to(tl.int64)[:, None] * IN + ins[None, :],
                    mask=rmask[:, None] & imask[None, :], other=0.0).to(tl.float32)
        dtile3, db = _basis_tile(x, ins, imask, IN, knots_ptr, tab_ptr, NK, S, NC, P, K, OFF,
                                 BASE, True)
        g3 = tl.permute(tl.reshape(g, (BLOCK_B, NC, BLOCK_I)), (1, 0, 2))
        dx = tl.sum(dtile3 * g3, axis=0)
        if OFF == 1:
            dx += db * gb
        tl.store(dx_ptr + rows.to(tl.int64)[:, None] * IN + ins[None, :], dx,
                 mask=rmask[:, None] & imask[None, :])


def _p2(n: int) -> int:
    """Next power of two >= n (n >= 1)."""
    return 1 << max(0, int(n) - 1).bit_length()


def _launch_cfg(B: int, n_in: int, n_out: int, nc: int, split: bool, prec: int) -> dict:
    """Block sizes, warps and pipeline stages of the three kernels for a (B, n_in) -> (B, n_out)
    layer, tuned on an H100 (Triton 3.6) at in=out=1024, batch 8192, G=5, k=3 (NC=8).

    * BLOCK_I: inputs per product, so that K = BLOCK_I*NC is about 128 columns (64 for IEEE
      fp32), at least 16 (tl.dot), at least 16 inputs when the base has its own product, and
      no more than the layer has (rounded up to a power of two).
    * Forward and dW rebuild the basis for every output tile, so their output tiles are wide:
      256 outputs with the tensor cores (tf32, bf16; 10-40% faster than 128 there), 128 with
      IEEE fp32 (256 spilled badly), and BLOCK_B 64 (128 spilled; less for tiny batches).
      Their loops run with num_stages=1 on the tensor-core paths: software pipelining stages
      every table gather of the basis in shared memory too (over the limit at these tiles);
      the IEEE fp32 forward needs 2 stages (with 1 it spilled and ran 8x slower).
    * dW: the batch is split into parts, summed afterwards, only when there would be fewer
      (input block, output tile) programs than SMs (H100: 132), aiming at about 2 per SM
      (small layers).
    * dx: its product's K is the output dimension: BLOCK_O 64 and BLOCK_B 128 with 2 stages on
      the tensor cores (20% faster than 64 rows), BLOCK_O 32, BLOCK_B 64 and 4 warps for IEEE
      fp32 (40% faster than BLOCK_O 64 with 8 warps).
    """
    min_i = 16 if split else max(1, 16 // nc)
    kt = 64 if prec == 0 else 128
    bi = max(min_i, min(max(1, kt // nc), _p2(n_in)))
    bb = max(16, min(64, _p2(B)))
    tc = prec != 0
    bo = max(16, min(256 if tc else 128, _p2(n_out)))
    warps = 4 if bb * bo <= 64 * 64 else 8
    fwd = dict(BLOCK_B=bb, BLOCK_I=bi, BLOCK_O=bo, num_warps=warps, num_stages=1 if tc else 2)
    dw = dict(BLOCK_B=bb, BLOCK_I=bi, BLOCK_O=bo, num_warps=warps, num_stages=1)
    if tc:
        dxb = max(16, min(128, _p2(B)))
        dx = dict(BLOCK_B=dxb, BLOCK_I=bi, BLOCK_O=max(16, min(64, _p2(n_out))),
                  num_warps=8 if dxb * bi * nc > 64 * 64 else 4, num_stages=2)
    else:
        dx = dict(BLOCK_B=bb, BLOCK_I=bi, BLOCK_O=max(16, min(32, _p2(n_out))), num_warps=4,
                  num_stages=2)
    progs = triton.cdiv(n_in, bi) * triton.cdiv(n_out, bo)
    tiles = triton.cdiv(B, bb)
    parts = 1 if progs >= 132 else max(1, min(triton.cdiv(264, progs), tiles // 4))
    return dict(fwd=fwd, dw=dw, dx=dx, dw_parts=parts)


class _TritonKANLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, tables, base_code, prec):
        B, n_in = x.shape
        n_out = w.shape[2]
        xc = x.contiguous()
        # the kernels' copy of W: bf16 operands are read as bf16 (half the bytes)
        wk = w.detach().to(torch.bfloat16 if prec == 2 else torch.float32).contiguous()
        y = torch.empty(B, n_out, dtype=torch.float32, device=x.device)
        cfg = _launch_cfg(B, n_in, n_out, tables.nc, tables.split, prec)
        meta = dict(NK=tables.n_knots, S=tables.n_spans, NC=tables.nc, P=tables.n_basis,
                    K=tables.k + 1, OFF=1 if tables.split else 0, BASE=base_code, PREC=prec,
                    EMU=bool(triton.knobs.runtime.interpret))
        if B > 0:
            f = cfg["fwd"]
            _fwd_kernel[(triton.cdiv(n_out, f["BLOCK_O"]), triton.cdiv(B, f["BLOCK_B"]))](
                xc, tables.knots, tables.tab, wk, y, B, n_in, n_out, **f, **meta)
        ctx.save_for_backward(x, w, xc, wk)
        ctx.tables, ctx.meta, ctx.cfg, ctx.wdtype = tables, meta, cfg, w.dtype
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        if torch.is_grad_enabled():  # create_graph: hand over to the plain computation
            x, w = ctx.saved_tensors[:2]
            return (*reference_vjp(partial(triton_reference, tables=ctx.tables,
                                           base_code=ctx.meta["BASE"]),
                                   (x, w), ctx.needs_input_grad[:2], (dy,)),
                    None, None, None)
        xc, wk = ctx.saved_tensors[2:]
        tables, meta, cfg = ctx.tables, ctx.meta, ctx.cfg
        B, n_in = xc.shape
        n_out = wk.shape[2]
        if meta["PREC"] == 2:
            dy = dy.to(torch.bfloat16)
        dy = dy.contiguous()
        dx = dw = None
        if ctx.needs_input_grad[1]:
            f, parts = cfg["dw"], cfg["dw_parts"]
            iters = triton.cdiv(triton.cdiv(B, f["BLOCK_B"]), parts)
            dw = torch.empty(parts, n_in, tables.nb, n_out, dtype=torch.float32, device=xc.device)
            if B > 0:
                _dw_kernel[(triton.cdiv(n_in, f["BLOCK_I"]), triton.cdiv(n_out, f["BLOCK_O"]), parts)](
                    xc, tables.knots, tables.tab, dy, dw, B, n_in, n_out, iters, **f, **meta)
            else:
                dw.zero_()
            dw = (dw[0] if parts == 1 else dw.sum(0)).to(ctx.wdtype)
        if ctx.needs_input_grad[0]:
            f = cfg["dx"]
            dx = torch.empty(B, n_in, dtype=torch.float32, device=xc.device)
            if B > 0:
                _dx_kernel[(triton.cdiv(n_in, f["BLOCK_I"]), triton.cdiv(B, f["BLOCK_B"]))](
                    xc, tables.knots, tables.tab, wk, dy, dx, B, n_in, n_out, **f, **meta)
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
        precision: 'fp32' (default: IEEE fp32 products, matches the PyTorch path to ~1e-5),
            'tf32' (tensor-core TF32 products with fp32 accumulation, ~1e-3 relative error) or
            'bf16' (bf16 products, fp32 accumulation, <1% error).
    """
    if not HAS_TRITON:
        raise RuntimeError("the fused kernel needs triton: pip install triton")
    if base_fun not in _BASES:
        raise ValueError(f"the Triton kernel supports base functions {sorted(_BASES)}, "
                         f"got {base_fun!r}")
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}")
    w = combined_weights(scale_base, scale_sp, coef, mask, tables.nb).to(torch.float32)
    y = _TritonKANLayer.apply(x, w, tables, _BASES[base_fun], _PRECISIONS[precision])
    if bias is not None:
        y = y + bias
    return y
