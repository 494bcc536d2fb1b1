"""pykan's ``kan.utils``: datasets, symbolic-library tools, derivatives, with pykan's signatures."""
from __future__ import annotations

import numpy as np
import sympy
import torch

from ..datasets import create_dataset
from ..hypothesis import batch_hessian, batch_jacobian
from ..symbolic import SYMBOLIC_LIB, ex_round
from ..symbolic import add_symbolic as _add_symbolic
from ..symbolic.fit import fit_functions

__all__ = ["SYMBOLIC_LIB", "create_dataset", "create_dataset_from_data", "fit_params",
           "get_derivative",
           "sparse_mask", "add_symbolic", "ex_round", "augment_input", "batch_jacobian",
           "batch_hessian", "model2param"]


def create_dataset_from_data(inputs, labels, train_ratio=0.8, device="cpu"):
    """Split ``inputs`` and ``labels`` (rows are samples) at random into pykan's dataset dict.

    The split draws from NumPy's global generator, as pykan's does, so ``np.random.seed`` makes
    it reproducible.
    """
    inputs, labels = torch.as_tensor(inputs), torch.as_tensor(labels)
    if inputs.dim() == 1:
        inputs = inputs[:, None]
    if labels.dim() == 1:
        labels = labels[:, None]
    num = inputs.shape[0]
    if num == 0 or labels.shape[0] != num:
        raise ValueError(f"inputs and labels need the same, non-zero number of rows; got "
                         f"{num} and {labels.shape[0]}")
    if not 0.0 < float(train_ratio) < 1.0:
        raise ValueError(f"train_ratio must be in (0, 1), got {train_ratio!r}")
    train_id = np.random.choice(num, int(num * train_ratio), replace=False)
    test_id = np.setdiff1d(np.arange(num), train_id)
    return {
        "train_input": inputs[train_id].detach().to(device),
        "test_input": inputs[test_id].detach().to(device),
        "train_label": labels[train_id].detach().to(device),
        "test_label": labels[test_id].detach().to(device),
    }


def add_symbolic(name, fun, c=1, fun_singularity=None):
    """pykan's ``add_symbolic(name, fun, c=1, fun_singularity=None)``: register torch function
    ``fun`` under ``name`` (its formula shows as an undefined sympy function ``name(x)``).

    ``fun_singularity(x, y_th)``, pykan's singularity-protected version returning
    ``(anything, values)``, is used for training when given.
    """
    safe = None
    if fun_singularity is not None:
        def safe(u, _f=fun_singularity):
            return _f(u, torch.tensor(10.0, dtype=u.dtype, device=u.device))[1]
    _add_symbolic(name, fun, sympy.Function(name), complexity=c, safe_fn=safe)


def fit_params(x, y, fun, a_range=(-10, 10), b_range=(-10, 10), grid_number=101, iteration=3,
               verbose=True, device="cpu"):
    """Fit ``c*fun(a*x+b)+d`` to 1-D ``x``, ``y``; returns (tensor [a, b, c, d], r2)."""
    name = "__fit_params__"
    _add_symbolic(name, fun, sympy.Function("f"))
    try:
        res = fit_functions(torch.as_tensor(x).reshape(1, -1), torch.as_tensor(y).reshape(1, -1),
                            [name], a_range=a_range, b_range=b_range,
                            grid_number=max(3, min(int(grid_number), 101)))
    finally:
        SYMBOLIC_LIB.pop(name, None)
    r2 = res.r2[0, 0]
    if verbose:
        print(f"r2 is {float(r2)}")
        if r2 < 0.9:
            print("r2 is not very high, please double check if you are choosing the correct "
                  "symbolic function.")
    return res.params[0, 0].to(device), r2.to(device)


def sparse_mask(in_dim, out_dim):
    """pykan's sparse initial mask: each input to its nearest output and vice versa."""
    in_coord = (torch.arange(in_dim) + 0.5) / in_dim
    out_coord = (torch.arange(out_dim) + 0.5) / out_dim
    dist = (out_coord[:, None] - in_coord[None, :]).abs()
    mask = torch.zeros(in_dim, out_dim)
    mask[torch.arange(in_dim), dist.argmin(0)] = 1.0
    mask[dist.argmin(1), torch.arange(out_dim)] = 1.0
    return mask


def augment_input(orig_vars, aux_vars, x):
    """Prepend columns computed from sympy expressions ``aux_vars`` of ``orig_vars`` to ``x``
    (a tensor, or a dataset dict whose inputs are all augmented)."""
    if isinstance(x, dict):
        x["train_input"] = augment_input(orig_vars, aux_vars, x["train_input"])
        x["test_input"] = augment_input(orig_vars, aux_vars, x["test_input"])
        return x
    cols = [x[:, i].detach().cpu().numpy() for i in range(len(orig_vars))]
    extra = []
    for aux in aux_vars:
        f = sympy.lambdify(list(orig_vars), aux, "numpy", dummify=True)
        v = np.broadcast_to(np.asarray(f(*cols), dtype=np.float64), (x.shape[0],))
        extra.append(torch.as_tensor(v.copy(), dtype=x.dtype, device=x.device)[:, None])
    return torch.cat(extra + [x], dim=1)


