#!/usr/bin/env python
"""Core CPU benchmarks for kanlab, in one process.

Part 1  one layer (in=out=64, batch 1024, G=5, k=3, float32) forward+backward:
        kanlab (uniform and non-uniform grid), the dense matmul floor (basis given),
        pykan's KANLayer, pykan's MultKAN after speed(), and nn.Linear + SiLU.
Part 2  the README snippet end to end (KAN [2,5,1], fit LBFGS 50 steps with lamb, refine(10),
        fit 50 steps) for kanlab and pykan on the same dataset tensors.
Part 3  which tensors autograd saves for backward during kanlab's forward (memory).

Run from the repository root:

    python benchmarks/bench_core.py            # full run, writes benchmarks/results/core.{md,json}
    python benchmarks/bench_core.py --quick    # smoke run, prints only (add --out to write)

See benchmarks/README.md for what each row means.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import io
import json
import math
import os
import platform
import random
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

try:
    import kanlab  # noqa: F401
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(ROOT / "src"))
    import kanlab  # noqa: F401

import torch
import torch.nn.functional as F
from torch import nn

try:
    import kan as _pykan  # pykan

    HAVE_PYKAN = True
    PYKAN_VERSION = getattr(_pykan, "__version__", None)
    if PYKAN_VERSION is None:
        try:
            from importlib.metadata import version

            PYKAN_VERSION = version("pykan")
        except Exception:  # pragma: no cover
            PYKAN_VERSION = "unknown"
except Exception as exc:  # pragma: no cover - pykan is optional
    HAVE_PYKAN = False
    PYKAN_VERSION = f"not available ({type(exc).__name__}: {exc})"


# --------------------------------------------------------------------------- helpers
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [f for f in ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in have]
    except OSError:
        pass
    return []


def kanlab_source() -> dict:
    """Where kanlab was imported from and, inside this repository, the commit and whether src/ is dirty."""
    import subprocess

    path = Path(kanlab.__file__).resolve()
    info = {"kanlab_file": str(path)}
    try:
        path.relative_to(ROOT)
        inside = True
    except ValueError:
        inside = False
    info["inside_repo"] = inside
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        info["repo_head"] = head or None
        if inside:
            dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            info["src_dirty"] = bool(dirty)
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def summarize(samples: list[float]) -> dict:
    s = sorted(samples)
    n = len(s)

    def q(p):
        return s[min(n - 1, max(0, int(round(p * (n - 1)))))]

    return {
        "median_us": statistics.median(s) * 1e6,
        "min_us": s[0] * 1e6,
        "p25_us": q(0.25) * 1e6,
        "p75_us": q(0.75) * 1e6,
        "mean_us": statistics.fmean(s) * 1e6,
        "n": n,
    }


def md_table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    align = align or ("l" + "r" * (len(headers) - 1))
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(lines)


def fmt_us(v):
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def fmt_ratio(v):
    return "n/a" if v is None else f"{v:.2f}x"


# ------------------------------------------------------------- other load on the machine
def _cpu_busy_s():
    """(busy, steal) CPU seconds of the whole machine so far, from /proc/stat, or (None, None).

    busy = user + nice + system + irq + softirq (all processes); steal = time the hypervisor ran
    something else while this machine wanted the CPU.
    """
    try:
        with open("/proc/stat") as fh:
            vals = [int(v) for v in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None, None
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (vals + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / hz, steal / hz


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


class CpuMonitor:
    """How many cores other processes kept busy while a block ran (``foreign_cores``), and how many
    the hypervisor stole (``steal_cores``)."""

    def __enter__(self):
        self.t0, self.own0 = time.perf_counter(), _own_cpu_s()
        self.busy0, self.steal0 = _cpu_busy_s()
        return self

    def __exit__(self, *exc):
        self.elapsed = time.perf_counter() - self.t0
        busy1, steal1 = _cpu_busy_s()
        own1 = _own_cpu_s()
        if self.busy0 is None or busy1 is None or self.elapsed <= 0:
            self.foreign_cores = self.steal_cores = None
        else:
            foreign = (busy1 - self.busy0) - (own1 - self.own0)
            self.foreign_cores = max(0.0, foreign / self.elapsed)
            self.steal_cores = max(0.0, (steal1 - self.steal0) / self.elapsed)
        return False

    def record(self) -> dict:
        return {"elapsed_s": self.elapsed, "foreign_busy_cores": self.foreign_cores,
                "steal_cores": self.steal_cores}


def wait_until_idle(max_wait: float, threshold: float, quiet_s: int = 3, window: float = 1.0) -> dict:
    """Wait (at most ``max_wait`` s) until other processes used < ``threshold`` cores for ``quiet_s``
    consecutive windows of ``window`` seconds."""
    t0 = time.perf_counter()
    quiet = 0
    last = None
    while True:
        with CpuMonitor() as mon:
            time.sleep(window)
        last = mon.foreign_cores
        if last is None:
            return {"waited_s": time.perf_counter() - t0, "foreign_busy_cores_before": None, "idle": True}
        quiet = quiet + 1 if last < threshold else 0
        waited = time.perf_counter() - t0
        if quiet >= quiet_s or waited >= max_wait:
            return {"waited_s": waited, "foreign_busy_cores_before": last, "idle": quiet >= quiet_s}


class Case:
    """One timed row: ``step`` does forward+backward, ``fwd`` forward only, ``reset`` is untimed."""

    def __init__(self, key, label, step, fwd=None, reset=None, note=""):
        self.key, self.label, self.step, self.fwd, self.reset, self.note = key, label, step, fwd, reset, note


def time_interleaved(fns: dict, resets: dict, repeats: int, warmup: int, guard: dict | None = None):
    """Median-friendly timing: every round times each function once, in a shuffled order.

    With ``guard`` (keys ``threshold``, ``block_s``, ``max_s``) rounds are grouped into blocks of
    about ``block_s`` seconds and a block is thrown away when other processes kept more than
    ``threshold`` cores busy during it (on a 2-core machine one busy neighbour makes 2-thread
    OpenMP kernels wait for a scheduler slice, which inflates times ~10x). Timing goes on until
    ``repeats`` clean rounds are collected or ``max_s`` seconds have passed.

    Returns (samples per key, stats).
    """
    keys = list(fns)
    for k in keys:
        for _ in range(warmup):
            if resets.get(k):
                resets[k]()
            fns[k]()
    samples = {k: [] for k in keys}
    stats = {"rounds_kept": 0, "rounds_discarded": 0, "blocks_discarded": 0, "blocks_kept": 0,
             "complete": True}
    t_start = time.perf_counter()
    r = 0
    rng = random.Random(0)
    gc.collect()
    gc.disable()
    try:
        while stats["rounds_kept"] < repeats:
            block = {k: [] for k in keys}
            n_rounds = 0
            with CpuMonitor() as mon:
                t_block = time.perf_counter()
                while True:
                    order = list(keys)
                    rng.shuffle(order)  # random neighbours: no row always follows the same one
                    r += 1
                    for k in order:
                        reset = resets.get(k)
                        if reset:
                            reset()
                        t0 = time.perf_counter()
                        fns[k]()
                        t1 = time.perf_counter()
                        block[k].append(t1 - t0)
                    n_rounds += 1
                    if stats["rounds_kept"] + n_rounds >= repeats:
                        break
                    if guard is None or time.perf_counter() - t_block >= guard["block_s"]:
                        break
            busy = (guard is not None and mon.foreign_cores is not None
                    and mon.foreign_cores > guard["threshold"])
            if busy and time.perf_counter() - t_start < guard["max_s"]:
                stats["rounds_discarded"] += n_rounds
                stats["blocks_discarded"] += 1
                continue
            if busy:
                stats["complete"] = False  # out of time: keep what we have, flagged
            for k in keys:
                samples[k].extend(block[k])
            stats["rounds_kept"] += n_rounds
            stats["blocks_kept"] += 1
            if busy:
                stats.setdefault("busy_blocks_kept", 0)
                stats["busy_blocks_kept"] += 1
    finally:
        gc.enable()
    stats["elapsed_s"] = time.perf_counter() - t_start
    return samples, stats


def zero_grads(*objs):
    def reset():
        for o in objs:
            if isinstance(o, nn.Module):
                for p in o.parameters():
                    p.grad = None
            elif isinstance(o, torch.Tensor):
                o.grad = None
    return reset


# --------------------------------------------------------------------------- part 1
def build_layer_cases(batch, d, G, k, tmpdirs):
    gen = torch.Generator().manual_seed(0)
    P = G + k
    x = (torch.rand(batch, d, generator=gen) * 2 - 1).requires_grad_(True)
    xs = x.detach()
    R = torch.randn(batch, d, generator=gen)  # fixed random projection: loss = (out * R).sum()
    cases: list[Case] = []
    info: dict = {}

    # a) kanlab, uniform grid
    lay_u = kanlab.KANLayer(d, d, num=G, k=k, generator=torch.Generator().manual_seed(1))
    assert lay_u.is_uniform()

    def step_u():
        (lay_u(x) * R).sum().backward()

    cases.append(Case("kanlab_uniform", "kanlab KANLayer, uniform grid", step_u,
                      fwd=lambda: lay_u(xs), reset=zero_grads(lay_u, x)))

    # a') kanlab, non-uniform grid (after a data-driven grid update)
    lay_n = kanlab.KANLayer(d, d, num=G, k=k, generator=torch.Generator().manual_seed(1))
    x_sample = torch.randn(batch, d, generator=gen) * 0.5
    lay_n.update_grid_from_samples(x_sample)
    info["nonuniform_grid_is_uniform"] = lay_n.is_uniform()
    assert not lay_n.is_uniform(), "update_grid_from_samples should give a non-uniform grid"

    def step_n():
        (lay_n(x) * R).sum().backward()

    cases.append(Case("kanlab_nonuniform", "kanlab KANLayer, non-uniform grid", step_n,
                      fwd=lambda: lay_n(xs), reset=zero_grads(lay_n, x)))

    # kanlab's model wrapper with one layer (mirror of pykan's MultKAN row)
    kmod = kanlab.KAN(width=[d, d], grid=G, k=k, seed=0)

    def step_km():
        (kmod(x) * R).sum().backward()

    cases.append(Case("kanlab_kan", "kanlab KAN width [64,64]", step_km,
                      fwd=lambda: kmod(xs), reset=zero_grads(kmod, x)))

    # b) the matmul floor: features given (not timed), y = F_base @ Wb + F_sp @ Wsp
    F_base = torch.rand(batch, d, generator=gen)
    F_sp = torch.rand(batch, d * P, generator=gen)
    Wb = (torch.randn(d, d, generator=gen) / math.sqrt(d)).requires_grad_(True)
    Wsp = (torch.randn(d * P, d, generator=gen) / math.sqrt(d * P)).requires_grad_(True)
    Fb_g = F_base.clone().requires_grad_(True)
    Fs_g = F_sp.clone().requires_grad_(True)

    def step_floor_g():
        y = Fb_g @ Wb + Fs_g @ Wsp
        (y * R).sum().backward()

    def step_floor_w():
        y = F_base @ Wb + F_sp @ Wsp
        (y * R).sum().backward()

    cases.append(Case("floor_feat_grad", "matmul floor, grads to features+weights (primary)", step_floor_g,
                      fwd=lambda: F_base @ Wb + F_sp @ Wsp, reset=zero_grads(Fb_g, Fs_g, Wb, Wsp)))
    cases.append(Case("floor_weights_only", "matmul floor, grads to weights only", step_floor_w,
                      fwd=lambda: F_base @ Wb + F_sp @ Wsp, reset=zero_grads(Wb, Wsp)))

    # c) pykan KANLayer, d) pykan MultKAN after speed()
    if HAVE_PYKAN:
        from kan.KANLayer import KANLayer as PK
        from kan import KAN as PKAN

        torch.manual_seed(0)
        pk = PK(in_dim=d, out_dim=d, num=G, k=k)

        def step_pk():
            (pk(x)[0] * R).sum().backward()

        cases.append(Case("pykan_layer", "pykan KANLayer", step_pk,
                          fwd=lambda: pk(xs)[0], reset=zero_grads(pk, x)))

        ckpt = tempfile.mkdtemp(prefix="kanlab-bench-pykan-")
        tmpdirs.append(ckpt)
        with contextlib.redirect_stdout(io.StringIO()):
            pm = PKAN(width=[d, d], grid=G, k=k, auto_save=False, ckpt_path=ckpt, seed=0)
            pm = pm.speed()

        def step_pm():
            (pm(x) * R).sum().backward()

        cases.append(Case("pykan_multkan_speed", "pykan MultKAN [64,64] after speed()", step_pm,
                          fwd=lambda: pm(xs), reset=zero_grads(pm, x)))

    # e) nn.Linear + SiLU
    torch.manual_seed(0)
    lin = nn.Linear(d, d)

    def step_lin():
        (F.silu(lin(x)) * R).sum().backward()

    cases.append(Case("linear_silu", "nn.Linear(64,64) + SiLU", step_lin,
                      fwd=lambda: F.silu(lin(xs)), reset=zero_grads(lin, x)))

    # floor FLOPs (fwd 1x, bwd 2x when features need grads, 1x when only the weights do)
    fwd_flops = 2 * batch * d * (1 + P) * d
    info["floor_flops"] = {"floor_feat_grad": 3 * fwd_flops, "floor_weights_only": 2 * fwd_flops,
                           "forward": fwd_flops}
    return cases, info


def run_part1(args, tmpdirs):
    batch, d, G, k = args.batch, 64, 5, 3
    cases, info = build_layer_cases(batch, d, G, k, tmpdirs)
    guard = args.guard
    with torch.no_grad():
        fwd_samples, fwd_stats = time_interleaved({c.key: c.fwd for c in cases if c.fwd}, {}, args.repeats,
                                                  args.warmup, guard)
    fb_samples, fb_stats = time_interleaved({c.key: c.step for c in cases}, {c.key: c.reset for c in cases},
                                            args.repeats, args.warmup, guard)
    info["timing_fwd_bwd"] = fb_stats
    info["timing_fwd_only"] = fwd_stats
    rows = []
    floor_g = statistics.median(fb_samples["floor_feat_grad"]) * 1e6
    floor_w = statistics.median(fb_samples["floor_weights_only"]) * 1e6
    floor_f = statistics.median(fwd_samples["floor_feat_grad"]) * 1e6
    for c in cases:
        s_fb = summarize(fb_samples[c.key])
        s_f = summarize(fwd_samples[c.key]) if c.key in fwd_samples else None
        rows.append({
            "key": c.key,
            "label": c.label,
            "fwd_bwd": s_fb,
            "fwd_only": s_f,
            "ratio_vs_floor_feat_grad": s_fb["median_us"] / floor_g,
            "ratio_vs_floor_weights_only": s_fb["median_us"] / floor_w,
            "fwd_ratio_vs_floor_fwd": (s_f["median_us"] / floor_f) if s_f else None,
            "samples_fwd_bwd_s": fb_samples[c.key],
            "samples_fwd_only_s": fwd_samples.get(c.key),
        })
    info["floor_gflops_per_s"] = {
        "floor_feat_grad": info["floor_flops"]["floor_feat_grad"] / (floor_g * 1e-6) / 1e9,
        "floor_weights_only": info["floor_flops"]["floor_weights_only"] / (floor_w * 1e-6) / 1e9,
        "forward": info["floor_flops"]["forward"] / (floor_f * 1e-6) / 1e9,
    }
    return {"config": {"batch": batch, "in": d, "out": d, "G": G, "k": k, "dtype": "float32",
                       "loss": "(out * R).sum() with a fixed random R (batch, out)",
                       "x": "uniform in [-1, 1], requires_grad"},
            "rows": rows, "info": info}


def profile_kanlab_layer(args, n_iter=20, top=12):
    """Top ops (self CPU time) of kanlab's layer forward+backward, uniform and non-uniform grid."""
    from torch.profiler import ProfilerActivity, profile

    batch, d, G, k = args.batch, 64, 5, 3
    out = {}
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, d, generator=gen) * 2 - 1).requires_grad_(True)
    R = torch.randn(batch, d, generator=gen)
    for name in ("uniform", "nonuniform"):
        lay = kanlab.KANLayer(d, d, num=G, k=k, generator=torch.Generator().manual_seed(1))
        if name == "nonuniform":
            lay.update_grid_from_samples(torch.randn(batch, d, generator=gen) * 0.5)
        for _ in range(5):
            (lay(x) * R).sum().backward()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(n_iter):
                x.grad = None
                (lay(x) * R).sum().backward()
        evs = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in evs) or 1.0
        out[name] = [
            {"op": e.key, "self_cpu_us_per_iter": e.self_cpu_time_total / n_iter,
             "calls_per_iter": e.count / n_iter, "share": e.self_cpu_time_total / total}
            for e in evs[:top]
        ]
    return out


