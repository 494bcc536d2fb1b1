"""How fast can *any* eager-PyTorch model run the README snippet's optimizer schedule?

The README snippet runs 2 x 50 LBFGS steps (up to 20 iterations and 25 loss evaluations each) on
1000 samples. For a model this small, time goes into per-operation overhead, not arithmetic, so
the number of loss evaluations times the cost of one evaluation bounds the total. This script
measures, in one process and on the same data:

* kanlab's KAN [2, 5, 1] (grid 3 -> refine(10)) as in the README;
* the smallest possible eager model on the same schedule: an MLP 2 -> 5 -> 1 (Linear, SiLU,
  Linear) trained with torch.optim.LBFGS and with kanlab's LBFGS, same steps and settings;
* pykan doing the README snippet (skipped with --no-pykan).

and prints the time per loss evaluation of each, with ratios to pykan. The MLP rows are an upper
bound on what an eager implementation of the same schedule can reach on this machine.

Run: .venv/bin/python benchmarks/bench_e2e_floor.py [--no-pykan] [--threads N]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from _results import write_results

ROOT = Path(__file__).resolve().parents[1]
try:
    import kanlab  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(ROOT / "src"))

from kanlab import KAN, create_dataset  # noqa: E402
from kanlab.optim import LBFGS  # noqa: E402


def toy():
    f = lambda x: torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)  # noqa: E731
    return create_dataset(f, n_var=2, train_num=1000, test_num=1000, seed=0)


def run_kanlab(ds, steps):
    t0 = time.perf_counter()
    model = KAN(width=[2, 5, 1], grid=3, k=3, seed=1)
    model.fit(ds, opt="LBFGS", steps=steps, lamb=0.001, progress=False)
    model = model.refine(10)
    h2 = model.fit(ds, opt="LBFGS", steps=steps, progress=False)
    return time.perf_counter() - t0, h2["test_loss"][-1], None


def run_mlp(ds, steps, optimizer):
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(2, 5), torch.nn.SiLU(), torch.nn.Linear(5, 1))
    x, y = ds["train_input"], ds["train_label"]
    evals = [0]
    t0 = time.perf_counter()
    for _ in range(2):  # two fits, as in the README
        if optimizer == "torch":
            opt = torch.optim.LBFGS(mlp.parameters(), lr=1.0, history_size=10,
                                    line_search_fn="strong_wolfe", tolerance_grad=1e-32,
                                    tolerance_change=1e-32)
        else:
            opt = LBFGS(mlp.parameters(), lr=1.0, history_size=10, line_search_fn="strong_wolfe",
                        tolerance_grad=1e-32, tolerance_change=1e-32, tolerance_ys=1e-32)

        def closure():
            evals[0] += 1
            if optimizer == "torch":
                opt.zero_grad()
            loss = torch.mean((mlp(x) - y) ** 2)
            loss.backward()
            return loss

        for _ in range(steps):
            opt.step(closure)
            with torch.no_grad():
                test = torch.sqrt(torch.mean((mlp(ds["test_input"]) - ds["test_label"]) ** 2))
        if optimizer != "torch":
            opt.release()
    return time.perf_counter() - t0, float(test), evals[0]


def run_pykan(ds, steps):
    from kan import KAN as PyKAN

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        t0 = time.perf_counter()
        model = PyKAN(width=[2, 5, 1], grid=3, k=3, seed=1, ckpt_path=tmp)
        model.fit(ds, opt="LBFGS", steps=steps, lamb=0.001)
        model = model.refine(10)
        h2 = model.fit(ds, opt="LBFGS", steps=steps)
        total = time.perf_counter() - t0
    return total, float(h2["test_loss"][-1]), None


def count_kanlab_evals(ds, steps):
    calls = [0]
    model = KAN(width=[2, 5, 1], grid=3, k=3, seed=1)
    hook = lambda g: calls.__setitem__(0, calls[0] + 1)  # noqa: E731
    h = model.act_fun[0].coef.register_hook(hook)
    model.fit(ds, opt="LBFGS", steps=steps, lamb=0.001, progress=False)
    h.remove()
    model = model.refine(10)
    h = model.act_fun[0].coef.register_hook(hook)
    model.fit(ds, opt="LBFGS", steps=steps, progress=False)
    h.remove()
    return calls[0]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-pykan", action="store_true")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "e2e_floor"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ds = toy()
    rows = {}
    evals_k = count_kanlab_evals(ds, args.steps)
    t, rmse, _ = run_kanlab(ds, args.steps)
    rows["kanlab KAN [2,5,1] (README snippet)"] = (t, rmse, evals_k)
    rows["MLP 2-5-1, torch.optim.LBFGS"] = run_mlp(ds, args.steps, "torch")
    rows["MLP 2-5-1, kanlab LBFGS"] = run_mlp(ds, args.steps, "kanlab")
    if not args.no_pykan:
        try:
            rows["pykan KAN [2,5,1] (README snippet)"] = run_pykan(ds, args.steps)
        except ImportError:
            print("pykan not installed: skipped")
    ref = rows.get("pykan KAN [2,5,1] (README snippet)", (None,))[0]
    lines = [
        "# End to end: the cost floor of eager PyTorch on the README schedule",
        "",
        f"- date: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}, torch {torch.__version__}, "
        f"threads {args.threads}, {os.cpu_count()} logical CPUs",
        f"- schedule: 2 fits x {args.steps} LBFGS steps (history 10, strong Wolfe, max 20 "
        "iterations / 25 evaluations per step), 1000 samples",
        "",
        "| run | total (s) | final test RMSE | loss evaluations | ms / evaluation | pykan / this |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, (t, rmse, n) in rows.items():
        per = f"{1000 * t / n:.2f}" if n else "-"
        ratio = f"{ref / t:.1f}x" if ref else "-"
        lines.append(f"| {name} | {t:.2f} | {rmse:.2e} | {n or '-'} | {per} | {ratio} |")
    text = "\n".join(lines) + "\n"
    print(text)
    write_results(args.out, text,
                  {k: {"total_s": v[0], "test_rmse": v[1], "evals": v[2]} for k, v in rows.items()})
    print(f"wrote {args.out}.md and {args.out}.json")


if __name__ == "__main__":
    main()
