"""Physics-informed training on pykan Example_6's problem, three ways in one process.

    u_xx + u_yy = -2 pi^2 sin(pi x) sin(pi y) on [-1, 1]^2,  u = 0 on the boundary,
    exact solution u = sin(pi x) sin(pi y).

Same collocation points (21 x 21 random interior points, 4 x 21 boundary points, seed 0), same
loss (0.01 * PDE residual MSE + boundary MSE), same optimizer (L-BFGS, history 10, strong Wolfe,
tolerances 1e-32, pykan's settings) and the same number of steps for:

* pykan: Example_6's recipe as the tutorial writes it (KAN(width=[2, 2, 1], grid=5, k=3,
  seed=1), derivatives by ``torch.autograd.functional.jacobian`` with create_graph, grid
  updates from the interior points every 5 steps before step 50), and the same loop without
  grid updates (kanlab's default);
* kanlab through ``kanlab.pde.fit``: the same network and seed with Example_6's grid updates,
  from pykan's initial weights of the same seed (the same starting point: this row compares
  the two training engines) and from its own initialization; then as the library comes
  (``pde.fit``'s defaults: no grid updates, the grids stay uniform on [-1, 1]), with grid 5
  and with grid 7;
* an MLP PINN (tanh) with about the same number of trainable parameters, derivatives by
  autograd.

Reported per method: RMSE against the exact solution on a 101 x 101 test grid after every step,
the training time (evaluation excluded), and the time each method needs to reach pykan's final
error. Nothing else may run on the machine (2 cores) during the run.

    python benchmarks/bench_pde.py                # 20 steps (the tutorial), all of them
    python benchmarks/bench_pde.py --steps 50 --no-pykan
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _results import write_results  # noqa: E402

ALPHA = 0.01


def sol(x):
    return torch.sin(math.pi * x[:, [0]]) * torch.sin(math.pi * x[:, [1]])


def source(x):
    return -2 * math.pi ** 2 * sol(x)


def points(seed: int = 0, n: int = 21):
    g = torch.Generator().manual_seed(seed)
    x_i = torch.rand(n * n, 2, generator=g) * 2 - 1
    m = torch.linspace(-1, 1, n)
    X, Y = torch.meshgrid(m, m, indexing="ij")

    def side(a, b):
        return torch.stack([a.reshape(-1), b.reshape(-1)], 1)
    x_b = torch.cat([side(X[0], Y[0]), side(X[-1], Y[0]), side(X[:, 0], Y[:, 0]),
                     side(X[:, 0], Y[:, -1])])
    t = torch.linspace(-1, 1, 101)
    TX, TY = torch.meshgrid(t, t, indexing="ij")
    return x_i, x_b, side(TX, TY)


def rmse(model, x_test):
    with torch.no_grad():
        return float(torch.sqrt(torch.mean((model(x_test) - sol(x_test)) ** 2)))


def _lbfgs(cls, params):
    return cls(params, lr=1, history_size=10, line_search_fn="strong_wolfe", tolerance_grad=1e-32,
               tolerance_change=1e-32, tolerance_ys=1e-32)


def run_pykan(steps, x_i, x_b, x_test, seed=1, grid_updates=True):
    """Example_6's training loop, as the tutorial writes it (its batch_jacobian); with
    ``grid_updates=False`` the same loop without its grid updates."""
    from kan import KAN as PyKAN
    from kan import LBFGS as PyLBFGS
    from torch import autograd

    model = PyKAN(width=[2, 2, 1], grid=5, k=3, seed=seed, device="cpu", auto_save=False)

    def batch_jacobian(func, x, create_graph=False):
        def _func_sum(x):
            return func(x).sum(dim=0)
        return autograd.functional.jacobian(_func_sum, x, create_graph=create_graph).permute(1, 0, 2)

    opt = _lbfgs(PyLBFGS, model.parameters())
    errs, secs, elapsed = [], [], 0.0
    for step in range(steps):
        t = time.perf_counter()

        def closure():
            opt.zero_grad()
            d1 = lambda x: batch_jacobian(model, x, create_graph=True)[:, 0, :]  # noqa: E731
            d2 = batch_jacobian(d1, x_i, create_graph=True)
            lap = torch.sum(torch.diagonal(d2, dim1=1, dim2=2), dim=1, keepdim=True)
            pde_loss = torch.mean((lap - source(x_i)) ** 2)
            bc_loss = torch.mean((model(x_b) - sol(x_b)) ** 2)
            loss = ALPHA * pde_loss + bc_loss
            loss.backward()
            return loss
        if grid_updates and step % 5 == 0 and step < 50:
            model.update_grid_from_samples(x_i)
        opt.step(closure)
        elapsed += time.perf_counter() - t
        secs.append(elapsed)
        errs.append(rmse(model, x_test))
    return {"rmse": errs, "seconds": secs,
            "params": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def run_kanlab(steps, x_i, x_b, x_test, seed=1, pykan_init=False, grid_update_every=None,
               grid=5):
    """kanlab.pde.fit; with ``pykan_init`` from the initial weights of pykan's model of the same
    seed (grids, coefficients, both scales; node biases 0), so that the two training engines
    start from the same point; ``grid_update_every``: None for ``pde.fit``'s default (no
    grid updates: the grids stay uniform on [-1, 1]), 5 for Example_6's schedule."""
    from kanlab import KAN, pde

    model = KAN(width=[2, 2, 1], grid=grid, k=3, seed=seed)
    if pykan_init:
        from kan import KAN as PyKAN

        ref = PyKAN(width=[2, 2, 1], grid=5, k=3, seed=seed, device="cpu", auto_save=False)
        with torch.no_grad():
            for mine, theirs in zip(model.act_fun, ref.act_fun):
                for name in ("grid", "coef", "scale_base", "scale_sp"):
                    getattr(mine, name).copy_(getattr(theirs, name))
                mine.bias.zero_()
    conds = [pde.Condition(x_i, lambda x, u, D: D.laplacian() - source(x), ALPHA, "pde"),
             pde.dirichlet(x_b, sol, name="bc")]
    errs = []
    kw = {} if grid_update_every is None else {"grid_update_every": grid_update_every}
    hist = pde.fit(model, conds, steps=steps, **kw,
                   callback=lambda s, h: errs.append(rmse(model, x_test)) and False)
    return {"rmse": errs, "seconds": hist["seconds"],
            "params": sum(p.numel() for p in model.parameters() if p.requires_grad)}