# --------------------------------------------------------------------------- part 2
def target_fn(x):
    return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)


@contextlib.contextmanager
def count_backward(model, counter: list):
    """Count loss+gradient evaluations of a fit: one per backward pass that reaches the first layer's
    spline coefficients (each optimizer closure runs exactly one backward; test-set evaluation and
    grid updates run none). Optimizer-agnostic; nothing in the library is modified."""
    p = model.act_fun[0].coef

    def hook(grad):
        counter[0] += 1
        return grad

    handle = p.register_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def clone_dataset(ds):
    return {k: v.clone() for k, v in ds.items()}


def e2e_kanlab(dataset, steps, refine_to):
    from kanlab import KAN

    ds = clone_dataset(dataset)
    t = [time.perf_counter()]
    model = KAN(width=[2, 5, 1], grid=3, k=3, seed=1)
    t.append(time.perf_counter())
    # kanlab's fit records its loss+gradient evaluations per step (the native objective runs no
    # autograd backward, so the hook count used for pykan would see none)
    h1 = model.fit(ds, opt="LBFGS", steps=steps, lamb=0.001, progress=False)
    t.append(time.perf_counter())
    model = model.refine(refine_to)
    t.append(time.perf_counter())
    h2 = model.fit(ds, opt="LBFGS", steps=steps, progress=False)
    t.append(time.perf_counter())
    return _e2e_record(t, h1, h2, sum(h1["evals"]), sum(h2["evals"]))


