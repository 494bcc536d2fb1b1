"""One fit's machinery between steps (:func:`kanlab.train.fit`): the optimizer, the native
objective where it applies, batches, grid updates, one optimizer step, the step's losses over
all ranks, the rollback of a non-finite step, and the spline-share watch."""
from __future__ import annotations

import logging
import math
import numbers

import torch

from .optim import LBFGS
from .regularize import regularization

logger = logging.getLogger("kanlab")

# fit's native objective runs up to this batch*sum(in*out) and layer width (outputs); beyond,
# autograd, whose matrix products win. Measured per evaluation with the regularizer on 2 cores
# (native / autograd): [2,5,1] x 1000 rows 0.29 / 3.2 ms, [8,16,16,1] x 2000 5.2 / 10.5 ms,
# [16,32,32,1] x 4000 20 / 36 ms, but [64,64] x 1024 12 / 4.9 ms.
NATIVE_OBJECTIVE_MAX_WORK = 1 << 23
NATIVE_OBJECTIVE_MAX_WIDTH = 32


def make_optimizer(model, params, opt, lr, lbfgs_bias_scale):
    if opt == "Adam":
        return torch.optim.Adam(params, lr=lr)
    if not (isinstance(lbfgs_bias_scale, numbers.Real) and not isinstance(lbfgs_bias_scale, bool)
            and math.isfinite(lbfgs_bias_scale) and lbfgs_bias_scale > 0):
        raise ValueError(f"lbfgs_bias_scale must be a finite number > 0 (1 turns the "
                         f"preconditioning off), got {lbfgs_bias_scale!r}")
    biases = [l.bias for l in getattr(model, "act_fun", ()) if getattr(l, "bias", None) is not None]
    # pykan's settings: history 10, strong Wolfe, tolerances that never stop early
    return LBFGS(params, lr=lr, history_size=10, line_search_fn="strong_wolfe",
                 tolerance_grad=1e-32, tolerance_change=1e-32, tolerance_ys=1e-32,
                 scales={b: lbfgs_bias_scale for b in biases})


def native_objective(model, wanted, dctx, full, mse, data, lambs):
    """Small numeric KANs, full batch, mean squared error: the whole objective and its gradient
    in one native call (:class:`kanlab.native.KANObjective`) instead of an autograd graph;
    None where it does not apply (a ValueError where ``wanted`` is True)."""
    x_train, y_train = data[0], data[1]
    acts = getattr(model, "act_fun", None)
    if (wanted is not False and dctx is None and full and mse and acts
            and x_train.shape[0] * sum(l.in_dim * l.out_dim for l in acts)
            <= NATIVE_OBJECTIVE_MAX_WORK
            and max(l.out_dim for l in acts) <= NATIVE_OBJECTIVE_MAX_WIDTH):
        from . import native

        why = native.objective_unsupported(model, x_train)
        if why is None:
            lamb = lambs[0]
            return native.KANObjective(model, x_train, y_train, lamb if lamb > 0 else 0.0,
                                       *lambs[1:])
        if wanted:
            raise ValueError(f"use_native_objective=True, but the native objective cannot run: {why}")
    elif wanted:
        raise ValueError("use_native_objective=True needs a single-process, full-batch fit with the "
                         "default loss of a KAN whose batch*sum(in*out) is at most "
                         f"{NATIVE_OBJECTIVE_MAX_WORK} and whose layers have at most "
                         f"{NATIVE_OBJECTIVE_MAX_WIDTH} outputs")
    return None


