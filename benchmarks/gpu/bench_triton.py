#!/usr/bin/env python
"""GPU benchmark of the fused Triton KAN layer (needs a CUDA GPU and triton).

Forward+backward, medians over timed repeats after warm-up, all in one process:

* large layer: in=out=1024, batch 8192, G=5, k=3, fp32 and bf16:
  - kanlab's fused Triton kernel (``kanlab.triton_spline``), and for fp32 also with TF32
    products (``precision="tf32"``);
  - kanlab's own PyTorch path (``KANLayer`` with ``use_triton=False``; for the bf16 table a
    bf16 copy of the layer on bf16 inputs);
  - the dense-basis approach: the (batch, in*(G+k)) basis written to memory, then one matmul
    (what efficient-kan does);
  - the matmul floor: the same matmul with the basis given (no basis work at all);
  - nn.Linear(in, out) of the same width.
* small layer: in=out=64, batch 1024, where launch overhead rules: the fused kernel, the PyTorch
  path eager and under torch.compile, and the fused kernel replayed from a CUDA graph.

Ratios are against the matmul floor and the dense approach measured in the same process; the
device name is written with the figures to benchmarks/results/gpu_triton.{md,json}. A variant
that raises (compile error, out of memory, ...) is reported in its row instead of ending the run.

    python benchmarks/gpu/bench_triton.py [--repeats 50] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from kanlab import KANLayer  # noqa: E402
from kanlab.splines import bspline_basis  # noqa: E402
from kanlab.triton_spline import SplineTables, kan_layer_triton  # noqa: E402


def timed(fn, repeats, warmup=5):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def measure(res, name, make, repeats, warmup=5):
    """res[name] = median ms of the step ``make()`` returns, or the error it raised (setup or
    run): one failing variant does not end the benchmark."""
    try:
        res[name] = timed(make(), repeats, warmup)
    except Exception as err:  # report, do not guess
        res[name] = f"failed: {type(err).__name__}: {err}"[:200].replace("\n", " ").replace("|", "/")
    torch.cuda.empty_cache()


def fwd_bwd(forward, params):
    def step():
        for p in params:
            p.grad = None
        forward().sum().backward()
    return step


def large(repeats, dtype):
    dev = "cuda"
    n, G, k, B = 1024, 5, 3, 8192
    layer = KANLayer(n, n, num=G, k=k, device=dev)
    x = (torch.rand(B, n, device=dev) * 2 - 1).requires_grad_(True)
    tables = SplineTables(layer.grid, k)
    prec = "bf16" if dtype == torch.bfloat16 else "fp32"
    params = [x, layer.coef, layer.scale_base, layer.scale_sp]
    res = {}

    def fused(precision):
        return lambda: fwd_bwd(lambda: kan_layer_triton(
            x, tables, layer.scale_base, layer.scale_sp, layer.coef, layer.mask, layer.bias,
            precision=precision), params)
    measure(res, "fused triton", fused(prec), repeats)
    if prec == "fp32":
        measure(res, "fused triton, tf32 products", fused("tf32"), repeats)

    def pytorch_path():
        if dtype == torch.bfloat16:  # a bf16 copy of the layer on bf16 inputs
            lb = copy.deepcopy(layer).to(dtype)
            lb.use_triton = False
            xb = x.detach().to(dtype).requires_grad_(True)
            return fwd_bwd(lambda: lb(xb), [xb, lb.coef, lb.scale_base, lb.scale_sp])
        layer.use_triton = False
        return fwd_bwd(lambda: layer(x), params)
    name = "pytorch path (KANLayer, use_triton=False)"
    measure(res, name + (", bf16 layer" if dtype == torch.bfloat16 else ""), pytorch_path,
            repeats)
    W = torch.randn(n * (G + k), n, device=dev, dtype=dtype, requires_grad=True)
    xd = x.detach().to(dtype).requires_grad_(True)

    def dense():
        basis = bspline_basis(xd.float(), layer.grid, k).to(dtype)  # (B, n, G+k) in memory
        return torch.nn.functional.silu(xd) @ W[:n] + basis.reshape(B, -1) @ W
    measure(res, "dense basis + matmul", lambda: fwd_bwd(dense, [xd, W]), repeats)
    F = torch.randn(B, n * (G + k), device=dev, dtype=dtype)
    measure(res, "matmul floor (basis given)", lambda: fwd_bwd(lambda: F @ W, [W]), repeats)
    lin = torch.nn.Linear(n, n, device=dev, dtype=dtype)
    measure(res, "nn.Linear", lambda: fwd_bwd(lambda: lin(xd), [xd] + list(lin.parameters())),
            repeats)
    return res


def small(repeats):
    dev = "cuda"
    layer = KANLayer(64, 64, num=5, k=3, device=dev)
    x = (torch.rand(1024, 64, device=dev) * 2 - 1).requires_grad_(True)
    tables = SplineTables(layer.grid, 3)
    params = [x, layer.coef, layer.scale_base, layer.scale_sp]
    res = {}
    tri = lambda: kan_layer_triton(x, tables, layer.scale_base, layer.scale_sp,  # noqa: E731
                                   layer.coef, layer.mask, layer.bias)
    measure(res, "fused triton", lambda: fwd_bwd(tri, params), repeats)
    layer.use_triton = False
    measure(res, "pytorch path, eager", lambda: fwd_bwd(lambda: layer(x), params), repeats)

    def compiled():
        comp = torch.compile(lambda t: layer(t))
        return fwd_bwd(lambda: comp(x), params)
    measure(res, "pytorch path, torch.compile", compiled, repeats, warmup=10)

    def graphed():  # CUDA graph of the fused forward+backward
        static_x = x.detach().clone().requires_grad_(True)
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                kan_layer_triton(static_x, tables, layer.scale_base, layer.scale_sp, layer.coef,
                                 layer.mask, layer.bias).sum().backward()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            kan_layer_triton(static_x, tables, layer.scale_base, layer.scale_sp, layer.coef,
                             layer.mask, layer.bias).sum().backward()
        return g.replay
    measure(res, "fused triton, CUDA graph replay", graphed, repeats)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this benchmark needs a GPU")
    name = torch.cuda.get_device_name()
    out = {"device": name, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
           "large_fp32": large(args.repeats, torch.float32),
           "large_bf16": large(args.repeats, torch.bfloat16),
           "small_fp32": small(args.repeats)}
    lines = [f"# Fused Triton KAN layer on {name}", "",
             f"torch {torch.__version__}, {out['date']}; forward+backward, median ms", ""]
    for key, title in (("large_fp32", "in=out=1024, batch 8192, G=5, fp32"),
                       ("large_bf16", "in=out=1024, batch 8192, G=5, bf16"),
                       ("small_fp32", "in=out=64, batch 1024, G=5, fp32")):
        res = out[key]
        lines += [f"## {title}", "", "| what | ms | vs fused |", "| --- | --- | --- |"]
        ref = res.get("fused triton")
        ok = isinstance(ref, float)
        for k, v in res.items():
            lines.append(f"| {k} | {v:.3f} | {v / ref:.2f}x |" if isinstance(v, float) and ok
                         else f"| {k} | {v:.3f} | - |" if isinstance(v, float)
                         else f"| {k} | {v} | - |")
        floor, dense = res.get("matmul floor (basis given)"), res.get("dense basis + matmul")
        if ok and isinstance(floor, float) and isinstance(dense, float):
            lines.append("")
            lines.append(f"fused / matmul floor: {ref / floor:.2f}x; dense / fused: {dense / ref:.2f}x")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "gpu_triton.md").write_text(text + "\n")
    (Path(args.out) / "gpu_triton.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