def e2e_pykan(dataset, steps, refine_to):
    from kan import KAN as PKAN

    ds = clone_dataset(dataset)
    ckpt = tempfile.mkdtemp(prefix="kanlab-bench-pykan-")
    n1, n2 = [0], [0]
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            t = [time.perf_counter()]
            model = PKAN(width=[2, 5, 1], grid=3, k=3, seed=1, ckpt_path=ckpt)
            t.append(time.perf_counter())
            with count_backward(model, n1):
                h1 = model.fit(ds, opt="LBFGS", steps=steps, lamb=0.001)
            t.append(time.perf_counter())
            model = model.refine(refine_to)
            t.append(time.perf_counter())
            with count_backward(model, n2):
                h2 = model.fit(ds, opt="LBFGS", steps=steps)
            t.append(time.perf_counter())
    finally:
        shutil.rmtree(ckpt, ignore_errors=True)
    return _e2e_record(t, h1, h2, n1[0], n2[0])


def _e2e_record(t, h1, h2, n1, n2):
    return {
        "construct_s": t[1] - t[0],
        "fit1_s": t[2] - t[1],
        "refine_s": t[3] - t[2],
        "fit2_s": t[4] - t[3],
        "total_s": t[4] - t[0],
        "fit1_test_rmse": float(h1["test_loss"][-1]),
        "fit1_train_rmse": float(h1["train_loss"][-1]),
        "final_test_rmse": float(h2["test_loss"][-1]),
        "final_train_rmse": float(h2["train_loss"][-1]),
        "fit1_steps": len(h1["test_loss"]),
        "fit2_steps": len(h2["test_loss"]),
        "fit1_loss_evals": n1,
        "fit2_loss_evals": n2,
        "loss_evals": n1 + n2,
    }


