"""Training: fit() with LBFGS or Adam, pykan's sparsity regularizer, grid updates, history."""
from __future__ import annotations

import logging
import math
import sys
import time
from typing import Callable

import torch

from .checks import check_finite, prepare_dataset  # noqa: F401  (re-exported)
from .fit_run import (NATIVE_OBJECTIVE_MAX_WIDTH, NATIVE_OBJECTIVE_MAX_WORK,  # noqa: F401
                      FitRun, ShareWatch, make_optimizer, native_objective)
from .regularize import _REG_METRICS, edge_scores, regularization  # noqa: F401  (re-exported)

__all__ = ["fit", "regularization", "edge_scores", "prepare_dataset", "check_finite"]

logger = logging.getLogger("kanlab")

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
    _check_arguments(opt, steps, reg_metric, save_fig, pykan_only,
                     dict(lamb=lamb, lamb_l1=lamb_l1, lamb_entropy=lamb_entropy,
                          lamb_coef=lamb_coef, lamb_coefdiff=lamb_coefdiff, lr=lr))
    dctx, data = _data(model, dataset, loss_fn is None, shard_data)
    main_rank = dctx is None or dctx.rank == 0
    x_train = data[0]
    n_train, n_test = x_train.shape[0], data[2].shape[0]
    full = batch == -1 or batch >= n_train
    if not full and (not isinstance(batch, int) or batch < 1):
        raise ValueError(f"batch must be -1 (full batch) or a positive integer, got {batch!r}")
    bsz = n_train if full else batch
    mse = loss_fn is None
    if loss_fn is None:
        def loss_fn(pred, y):
            return torch.mean((pred - y) ** 2)

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    optimizer = make_optimizer(model, params, opt, lr, lbfgs_bias_scale)
    lambs = (lamb, lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff, reg_metric)
    fast = native_objective(model, use_native_objective, dctx, full, mse, data, lambs)
    run = FitRun(model, data, dctx, params, opt, optimizer, fast, loss_fn, lambs, full, bsz,
                 n_test if full else min(batch, n_test),
                 torch.Generator().manual_seed(model.seed if seed is None else int(seed)))
    grid_update_freq = max(int(stop_grid_update_step / max(grid_update_num, 1)), 1)

    history: dict = {"train_loss": [], "test_loss": [], "reg": [], "time": [], "evals": []}
    shares = ShareWatch(x_train, spline_share_warning, main_rank) if track_shares else None
    if shares is not None:
        history["spline_share"] = []
    for m in metrics or []:
        history[m.__name__] = []
    bar = None
    if _want_progress(progress) and steps > 0 and main_rank:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, ncols=100)

    t0 = time.perf_counter()
    model._cache_x = x_train
    try:
        for step in range(steps):
            xb, yb, xt, yt = run.batches()
            if (update_grid and run.layers and step % grid_update_freq == 0
                    and start_grid_update_step <= step < stop_grid_update_step):
                run.update_grid(xb)
            evals = run.step(xb, yb)
            train_loss, test_loss, reg_val = run.losses(xt, yt)
            if not (math.isfinite(train_loss) and math.isfinite(test_loss)):
                run.restore()
                history["stopped"] = (
                    f"loss became non-finite at step {step}; parameters restored to step {step - 1}. "
                    "Lower lr, add regularization or normalize the data."
                )
                if main_rank:
                    logger.warning(history["stopped"])
                break
            run.keep()
            history["train_loss"].append(_rmse(train_loss, mse))
            history["test_loss"].append(_rmse(test_loss, mse))
            history["reg"].append(reg_val)
            history["time"].append(time.perf_counter() - t0)
            history["evals"].append(evals)
            if shares is not None:
                history["spline_share"].append(shares.check(model, step))
            for m in metrics or []:
                v = m()
                history[m.__name__].append(float(v.item()) if hasattr(v, "item") else float(v))
            if bar is not None:
                _show(bar, step, log, display_metrics, history, reg_val)
            stop = callback is not None and bool(callback(step, model, history))
            if dctx is not None:  # one rank's stop stops all (else the others would hang)
                stop = dctx.total(int(stop), x_train.device) > 0
            if stop:
                break
    except ValueError:
        # a refused loss_fn or grid update: leave the model as it was after the last full step
        run.restore()
        raise
    finally:
        if opt == "LBFGS":
            optimizer.release()
        for layer in run.layers:
            layer.clear_cache()
    if bar is not None:
        bar.close()
    if history["test_loss"] and main_rank:
        logger.info("fit: %d steps in %.2fs, train %.3e, test %.3e", len(history["test_loss"]),
                    time.perf_counter() - t0, history["train_loss"][-1], history["test_loss"][-1])
    return history


def _check_arguments(opt, steps, reg_metric, save_fig, pykan_only, rates):
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
    for name, v in rates.items():
        if not math.isfinite(float(v)) or float(v) < 0:
            raise ValueError(f"{name} must be a finite non-negative number, got {v!r}")


def _data(model, dataset, labels_match, shard_data):
    """(distributed context or None, (x_train, y_train, x_test, y_test)): the checked dataset,
    under torch.distributed each rank's block of rows."""
    from .distributed import context as _dist_context

    dctx = _dist_context(model)
    try:
        ds = prepare_dataset(model, dataset, need_labels_match=labels_match)
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
    data = (ds["train_input"], ds["train_label"], ds["test_input"], ds["test_label"])
    if dctx is not None:
        dctx.broadcast_model(model)  # replicas start from rank 0's parameters and grids
        if shard_data:
            data = tuple(dctx.shard(t) for t in data)
        if dctx.total(int(data[0].shape[0] == 0 or data[2].shape[0] == 0), data[0].device):
            raise ValueError(f"distributed fit: a rank has no training or test rows "
                             f"({dctx.world} processes): use more data or fewer processes")
    return dctx, data


def _rmse(loss, mse) -> float:
    return math.sqrt(max(loss, 0.0)) if mse else math.sqrt(abs(loss))


def _show(bar, step, log, display_metrics, history, reg_val):
    bar.update(1)
    if step % max(log, 1) == 0:
        if display_metrics:
            desc = " |".join(f" {k}: {history[k][-1]:.2e}" for k in display_metrics)
        else:
            desc = (f"| train_loss: {history['train_loss'][-1]:.2e} | test_loss: "
                    f"{history['test_loss'][-1]:.2e} | reg: {reg_val:.2e} |")
        bar.set_description(desc)
