"""Formula recovery on laws outside SRBench's list: a check that discovery generalizes.

Sixteen laws of the kinds a user brings (sums of products, rationals, nested roots, a damped
oscillation, a Gaussian, harmonic means), none of them in ../shared/feynman and none used to
tune the search. Each is sampled at 1000 points (seed 3), Gaussian noise of standard deviation
level x RMS(y) is added to the training target, and the returned formula is scored on fresh
noise-free points: exact (sympy: found - truth simplifies to a constant, or found / truth to
one, symbols positive where the range is), mean squared error over the noise variance, time.

    .venv/bin/python benchmarks/bench_outside.py --noise 0.01 --budget 60 \
        --out benchmarks/results/outside_noise0.01

Run it with nothing else on the machine: discover's budget is wall-clock time.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import sympy

import kanlab

# name: (law, number of inputs, sampling range of every input)
LAWS = {
    "sum_of_products": ("x1*x2 + x3*x4*x5", 5, (1, 5)),
    "rational": ("(x1 + x2)/(x3 + 2*x4)", 4, (1, 5)),
    "nested_root": ("sqrt(x1 + sqrt(x2*x3))", 3, (1, 5)),
    "parallel_plus": ("x1*x2/(x1 + x2) + x3", 3, (1, 5)),
    "decay_plus": ("x1*exp(-x2/x3) + x4", 4, (1, 4)),
    "cubic": ("x1**2*x2 - x2*x3 + 3*x1", 3, (-2, 2)),
    "trig_mix": ("x1*sin(x2) + x2*cos(x3)", 3, (0, 3)),
    "lorentz_like": ("x1/sqrt(1 - x2**2/x3**2)", 3, None),
    "inverse_square_sum": ("x1*x2/(x3**2 + x4**2)", 4, (1, 5)),
    "damped_wave": ("x1*exp(-x2*x3)*cos(x4*x3)", 4, (0.5, 2)),
    "three_ratios": ("x1/x2 + x3/x4 + x5", 5, (1, 5)),
    "gaussian": ("exp(-(x1 - x2)**2/(2*x3**2))/x3", 3, (1, 3)),
    "power_three_halves": ("(x1 + x2)**(3/2)*x3", 3, (1, 5)),
    "log_ratio": ("x1*log(x2/x3)", 3, (1, 5)),
    "harmonic": ("1/(1/x1 + 1/x2 + 1/x3)", 3, (1, 5)),
    "energy": ("x1*(x2**2 + x3**2)/2 + x1*x4*x5", 5, (1, 5)),
}


def sample(rng, d, rng_range, n):
    if rng_range is None:  # lorentz_like: x2 < x3 keeps the root real
        return np.column_stack([rng.uniform(1, 5, n), rng.uniform(1, 2, n), rng.uniform(3, 5, n)])
    return rng.uniform(*rng_range, (n, d))


def run_one(name, noise, budget, seed=3):
    law, d, box = LAWS[name]
    positive = box is None or box[0] > 0
    syms = sympy.symbols(" ".join(f"x{i + 1}" for i in range(d)),
                         **({"positive": True} if positive else {"real": True}))
    truth = sympy.sympify(law, locals={s.name: s for s in syms})
    fn = sympy.lambdify(syms, truth, "numpy")
    rng = np.random.default_rng(seed)
    X = sample(rng, d, box, 1000)
    y0 = fn(*X.T)
    sd = noise * float(np.sqrt(np.mean(y0 ** 2)))
    y = y0 + sd * rng.normal(size=len(y0))
    t = time.perf_counter()
    res = kanlab.discover(X, y, var_names=[s.name for s in syms], time_budget=budget, seed=0)
    dt = time.perf_counter() - t
    found = res.formula.xreplace(dict(zip(res.variables, syms)))
    diff, ratio = sympy.simplify(found - truth), sympy.simplify(found / truth)
    exact = bool(diff.is_number or (ratio.is_number and ratio != 0))
    Xf = sample(rng, d, box, 5000)
    pred = np.asarray(sympy.lambdify(syms, found, "numpy")(*Xf.T), dtype=float) * np.ones(5000)
    mse = float(np.mean((pred - fn(*Xf.T)) ** 2))
    return {"name": name, "law": law, "noise": noise, "exact": exact, "time_s": dt,
            "mse_over_noise_var": mse / sd ** 2 if sd > 0 else None, "mse": mse,
            "formula": str(found)}


def report(rows, args, commit):
    n = len(rows)
    ex = sum(r["exact"] for r in rows)
    times = sorted(r["time_s"] for r in rows)
    lines = ["# Laws outside SRBench's list", "",
             f"kanlab at commit `{commit}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"Python {platform.python_version()}; noise {args.noise}, budget {args.budget:g} s, "
             "1000 points, seed 3; scored on 5000 fresh noise-free points.", "",
             f"Exact: **{ex}/{n}**; median time {times[n // 2]:.1f} s, max {times[-1]:.1f} s.",
             ""]
    if args.noise > 0:
        within = sum(r["mse_over_noise_var"] <= 1 for r in rows)
        lines += [f"Error on fresh points within the noise variance: **{within}/{n}**.", ""]
    lines += ["| law | truth | exact | time (s) | MSE / noise variance | formula |",
              "| --- | --- | --- | ---: | ---: | --- |"]
    for r in rows:
        m = r["mse_over_noise_var"]
        f = r["formula"] if len(r["formula"]) <= 120 else r["formula"][:117] + "..."
        lines.append(f"| {r['name']} | `{r['law']}` | {'yes' if r['exact'] else 'no'} | "
                     f"{r['time_s']:.1f} | {'-' if m is None else f'{m:.3g}'} | `{f}` |")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--noise", type=float, default=0.01)
    p.add_argument("--budget", type=float, default=60.0)
    p.add_argument("--only", help="comma list of law names")
    p.add_argument("--out", help="writes OUT.md and OUT.json")
    args = p.parse_args()
    names = args.only.split(",") if args.only else list(LAWS)
    unknown = [n for n in names if n not in LAWS]
    if unknown:
        p.error(f"unknown law(s) {unknown}; known: {', '.join(LAWS)}")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = "unknown"
    rows = []
    for name in names:
        rows.append(run_one(name, args.noise, args.budget))
        r = rows[-1]
        print(f"{name:20s} exact={r['exact']!s:5s} t={r['time_s']:5.1f} {r['formula'][:100]}",
              flush=True)
    text = report(rows, args, commit)
    print(text)
    if args.out:
        Path(args.out + ".md").write_text(text)
        Path(args.out + ".json").write_text(json.dumps({"commit": commit, "noise": args.noise,
                                                        "budget": args.budget, "runs": rows},
                                                       indent=1))


if __name__ == "__main__":
    main()