def median_record(runs):
    """Medians over the clean runs (other processes quiet), or over all runs when none was clean."""
    clean = [r for r in runs if r.get("clean", True)] or runs
    keys = [k for k in clean[0] if isinstance(clean[0][k], (int, float)) and not isinstance(clean[0][k], bool)]
    out = {k: statistics.median(r[k] for r in clean) for k in keys}
    out["n_runs_in_median"] = len(clean)
    return out


def run_part2(args):
    from kanlab import create_dataset

    dataset = create_dataset(target_fn, n_var=2, train_num=1000, test_num=1000, seed=0)
    info = {"steps": args.e2e_steps, "refine_to": 10, "kanlab_repeats": args.e2e_repeats,
            "pykan_repeats": args.pykan_repeats if HAVE_PYKAN else 0}
    if HAVE_PYKAN:
        from kan import create_dataset as pk_create_dataset

        with contextlib.redirect_stdout(io.StringIO()):
            pk_ds = pk_create_dataset(target_fn, n_var=2, train_num=1000, test_num=1000, seed=0)
        info["pykan_create_dataset_identical"] = all(
            torch.equal(dataset[k], pk_ds[k]) for k in ("train_input", "train_label", "test_input", "test_label"))
    kan_runs, pk_runs, discarded = [], [], []

    def one(lib, fn):
        for attempt in range(args.retries + 1):
            if args.wait_idle > 0:
                wait_until_idle(args.wait_idle, args.idle_threshold)
            with CpuMonitor() as mon:
                rec = fn(dataset, args.e2e_steps, 10)
            rec["foreign_busy_cores"] = mon.foreign_cores
            rec["steal_cores"] = mon.steal_cores
            busy = mon.foreign_cores is not None and mon.foreign_cores > args.idle_threshold
            rec["clean"] = not busy
            note = f" (other processes used {mon.foreign_cores:.2f} cores)" if mon.foreign_cores is not None else ""
            if busy and attempt < args.retries:
                print(f"  {lib} e2e run discarded: {rec['total_s']:.2f} s{note}", flush=True)
                discarded.append({"library": lib, **rec})
                continue
            print(f"  {lib} e2e run: {rec['total_s']:.2f} s{note}"
                  + ("" if rec["clean"] else " -- kept although busy (out of retries)"), flush=True)
            return rec

    # interleave: kanlab, pykan, kanlab, pykan, ... then the remaining kanlab runs
    n_rounds = max(args.e2e_repeats, args.pykan_repeats if HAVE_PYKAN else 0)
    for i in range(n_rounds):
        if i < args.e2e_repeats:
            kan_runs.append(one("kanlab", e2e_kanlab))
        if HAVE_PYKAN and i < args.pykan_repeats:
            pk_runs.append(one("pykan", e2e_pykan))
    info["discarded_runs"] = discarded
    res = {"info": info, "kanlab_runs": kan_runs, "kanlab_median": median_record(kan_runs)}
    if pk_runs:
        res["pykan_runs"] = pk_runs
        res["pykan_median"] = median_record(pk_runs)
        res["speedup_pykan_over_kanlab"] = res["pykan_median"]["total_s"] / res["kanlab_median"]["total_s"]
        res["speedup_per_loss_eval"] = (
            (res["pykan_median"]["fit1_s"] + res["pykan_median"]["fit2_s"]) / res["pykan_median"]["loss_evals"]
        ) / ((res["kanlab_median"]["fit1_s"] + res["kanlab_median"]["fit2_s"]) / res["kanlab_median"]["loss_evals"])
    return res


