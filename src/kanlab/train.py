"""Training: fit() with LBFGS or Adam, pykan's sparsity regularizer, grid updates, history."""
from __future__ import annotations

import logging
import math
import numbers
import sys
import time
from typing import Callable

import torch

from .checks import check_finite, prepare_dataset  # noqa: F401  (re-exported)
from .optim import LBFGS
from .regularize import coefficient_penalty, edge_scores, sparsity

__all__ = ["fit", "regularization", "edge_scores", "prepare_dataset", "check_finite"]

logger = logging.getLogger("kanlab")

_REG_METRICS = ("edge_forward_spline_n", "edge_forward_sum", "edge_forward_spline_u")
# fit's native objective runs up to this batch*sum(in*out) and layer width (outputs); beyond,
# autograd, whose matrix products win. Measured per evaluation with the regularizer on 2 cores
# (native / autograd): [2,5,1] x 1000 rows 0.29 / 3.2 ms, [8,16,16,1] x 2000 5.2 / 10.5 ms,
# [16,32,32,1] x 4000 20 / 36 ms, but [64,64] x 1024 12 / 4.9 ms.
NATIVE_OBJECTIVE_MAX_WORK = 1 << 23
NATIVE_OBJECTIVE_MAX_WIDTH = 32


def regularization(model, inputs, variances, lamb_l1=1.0, lamb_entropy=2.0, lamb_coef=0.0,
                   lamb_coefdiff=0.0, reg_metric="edge_forward_spline_n",
                   input_stds=None) -> torch.Tensor:
    """pykan's regularizer (without the overall ``lamb``).

    Args:
        inputs, variances: per layer, its input (batch, in) and its edges' batch variance
            (in, out), as returned by ``model.forward_with_stats``.

    Per layer: ``lamb_l1 * sum(A) + lamb_entropy * (row entropy + column entropy)`` with
    ``A_ij = std(phi_ij) / (std(x_i) + 0.1)``, plus ``lamb_coef * |coef|`` and
    ``lamb_coefdiff * |diff coef|`` penalties (means over outputs, sums elsewhere).
    """
    if reg_metric not in _REG_METRICS:
        raise ValueError(f"reg_metric {reg_metric!r} is not supported; use one of {_REG_METRICS}")
    total = inputs[0].new_zeros(())
    if lamb_l1 != 0 or lamb_entropy != 0:
        total = sparsity(inputs, variances, lamb_l1, lamb_entropy,
                         normalized=reg_metric != "edge_forward_spline_u", input_stds=input_stds)
    if lamb_coef != 0 or lamb_coefdiff != 0:
        total = total + coefficient_penalty(model, lamb_coef, lamb_coefdiff)
    return total


