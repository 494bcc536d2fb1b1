"""Physics-informed KANs with kanlab.pde: two problems, plots of the solution and the error.

1. pykan Example_6's Poisson problem: u_xx + u_yy = -2 pi^2 sin(pi x) sin(pi y) on [-1, 1]^2,
   u = 0 on the boundary (exact u = sin(pi x) sin(pi y)).
2. A Helmholtz problem: u_xx + u_yy + k^2 u = q on [-1, 1]^2, u = 0 on the boundary, with q
   chosen so that u = sin(pi x) sin(2 pi y) (k = 1).

    python examples/poisson.py                 # both, figures in ./pde_figures
    python examples/poisson.py --steps 40 --out /tmp/figs

Each problem is a list of conditions (points and a residual written with the derivative helper
D); kanlab.pde.fit trains the KAN on their weighted squared residuals with L-BFGS and updates the
grids on the interior points.
"""
from __future__ import annotations

import argparse
import math
import os
import time

import torch

from kanlab import KAN, pde


def square_points(n_interior: int, n_side: int, seed: int = 0):
    """Random interior points of [-1, 1]^2 and n_side points on each of its four sides."""
    g = torch.Generator().manual_seed(seed)
    inside = torch.rand(n_interior, 2, generator=g) * 2 - 1
    t = torch.linspace(-1, 1, n_side)
    one = torch.ones_like(t)
    sides = torch.cat([torch.stack([-one, t], 1), torch.stack([one, t], 1),
                       torch.stack([t, -one], 1), torch.stack([t, one], 1)])
    return inside, sides


def poisson():
    def exact(x):
        return torch.sin(math.pi * x[:, :1]) * torch.sin(math.pi * x[:, 1:2])

    def residual(x, u, D):  # u_xx + u_yy - f
        return D.laplacian() + 2 * math.pi ** 2 * exact(x)
    return "Poisson", exact, residual


def helmholtz(k: float = 1.0):
    def exact(x):
        return torch.sin(math.pi * x[:, :1]) * torch.sin(2 * math.pi * x[:, 1:2])

    def residual(x, u, D):  # u_xx + u_yy + k^2 u - q, with q = (k^2 - 5 pi^2) u_exact
        return D.laplacian() + k ** 2 * u - (k ** 2 - 5 * math.pi ** 2) * exact(x)
    return "Helmholtz", exact, residual


def solve(problem, width, grid, steps, seed=1):
    name, exact, residual = problem
    inside, sides = square_points(441, 21)
    model = KAN(width=width, grid=grid, k=3, seed=seed)
    conditions = [pde.Condition(inside, residual, weight=0.01, name="pde"),
                  pde.dirichlet(sides, 0.0, name="boundary")]
    t = time.perf_counter()
    hist = pde.fit(model, conditions, steps=steps, exact=exact)
    print(f"{name}: KAN {width}, grid {grid}, {steps} L-BFGS steps in "
          f"{time.perf_counter() - t:.1f} s: RMSE against the exact solution "
          f"{hist['l2'][-1]:.2e} (pde residual {hist['pde'][-1]:.2e}, boundary "
          f"{hist['boundary'][-1]:.2e})")
    return model, hist


def plot(problem, model, hist, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name, exact, _ = problem
    n = 101
    t = torch.linspace(-1, 1, n)
    X, Y = torch.meshgrid(t, t, indexing="ij")
    pts = torch.stack([X.reshape(-1), Y.reshape(-1)], 1)
    with torch.no_grad():
        pred = model(pts).reshape(n, n)
    true = exact(pts).reshape(n, n)
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    for ax, data, title in [(axes[0], pred, "KAN solution"), (axes[1], true, "exact solution"),
                            (axes[2], pred - true, "error (KAN - exact)")]:
        im = ax.imshow(data.T.numpy(), origin="lower", extent=[-1, 1, -1, 1], cmap="RdBu_r")
        ax.set_title(title)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        fig.colorbar(im, ax=ax, shrink=0.85)
    axes[3].semilogy(range(1, len(hist["l2"]) + 1), hist["l2"], label="RMSE vs exact")
    axes[3].semilogy(range(1, len(hist["pde"]) + 1), hist["pde"], label="PDE residual (MSE)")
    axes[3].semilogy(range(1, len(hist["boundary"]) + 1), hist["boundary"],
                     label="boundary (MSE)")
    axes[3].set_xlabel("L-BFGS step")
    axes[3].set_title("training")
    axes[3].legend(fontsize=8)
    fig.suptitle(f"{name}: RMSE {hist['l2'][-1]:.2e} after {len(hist['l2'])} steps")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"  wrote {path}")


def main(argv=None):
    ap = argparse.ArgumentParser(description="Physics-informed KANs on two 2D problems")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--out", default="pde_figures", help="folder for the figures")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for problem, width, grid in [(poisson(), [2, 4, 1], 5), (helmholtz(), [2, 6, 1], 5)]:
        model, hist = solve(problem, width, grid, args.steps)
        plot(problem, model, hist, os.path.join(args.out, problem[0].lower() + ".png"))


if __name__ == "__main__":
    main()