def profile_kanlab_fit(steps=10, top=12):
    """Top functions (cProfile self time) of kanlab's second fit of the README snippet (after
    refine(10)). With the native objective and L-BFGS steps, the evaluations run inside one
    native call per step; the table shows where the rest of the time goes."""
    import cProfile
    import pstats

    from kanlab import KAN, create_dataset

    ds = create_dataset(target_fn, n_var=2, train_num=1000, test_num=1000, seed=0)
    model = KAN(width=[2, 5, 1], grid=3, k=3, seed=1)
    model.fit(ds, opt="LBFGS", steps=steps, lamb=0.001, progress=False)
    model = model.refine(10)
    pr = cProfile.Profile()
    pr.enable()
    h = model.fit(ds, opt="LBFGS", steps=steps, progress=False)
    pr.disable()
    n = max(sum(h["evals"]), 1)
    st = pstats.Stats(pr)
    rows = sorted(((v[2], v[1], k) for k, v in st.stats.items()), reverse=True)
    total = sum(r[0] for r in rows) or 1.0
    return {
        "steps": steps,
        "loss_evals": n,
        "uniform_grids_after_refine": [bool(layer.is_uniform()) for layer in model.act_fun],
        "ops": [{"op": f"{k[2]} ({os.path.basename(k[0])}:{k[1]})", "self_cpu_us_per_eval": tt / n * 1e6,
                 "calls_per_eval": nc / n, "share": tt / total} for tt, nc, k in rows[:top]],
    }


# --------------------------------------------------------------------------- part 3
def saved_tensors(fn):
    """Run ``fn`` recording every tensor autograd saves for backward; returns (records, output)."""
    recs = []

    def pack(t):
        try:
            ptr = t.untyped_storage().data_ptr()
        except Exception:  # pragma: no cover
            ptr = None
        recs.append({"shape": list(t.shape), "numel": t.numel(), "dtype": str(t.dtype).replace("torch.", ""),
                     "bytes": t.numel() * t.element_size(), "storage": ptr,
                     "storage_bytes": t.untyped_storage().nbytes() if ptr is not None else None})
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return recs, out


def graph_saved(out):
    """(node name, saved attribute, shape) for every saved tensor reachable from ``out``'s graph."""
    seen, stack, res = set(), [out.grad_fn], []
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        name = node.name()
        attrs = [a for a in dir(node) if a.startswith("_saved_")]
        for a in attrs:
            try:
                v = getattr(node, a)
            except Exception:
                continue
            vs = v if isinstance(v, (tuple, list)) else [v]
            for t in vs:
                if isinstance(t, torch.Tensor):
                    res.append({"node": name, "attr": a[7:], "shape": list(t.shape), "numel": t.numel()})
        if not attrs and hasattr(node, "saved_tensors"):
            try:
                for i, t in enumerate(node.saved_tensors):
                    if isinstance(t, torch.Tensor):
                        res.append({"node": name, "attr": f"saved_tensors[{i}]", "shape": list(t.shape),
                                    "numel": t.numel()})
            except Exception:
                pass
        for nxt, _ in node.next_functions:
            if nxt is not None:
                stack.append(nxt)
    return res


def summarize_saved(recs, graph, batch, d_in, d_out, P):
    big_edge = batch * d_in * d_out
    big_basis = batch * d_in * P
    big_feat = batch * d_in * (1 + P)
    # unique storages (the same tensor saved by several nodes counts once)
    uniq = {}
    for r in recs:
        uniq.setdefault(r["storage"], r["storage_bytes"] or r["bytes"])
    largest = max(recs, key=lambda r: r["numel"]) if recs else None
    return {
        "n_saved": len(recs),
        "n_unique_storages": len(uniq),
        "unique_saved_bytes": int(sum(uniq.values())),
        "largest_shape": largest["shape"] if largest else None,
        "largest_numel": largest["numel"] if largest else 0,
        "any_batch_in_out": any(r["numel"] == big_edge for r in recs),
        "any_batch_in_P": any(r["numel"] == big_basis for r in recs),
        "any_batch_in_1pP": any(r["numel"] == big_feat for r in recs),
        "any_at_least_batch_in_P": any(r["numel"] >= big_basis for r in recs),
        "thresholds": {"batch*in*out": big_edge, "batch*in*(G+k)": big_basis, "batch*in*(1+G+k)": big_feat},
        "shapes": sorted(({"shape": r["shape"], "numel": r["numel"], "dtype": r["dtype"]} for r in recs),
                         key=lambda r: -r["numel"]),
        "by_node": graph,
    }