class MLP(torch.nn.Module):
    def __init__(self, width):
        super().__init__()
        layers = []
        for a, b in zip(width[:-1], width[1:]):
            layers += [torch.nn.Linear(a, b), torch.nn.Tanh()]
        self.net = torch.nn.Sequential(*layers[:-1])

    def forward(self, x):
        return self.net(x)


def run_mlp(steps, x_i, x_b, x_test, n_params, seed=1):
    from kanlab import pde

    h = max(2, round((-4 + math.sqrt(16 - 4 * (1 - n_params))) / 2))  # h^2 + 4h + 1 params
    torch.manual_seed(seed)
    model = MLP([2, h, h, 1])
    conds = [pde.Condition(x_i, lambda x, u, D: D.laplacian() - source(x), ALPHA, "pde"),
             pde.dirichlet(x_b, sol, name="bc")]
    errs = []
    hist = pde.fit(model, conds, steps=steps, grid_update_every=0,
                   callback=lambda s, h_: errs.append(rmse(model, x_test)) and False)
    return {"rmse": errs, "seconds": hist["seconds"], "width": [2, h, h, 1],
            "params": sum(p.numel() for p in model.parameters())}


def time_to(run, target):
    """Training seconds until the RMSE first reaches ``target`` (None if never)."""
    for e, s in zip(run["rmse"], run["seconds"]):
        if e <= target:
            return s
    return None


def _commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except OSError:
        return "unknown"


def _median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def _final(run):
    """A run's final RMSE; a run that ended on NaN counts as infinitely wrong."""
    e = run["rmse"][-1]
    return e if math.isfinite(e) else math.inf