class FitRun:
    """The state of one fit between steps: data, optimizer, objective, the snapshot a
    non-finite step rolls back to, and each rank's weight in the global losses."""

    def __init__(self, model, data, dctx, params, opt, optimizer, fast, loss_fn, lambs, full,
                 bsz, bsz_test, gen):
        self.model, self.dctx, self.params, self.optimizer = model, dctx, params, optimizer
        self.x_train, self.y_train, self.x_test, self.y_test = data
        self.loss_fn, self.lambs, self.bsz, self.bsz_test, self.gen = \
            loss_fn, lambs, bsz, bsz_test, gen
        self.opt, self.fast, self.full = opt, fast, full
        # with the native objective, L-BFGS steps themselves run natively (CPU flat buffers)
        self.native_steps = fast is not None and opt == "LBFGS" and optimizer.device.type == "cpu"
        self.state: dict = {}
        self.layers = list(getattr(model, "act_fun", ()))  # KAN layers (an MLP has none)
        # what a non-finite step rolls back: parameters and the grids (a grid update may
        # precede it)
        self.kept = params + [layer.grid for layer in self.layers]
        self.snapshot = [p.detach().clone() for p in self.kept]
        # each rank's share of the rows: weighs its loss so the all-reduced sum is the global mean
        self.w_train = self.w_test = 1.0
        self.n_rows_total = bsz
        if dctx is not None:
            self.n_rows_total = dctx.total(bsz, self.x_train.device)
            self.w_train = bsz / self.n_rows_total
            self.w_test = bsz_test / dctx.total(bsz_test, self.x_test.device)

    def batches(self):
        if self.full:
            return self.x_train, self.y_train, self.x_test, self.y_test
        n_train, n_test = self.x_train.shape[0], self.x_test.shape[0]
        idx = torch.randperm(n_train, generator=self.gen)[:self.bsz].to(self.x_train.device)
        tid = torch.randperm(n_test, generator=self.gen)[:self.bsz_test].to(self.x_test.device)
        return self.x_train[idx], self.y_train[idx], self.x_test[tid], self.y_test[tid]

    def update_grid(self, xb):
        if self.dctx is None:
            self.model.update_grid_from_samples(xb)
        else:  # every rank: the same knots and coefficients from the union of rows
            self.model.update_grid_from_samples(self.dctx.gather_rows(xb))
            self.dctx.check_same([t for layer in self.layers for t in (layer.grid, layer.coef)],
                                 "grids or spline coefficients")

    def objective(self, xb, yb):
        model, dctx = self.model, self.dctx
        lamb, lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff, reg_metric = self.lambs
        if lamb > 0:
            pred, acts, variances = model.forward_with_stats(xb)
            stds = None
            if dctx is not None:  # the statistics of all ranks' rows, not this shard's
                variances, stds = dctx.global_stats(model, acts, self.n_rows_total)
            reg = regularization(model, acts, variances, lamb_l1, lamb_entropy, lamb_coef,
                                 lamb_coefdiff, reg_metric, input_stds=stds)
        else:
            pred = _plain_forward(model, xb)
            reg = None
        train_loss = self.loss_fn(pred, yb)
        if not isinstance(train_loss, torch.Tensor) or train_loss.numel() != 1:
            raise ValueError(
                "loss_fn(pred, target) must return a scalar tensor, got "
                + (f"shape {tuple(train_loss.shape)}" if isinstance(train_loss, torch.Tensor)
                   else type(train_loss).__name__)
            )
        obj = train_loss + lamb * reg if reg is not None else train_loss
        self.state["train_loss"], self.state["reg"] = train_loss, reg
        if dctx is not None:  # local rows' share of the data term, ranks' mean of the penalty
            obj = train_loss * self.w_train + (lamb * reg / dctx.world if reg is not None else 0.0)
        return obj

    def reduced(self, obj):
        """After backward: gradients and objective of all ranks summed (identical on each)."""
        if self.dctx is None:
            return obj
        self.dctx.allreduce_grads(self.params)
        return self.dctx.sum_(obj.detach().clone())

    def step(self, xb, yb) -> int:
        """One optimizer step; returns the loss evaluations it made."""
        opt, optimizer, fast = self.opt, self.optimizer, self.fast
        before = getattr(optimizer, "func_evals", 0)
        if self.native_steps:
            fast.lbfgs_step(optimizer)  # the whole step in the native library
        elif opt == "LBFGS" and fast is not None:
            optimizer.step(fast.objective)
        elif opt == "LBFGS":
            def closure():
                obj = self.objective(xb, yb)
                obj.backward()
                return self.reduced(obj)

            optimizer.step(closure)
        else:
            optimizer.zero_grad(set_to_none=False)
            if fast is not None:
                fast.objective()
            else:
                obj = self.objective(xb, yb)
                obj.backward()
                self.reduced(obj)
            optimizer.step()
        if fast is not None:  # the losses of the step's last evaluation, as the closure keeps
            self.state["train_loss"] = fast.mse
            self.state["reg"] = fast.reg if self.lambs[0] > 0 else None
        return optimizer.func_evals - before if opt == "LBFGS" else 1

    def losses(self, xt, yt):
        """(train loss, test loss, penalty) of the step, over all ranks."""
        fast, state, dctx = self.fast, self.state, self.dctx
        with torch.no_grad():
            pred = fast.predict(xt) if fast is not None else _plain_forward(self.model, xt)
            test_loss = self.loss_fn(pred, yt)
        if dctx is None:
            reg = _scalar(state["reg"]) if state.get("reg") is not None else 0.0
            return _scalar(state["train_loss"]), float(test_loss), reg
        reg_t = state["reg"].detach() if state.get("reg") is not None else test_loss.new_zeros(())
        both = dctx.sum_(torch.stack([state["train_loss"].detach() * self.w_train,
                                      test_loss * self.w_test, reg_t / dctx.world]).double())
        return tuple(float(v) for v in both)

    @torch.no_grad()
    def restore(self):
        for p, s in zip(self.kept, self.snapshot):
            p.copy_(s)

    @torch.no_grad()
    def keep(self):
        for p, s in zip(self.kept, self.snapshot):
            s.copy_(p)


class ShareWatch:
    """Every layer's spline share after each step (on up to 1024 training rows), with a warning
    the first time a layer's falls below ``threshold``."""

    def __init__(self, x_train, threshold, main_rank):
        self.x, self.threshold, self.main_rank = x_train[:1024], threshold, main_rank
        self.warned: set = set()

    def check(self, model, step):
        from .inspect import layer_spline_shares

        shares = layer_spline_shares(model, self.x)
        for l, sh in enumerate(shares):
            if sh < self.threshold and l not in self.warned:
                self.warned.add(l)
                (logger.warning if self.main_rank else logger.debug)(
                    "fit step %d: layer %d spline share %.3f < %.3f: the base function "
                    "carries the edges (the layer acts like an MLP); try base_fun='zero' "
                    "or a larger scale_sp", step, l, sh, self.threshold)
        return shares


def _scalar(v) -> float:
    """A Python float from a loss (a tensor on the autograd path, a float on the native one)."""
    return float(v.detach()) if isinstance(v, torch.Tensor) else float(v)


def _plain_forward(model, x):
    return model._forward_unchecked(x)
