"""Train a network on residual losses: physics-informed KANs for any PDE the user writes.

A problem is a list of :class:`Condition` s: collocation points and a residual, a function of
the points ``x``, the network's values ``u`` there and a :class:`Derivatives` helper ``D`` that
gives any derivative of ``u`` by autograd (``D(0)`` is u_x, ``D(0, 0)`` u_xx, ``D(1, 0, 0)``
u_yxx, ``D.laplacian()``). The loss is ``sum_c weight_c * mean(residual_c ** 2)``; nothing in
here knows which PDE it is.

    from kanlab import KAN, pde
    f = lambda x: -2 * math.pi ** 2 * torch.sin(math.pi * x[:, :1]) * torch.sin(math.pi * x[:, 1:])
    interior = pde.Condition(x_i, lambda x, u, D: D.laplacian() - f(x), weight=0.01)
    boundary = pde.dirichlet(x_b, 0.0)
    history = pde.fit(KAN(width=[2, 2, 1], grid=5, seed=1), [interior, boundary], steps=20)

:func:`fit` trains by L-BFGS (pykan's Example_6 recipe) or Adam, with grid updates on the
collocation points of the first condition, and records every condition's loss, the total, and,
given ``exact``, the L2 error of the solution.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from . import taylor

__all__ = ["Derivatives", "Condition", "dirichlet", "fit", "l2_error"]


class Derivatives:
    """Derivatives of ``u`` (n, m) with respect to the points ``x`` (n, d), differentiable in
    the parameters (so a loss on them trains the network); computed once and cached. Given the
    kanlab KAN that made ``u``, first and pure second derivatives come from one Taylor-mode pass
    (:func:`kanlab.taylor.jet`); mixed and higher ones, and other models, by nested autograd.

    ``D(i, j, ...)``: d/dx_i d/dx_j ... of output ``out`` (default 0), shape (n, 1);
    ``D.grad()``: (n, d) first derivatives; ``D.laplacian()``: (n, 1) sum of u_{x_i x_i}.
    """

    def __init__(self, u: torch.Tensor, x: torch.Tensor, model=None, jet=None):
        self.u, self.x = u, x
        self._model = model
        self._jet_ok = model is not None and taylor.supports(model)
        self._jet = jet  # (u, du, d2u) of x, possibly computed on x detached
        self._auto: dict = {}  # derivatives by autograd, keyed (out, *index)
        self.used = False  # whether a residual asked for any derivative

    def _from_jet(self, index, out):
        """u_{x_a} and u_{x_a x_a} of a kanlab KAN from one Taylor-mode pass (:mod:`.taylor`)."""
        if not self._jet_ok or len(index) > 2 or (len(index) == 2 and index[0] != index[1]):
            return None
        if self._jet is None:
            self._jet = taylor.jet(self._model, self.x)
        return self._jet[len(index)][:, index[0], out:out + 1]

    def _connected(self, out):
        """u as a function of x that autograd can differentiate (the jet may have been computed
        on fixed points, detached from x)."""
        if ("u", out) not in self._auto:
            u = self.u
            if not (u.requires_grad and self._jet is None) and self._model is not None:
                u = self._model(self.x)
            self._auto[("u", out)] = u[:, out:out + 1]
        return self._auto[("u", out)]

    def _autograd(self, index, out):
        key = (out, *index)
        if key not in self._auto:
            lower = self._connected(out) if len(index) == 1 else self._autograd(index[:-1], out)
            grad = None
            if lower.requires_grad:
                (grad,) = torch.autograd.grad(lower.sum(), self.x, create_graph=True,
                                              allow_unused=True)
            grad = torch.zeros_like(self.x) if grad is None else grad  # identically 0
            for j in range(self.x.shape[1]):  # one call gives the derivatives in every column
                self._auto.setdefault((out, *index[:-1], j), grad[:, j:j + 1])
        return self._auto[key]

    def __call__(self, *index: int, out: int = 0) -> torch.Tensor:
        if not index:
            return self.u[:, out:out + 1]
        self.used = True
        d = self.x.shape[1]
        if not all(isinstance(i, int) and 0 <= i < d for i in index):
            raise ValueError(f"derivative indices must be input columns 0..{d - 1}, got {index}")
        fast = self._from_jet(index, out)
        return fast if fast is not None else self._autograd(index, out)

    def grad(self, out: int = 0) -> torch.Tensor:
        return torch.cat([self(i, out=out) for i in range(self.x.shape[1])], 1)

    def laplacian(self, out: int = 0, dims=None) -> torch.Tensor:
        dims = range(self.x.shape[1]) if dims is None else dims
        return sum(self(i, i, out=out) for i in dims)


@dataclass
class Condition:
    """Collocation ``points`` (n, d) and a ``residual(x, u, D)`` that should be 0 there (a
    tensor of n rows), weighted by ``weight`` in the loss; ``name`` labels it in the history."""

    points: torch.Tensor
    residual: Callable
    weight: float = 1.0
    name: str = ""


def dirichlet(points: torch.Tensor, value, weight: float = 1.0, name: str = "boundary",
              out: int = 0) -> Condition:
    """``u = value`` on ``points``: ``value`` a number, a tensor of n rows or a function of x."""
    def residual(x, u, D):
        v = value(x) if callable(value) else value
        v = torch.as_tensor(v, dtype=u.dtype, device=u.device)
        return u[:, out:out + 1] - (v.reshape(-1, 1) if v.dim() else v)
    return Condition(points, residual, weight, name)


def _check(model, conditions):
    if not conditions:
        raise ValueError("fit needs at least one Condition (points and a residual)")
    names = []
    for i, c in enumerate(conditions):
        if not isinstance(c, Condition):
            raise TypeError(f"conditions[{i}] must be a kanlab.pde.Condition, got {type(c).__name__}")
        p = c.points
        if not isinstance(p, torch.Tensor) or p.dim() != 2 or p.shape[0] == 0:
            raise ValueError(f"condition {c.name or i}: points must be a non-empty (n, d) tensor")
        if not torch.isfinite(p).all():
            raise ValueError(f"condition {c.name or i}: points contain NaN or Inf")
        if not (isinstance(c.weight, (int, float)) and math.isfinite(c.weight) and c.weight >= 0):
            raise ValueError(f"condition {c.name or i}: weight must be a finite number >= 0")
        names.append(c.name or ("interior" if i == 0 else f"condition_{i}"))
    return names


def _losses(model, conditions, dtype, device):
    """Per condition: mean squared residual (a differentiable scalar)."""
    out = []
    fast = taylor.supports(model)
    for c in conditions:
        x = c.points.to(dtype=dtype, device=device).detach().requires_grad_(True)
        if fast and getattr(c, "_derivatives", False):  # values and derivatives in one pass
            jet = taylor.jet(model, x.detach())  # fixed points: layer 0's features are reused
            u = jet[0]
            D = Derivatives(u, x, model, jet)
        else:
            u = model(x)
            D = Derivatives(u, x, model)
        r = c.residual(x, u, D)
        c._derivatives = D.used
        r = torch.as_tensor(r, dtype=u.dtype, device=u.device)
        if r.shape[0] != x.shape[0]:
            raise ValueError(f"a residual must have one row per point ({x.shape[0]}), "
                             f"got shape {tuple(r.shape)}")
        out.append(torch.mean(r ** 2))
    return out


def l2_error(model, x: torch.Tensor, exact: Callable) -> float:
    """Root mean square of ``model(x) - exact(x)``."""
    with torch.no_grad():
        p = next(model.parameters())
        x = x.to(dtype=p.dtype, device=p.device)
        return float(torch.sqrt(torch.mean((model(x) - exact(x)) ** 2)))


def fit(model, conditions, *, steps: int = 20, opt: str = "LBFGS", lr: float = 1.0,
        grid_update_every: int = 0, grid_update_until: int = 50, exact: Callable | None = None,
        eval_points: torch.Tensor | None = None, history_size: int = 10, callback=None,
        progress: bool = False) -> dict:
    """Train ``model`` to make every condition's residual vanish.

    Args:
        model: a kanlab KAN (or any torch module mapping (n, d) to (n, m)).
        conditions: :class:`Condition` s; the first one's points are the interior collocation
            points the grid is updated on.
        steps: optimizer steps (L-BFGS steps of up to 20 iterations each, or Adam steps).
        opt: ``"LBFGS"`` (strong Wolfe line search, pykan's settings) or ``"Adam"`` (lr 1e-3
            is a good start there).
        grid_update_every, grid_update_until: update the KAN's grids from the interior points
            every so many steps before that step (0, the default, disables; ignored for models
            without ``update_grid_from_samples``). pykan's Example_6 updates every 5 steps;
            with those updates its Poisson problem ended less accurate on [2,2,1] (median
            over 20 seeds, ``benchmarks/bench_pde.py``) and, in one-off runs over 10 seeds of
            ``examples/poisson.py``'s problems, on [2,4,1] and on the Helmholtz problem
            ([2,6,1]): 1.6-3.3x in all.
        exact: the exact solution, a function of x; then the history records ``l2`` on
            ``eval_points`` (default the interior points).
        callback: ``callback(step, history)`` after each step; return True to stop.

    Returns:
        the history: lists ``loss`` (weighted total), one per condition name (its mean squared
        residual), ``l2`` (with ``exact``) and ``seconds`` (cumulative, training only).
    """
    names = _check(model, conditions)
    if opt not in ("LBFGS", "Adam"):
        raise ValueError(f"opt must be 'LBFGS' or 'Adam', got {opt!r}")
    p0 = next(model.parameters())
    dtype, device = p0.dtype, p0.device
    params = [p for p in model.parameters() if p.requires_grad]
    if opt == "LBFGS":
        from .optim import LBFGS

        optimizer = LBFGS(params, lr=lr, history_size=history_size,
                          line_search_fn="strong_wolfe", tolerance_grad=1e-32,
                          tolerance_change=1e-32, tolerance_ys=1e-32)
    else:
        optimizer = torch.optim.Adam(params, lr=lr)
    interior = conditions[0].points.to(dtype=dtype, device=device)
    eval_x = interior if eval_points is None else eval_points
    history = {"loss": [], **{n: [] for n in names}, "seconds": []}
    if exact is not None:
        history["l2"] = []
    weights = [float(c.weight) for c in conditions]
    last: list = []
    elapsed = 0.0

    def closure():
        optimizer.zero_grad()
        parts = _losses(model, conditions, dtype, device)
        loss = sum(w * p for w, p in zip(weights, parts))
        loss.backward()
        last[:] = [float(p.detach()) for p in parts]
        return loss

    for step in range(steps):
        t = time.perf_counter()
        if grid_update_every and step % grid_update_every == 0 and step < grid_update_until \
                and hasattr(model, "update_grid_from_samples"):
            model.update_grid_from_samples(interior)
        if opt == "LBFGS":
            optimizer.step(closure)
        else:
            closure()
            optimizer.step()
        elapsed += time.perf_counter() - t
        history["seconds"].append(elapsed)
        for n, v in zip(names, last):
            history[n].append(v)
        history["loss"].append(sum(w * v for w, v in zip(weights, last)))
        if exact is not None:
            history["l2"].append(l2_error(model, eval_x, exact))
        if progress:
            extra = f" l2 {history['l2'][-1]:.3e}" if exact is not None else ""
            print(f"step {step + 1}/{steps}: loss {history['loss'][-1]:.3e}{extra}", flush=True)
        if not math.isfinite(history["loss"][-1]):
            raise RuntimeError(f"the loss became {history['loss'][-1]} at step {step + 1}: "
                               "lower lr or the condition weights")
        if callback is not None and callback(step, history):
            break
    return history