def report(runs, steps, seeds) -> str:
    """``runs[method][seed]``: one run's record."""
    import kanlab

    lines = ["# Physics-informed training: pykan Example_6's Poisson problem", "",
             f"Run of {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}: torch "
             f"{torch.__version__} ({torch.get_num_threads()} threads), {os.cpu_count()} CPUs, "
             f"Python {platform.python_version()}, kanlab {kanlab.__version__} at commit "
             f"`{_commit()}`; nothing else running.", "",
             f"Command: `benchmarks/bench_pde.py {' '.join(sys.argv[1:])}`", "",
             "Problem: u_xx + u_yy = -2 pi^2 sin(pi x) sin(pi y) on [-1, 1]^2, u = 0 on the "
             "boundary; 441 random interior points, 84 boundary points (seed 0, the same for "
             "every method and seed); loss 0.01 * PDE MSE + boundary MSE; L-BFGS (history 10, "
             f"strong Wolfe, pykan's tolerances), {steps} steps; network seeds {seeds} (Example_6 "
             "uses 1). Error: RMSE against sin(pi x) sin(pi y) on a 101 x 101 grid. Time: "
             "training only (the per-step evaluation is excluded). 'Time to pykan's error': "
             "training seconds until the RMSE first reaches the median final RMSE of pykan's "
             "runs; the time by which half of the runs (all seeds) have reached it ('not reached' "
             "where more than half never do).", "",
             "| method | trainable params | median final RMSE | final RMSE per seed | median "
             "training s | median s per step | runs reaching pykan's median error | s until "
             "half the runs reach it | speed-up to that error vs pykan |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    target = _median([_final(r) for r in runs["pykan"].values()]) if runs.get("pykan") else None
    reach, med = {}, {}
    for name, by_seed in runs.items():
        if target is not None:
            times = [time_to(r, target) for r in by_seed.values()]
            reach[name] = [t for t in times if t is not None]
            # the time by which half the runs (every seed) have reached the error
            ts = sorted(math.inf if t is None else t for t in times)
            m = ts[(len(ts) + 1) // 2 - 1] if ts else math.inf
            med[name] = m if math.isfinite(m) else None
    ref = med.get("pykan")
    for name, by_seed in runs.items():
        rs = list(by_seed.values())
        finals = [_final(r) for r in rs]
        total = _median([r["seconds"][-1] for r in rs])
        per = _median([r["seconds"][-1] / len(r["seconds"]) for r in rs])
        label = name if name != "mlp" else f"MLP {rs[0]['width']} (tanh)"
        if target is None:
            got, t, speed = "-", "-", "-"
        else:
            got = f"{len(reach[name])}/{len(rs)}"
            t = f"{med[name]:.2f}" if med[name] is not None else "not reached"
            speed = f"{ref / med[name]:.1f}x" if med[name] and ref else "-"
        lines.append(f"| {label} | {rs[0]['params']} | {_median(finals):.3e} | "
                     + ", ".join(f"{f:.3g}" for f in finals)
                     + f" | {total:.2f} | {per:.3f} | {got} | {t} | {speed} |")
    lines += ["", f"RMSE after each step (seed {seeds[0]}):", "",
              "| step | " + " | ".join(runs) + " |", "| ---: |" + " ---: |" * len(runs)]
    for s in range(steps):
        lines.append(f"| {s + 1} | " + " | ".join(
            f"{r[seeds[0]]['rmse'][s]:.3e}" if seeds[0] in r and s < len(r[seeds[0]]["rmse"])
            else "-" for r in runs.values()) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seeds", default="1,0,2,3,4", help="network seeds (comma separated)")
    ap.add_argument("--no-pykan", action="store_true")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "results", "pde"))
    args = ap.parse_args(argv)
    seeds = [int(v) for v in args.seeds.split(",")]
    torch.set_default_dtype(torch.float32)
    x_i, x_b, x_test = points()
    ex6 = "kanlab, Example_6's grid updates"
    pyk = "kanlab, Example_6's grid updates, pykan's initial weights"
    pyk_nog = "pykan, no grid updates"
    runs = {} if args.no_pykan else {"pykan": {}, pyk_nog: {}, pyk: {}}
    runs.update({ex6: {}, "kanlab": {}, "kanlab, grid 7": {}, "mlp": {}})
    crashes = []
    for seed in seeds:
        if not args.no_pykan:
            try:
                runs["pykan"][seed] = run_pykan(args.steps, x_i, x_b, x_test, seed)
            except Exception as err:  # pykan's grid update can fail (lstsq) on some seeds
                crashes.append(f"pykan, seed {seed}: {type(err).__name__}: {str(err)[:120]}")
                print(crashes[-1], flush=True)
            try:
                runs[pyk_nog][seed] = run_pykan(args.steps, x_i, x_b, x_test, seed,
                                                grid_updates=False)
            except Exception as err:
                crashes.append(f"{pyk_nog}, seed {seed}: {type(err).__name__}: {str(err)[:120]}")
                print(crashes[-1], flush=True)
            runs[pyk][seed] = run_kanlab(args.steps, x_i, x_b, x_test, seed, pykan_init=True,
                                         grid_update_every=5)
        runs[ex6][seed] = run_kanlab(args.steps, x_i, x_b, x_test, seed, grid_update_every=5)
        runs["kanlab"][seed] = run_kanlab(args.steps, x_i, x_b, x_test, seed)
        runs["kanlab, grid 7"][seed] = run_kanlab(args.steps, x_i, x_b, x_test, seed, grid=7)
        runs["mlp"][seed] = run_mlp(args.steps, x_i, x_b, x_test, runs["kanlab"][seed]["params"],
                                    seed)
        print(f"seed {seed}: " + ", ".join(f"{m} {r[seed]['rmse'][-1]:.3e} in "
                                           f"{r[seed]['seconds'][-1]:.2f} s"
                                           for m, r in runs.items() if seed in r), flush=True)
    text = report(runs, args.steps, seeds)
    if crashes:
        text += "\nCrashed (left out of the statistics):\n\n" + "".join(f"- {c}\n" for c in crashes)
    print(text)
    if args.out:
        write_results(args.out, text, {"steps": args.steps, "seeds": seeds,
                                       "crashes": crashes, "runs": {m: {str(k): v for k, v in r.items()}
                                                  for m, r in runs.items()}})


if __name__ == "__main__":
    main()
