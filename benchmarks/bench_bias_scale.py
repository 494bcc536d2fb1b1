"""Test RMSE of the README quickstart against fit's ``lbfgs_bias_scale`` (the L-BFGS
preconditioner of the node biases), over many seeds, in one process.

For seed s: the dataset ``create_dataset(f, seed=s)``, the model seed s+1 (s = 0 is the README's
configuration), then ``fit(LBFGS, 50 steps, lamb=0.001)``, ``refine(10)``, ``fit(LBFGS, 50
steps)``, once per setting. Single runs scatter over about a decade of test RMSE (L-BFGS on this
problem amplifies rounding), so the table reports the median and the geometric mean over seeds
and, for each setting, on how many seeds it ends lower than plain L-BFGS (factor 1).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_bias_scale.py --seeds 30
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics

import torch
from _results import write_results


def target_fn(x):
    return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)


def run(ds, seed, steps, bias_scale, bias, dtype, native):
    from kanlab import KAN

    ds = {k: v.to(dtype) for k, v in ds.items()}
    kw = dict(lbfgs_bias_scale=bias_scale, progress=False,
              use_native_objective=None if native else False)
    model = KAN(width=[2, 5, 1], grid=3, k=3, seed=seed, bias=bias, dtype=dtype)
    model.fit(ds, opt="LBFGS", steps=steps, lamb=0.001, **kw)
    model = model.refine(10)
    h = model.fit(ds, opt="LBFGS", steps=steps, **kw)
    return float(h["test_loss"][-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--scales", default="1,0.3,0.1,0.03,0.01")
    ap.add_argument("--float64", action="store_true")
    ap.add_argument("--autograd", action="store_true", help="no native objective")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "bias_scale"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    import kanlab
    from kanlab import create_dataset, native

    dtype = torch.float64 if args.float64 else torch.float32
    settings = [(f"lbfgs_bias_scale={s}", float(s), True) for s in args.scales.split(",")]
    settings.append(("bias=False", 1.0, False))
    rmse = {name: [] for name, _, _ in settings}
    for s in range(args.seeds):
        ds = create_dataset(target_fn, n_var=2, train_num=1000, test_num=1000, seed=s)
        for name, scale, bias in settings:
            rmse[name].append(run(ds, s + 1, args.steps, scale, bias, dtype, not args.autograd))
        print(json.dumps({"seed": s, **{k: v[-1] for k, v in rmse.items()}}), flush=True)
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "python": platform.python_version(),
        "kanlab_file": kanlab.__file__, "native": native.available() and not args.autograd,
        "dtype": str(dtype), "seeds": args.seeds, "steps": args.steps,
    }
    ref = rmse[settings[0][0]]
    out = ["# README quickstart: test RMSE against the L-BFGS bias preconditioner\n",
           f"- date: {info['date']}; torch {info['torch']}; {info['dtype']}; native objective: "
           f"{info['native']}",
           f"- command: `python benchmarks/bench_bias_scale.py --seeds {args.seeds}"
           + (" --float64" if args.float64 else "") + (" --autograd" if args.autograd else "") + "`",
           "- seed s: dataset seed s, model seed s+1; fit 50 LBFGS steps (lamb=0.001), "
           "refine(10), fit 50 steps; the same seeds for every setting\n",
           f"| setting | median test RMSE | geometric mean | lower than {settings[0][0]} |",
           "| --- | ---: | ---: | ---: |"]
    for name, _, _ in settings:
        v = rmse[name]
        gm = statistics.geometric_mean(v)
        wins = "" if v is ref else f"{sum(a < b for a, b in zip(v, ref))} of {len(v)}"
        out.append(f"| {name} | {statistics.median(v):.2e} | {gm:.2e} | {wins} |")
    text = "\n".join(out) + "\n"
    print(text)
    write_results(args.out, text, {"info": info, "rmse": rmse})


if __name__ == "__main__":
    main()