def run_part3(args, tmpdirs):
    batch, d, G, k = args.batch, 64, 5, 3
    P = G + k
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, d, generator=gen) * 2 - 1).requires_grad_(True)
    res = {}

    lay = kanlab.KANLayer(d, d, num=G, k=k, generator=torch.Generator().manual_seed(1))
    recs, out = saved_tensors(lambda: lay(x))
    res["kanlab_layer_forward"] = summarize_saved(recs, graph_saved(out), batch, d, d, P)
    res["kanlab_layer_forward"]["label"] = "kanlab KANLayer(64,64,G=5,k=3) forward"

    lay_n = kanlab.KANLayer(d, d, num=G, k=k, generator=torch.Generator().manual_seed(1))
    lay_n.update_grid_from_samples(torch.randn(batch, d, generator=gen) * 0.5)
    recs, out = saved_tensors(lambda: lay_n(x))
    res["kanlab_layer_forward_nonuniform"] = summarize_saved(recs, graph_saved(out), batch, d, d, P)
    res["kanlab_layer_forward_nonuniform"]["label"] = "kanlab KANLayer forward, non-uniform grid"

    model = kanlab.KAN(width=[d, d, d], grid=G, k=k, seed=0)

    def fwd_reg():
        y = model(x)
        r = model.reg(x)
        return y.sum() + 1e-3 * r

    recs, out = saved_tensors(fwd_reg)
    res["kanlab_kan2_forward_reg"] = summarize_saved(recs, graph_saved(out), batch, d, d, P)
    res["kanlab_kan2_forward_reg"]["label"] = "kanlab KAN [64,64,64]: model(x) + model.reg(x)"

    if HAVE_PYKAN:
        from kan.KANLayer import KANLayer as PK

        torch.manual_seed(0)
        pk = PK(in_dim=d, out_dim=d, num=G, k=k)
        recs, out = saved_tensors(lambda: pk(x)[0])
        res["pykan_layer_forward"] = summarize_saved(recs, graph_saved(out), batch, d, d, P)
        res["pykan_layer_forward"]["label"] = "pykan KANLayer forward (for contrast)"
    for v in res.values():
        v["by_node"] = v["by_node"][:200]
    return res


