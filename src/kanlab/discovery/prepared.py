"""The data of one search, made ready: the train/held-out split, the scalings, the networks'
standardized tensors, and the result for a constant target."""
from __future__ import annotations

import math

import numpy as np
import sympy
import torch

from ..model import KAN
from ..symbolic.formula import expression_size, make_symbols
from ..symbolic.snap import snap_constants
from .result import DiscoveryResult, _evaluate, _exact, _r2, minmax_scaling


def _split(X, y, seed, test_size):
    """(Xtr, ytr, Xte, yte): a random held-out share ``test_size`` (at least one row)."""
    perm = np.random.default_rng(seed).permutation(X.shape[0])
    n_test = max(1, int(round(X.shape[0] * test_size)))
    te, tr = perm[:n_test], perm[n_test:]
    return X[tr], y[tr], X[te], y[te]


def _standardized(Xtr, ytr, Xte, yte, xc, xs, const_cols, yc, ysd, dtype) -> dict:
    """The training dataset of the networks: standardized inputs (constant columns 0) and
    target, as tensors."""
    to_t = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    xtr_s = (Xtr - xc) / xs
    xtr_s[:, const_cols] = 0.0
    xte_s = (Xte - xc) / xs
    xte_s[:, const_cols] = 0.0
    return dict(train_input=to_t(xtr_s), train_label=to_t((ytr - yc) / ysd)[:, None],
                test_input=to_t(xte_s), test_label=to_t((yte - yc) / ysd)[:, None])


class Prepared:
    """The split, scalings and tensors of one search; ``dataset`` is None for a constant
    target (its spread ``ysd`` is 0)."""

    def __init__(self, X, y, seed, test_size, dtype):
        self.Xtr, self.ytr, self.Xte, self.yte = _split(X, y, seed, test_size)
        # standardize: inputs to about [-1, 1], target to zero mean and unit spread
        self.xc, self.xs, self.const_cols = minmax_scaling(self.Xtr)
        self.yc = float(self.ytr.mean())
        # std without squaring huge values (1e200 overflows)
        spread = float(np.max(np.abs(self.ytr - self.yc)))
        self.ysd = spread * float(np.std((self.ytr - self.yc) / spread)) \
            if 0 < spread < math.inf else 0.0
        self.dataset = None
        if self.ysd > 0:
            self.dataset = _standardized(self.Xtr, self.ytr, self.Xte, self.yte, self.xc,
                                         self.xs, self.const_cols, self.yc, self.ysd, dtype)

    def back(self, symbols):
        """The standardized symbols ``_z0, _z1, ...`` and the map from them to ``symbols``
        (the caller's variables)."""
        d = len(symbols)
        zs = make_symbols(d, [f"_z{i}" for i in range(d)])
        back = {zs[i]: sympy.Integer(0) if self.const_cols[i]
                else (symbols[i] - _exact(self.xc[i])) / _exact(self.xs[i]) for i in range(d)}
        return zs, back

    def constant_result(self, symbols, grid, seed, dtype, snap):
        """The result for a constant target: the (snapped) constant and a network of output
        0."""
        expr = sympy.Float(self.yc, 15)
        expr = snap_constants(expr, symbols, self.Xtr, self.ytr) if snap else expr
        r2 = _r2(_evaluate(expr, symbols, self.Xte), self.yte)
        model = KAN(width=[len(symbols), 1], grid=grid, seed=seed, dtype=dtype)
        with torch.no_grad():  # the network of a constant: output 0, i.e. y = y_center
            for p in model.parameters():
                p.zero_()
        return DiscoveryResult(expr, r2, expression_size(expr), model, {}, symbols, [],
                               self.xc, self.xs, self.yc, 1.0, constant_columns=self.const_cols)