def _want_progress(progress) -> bool:
    if progress is not None:
        return bool(progress)
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def fit(
    model,
    dataset: dict,
    opt: str = "LBFGS",
    steps: int = 100,
    log: int = 1,
    lamb: float = 0.0,
    lamb_l1: float = 1.0,
    lamb_entropy: float = 2.0,
    lamb_coef: float = 0.0,
    lamb_coefdiff: float = 0.0,
    update_grid: bool = True,
    grid_update_num: int = 10,
    loss_fn: Callable | None = None,
    lr: float = 1.0,
    start_grid_update_step: int = -1,
    stop_grid_update_step: int = 50,
    batch: int = -1,
    metrics: list[Callable] | None = None,
    display_metrics: list[str] | None = None,
    reg_metric: str = "edge_forward_spline_n",
    progress: bool | None = None,
    callback: Callable | None = None,
    seed: int | None = None,
    track_shares: bool = False,
    spline_share_warning: float = 0.1,
    save_fig: bool = False,
    shard_data: bool = True,
    use_native_objective: bool | None = None,
    lbfgs_bias_scale: float = 0.1,
    **pykan_only,
) -> dict:
    """Train ``model`` on a pykan-style dataset dict; pykan's arguments and meaning.

    Args:
        dataset: dict with ``train_input``, ``train_label``, ``test_input``, ``test_label``.
        opt: ``"LBFGS"`` (strong Wolfe line search, history 10) or ``"Adam"``.
        steps: optimizer steps (an LBFGS step runs up to 20 inner iterations, as in pykan).
        log: refresh the progress bar every ``log`` steps.
        lamb, lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff: regularization strengths.
        update_grid, grid_update_num, start_grid_update_step, stop_grid_update_step: grid
            updates from the training inputs, ``grid_update_num`` times before
            ``stop_grid_update_step``.
        loss_fn: ``loss_fn(pred, target)``; mean squared error by default.
        lr: learning rate.
        batch: minibatch size, -1 for full batch.
        metrics: zero-argument callables recorded every step under their ``__name__``.
        display_metrics: names of history entries shown in the progress bar.
        reg_metric: ``"edge_forward_spline_n"`` (pykan's default), ``"edge_forward_sum"`` or
            ``"edge_forward_spline_u"`` (not divided by the input spread).
        progress: show a tqdm bar; default only when stderr is a terminal.
        callback: ``callback(step, model, history)`` after every step; returning True stops.
        seed: seed of the private generator for minibatches (default: the model's seed).
        track_shares: record every layer's spline share (see :mod:`kanlab.inspect`) after each
            step in ``history['spline_share']`` (one list per step), measured on up to 1024
            training samples, and log a warning the first time a layer's share falls below
            ``spline_share_warning`` (the base path dominating: the layer acts like an MLP).
        use_native_objective: None (default) evaluates the objective and its gradient in one
            native call (:class:`kanlab.native.KANObjective`) when it applies: the native
            library is built, a single process trains a CPU float32/float64 KAN of numeric
            layers (no symbolic edges on, no multiplication nodes, base silu/identity/zero)
            on the full batch with the default loss, batch*sum(in*out) is at most
            ``NATIVE_OBJECTIVE_MAX_WORK`` and no layer has more than
            ``NATIVE_OBJECTIVE_MAX_WIDTH`` outputs; otherwise autograd. False: always autograd.
            True: the native call, or a ValueError saying why it cannot run.
        lbfgs_bias_scale: L-BFGS preconditioner of the node biases: the optimizer runs on
            ``bias / lbfgs_bias_scale`` (1 turns it off; Adam is unaffected). A bias moves
            every sample's output, a spline coefficient only the few samples in its span, so
            the loss is far more curved along the biases; unscaled, L-BFGS's single step-size
            estimate suits neither and ends worse than with no bias at all. 0.1 sits in the
            middle of the range (0.01 to 0.1) where the README toy ends best, see
            ``benchmarks/bench_bias_scale.py``.
        shard_data: under torch.distributed (torchrun) with several processes, every rank gets
            the whole dataset and trains on its contiguous block of rows (default); False when
            each rank already passes its own shard. See :mod:`kanlab.distributed`.

    Returns:
        History dict of per-step lists: ``train_loss`` and ``test_loss`` (RMSE with the default
        loss, else sqrt of ``loss_fn``), ``reg``, ``time`` (seconds since start), ``evals``
        (loss and gradient evaluations of the step: an L-BFGS step runs up to 25) and metrics.
        If the loss turns NaN/Inf the parameters of the last finite step are restored, training
        stops and ``history['stopped']`` says why.
    """
    if save_fig:
        raise ValueError("save_fig is not supported: kanlab writes no files during fit")
    ignored = {k for k in pykan_only if k not in {"in_vars", "out_vars", "beta", "save_fig_freq",
                                                   "img_folder", "singularity_avoiding", "y_th"}}
    if ignored:
        raise TypeError(f"fit() got unexpected keyword arguments {sorted(ignored)}")
    if opt not in ("LBFGS", "Adam"):
        raise ValueError(f"opt must be 'LBFGS' or 'Adam', got {opt!r}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if reg_metric not in _REG_METRICS:
        raise ValueError(f"reg_metric {reg_metric!r} is not supported; use one of {_REG_METRICS}")
    for name, v in (("lamb", lamb), ("lamb_l1", lamb_l1), ("lamb_entropy", lamb_entropy),
                    ("lamb_coef", lamb_coef), ("lamb_coefdiff", lamb_coefdiff), ("lr", lr)):
        if not math.isfinite(float(v)) or float(v) < 0:
            raise ValueError(f"{name} must be a finite non-negative number, got {v!r}")
    from .distributed import context as _dist_context

    dctx = _dist_context(model)
    main_rank = dctx is None or dctx.rank == 0
    try:
        ds = prepare_dataset(model, dataset, need_labels_match=loss_fn is None)
        bad_data = None
    except ValueError as err:
        bad_data = err
    if dctx is not None:  # every rank raises together (one alone would leave the others hanging)
        n_bad = dctx.total(int(bad_data is not None), next(model.parameters()).device)
        if n_bad and bad_data is None:
            raise ValueError(f"distributed fit: the dataset of {n_bad} other rank(s) is invalid "
                             "(see their error)")
    if bad_data is not None:
        raise bad_data
    x_train, y_train = ds["train_input"], ds["train_label"]
    x_test, y_test = ds["test_input"], ds["test_label"]
    if dctx is not None:
        dctx.broadcast_model(model)  # replicas start from rank 0's parameters and grids
        if shard_data:
            x_train, y_train = dctx.shard(x_train), dctx.shard(y_train)
            x_test, y_test = dctx.shard(x_test), dctx.shard(y_test)
        if dctx.total(int(x_train.shape[0] == 0 or x_test.shape[0] == 0), x_train.device):
            raise ValueError(f"distributed fit: a rank has no training or test rows "
                             f"({dctx.world} processes): use more data or fewer processes")
    n_train, n_test = x_train.shape[0], x_test.shape[0]
    full = batch == -1 or batch >= n_train
    if not full and (not isinstance(batch, int) or batch < 1):
        raise ValueError(f"batch must be -1 (full batch) or a positive integer, got {batch!r}")
    bsz = n_train if full else batch
    bsz_test = n_test if full else min(batch, n_test)

    gen = torch.Generator().manual_seed(model.seed if seed is None else int(seed))
    mse = loss_fn is None
    if loss_fn is None:
        def loss_fn(pred, y):
            return torch.mean((pred - y) ** 2)

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    if opt == "Adam":
        optimizer = torch.optim.Adam(params, lr=lr)
    else:
        if not (isinstance(lbfgs_bias_scale, numbers.Real) and not isinstance(lbfgs_bias_scale, bool)
                and math.isfinite(lbfgs_bias_scale)
                and lbfgs_bias_scale > 0):
            raise ValueError(f"lbfgs_bias_scale must be a finite number > 0 (1 turns the "
                             f"preconditioning off), got {lbfgs_bias_scale!r}")
        biases = [l.bias for l in getattr(model, "act_fun", ()) if getattr(l, "bias", None) is not None]
        # pykan's settings: history 10, strong Wolfe, tolerances that never stop early
        optimizer = LBFGS(params, lr=lr, history_size=10, line_search_fn="strong_wolfe",
                          tolerance_grad=1e-32, tolerance_change=1e-32, tolerance_ys=1e-32,
                          scales={b: lbfgs_bias_scale for b in biases})
    use_reg = lamb > 0
    grid_update_freq = max(int(stop_grid_update_step / max(grid_update_num, 1)), 1)

    history: dict = {"train_loss": [], "test_loss": [], "reg": [], "time": [], "evals": []}
    if track_shares:
        from .inspect import layer_spline_shares

        history["spline_share"] = []
        share_x = x_train[:1024]
        warned: set = set()
    for m in metrics or []:
        history[m.__name__] = []

    # each rank's share of the rows: weighs its loss so the all-reduced sum is the global mean
    w_train = w_test = 1.0
    n_rows_total = bsz
    if dctx is not None:
        n_rows_total = dctx.total(bsz, x_train.device)
        w_train = bsz / n_rows_total
        w_test = bsz_test / dctx.total(bsz_test, x_test.device)

    bar = None
    if _want_progress(progress) and steps > 0 and main_rank:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, ncols=100)

    state = {}
    # small numeric KANs, full batch, mean squared error: the whole objective and its gradient
    # in one native call (kanlab.native.KANObjective) instead of an autograd graph
    fast = None
    if (use_native_objective is not False and dctx is None and full and mse
            and getattr(model, "act_fun", None)
            and x_train.shape[0] * sum(l.in_dim * l.out_dim for l in getattr(model, "act_fun", ()))
            <= NATIVE_OBJECTIVE_MAX_WORK
            and max(l.out_dim for l in model.act_fun) <= NATIVE_OBJECTIVE_MAX_WIDTH):
        from . import native

        why = native.objective_unsupported(model, x_train)
        if why is None:
            fast = native.KANObjective(model, x_train, y_train, lamb if use_reg else 0.0, lamb_l1,
                                       lamb_entropy, lamb_coef, lamb_coefdiff, reg_metric)
        elif use_native_objective:
            raise ValueError(f"use_native_objective=True, but the native objective cannot run: {why}")
    elif use_native_objective:
        raise ValueError("use_native_objective=True needs a single-process, full-batch fit with the "
                         "default loss of a KAN whose batch*sum(in*out) is at most "
                         f"{NATIVE_OBJECTIVE_MAX_WORK} and whose layers have at most "
                         f"{NATIVE_OBJECTIVE_MAX_WIDTH} outputs")

    # L-BFGS steps themselves run natively with the native objective (CPU flat buffers)
    native_steps = fast is not None and opt == "LBFGS" and optimizer.device.type == "cpu"

    def objective(xb, yb):
        if use_reg:
            pred, acts, variances = model.forward_with_stats(xb)
            stds = None
            if dctx is not None:  # the statistics of all ranks' rows, not this shard's
                variances, stds = dctx.global_stats(model, acts, n_rows_total)
            reg = regularization(model, acts, variances, lamb_l1, lamb_entropy, lamb_coef,
                                 lamb_coefdiff, reg_metric, input_stds=stds)
        else:
            pred = _plain_forward(model, xb)
            reg = None
        train_loss = loss_fn(pred, yb)
        if not isinstance(train_loss, torch.Tensor) or train_loss.numel() != 1:
            raise ValueError(
                "loss_fn(pred, target) must return a scalar tensor, got "
                + (f"shape {tuple(train_loss.shape)}" if isinstance(train_loss, torch.Tensor)
                   else type(train_loss).__name__)
            )
        obj = train_loss + lamb * reg if use_reg else train_loss
        state["train_loss"], state["reg"] = train_loss, reg
        if dctx is not None:  # local rows' share of the data term, ranks' mean of the penalty
            obj = train_loss * w_train + (lamb * reg / dctx.world if use_reg else 0.0)
        return obj

    def reduced(obj):
        """After backward: gradients and objective of all ranks summed (identical on each)."""
        if dctx is None:
            return obj
        dctx.allreduce_grads(params)
        return dctx.sum_(obj.detach().clone())

    t0 = time.perf_counter()
    model._cache_x = x_train
    # what a non-finite step rolls back: parameters and the grids (a grid update may precede it)
    layers = list(getattr(model, "act_fun", ()))  # KAN layers (an MLP has none)
    params_and_grids = params + [layer.grid for layer in layers]
    snapshot = [p.detach().clone() for p in params_and_grids]
    try:
        for step in range(steps):
            if full:
                xb, yb = x_train, y_train
                xt, yt = x_test, y_test
            else:
                idx = torch.randperm(n_train, generator=gen)[:bsz].to(x_train.device)
                xb, yb = x_train[idx], y_train[idx]
                tid = torch.randperm(n_test, generator=gen)[:bsz_test].to(x_test.device)
                xt, yt = x_test[tid], y_test[tid]

            if (update_grid and layers and step % grid_update_freq == 0
                    and step < stop_grid_update_step and step >= start_grid_update_step):
                if dctx is None:
                    model.update_grid_from_samples(xb)
                else:  # every rank: the same knots and coefficients from the union of rows
                    model.update_grid_from_samples(dctx.gather_rows(xb))
                    dctx.check_same([t for layer in layers for t in (layer.grid, layer.coef)],
                                    "grids or spline coefficients")

            evals_before = getattr(optimizer, "func_evals", 0)
            if opt == "LBFGS" and fast is not None and native_steps:
                fast.lbfgs_step(optimizer)  # the whole step in the native library
            elif opt == "LBFGS" and fast is not None:
                optimizer.step(fast.objective)
            elif opt == "LBFGS":
                def closure():
                    obj = objective(xb, yb)
                    obj.backward()
                    return reduced(obj)

                optimizer.step(closure)
            else:
                optimizer.zero_grad(set_to_none=False)
                if fast is not None:
                    fast.objective()
                else:
                    obj = objective(xb, yb)
                    obj.backward()
                    reduced(obj)
                optimizer.step()
            if fast is not None:  # the losses of the step's last evaluation, as the closure keeps
                state["train_loss"], state["reg"] = fast.mse, (fast.reg if use_reg else None)

            with torch.no_grad():
                test_loss = loss_fn(fast.predict(xt) if fast is not None else _plain_forward(model, xt), yt)
            if dctx is None:
                train_loss = _scalar(state["train_loss"])
                test_loss = float(test_loss)
                reg_val = _scalar(state["reg"]) if state.get("reg") is not None else 0.0
            else:
                reg_t = state["reg"].detach() if state.get("reg") is not None else \
                    test_loss.new_zeros(())
                both = dctx.sum_(torch.stack([state["train_loss"].detach() * w_train,
                                              test_loss * w_test, reg_t / dctx.world]).double())
                train_loss, test_loss, reg_val = (float(v) for v in both)
            if not (math.isfinite(train_loss) and math.isfinite(test_loss)):
                with torch.no_grad():
                    for p, s in zip(params_and_grids, snapshot):
                        p.copy_(s)
                history["stopped"] = (
                    f"loss became non-finite at step {step}; parameters restored to step {step - 1}. "
                    "Lower lr, add regularization or normalize the data."
                )
                if main_rank:
                    logger.warning(history["stopped"])
                break
            with torch.no_grad():
                for p, s in zip(params_and_grids, snapshot):
                    s.copy_(p)
            history["train_loss"].append(math.sqrt(max(train_loss, 0.0)) if mse else math.sqrt(abs(train_loss)))
            history["test_loss"].append(math.sqrt(max(test_loss, 0.0)) if mse else math.sqrt(abs(test_loss)))
            history["reg"].append(reg_val)
            history["time"].append(time.perf_counter() - t0)
            history["evals"].append(optimizer.func_evals - evals_before if opt == "LBFGS" else 1)
            if track_shares:
                shares = layer_spline_shares(model, share_x)
                history["spline_share"].append(shares)
                for l, sh in enumerate(shares):
                    if sh < spline_share_warning and l not in warned:
                        warned.add(l)
                        (logger.warning if main_rank else logger.debug)(
                            "fit step %d: layer %d spline share %.3f < %.3f: the base function "
                            "carries the edges (the layer acts like an MLP); try base_fun='zero' "
                            "or a larger scale_sp", step, l, sh, spline_share_warning)
            for m in metrics or []:
                v = m()
                history[m.__name__].append(float(v.item()) if hasattr(v, "item") else float(v))
            if bar is not None:
                bar.update(1)
                if step % max(log, 1) == 0:
                    if display_metrics:
                        desc = " |".join(f" {k}: {history[k][-1]:.2e}" for k in display_metrics)
                    else:
                        desc = (f"| train_loss: {history['train_loss'][-1]:.2e} | test_loss: "
                                f"{history['test_loss'][-1]:.2e} | reg: {reg_val:.2e} |")
                    bar.set_description(desc)
            stop = callback is not None and bool(callback(step, model, history))
            if dctx is not None:  # one rank's stop stops all (else the others would hang)
                stop = dctx.total(int(stop), x_train.device) > 0
            if stop:
                break
    except ValueError:
        # a refused loss_fn or grid update: leave the model as it was after the last full step
        with torch.no_grad():
            for p, s in zip(params_and_grids, snapshot):
                p.copy_(s)
        raise
    finally:
        if opt == "LBFGS":
            optimizer.release()
        for layer in layers:
            layer.clear_cache()
    if bar is not None:
        bar.close()
    if history["test_loss"] and main_rank:
        logger.info("fit: %d steps in %.2fs, train %.3e, test %.3e", len(history["test_loss"]),
                    time.perf_counter() - t0, history["train_loss"][-1], history["test_loss"][-1])
    return history


def _scalar(v) -> float:
    """A Python float from a loss (a tensor on the autograd path, a float on the native one)."""
    return float(v.detach()) if isinstance(v, torch.Tensor) else float(v)


def _plain_forward(model, x):
    return model._forward_unchecked(x)
