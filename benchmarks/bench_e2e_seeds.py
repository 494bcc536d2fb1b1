"""The README quickstart end to end over several seeds, kanlab against pykan, in one process.

For seed s: the dataset ``create_dataset(f, seed=s)`` (kanlab's generator; both libraries get
copies of the same tensors), the model seed s+1 (s = 0 is the README's configuration), then
``fit(LBFGS, 50 steps, lamb=0.001)``, ``refine(10)``, ``fit(LBFGS, 50 steps)``. Reports the
wall time and the final test RMSE of each run and the ratio of the times. L-BFGS on this
problem is chaotic: rounding-level differences move the end point, so single runs of either
library scatter over about a decade of test RMSE; compare the distributions (medians and
geometric means over many seeds). pykan's global RNGs (torch, numpy, random) are seeded with s
before each of its runs, so both sides are reproducible.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_e2e_seeds.py --seeds 5
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import random
import shutil
import statistics
import tempfile
import time

import torch
from _results import write_results


def target_fn(x):
    return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)


def run_kanlab(ds, seed, steps):
    from kanlab import KAN

    ds = {k: v.clone() for k, v in ds.items()}
    t = time.perf_counter()
    model = KAN(width=[2, 5, 1], grid=3, k=3, seed=seed)
    model.fit(ds, opt="LBFGS", steps=steps, lamb=0.001, progress=False)
    model = model.refine(10)
    h = model.fit(ds, opt="LBFGS", steps=steps, progress=False)
    return time.perf_counter() - t, float(h["test_loss"][-1])


def run_pykan(ds, seed, steps):
    import numpy as np
    from kan import KAN as PKAN

    ds = {k: v.clone() for k, v in ds.items()}
    # pykan draws from the global RNGs (its fit permutes the rows with numpy): seed them all
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    ckpt = tempfile.mkdtemp(prefix="kanlab-bench-pykan-")
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            t = time.perf_counter()
            model = PKAN(width=[2, 5, 1], grid=3, k=3, seed=seed, ckpt_path=ckpt)
            model.fit(ds, opt="LBFGS", steps=steps, lamb=0.001)
            model = model.refine(10)
            h = model.fit(ds, opt="LBFGS", steps=steps)
            dt = time.perf_counter() - t
    finally:
        shutil.rmtree(ckpt, ignore_errors=True)
    return dt, float(h["test_loss"][-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--no-pykan", action="store_true")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "e2e_seeds"))
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    import kanlab
    from kanlab import create_dataset, native

    rows = []
    for s in range(args.seeds):
        ds = create_dataset(target_fn, n_var=2, train_num=1000, test_num=1000, seed=s)
        k_t, k_rmse = run_kanlab(ds, s + 1, args.steps)
        row = {"seed": s, "kanlab_s": k_t, "kanlab_rmse": k_rmse}
        if not args.no_pykan:
            p_t, p_rmse = run_pykan(ds, s + 1, args.steps)
            row.update(pykan_s=p_t, pykan_rmse=p_rmse, ratio=p_t / k_t)
        rows.append(row)
        print(json.dumps(row), flush=True)
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "kanlab_file": kanlab.__file__,
        "native": native.available(), "note": args.note, "steps": args.steps,
    }
    out = ["# README quickstart over seeds: kanlab against pykan\n",
           f"- date: {info['date']}; torch {info['torch']}, {info['threads']} threads, "
           f"{info['cpus']} logical CPUs; native library: {info['native']}",
           f"- command: `python benchmarks/bench_e2e_seeds.py --seeds {args.seeds}`"
           + (f"; note: {args.note}" if args.note else ""),
           "- seed s: dataset seed s, model seed s+1 (s = 0 is the README's configuration); "
           "fit 50 LBFGS steps (lamb=0.001), refine(10), fit 50 steps\n"]
    hdr = "| seed | kanlab (s) | kanlab test RMSE |" + ("" if args.no_pykan else
                                                         " pykan (s) | pykan test RMSE | pykan / kanlab |")
    out.append(hdr)
    out.append("| ---: | ---: | ---: |" + ("" if args.no_pykan else " ---: | ---: | ---: |"))
    for r in rows:
        line = f"| {r['seed']} | {r['kanlab_s']:.2f} | {r['kanlab_rmse']:.2e} |"
        if not args.no_pykan:
            line += f" {r['pykan_s']:.2f} | {r['pykan_rmse']:.2e} | {r['ratio']:.1f}x |"
        out.append(line)
    k_med = statistics.median(r["kanlab_s"] for r in rows)
    def gmean(key):
        return statistics.geometric_mean(r[key] for r in rows)

    summary = (f"\nMedian time: kanlab {k_med:.2f} s. Test RMSE, median (geometric mean): "
               f"kanlab {statistics.median(r['kanlab_rmse'] for r in rows):.2e} "
               f"({gmean('kanlab_rmse'):.2e})")
    if not args.no_pykan:
        p_med = statistics.median(r["pykan_s"] for r in rows)
        wins = sum(r["kanlab_rmse"] <= r["pykan_rmse"] for r in rows)
        summary += (f", pykan {statistics.median(r['pykan_rmse'] for r in rows):.2e} "
                    f"({gmean('pykan_rmse'):.2e}). Median time pykan {p_med:.2f} s: "
                    f"**{p_med / k_med:.1f}x**. kanlab's test RMSE is lower or equal on {wins} of "
                    f"{len(rows)} seeds.")
    out.append(summary + "\n")
    text = "\n".join(out)
    print(text)
    write_results(args.out, text, {"info": info, "rows": rows})


if __name__ == "__main__":
    main()
