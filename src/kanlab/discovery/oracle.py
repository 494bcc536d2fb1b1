"""A sharper oracle for the structure tests where the surrogate KAN follows the data poorly.

The structure tests (product and sum splits, symmetries, dimensionless groups) read the target
off a small KAN trained for a second (:func:`.structure._surrogate`). On laws that oscillate in a
product of inputs (``cos(omega*t)``) or a difference (``sin((omega - omega_0)*t/2)``), that
network stalls at 10-25% of y's spread whatever its training length, and the tests, whose
thresholds are relative to its error, see no structure at all. A two-layer tanh perceptron
follows such laws 3-5x closer in about as long. When the surrogate is rough
(held-out RMSE above ``ROUGH``), one is trained, and where it predicts the held-out rows
clearly better it stands in as the oracle (:class:`Oracle`). The KAN stays the network a
result shows (``Oracle.kan``): plots, reports and model files take KANs.
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch

__all__ = ["Oracle", "sharpen", "shown", "ROUGH"]

log = logging.getLogger("kanlab")

ROUGH = 0.06  # surrogate held-out RMSE (of y's spread) above which a perceptron is tried
_GAIN = 0.5  # the perceptron replaces the surrogate when its held-out RMSE is below this share
_WIDTH = 64
_ITERS = 500  # L-BFGS iterations at most (about 2 s for 800 rows on 2 cores)
_CHUNK = 25  # iterations between deadline checks


class Oracle(torch.nn.Module):
    """A perceptron on the standardized inputs (float64 inside; the caller's dtype outside),
    standing in for the surrogate KAN ``kan`` in the structure tests; ``width``: the KAN's."""

    def __init__(self, net: torch.nn.Module, kan):
        super().__init__()
        self.net = net
        self.kan = kan

    @property
    def width(self):
        return self.kan.width

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.to(torch.float64)).to(z.dtype)


def shown(model):
    """The network a result shows for the oracle ``model`` (an :class:`Oracle`'s KAN)."""
    return model.kan if isinstance(model, Oracle) else model


def _perceptron(d: int, seed: int) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):  # the layers' default init draws from the global RNG
        net = torch.nn.Sequential(torch.nn.Linear(d, _WIDTH), torch.nn.Tanh(),
                                  torch.nn.Linear(_WIDTH, _WIDTH), torch.nn.Tanh(),
                                  torch.nn.Linear(_WIDTH, 1)).to(torch.float64)
    with torch.no_grad():  # drawn again from a seeded generator of its own
        for p in net.parameters():
            bound = 1.0 / math.sqrt(p.shape[-1])
            p.uniform_(-bound, bound, generator=gen)
    return net


def fit_lbfgs(net, loss_fn, deadline: float, iters: int = _ITERS, chunk: int = _CHUNK):
    """L-BFGS on ``net``'s parameters, minimizing ``loss_fn()``, for ``iters`` iterations or
    until ``deadline`` (checked every ``chunk``)."""
    opt = torch.optim.LBFGS(net.parameters(), lr=1.0, max_iter=chunk, history_size=50,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-12,
                            tolerance_change=1e-15)

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    for _ in range(iters // chunk):
        if time.perf_counter() > deadline:
            break
        opt.step(closure)


def _train(dataset, seed: int, deadline: float):
    """A perceptron fitted by L-BFGS until ``_ITERS`` iterations or ``deadline``; returns
    (network, its held-out RMSE in units of the standardized target's spread)."""
    x = dataset["train_input"].to(torch.float64)
    y = dataset["train_label"].to(torch.float64)
    net = _perceptron(x.shape[1], seed)
    fit_lbfgs(net, lambda: (net(x) - y).square().mean(), deadline)
    with torch.no_grad():
        xt = dataset["test_input"].to(torch.float64)
        yt = dataset["test_label"].to(torch.float64)
        err = float((net(xt) - yt).square().mean().sqrt())
    return net, err if math.isfinite(err) else math.inf


def sharpen(dataset, sur, seed: int, deadline: float):
    """``sur`` (the surrogate's (model, histories, held-out RMSE)), or the same with an
    :class:`Oracle` as the model and its RMSE, when the surrogate is rough and a perceptron
    trained by ``deadline`` predicts the held-out rows at most ``_GAIN`` times as far off.
    That error is then also the noise floor of the search (the accuracy a formula may claim
    to be exact within)."""
    if sur is None or not sur[2] > ROUGH or time.perf_counter() >= deadline:
        return sur
    try:
        net, err = _train(dataset, seed, deadline)
    except (RuntimeError, ValueError, ArithmeticError, np.linalg.LinAlgError):
        return sur
    if err < _GAIN * sur[2]:
        log.info("discover: a perceptron follows the data closer than the surrogate KAN "
                 "(held-out RMSE %.3g against %.3g): it is the structure tests' oracle",
                 err, sur[2])
        return Oracle(net, sur[0]), sur[1], err
    return sur
