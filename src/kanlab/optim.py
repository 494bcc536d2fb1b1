"""A lean L-BFGS for small models.

Same algorithm and settings as pykan's and PyTorch's L-BFGS (history of curvature pairs, strong
Wolfe line search with cubic interpolation, up to ``max_iter`` iterations per ``step``), built
to cost a handful of tensor operations per iteration:

* parameters and gradients are views into one flat buffer each, so reading the gradient and
  moving the parameters are single operations;
* the search direction uses the compact representation of the inverse Hessian
  (Byrd, Nocedal and Schnabel, 1994): two small matrix-vector products against the stacked
  history (kept in float64), with the small (m x m) algebra in float64 torch.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from . import native

__all__ = ["LBFGS"]


class LBFGS:
    """L-BFGS with a strong Wolfe line search over flat parameters.

    Args:
        params: parameters to optimize (those not requiring grad are skipped).
        lr: initial step length (the first iteration ever uses ``min(1, 1/|g|_1) * lr``).
        max_iter: iterations per :meth:`step`.
        max_eval: function evaluations per step (default ``1.25 * max_iter``).
        tolerance_grad: stop when ``max|g|`` falls below it.
        tolerance_change: stop when the step or the loss change falls below it.
        tolerance_ys: curvature pairs with ``s.y`` at or below it are skipped.
        history_size: number of curvature pairs kept.
        line_search_fn: ``"strong_wolfe"`` or None (fixed steps of ``lr``).
        scales: optional ``{parameter: factor}``, a diagonal preconditioner: the optimizer runs
            on the coordinates ``p / factor`` of those parameters (others keep factor 1). A
            parameter whose loss curvature is ``c`` times that of the rest behaves as if it were
            of the same curvature with a factor near ``1 / sqrt(c)``; the algorithm is otherwise
            unchanged (it is L-BFGS with the initial inverse Hessian scaled by ``factor**2``).

    While the optimizer exists, each parameter's ``.data`` and ``.grad`` are views into the
    flat buffers; call :meth:`release` to give them their own storage again.
    """

    def __init__(self, params, lr: float = 1.0, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9,
                 tolerance_ys: float = 1e-32, history_size: int = 100,
                 line_search_fn: str | None = "strong_wolfe", scales: dict | None = None):
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError(f"line_search_fn must be 'strong_wolfe' or None, got {line_search_fn!r}")
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("LBFGS got no trainable parameters")
        self.lr = float(lr)
        self.max_iter = int(max_iter)
        self.max_eval = int(max_eval) if max_eval is not None else self.max_iter * 5 // 4
        self.tolerance_grad = tolerance_grad
        self.tolerance_change = tolerance_change
        self.tolerance_ys = tolerance_ys
        self.history_size = int(history_size)
        if self.history_size < 1 or self.max_iter < 1:
            raise ValueError(f"history_size and max_iter must be >= 1, got {history_size!r} and "
                             f"{max_iter!r}")
        self.line_search = line_search_fn
        p0 = self.params[0]
        with torch.no_grad():
            self.flat = torch.cat([p.detach().reshape(-1) for p in self.params])
        self.grad = torch.zeros_like(self.flat)
        off = 0
        self._grad_views = []
        for p in self.params:
            n = p.numel()
            p.data = self.flat[off : off + n].view_as(p)
            p.grad = self.grad[off : off + n].view_as(p)
            self._grad_views.append(p.grad)
            off += n
        self.dtype, self.device = p0.dtype, p0.device
        self.scale = self._scale_vector(scales or {})
        self._native = self.device.type == "cpu" and native.enabled()
        # state carried across steps
        self.S: list[torch.Tensor] = []
        self.Y: list[torch.Tensor] = []
        self.d: torch.Tensor | None = None
        self.t: float = 0.0
        self.prev_grad: torch.Tensor | None = None
        self.n_iter = 0
        self.func_evals = 0

    # ------------------------------------------------------------------ native steps
    def native_state(self) -> dict:
        """Buffers of :meth:`kanlab.native.KANObjective.lbfgs_step` (the same algorithm, run
        in the native library): history rings, direction, counters. Created on first use;
        a step run natively continues the state of earlier native steps."""
        st = getattr(self, "_nstate", None)
        if st is None:
            if self.n_iter > 0:
                raise RuntimeError("this L-BFGS already ran Python steps; its state cannot "
                                   "continue natively (use one kind of step per optimizer)")
            n, H = self.flat.numel(), self.history_size
            st = self._nstate = {
                "S": torch.zeros(H, n, dtype=torch.float64),
                "Y": torch.zeros(H, n, dtype=torch.float64),
                "d": torch.zeros(n, dtype=self.dtype),
                "prev": torch.zeros(n, dtype=self.dtype),
                # n_iter, history count, ring start, H, max_iter, max_eval, func_evals
                "istate": torch.tensor([self.n_iter, 0, 0, H, self.max_iter, self.max_eval,
                                        self.func_evals], dtype=torch.int64),
                # t, lr, tolerance_grad, tolerance_change, tolerance_ys, first loss
                "dstate": torch.tensor([self.t, self.lr, self.tolerance_grad,
                                        self.tolerance_change, self.tolerance_ys, 0.0],
                                       dtype=torch.float64),
            }
        return st

    def sync_native_state(self) -> None:
        """Counters and step length after a native step."""
        st = self._nstate
        self.n_iter = int(st["istate"][0])
        self.func_evals = int(st["istate"][6])
        self.t = float(st["dstate"][0])

    def _scale_vector(self, scales: dict) -> torch.Tensor | None:
        """The flat preconditioner (None when every factor is 1)."""
        ids = {id(p): i for i, p in enumerate(self.params)}
        parts = [torch.ones(p.numel(), dtype=self.dtype, device=self.device) for p in self.params]
        for p, factor in scales.items():
            factor = float(factor)
            if not (math.isfinite(factor) and factor > 0):
                raise ValueError(f"LBFGS scales must be finite and > 0, got {factor!r}")
            if id(p) in ids:  # parameters that are frozen are not optimized anyway
                parts[ids[id(p)]].fill_(factor)
        flat = torch.cat(parts)
        return None if bool((flat == 1).all()) else flat

    def _ugrad(self) -> torch.Tensor:
        """The gradient in the optimizer's coordinates (p / scale): scale * dL/dp."""
        return self.grad.clone() if self.scale is None else self.grad * self.scale

    def _move_dir(self, d: torch.Tensor) -> torch.Tensor:
        """How the parameters move for a direction ``d`` in the optimizer's coordinates."""
        return d if self.scale is None else d * self.scale

    # ------------------------------------------------------------------ plumbing
    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zero the flat gradient (gradients stay views into it)."""
        self.grad.zero_()

    def release(self) -> None:
        """Give every parameter its own storage again (call when done optimizing)."""
        with torch.no_grad():
            for p in self.params:
                p.data = p.data.clone()
                if p.grad is not None:
                    p.grad = p.grad.clone()

    def _evaluate(self, closure) -> float:
        self.grad.zero_()
        with torch.enable_grad():
            loss = closure()
        self.func_evals += 1
        # a closure that calls zero_grad(set_to_none=True) detaches .grad from the flat
        # buffer: copy such gradients back and re-attach the views
        for p, view in zip(self.params, self._grad_views):
            if p.grad is not view:
                if p.grad is not None:
                    view.copy_(p.grad)
                else:
                    view.zero_()
                p.grad = view
        return float(loss)

    def _direction(self, g: torch.Tensor) -> torch.Tensor:
        """-H g from the compact representation of the L-BFGS inverse Hessian.

        The small (m x m) algebra runs in float64 torch (NumPy's BLAS would start its own
        threads, which fight PyTorch's on small machines).
        """
        m = len(self.S)
        if m == 0:
            return -g
        if self._native:  # the two-loop recursion in one native call (same direction)
            return native.lbfgs_direction(g, self.S, self.Y).to(self.dtype)
        SY = torch.stack(self.S + self.Y)  # (2m, n), float64
        g64 = g.double()
        gram = SY @ SY.t()
        proj = SY @ g64
        StY = gram[:m, m:]
        YtY = gram[m:, m:]
        a, b = proj[:m, None], proj[m:, None]
        ys = StY.diagonal()
        gamma = ys[-1] / YtY[-1, -1]
        R = StY.triu()
        # H g = gamma g + S p + gamma Y q, with q = -R^{-1} a and
        # p = R^{-T} ((D + gamma Y^T Y) R^{-1} a - gamma b)
        Ria = torch.linalg.solve_triangular(R, a, upper=True)
        rhs = ys[:, None] * Ria + gamma * (YtY @ Ria) - gamma * b
        p = torch.linalg.solve_triangular(R.t(), rhs, upper=False)
        coeff = torch.cat([p, -gamma * Ria]).squeeze(1)
        return (-(gamma * g64) - SY.t() @ coeff).to(self.dtype)

    # ---------------------------------------------------------------------- step
    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> float:
        """Run up to ``max_iter`` iterations; ``closure`` zeroes nothing, computes the loss and
        calls backward. Returns the loss at the start of the step."""
        if getattr(self, "_nstate", None) is not None:
            raise RuntimeError("this L-BFGS already ran native steps; its state cannot continue "
                               "in Python (use one kind of step per optimizer)")
        evals = 0
        loss = self._evaluate(closure)
        evals += 1
        first_loss = loss
        g = self._ugrad()
        if not math.isfinite(loss) or g.abs().max() <= self.tolerance_grad:
            return first_loss
        for it in range(self.max_iter):
            self.n_iter += 1
            if self.n_iter == 1:
                d = -g
            else:
                # curvature pairs are kept in float64: the compact update solves with them
                y = g.double() - self.prev_grad.double()
                s = self.d.double() * self.t
                ys = float(y @ s)
                if ys > self.tolerance_ys:
                    if len(self.S) == self.history_size:
                        self.S.pop(0)
                        self.Y.pop(0)
                    self.S.append(s)
                    self.Y.append(y)
                d = self._direction(g)
            self.prev_grad = g
            prev_loss = loss
            t = min(1.0, 1.0 / float(g.abs().sum())) * self.lr if self.n_iter == 1 else self.lr
            gtd = float(g @ d)
            if gtd > -self.tolerance_change:
                self.d, self.t = d, t
                break
            dm = self._move_dir(d)
            if self.line_search == "strong_wolfe":
                x0 = self.flat.clone()
                loss, g, t, n = self._strong_wolfe(closure, x0, d, dm, t, loss, g, gtd)
                torch.add(x0, dm, alpha=t, out=self.flat)
            else:
                self.flat.add_(dm, alpha=t)
                n = 0
                if it != self.max_iter - 1:
                    loss = self._evaluate(closure)
                    g = self._ugrad()
                    n = 1
            evals += n
            self.d, self.t = d, t
            if not math.isfinite(loss):
                break
            if it == self.max_iter - 1 or evals >= self.max_eval:
                break
            if g.abs().max() <= self.tolerance_grad:
                break
            if float(d.abs().max()) * abs(t) <= self.tolerance_change:
                break
            if abs(loss - prev_loss) < self.tolerance_change:
                break
        return first_loss

    def _phi(self, closure, x0, d, dm, t):
        torch.add(x0, dm, alpha=t, out=self.flat)
        f = self._evaluate(closure)
        g = self._ugrad()
        return f, g, float(g @ d)

    def _strong_wolfe(self, closure, x0, d, dm, t, f0, g0, gtd0, c1=1e-4, c2=0.9, max_ls=25,
                      tolerance_change=1e-9):
        """Step length satisfying the strong Wolfe conditions (Nocedal & Wright, alg. 3.5/3.6)
        along ``d`` (optimizer coordinates; the parameters move along ``dm``).

        Returns (loss, gradient, t, number of evaluations) at the accepted step.
        """
        d_norm = float(d.abs().max())
        f, g, gtd = self._phi(closure, x0, d, dm, t)
        n = 1
        t_prev, f_prev, g_prev, gtd_prev = 0.0, f0, g0, gtd0
        bracket = None
        while n <= max_ls:
            if not math.isfinite(f):
                bracket = (t_prev, f_prev, g_prev, gtd_prev, t, f, g, gtd)  # shrink towards t_prev
                break
            if f > f0 + c1 * t * gtd0 or (n > 2 and f >= f_prev):
                bracket = (t_prev, f_prev, g_prev, gtd_prev, t, f, g, gtd)
                break
            if abs(gtd) <= -c2 * gtd0:
                return f, g, t, n
            if gtd >= 0:
                bracket = (t, f, g, gtd, t_prev, f_prev, g_prev, gtd_prev)
                break
            lo, hi = t + 0.01 * (t - t_prev), t * 10
            t_next = _cubic_min(t_prev, f_prev, gtd_prev, t, f, gtd, lo, hi)
            t_prev, f_prev, g_prev, gtd_prev = t, f, g, gtd
            t = t_next
            f, g, gtd = self._phi(closure, x0, d, dm, t)
            n += 1
        if bracket is None:  # ran out of evaluations while extrapolating
            return f, g, t, n
        # zoom: (t_lo, f_lo) is the best point so far satisfying sufficient decrease
        t_lo, f_lo, g_lo, gtd_lo, t_hi, f_hi, _, gtd_hi = bracket
        insufficient = False
        while n <= max_ls:
            if abs(t_hi - t_lo) * d_norm < tolerance_change:
                break
            a, b = min(t_lo, t_hi), max(t_lo, t_hi)
            if math.isfinite(f_hi) and math.isfinite(gtd_hi):
                t = _cubic_min(t_lo, f_lo, gtd_lo, t_hi, f_hi, gtd_hi, a, b)
            else:
                t = 0.5 * (a + b)
            # keep away from the ends of the bracket
            eps = 0.1 * (b - a)
            if min(b - t, t - a) < eps:
                if insufficient or t >= b or t <= a:
                    t = b - eps if abs(t - b) < abs(t - a) else a + eps
                    insufficient = False
                else:
                    insufficient = True
            else:
                insufficient = False
            f, g, gtd = self._phi(closure, x0, d, dm, t)
            n += 1
            if not math.isfinite(f) or f > f0 + c1 * t * gtd0 or f >= f_lo:
                t_hi, f_hi, gtd_hi = t, f, gtd
            else:
                if abs(gtd) <= -c2 * gtd0:
                    return f, g, t, n
                if gtd * (t_hi - t_lo) >= 0:
                    t_hi, f_hi, gtd_hi = t_lo, f_lo, gtd_lo
                t_lo, f_lo, g_lo, gtd_lo = t, f, g, gtd
        if t_lo == 0.0:
            return f0, g0, 0.0, n
        return f_lo, g_lo, t_lo, n


def _cubic_min(t1, f1, g1, t2, f2, g2, lo, hi):
    """Minimizer of the cubic through (t1, f1, g1) and (t2, f2, g2), clipped to [lo, hi]."""
    d1 = g1 + g2 - 3 * (f1 - f2) / (t1 - t2) if t1 != t2 else float("nan")
    disc = d1 * d1 - g1 * g2
    if math.isfinite(disc) and disc >= 0:
        d2 = math.sqrt(disc)
        if t1 <= t2:
            t = t2 - (t2 - t1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            t = t1 - (t1 - t2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        if math.isfinite(t):
            return min(max(t, lo), hi)
    return 0.5 * (lo + hi)