def model2param(model):
    """All parameters of ``model`` as one flat vector."""
    return torch.cat([p.reshape(-1) for p in model.parameters()])


def get_derivative(model, inputs, labels, derivative="hessian", loss_mode="pred", reg_metric="w",
                   lamb=0.0, lamb_l1=1.0, lamb_entropy=0.0):
    """Jacobian (1, 1, P) or Hessian (1, P, P) of the loss over all P parameters (in
    ``model.parameters()`` order), pykan's shapes: ``loss_mode`` 'pred' (MSE of the
    predictions), 'reg' (the sparsity regularizer on ``inputs``) or 'all' (pred + lamb * reg).
    By torch.func on a functional call of the model; nothing of the model changes."""
    if derivative not in ("hessian", "jacobian"):
        raise ValueError(f"derivative must be 'hessian' or 'jacobian', got {derivative!r}")
    if loss_mode not in ("pred", "reg", "all"):
        raise ValueError(f"loss_mode must be 'pred', 'reg' or 'all', got {loss_mode!r}")
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    labels = torch.as_tensor(labels)

    class _Loss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            terms = []
            if loss_mode in ("pred", "all"):
                terms.append(torch.mean((self.model(x) - labels) ** 2))
            if loss_mode in ("reg", "all"):
                reg = self.model.reg(x, lamb_l1=lamb_l1, lamb_entropy=lamb_entropy)
                terms.append(reg if loss_mode == "reg" else lamb * reg)
            return sum(terms)

    wrapper = _Loss()

    def loss(p):
        parts = torch.split(p, sizes)
        params = {f"model.{n}": t.reshape(s) for n, t, s in zip(names, parts, shapes)}
        return torch.func.functional_call(wrapper, params, (inputs,))

    p = model2param(model).detach()
    if derivative == "hessian":
        return torch.func.hessian(loss)(p)[None]
    return torch.func.jacrev(loss)(p)[None, None]


# pykan's singularity-protected functions, f(x, y_th) -> (aux, values): finite everywhere,
# equal to the plain function where it stays below y_th in magnitude.
def _cut(x, thr, inside, outside):
    return torch.where(torch.abs(x) < thr, inside, torch.nan_to_num(outside))


def _inv_power(n):
    def f(x, y_th):
        y_th = torch.as_tensor(y_th, dtype=x.dtype)
        thr = y_th ** (-1.0 / n)
        inside = y_th * (x / thr if n % 2 else torch.ones_like(x))
        return (thr,), _cut(x, thr, inside, 1.0 / x ** n)
    return f


f_inv, f_inv2, f_inv3, f_inv4, f_inv5 = (_inv_power(n) for n in range(1, 6))


def f_sqrt(x, y_th):
    thr = 1.0 / torch.as_tensor(y_th, dtype=x.dtype) ** 2
    return (thr,), _cut(x, thr, x * y_th,
                        torch.sqrt(torch.abs(x)) * torch.sign(x))


def f_power1d5(x, y_th):  # pykan's returns the values alone, not a pair
    return torch.abs(x) ** 1.5


def f_invsqrt(x, y_th):
    y_th = torch.as_tensor(y_th, dtype=x.dtype)
    thr = 1.0 / y_th ** 2
    return (thr,), _cut(x, thr, y_th * torch.ones_like(x), 1.0 / torch.sqrt(torch.abs(x)))


def f_log(x, y_th):
    y_th = torch.as_tensor(y_th, dtype=x.dtype)
    thr = torch.exp(-y_th)
    return (thr,), _cut(x, thr, -y_th * torch.ones_like(x), torch.log(torch.abs(x)))


def f_tan(x, y_th):
    y_th = torch.as_tensor(y_th, dtype=x.dtype)
    clip = torch.remainder(x, torch.pi)
    delta = torch.pi / 2 - torch.arctan(y_th)
    near = torch.abs(clip - torch.pi / 2) < delta
    inside = -y_th / delta * (clip - torch.pi / 2)
    return (clip, delta), torch.where(near, inside, torch.nan_to_num(torch.tan(clip)))


def f_arctanh(x, y_th):
    y_th = torch.as_tensor(y_th, dtype=x.dtype)
    delta = 1 - torch.tanh(y_th) + 1e-4
    edge = torch.abs(x) > 1 - delta
    return (delta,), torch.where(edge, y_th * torch.sign(x), torch.nan_to_num(torch.arctanh(x)))


def f_arcsin(x, y_th):
    out = torch.where(torch.abs(x) > 1, torch.pi / 2 * torch.sign(x),
                      torch.nan_to_num(torch.arcsin(x)))
    return (), out


def f_arccos(x, y_th):
    out = torch.where(torch.abs(x) > 1, torch.pi / 2 * (1 - torch.sign(x)),
                      torch.nan_to_num(torch.arccos(x)))
    return (), out


def f_exp(x, y_th):
    y_th = torch.as_tensor(y_th, dtype=x.dtype)
    thr = torch.log(y_th)
    return (thr,), torch.where(x > thr, y_th * torch.ones_like(x), torch.exp(x))


__all__ += ["f_inv", "f_inv2", "f_inv3", "f_inv4", "f_inv5", "f_sqrt", "f_power1d5", "f_invsqrt",
            "f_log", "f_tan", "f_arctanh", "f_arcsin", "f_arccos", "f_exp"]