# --------------------------------------------------------------------------- report
def render(results) -> str:
    env = results["env"]
    out = []
    out.append("# kanlab core benchmarks\n")
    out.append(f"- date: {env['date']}")
    out.append(f"- machine: {env['cpu_model']} ({env['cpu_count']} logical CPUs, flags: {', '.join(env['cpu_flags']) or 'n/a'})")
    out.append(f"- torch {env['torch']}, torch threads {env['torch_threads']}, python {env['python']}, "
               f"kanlab {env['kanlab']}, pykan {env['pykan']}")
    out.append(f"- command: `{env['command']}`")
    src = env.get("kanlab_source", {})
    if src:
        where = ("this repository's src/ at " + str(src.get("repo_head"))
                 + (" with uncommitted changes" if src.get("src_dirty") else " (clean)")) if src.get("inside_repo") \
            else f"{src.get('kanlab_file')} (outside this repository; repository HEAD {src.get('repo_head')})"
        out.append(f"- kanlab imported from {where}")
    if env.get("note"):
        out.append(f"- note: {env['note']}")
    out.append(f"- repeats {env['repeats']} (warm-up {env['warmup']}), medians of single-call wall times "
               "(time.perf_counter), rows timed interleaved round by round in shuffled order")
    loads = [f"{k} {v['foreign_busy_cores']:.2f} (steal {v.get('steal_cores') or 0:.2f})"
             for k, v in env.get("load", {}).items() if v.get("foreign_busy_cores") is not None]
    if loads:
        out.append("- CPU used by other processes while timing (average busy cores; hypervisor steal): "
                   + ", ".join(loads))
    out.append("")

    if "part1" in results:
        p1 = results["part1"]
        c = p1["config"]
        out.append(f"## Part 1: one layer forward+backward (in=out={c['in']}, batch {c['batch']}, "
                   f"G={c['G']}, k={c['k']}, {c['dtype']}, CPU)\n")
        out.append("Ratios are median time / median time of the matmul floor. Primary floor: gradients flow "
                   "to the features and the weights (what a layer inside a network must do).\n")
        rows = []
        for r in p1["rows"]:
            fb = r["fwd_bwd"]
            rows.append([r["label"], fmt_us(fb["median_us"]), f"{fmt_us(fb['p25_us'])}-{fmt_us(fb['p75_us'])}",
                         fmt_ratio(r["ratio_vs_floor_feat_grad"]), fmt_ratio(r["ratio_vs_floor_weights_only"]),
                         fmt_us(r["fwd_only"]["median_us"]) if r["fwd_only"] else "n/a",
                         fmt_ratio(r["fwd_ratio_vs_floor_fwd"])])
        out.append(md_table(["row", "fwd+bwd median (us)", "p25-p75 (us)", "/ floor (feat grad)",
                             "/ floor (weights only)", "fwd only, no_grad (us)", "fwd / floor fwd"], rows))
        for mode in ("timing_fwd_bwd", "timing_fwd_only"):
            st = p1["info"].get(mode)
            if st and (st["rounds_discarded"] or not st["complete"]):
                out.append(f"\n{mode}: kept {st['rounds_kept']} rounds, dropped {st['rounds_discarded']} rounds "
                           f"timed while other processes were busy"
                           + ("" if st["complete"] else " (ran out of time: some busy rounds kept)") + ".")
        g = p1["info"]["floor_gflops_per_s"]
        out.append(f"\nFloor throughput: {g['floor_feat_grad']:.1f} GFLOP/s (feat grad), "
                   f"{g['floor_weights_only']:.1f} GFLOP/s (weights only), {g['forward']:.1f} GFLOP/s (forward).\n")
    if "profile" in results:
        out.append("### Top ops of kanlab's layer forward+backward (torch.profiler, self CPU time per iteration)\n")
        for name, ops in results["profile"].items():
            out.append(f"{name} grid:\n")
            out.append(md_table(["op", "self CPU us / iter", "calls / iter", "share"],
                                [[o["op"], f"{o['self_cpu_us_per_iter']:.1f}", f"{o['calls_per_iter']:.0f}",
                                  f"{100 * o['share']:.1f}%"] for o in ops]))
            out.append("")
    if "part2" in results:
        p2 = results["part2"]
        i = p2["info"]
        out.append(f"## Part 2: README snippet end to end (KAN [2,5,1], grid 3, fit LBFGS {i['steps']} steps "
                   f"lamb=0.001, refine(10), fit {i['steps']} steps)\n")
        n_k = p2["kanlab_median"].get("n_runs_in_median", i["kanlab_repeats"])
        n_p = p2["pykan_median"].get("n_runs_in_median", i["pykan_repeats"]) if "pykan_median" in p2 else 0
        out.append(f"Medians over {n_k} kanlab run(s) and {n_p} pykan run(s); "
                   "same dataset tensors for both"
                   + (f" (pykan's create_dataset(seed=0) gives identical tensors: "
                      f"{i.get('pykan_create_dataset_identical')})" if "pykan_create_dataset_identical" in i else "")
                   + ".\n")
        cols = [("construct (s)", "construct_s", "{:.3f}"), ("fit 1 (s)", "fit1_s", "{:.2f}"),
                ("refine (s)", "refine_s", "{:.3f}"), ("fit 2 (s)", "fit2_s", "{:.2f}"),
                ("total (s)", "total_s", "{:.2f}"), ("fit1 test RMSE", "fit1_test_rmse", "{:.3e}"),
                ("final test RMSE", "final_test_rmse", "{:.3e}"),
                ("loss evals fit1+fit2", None, None), ("ms / loss eval", None, None)]
        rows = []
        for name, key in (("kanlab", "kanlab_median"), ("pykan", "pykan_median")):
            if key not in p2:
                continue
            m = p2[key]
            row = [name]
            for _, k, f in cols:
                if k is not None:
                    row.append(f.format(m[k]))
            row.append(f"{m['fit1_loss_evals']:.0f} + {m['fit2_loss_evals']:.0f}")
            row.append(f"{1e3 * (m['fit1_s'] + m['fit2_s']) / max(m['loss_evals'], 1):.2f}")
            rows.append(row)
        out.append(md_table(["library"] + [c[0] for c in cols], rows))
        if "speedup_pykan_over_kanlab" in p2:
            out.append(f"\nSpeed ratio pykan / kanlab (total time): **{p2['speedup_pykan_over_kanlab']:.1f}x**; "
                       f"per loss evaluation (fit time / closure calls): {p2['speedup_per_loss_eval']:.1f}x.\n")
        def runs_txt(rs):
            return ", ".join(f"{r['total_s']:.2f}" + ("" if r.get("clean", True) else " (busy machine, not in median)")
                             for r in rs)

        line = "Per-run totals (s): kanlab " + runs_txt(p2["kanlab_runs"])
        if "pykan_runs" in p2:
            line += "; pykan " + runs_txt(p2["pykan_runs"])
        n_disc = len(i.get("discarded_runs", []))
        if n_disc:
            line += f" ({n_disc} run(s) discarded because other processes were busy)"
        out.append(line + ".\n")
    if "profile_fit" in results:
        pf = results["profile_fit"]
        out.append(f"### Top ops of kanlab's second fit (after refine(10); {pf['steps']} LBFGS steps, "
                   f"{pf['loss_evals']} loss evaluations; cProfile self time per loss evaluation)\n")
        if pf.get("uniform_grids_after_refine") is not None:
            out.append(f"Layer grids uniform after refine: {pf['uniform_grids_after_refine']}.\n")
        out.append(md_table(["function", "self time us / eval", "calls / eval", "share"],
                            [[o["op"], f"{o['self_cpu_us_per_eval']:.1f}", f"{o['calls_per_eval']:.1f}",
                              f"{100 * o['share']:.1f}%"] for o in pf["ops"]]))
        out.append("")
    if "part3" in results:
        p3 = results["part3"]
        out.append("## Part 3: tensors saved for backward (torch.autograd.graph.saved_tensors_hooks)\n")
        rows = []
        for v in p3.values():
            rows.append([v["label"], v["n_saved"], f"{v['unique_saved_bytes'] / 1024:.0f}",
                         "x".join(map(str, v["largest_shape"])) if v["largest_shape"] is not None else "n/a",
                         f"{v['largest_numel']:,}", "yes" if v["any_batch_in_out"] else "no",
                         "yes" if v["any_batch_in_P"] or v["any_batch_in_1pP"] else "no"])
        out.append(md_table(["forward", "saved tensors", "unique storage (KiB)", "largest shape", "largest numel",
                             "any batch*in*out", "any batch*in*(G+k) or *(1+G+k)"], rows))
        th = next(iter(p3.values()))["thresholds"]
        out.append(f"\nbatch*in*out = {th['batch*in*out']:,}; batch*in*(G+k) = {th['batch*in*(G+k)']:,}; "
                   f"batch*in*(1+G+k) = {th['batch*in*(1+G+k)']:,} elements.\n")
        for key in ("kanlab_layer_forward", "kanlab_kan2_forward_reg"):
            if key in p3:
                v = p3[key]
                groups: dict = {}
                for g in v["by_node"]:
                    gk = (g["node"], g["attr"], tuple(g["shape"]))
                    groups.setdefault(gk, [0, g["numel"]])[0] += 1
                rows = [[n, a, "x".join(map(str, sh)) or "scalar", c]
                        for (n, a, sh), (c, _) in sorted(groups.items(), key=lambda kv: (-kv[1][1], kv[0]))]
                out.append(f"{v['label']}: saved tensors by autograd node (from the graph):\n")
                out.append(md_table(["node", "saved", "shape", "count"], rows))
                out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per row in part 1 (default 100)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed warm-up calls per row (default 10)")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--e2e-repeats", type=int, default=None, help="kanlab end-to-end runs (default 3)")
    ap.add_argument("--pykan-repeats", type=int, default=None, help="pykan end-to-end runs (default 1)")
    ap.add_argument("--e2e-steps", type=int, default=None, help="LBFGS steps per fit (default 50)")
    ap.add_argument("--parts", default="1,2,3", help="comma list of parts to run (default 1,2,3)")
    ap.add_argument("--no-profile", action="store_true", help="skip the torch.profiler breakdown")
    ap.add_argument("--quick", action="store_true",
                    help="fast smoke run (few repeats, 5 LBFGS steps); prints only unless --out is given")
    ap.add_argument("--out", default=None,
                    help="output prefix (default benchmarks/results/core -> core.md, core.json)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--wait-idle", type=float, default=None,
                    help="before each timed part, wait up to this many seconds for other processes to "
                         "go quiet (default 600; 0 in --quick)")
    ap.add_argument("--idle-threshold", type=float, default=0.15,
                    help="cores that other processes may use for the machine to count as idle (default 0.15)")
    ap.add_argument("--retries", type=int, default=None,
                    help="rerun an end-to-end run (or the profile) this many times if other processes "
                         "were busy during it (default 5; 0 in --quick)")
    ap.add_argument("--max-part1-s", type=float, default=None,
                    help="part 1 keeps timing (dropping blocks during which other processes were busy) "
                         "for at most this many seconds per mode (default 900; 60 in --quick)")
    ap.add_argument("--note", default="", help="free text recorded with the results (e.g. which source)")
    args = ap.parse_args(argv)

    q = args.quick
    args.repeats = args.repeats or (5 if q else 100)
    args.warmup = args.warmup if args.warmup is not None else (2 if q else 10)
    args.e2e_repeats = args.e2e_repeats or (1 if q else 3)
    args.pykan_repeats = args.pykan_repeats if args.pykan_repeats is not None else 1
    args.e2e_steps = args.e2e_steps or (5 if q else 50)
    args.wait_idle = args.wait_idle if args.wait_idle is not None else (0.0 if q else 600.0)
    args.retries = args.retries if args.retries is not None else (0 if q else 5)
    args.guard = {"threshold": args.idle_threshold, "block_s": 1.0,
                  "max_s": args.max_part1_s if args.max_part1_s is not None else (60.0 if q else 900.0)}
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    write = not args.no_write and (args.out is not None or not q)
    out_prefix = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / "core"

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    env = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kanlab": getattr(kanlab, "__version__", "unknown"),
        "pykan": PYKAN_VERSION,
        "command": shlex.join(["python", os.path.relpath(__file__, Path.cwd())]
                              + list(sys.argv[1:] if argv is None else argv)),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "quick": q,
        "kanlab_source": kanlab_source(),
        "note": args.note,
    }
    results = {"env": env}
    load: dict = {}
    env["load"] = load
    tmpdirs: list[str] = []

    def timed_part(name, title, fn):
        """Run a timed part, first waiting (bounded) for other processes to go quiet."""
        wait = wait_until_idle(args.wait_idle, args.idle_threshold) if args.wait_idle > 0 else None
        if wait and not wait["idle"]:
            print(f"  warning: machine still busy after {wait['waited_s']:.0f} s "
                  f"({wait['foreign_busy_cores_before']:.2f} cores used by other processes)", flush=True)
        print(f"{title} ...", flush=True)
        with CpuMonitor() as mon:
            res = fn()
        load[name] = {**mon.record(), "wait": wait}
        fc = mon.foreign_cores
        if fc is not None:
            print(f"  other processes used {fc:.2f} cores on average during {name}", flush=True)
        return res

    try:
        if "1" in parts:
            results["part1"] = timed_part("part1", "part 1: one layer forward+backward",
                                          lambda: run_part1(args, tmpdirs))
            if not args.no_profile:
                for attempt in range(args.retries + 1):
                    results["profile"] = timed_part("profile", "profiling kanlab's layer",
                                                    lambda: profile_kanlab_layer(args))
                    fc = load["profile"]["foreign_busy_cores"]
                    if fc is None or fc <= args.idle_threshold:
                        break
        if "2" in parts:
            results["part2"] = timed_part("part2", "part 2: README snippet end to end", lambda: run_part2(args))
            if not args.no_profile:
                results["profile_fit"] = timed_part("profile_fit", "profiling kanlab's fit",
                                                    lambda: profile_kanlab_fit(5 if q else 10))
        if "3" in parts:
            print("part 3: saved tensors ...", flush=True)
            results["part3"] = run_part3(args, tmpdirs)
    finally:
        for t in tmpdirs:
            shutil.rmtree(t, ignore_errors=True)

    report = render(results)
    print()
    print(report)
    if write:
        out_prefix.parent.mkdir(parents=True, exist_ok=True)
        md_path = out_prefix.with_suffix(".md")
        js_path = out_prefix.with_suffix(".json")
        md_path.write_text(report)
        js_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
        print(f"wrote {md_path} and {js_path}")
    return results


if __name__ == "__main__":
    main()
