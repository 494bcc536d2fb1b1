"""KAN: a stack of KAN layers with pykan's names and thin methods over the modules."""
from __future__ import annotations

import logging
import numbers

import numpy as np
import torch
from torch import nn

from .bases import resolve_base_fun
from .layer import KANLayer, _check_dtype, _check_finite, _check_range
from .symbolic.layer import SymbolicLayer
from .edit import EditMixin
from .prune import PruneMixin
from .symbolic.mixin import SymbolicMixin
from .widths import parse_arity as _parse_arity
from .widths import parse_width as _parse_width
from .widths import per_layer as _per_layer

__all__ = ["KAN"]

log = logging.getLogger("kanlab")

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


class KAN(SymbolicMixin, PruneMixin, EditMixin, nn.Module):
    """Kolmogorov-Arnold Network.

    Args:
        width: nodes per layer, inputs first, e.g. ``[2, 5, 1]``.
        grid: number of grid intervals G (int, or one per layer).
        k: spline order (int, or one per layer).
        mult_arity: arity of multiplication nodes: an int, or per width entry a list with one
            arity per multiplication node. ``width=[2, [3, 1], 1]`` has 3 sum nodes and one
            product node in the hidden layer; the product node multiplies ``mult_arity``
            consecutive outputs of the layer below (after their biases).
        noise_scale: scale of the initial random splines.
        scale_base_mu, scale_base_sigma: initialization of ``scale_base``.
        base_fun: ``"silu"`` (default), ``"identity"``, ``"zero"`` or a callable.
        grid_eps: 1 uniform grid updates, 0 quantile grid updates; pykan's default 0.02.
        grid_range: initial grid range ``(low, high)``.
        sp_trainable, sb_trainable: train ``scale_sp`` / ``scale_base``.
        seed: seed of a private generator used for initialization (the global RNG is untouched).
        sparse_init: start with sparse masks.
        bias: a trainable bias on every node (``False`` for ablations).
        dtype: parameter dtype (default: torch's default dtype).
        device: parameter device.

    pykan-only arguments that write files or toggle its caches (``auto_save``, ``ckpt_path``,
    ``save_act``, ``symbolic_enabled``, ``first_init``, ``state_id``, ``round``) are accepted
    so pykan scripts run; kanlab never writes files on its own. ``affine_trainable`` (default
    True, unlike pykan) lets fit() tune the a, b, c, d of symbolic edges.
    """

    def __init__(
        self,
        width=None,
        grid=3,
        k=3,
        mult_arity=2,
        noise_scale: float = 0.3,
        scale_base_mu: float = 0.0,
        scale_base_sigma: float = 1.0,
        base_fun="silu",
        symbolic_enabled: bool = True,
        affine_trainable: bool = True,
        grid_eps: float = 0.02,
        grid_range=(-1.0, 1.0),
        sp_trainable: bool = True,
        sb_trainable: bool = True,
        seed: int = 1,
        save_act: bool = True,
        sparse_init: bool = False,
        auto_save: bool = False,
        first_init: bool = True,
        ckpt_path=None,
        state_id: int = 0,
        round: int = 0,
        device="cpu",
        bias: bool = True,
        dtype: torch.dtype | str | None = None,
    ):
        super().__init__()
        self.width = _parse_width(width)
        self._arity = _parse_arity(mult_arity, self.width)
        self.depth = len(self.width) - 1
        grids = _per_layer("grid", grid, self.depth)
        ks = _per_layer("k", k, self.depth)
        for g in grids:
            if isinstance(g, bool) or not isinstance(g, (numbers.Integral, np.integer)) or g < 1:
                raise ValueError(f"grid must be an integer >= 1 (number of intervals), got {g!r}")
        for kk in ks:
            if isinstance(kk, bool) or not isinstance(kk, (numbers.Integral, np.integer)) or kk < 1:
                raise ValueError(f"k (spline order) must be an integer >= 1, got {kk!r}")
        lo, hi = _check_range(grid_range)
        if isinstance(dtype, str):
            if dtype not in _DTYPES:
                raise ValueError(f"unknown dtype {dtype!r}: use one of {sorted(_DTYPES)}")
            dtype = _DTYPES[dtype]
        _check_dtype(dtype)
        dtype = dtype or torch.get_default_dtype()
        self.base_fun_name, self.base_fun = resolve_base_fun(base_fun)
        if isinstance(seed, bool) or not isinstance(seed, (numbers.Integral, np.integer)) \
                or not -(2**63) <= int(seed) < 2**64:
            raise ValueError(f"seed must be an integer in [-2**63, 2**64), got {seed!r}")
        for name, v in (("noise_scale", noise_scale), ("scale_base_mu", scale_base_mu),
                        ("scale_base_sigma", scale_base_sigma)):
            _check_finite(name, v)
        if auto_save or ckpt_path is not None:
            log.debug("kanlab ignores auto_save/ckpt_path: it writes files only when asked (save())")
        self.grid = int(grids[0]) if not isinstance(grid, (list, tuple)) else [int(g) for g in grids]
        self.k = int(ks[0]) if not isinstance(k, (list, tuple)) else [int(v) for v in ks]
        self.mult_arity = mult_arity
        self.grid_eps = float(grid_eps)
        self.grid_range = [lo, hi]
        self.sp_trainable = bool(sp_trainable)
        self.sb_trainable = bool(sb_trainable)
        self.seed = int(seed)
        self.noise_scale = float(noise_scale)
        self.scale_base_mu = float(scale_base_mu)
        self.scale_base_sigma = float(scale_base_sigma)
        self.sparse_init = bool(sparse_init)
        self.use_bias = bool(bias)
        self.symbolic_enabled = bool(symbolic_enabled)
        self.save_act = bool(save_act)
        self.affine_trainable = bool(affine_trainable)
        gen = torch.Generator().manual_seed(self.seed)
        w_in, w_out = self.width_in, self.width_out
        self.act_fun = nn.ModuleList(
            KANLayer(
                w_in[l], w_out[l + 1], num=int(grids[l]), k=int(ks[l]),
                noise_scale=noise_scale, scale_base_mu=scale_base_mu,
                scale_base_sigma=scale_base_sigma, scale_sp=1.0,
                base_fun=base_fun if self.base_fun_name == "custom" else self.base_fun_name,
                grid_eps=grid_eps, grid_range=(lo, hi), sp_trainable=sp_trainable,
                sb_trainable=sb_trainable, sparse_init=sparse_init, bias=bias,
                generator=gen, dtype=dtype, device=device,
            )
            for l in range(self.depth)
        )
        self.symbolic_fun = nn.ModuleList(
            SymbolicLayer(w_in[l], w_out[l + 1], dtype=dtype, device=device,
                          trainable=self.affine_trainable)
            for l in range(self.depth)
        )
        self._cache_x: torch.Tensor | None = None

    # ------------------------------------------------------------- properties
    @property
    def width_in(self) -> list[int]:
        """Nodes per width entry (sum nodes + multiplication nodes): a layer's inputs."""
        return [w[0] + w[1] for w in self.width]

    @property
    def width_out(self) -> list[int]:
        """Sub-nodes per width entry (sum nodes + the factors of every product): a layer's outputs."""
        return [w[0] + sum(a) for w, a in zip(self.width, self._arity)]

    @property
    def mult_homo(self) -> bool:
        """Whether every multiplication node has the same arity."""
        return len({a for ar in self._arity for a in ar}) <= 1

    @property
    def node_bias(self) -> list[torch.Tensor | None]:
        """pykan's name for the per-node biases, one tensor (n_out,) per layer."""
        return [layer.bias for layer in self.act_fun]

    @property
    def dtype(self) -> torch.dtype:
        return self.act_fun[0].grid.dtype

    @property
    def device(self) -> torch.device:
        return self.act_fun[0].grid.device

    @property
    def n_edge(self) -> int:
        """Number of active (unmasked) edges."""
        return int(sum(int((layer.mask > 0).sum()) for layer in self.act_fun))

    def config(self) -> dict:
        """Constructor arguments that rebuild this architecture (used by save/load)."""
        return dict(
            width=[list(w) for w in self.width],
            grid=[layer.num for layer in self.act_fun],
            k=[layer.k for layer in self.act_fun],
            mult_arity=[list(a) for a in self._arity],
            affine_trainable=self.affine_trainable,
            noise_scale=self.noise_scale,
            scale_base_mu=self.scale_base_mu,
            scale_base_sigma=self.scale_base_sigma,
            base_fun=self.base_fun_name,
            grid_eps=self.grid_eps,
            grid_range=list(self.grid_range),
            sp_trainable=self.sp_trainable,
            sb_trainable=self.sb_trainable,
            seed=self.seed,
            sparse_init=self.sparse_init,
            bias=self.use_bias,
            dtype=str(self.dtype).replace("torch.", ""),
        )

    def extra_repr(self) -> str:
        return f"width={self.width if any(w[1] for w in self.width) else [w[0] for w in self.width]}"

    # ---------------------------------------------------------------- compute
    def _check_x(self, x) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            try:
                arr = np.asarray(x)
            except ValueError as err:  # ragged nested lists
                raise ValueError(f"input must be a (batch, {self.width_in[0]}) array of numbers: "
                                 f"{err}") from None
            if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
                raise ValueError(f"input must be numeric, got an array of dtype {arr.dtype}")
            x = torch.as_tensor(arr) if np.iscomplexobj(arr) else \
                torch.as_tensor(arr, dtype=self.dtype, device=self.device)
        if x.is_complex():
            raise ValueError(f"input must be real, got dtype {x.dtype}: pass x.real if that is meant")
        if x.dim() == 1 and self.width_in[0] == 1:
            x = x[:, None]
        if x.dim() != 2 or x.shape[1] != self.width_in[0]:
            raise ValueError(
                f"input must have shape (batch, {self.width_in[0]}), got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            x = x.to(self.dtype)
        if x.dtype != self.dtype:
            raise ValueError(
                f"input dtype {x.dtype} does not match the model's {self.dtype}: convert the "
                f"data (x.to({self.dtype})) or the model (model.to({x.dtype}))"
            )
        return x

    def _mult(self, l: int, y: torch.Tensor) -> torch.Tensor:
        """Sub-node values (batch, width_out[l+1]) -> node values (batch, width_in[l+1])."""
        arity = self._arity[l + 1]
        if not arity:
            return y
        n_sum = self.width[l + 1][0]
        if len(set(arity)) == 1:
            a = arity[0]
            prods = y[:, n_sum:].reshape(y.shape[0], len(arity), a).prod(-1)
        else:
            cols, start = [], n_sum
            for a in arity:
                cols.append(y[:, start:start + a].prod(-1, keepdim=True))
                start += a
            prods = torch.cat(cols, 1)
        return torch.cat([y[:, :n_sum], prods], 1)

    def _layer(self, l: int, x: torch.Tensor, want_var: bool = False):
        """Layer l on its inputs: numeric + symbolic edges, biases, then products."""
        if want_var:
            y, var = self.act_fun[l].forward_with_var(x)
        else:
            y, var = self.act_fun[l](x), None
        s = self.symbolic_fun[l](x)
        if s is not None:
            y = y + s
        y = self._mult(l, y)
        return (y, var) if want_var else y

    def _forward_unchecked(self, x: torch.Tensor) -> torch.Tensor:
        for l in range(self.depth):
            x = self._layer(l, x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, n_in) -> (batch, n_out)."""
        return self._forward_unchecked(self._check_x(x))

    def forward_with_stats(self, x: torch.Tensor):
        """Output, the input of every layer, and every layer's numeric edge variances (in, out)."""
        acts, variances = [], []
        for l in range(self.depth):
            acts.append(x)
            x, var = self._layer(l, x, want_var=True)
            variances.append(var)
        return x, acts, variances

    @torch.no_grad()
    def layer_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Inputs of every layer plus the output: ``[x_0, x_1, ..., x_L]``."""
        x = self._check_x(x)
        acts = [x]
        for l in range(self.depth):
            acts.append(self._layer(l, acts[-1]))
        return acts

    def activations(self, x: torch.Tensor, parts: bool = False):
        """Per-layer, per-edge activations, computed on demand.

        Returns a list with one (batch, in, out) tensor per layer (numeric plus symbolic edge
        outputs); with ``parts=True`` one ``(total, base_part, spline_part)`` tuple per layer,
        where the parts split the numeric branch and ``total`` includes symbolic edges.
        """
        x = self._check_x(x)
        out = []
        for l, layer in enumerate(self.act_fun):
            res = layer.activations(x, parts=parts)
            if self.symbolic_fun[l].is_active():
                sym = self.symbolic_fun[l].activations(x)
                res = (res[0] + sym, res[1], res[2]) if parts else res + sym
            out.append(res)
            x = self._layer(l, x)
        return out

    def _data(self, x, what: str):
        """``x``, a dataset dict's ``train_input``, or else the training inputs of the last fit."""
        if isinstance(x, dict):
            if "train_input" not in x:
                raise ValueError(f"{what} got a dict without 'train_input'")
            x = x["train_input"]
        if x is None:
            x = self._cache_x
        if x is None:
            raise ValueError(f"{what} needs data: pass x (the training inputs) or call fit() first")
        return x

    def get_act(self, x: torch.Tensor | None = None):
        """pykan compatibility: the per-edge activations of ``x`` (a tensor or a dataset dict,
        whose ``train_input`` is used), or of the training data of the last fit."""
        with torch.no_grad():
            return self.activations(self._data(x, "get_act()"))

    def contributions(self, x=None):
        """Base vs spline spread of every edge and layer on ``x`` (default: last fit's inputs).

        Returns a :class:`kanlab.inspect.Contributions` with ``edges`` and ``layers`` tables
        (``spline_share`` near 0: the base function does the work and the edge acts like an
        MLP unit), ``to_markdown()`` and ``to_csv()``.
        """
        from .inspect import contributions

        return contributions(self, self._data(x, "contributions()"))

    # ------------------------------------------------------------------ grids
    @torch.no_grad()
    def update_grid_from_samples(self, x: torch.Tensor) -> None:
        """Adapt every layer's knots to its inputs on ``x`` (layer by layer, in order)."""
        from .train import check_finite

        x = self._check_x(x)
        if x.shape[0] == 0:
            raise ValueError("update_grid_from_samples needs at least one sample, got an empty x")
        check_finite(x, "x")
        saved = [(layer.grid.clone(), layer.coef.detach().clone()) for layer in self.act_fun]
        try:
            for l, layer in enumerate(self.act_fun):
                if l > 0 and not bool(torch.isfinite(x).all()):
                    raise ValueError(
                        f"the inputs of layer {l} hold NaN or Inf on these samples (overflow in "
                        f"{self.dtype}?); grids left unchanged: use a wider dtype or smaller inputs"
                    )
                layer.update_grid_from_samples(x)
                x = self._layer(l, x)
        except ValueError:
            # knots from non-finite values would be NaN: leave every layer as it was
            for lay, (g, c) in zip(self.act_fun, saved):
                lay.set_grid(g)
                lay.coef.copy_(c)
            raise

    def update_grid(self, x: torch.Tensor) -> None:
        """Alias of :meth:`update_grid_from_samples` (pykan's name)."""
        self.update_grid_from_samples(x)

    @torch.no_grad()
    def refine(self, new_grid: int, x: torch.Tensor | None = None) -> "KAN":
        """Grid extension: a new model with ``new_grid`` intervals computing the same function.

        Every old knot inside the new range stays a knot and each old interval is split evenly,
        so the old splines are exactly representable; coefficients are refit by least squares
        on the layer inputs of ``x`` (default: the training inputs of the last fit) plus dense
        points over each grid. The new model reproduces the old one on the range of those
        inputs plus a 5% margin; further out, the two models' extension tails differ. The
        original model is left unchanged.
        """
        from .grid import refit_layer

        per_layer = isinstance(new_grid, (list, tuple))
        grids = list(new_grid) if per_layer else [new_grid]
        if (per_layer and len(grids) != self.depth) or any(
                isinstance(g, bool) or not isinstance(g, (numbers.Integral, np.integer)) or g < 1
                for g in grids):
            raise ValueError(f"new_grid must be an integer >= 1 (intervals) or one per layer "
                             f"({self.depth}), got {new_grid!r}")
        cfg = self.config()
        cfg["grid"] = [int(new_grid)] * self.depth if isinstance(new_grid, (numbers.Integral, np.integer)) else list(new_grid)
        cfg.pop("dtype")
        base = self.base_fun if self.base_fun_name == "custom" else self.base_fun_name
        child = type(self)(**{**cfg, "base_fun": base}, dtype=self.dtype, device=self.device)
        if x is None:
            x = self._cache_x
        acts = self.layer_inputs(x) if x is not None else [None] * (self.depth + 1)
        for l in range(self.depth):
            refit_layer(child.act_fun[l], self.act_fun[l], acts[l])
            child.act_fun[l].scale_base.requires_grad_(self.act_fun[l].scale_base.requires_grad)
            child.act_fun[l].scale_sp.requires_grad_(self.act_fun[l].scale_sp.requires_grad)
        for l in range(self.depth):
            src, dst = self.symbolic_fun[l], child.symbolic_fun[l]
            dst.funs_name = [list(row) for row in src.funs_name]
            dst.affine.copy_(src.affine)
            dst.mask.copy_(src.mask)
        child._cache_x = self._cache_x
        child.grid = int(new_grid) if isinstance(new_grid, (numbers.Integral, np.integer)) else list(new_grid)
        return child

    # ---------------------------------------------------------------- training
    def fit(self, dataset: dict, **kwargs) -> dict:
        """Train the model; see :func:`kanlab.train.fit` for the arguments."""
        from .train import fit

        return fit(self, dataset, **kwargs)

    def reg(self, x: torch.Tensor, lamb_l1=1.0, lamb_entropy=2.0, lamb_coef=0.0, lamb_coefdiff=0.0,
            reg_metric="edge_forward_spline_n") -> torch.Tensor:
        """pykan's sparsity regularization of the model on data ``x`` (differentiable)."""
        from .train import regularization

        x = self._check_x(x)
        _, acts, variances = self.forward_with_stats(x)
        return regularization(self, acts, variances, lamb_l1, lamb_entropy, lamb_coef,
                              lamb_coefdiff, reg_metric)

    @torch.no_grad()
    def evaluate(self, dataset: dict) -> dict:
        """Train and test RMSE on a pykan-style dataset dict."""
        from .train import prepare_dataset

        ds = prepare_dataset(self, dataset, need_labels_match=True)
        out = {}
        for split in ("train", "test"):
            pred = self(ds[f"{split}_input"])
            out[f"{split}_loss"] = float(torch.sqrt(torch.mean((pred - ds[f"{split}_label"]) ** 2)))
        return out

    # ---------------------------------------------------------------- plots
    def plot(self, x=None, beta: float = 3.0, metric: str = "backward", scale: float = 0.5,
             in_vars=None, out_vars=None, title=None, path=None, **kwargs):
        """The network diagram with every edge's learned curve; returns the matplotlib Figure.

        Opacity ``tanh(beta * importance)``; symbolic edges red with their function name; saved
        to ``path`` when given (PNG, SVG or PDF by suffix). See :func:`kanlab.plot.plot_model`
        for every option (``x``, ``show_off``, ``sample``, ``tick``, ``dpi``, ...).
        """
        from .plot import plot_model

        return plot_model(self, x=x, beta=beta, metric=metric, scale=scale, in_vars=in_vars,
                          out_vars=out_vars, title=title, path=path, **kwargs)

    def plot_edge(self, l: int, i: int, j: int, x=None, path=None, **kwargs):
        """Edge i -> j of layer l: total curve, base part, spline part and symbolic fit.

        See :func:`kanlab.plot.plot_edge`; returns the matplotlib Figure.
        """
        from .plot import plot_edge

        return plot_edge(self, l, i, j, x=x, path=path, **kwargs)

    # ---------------------------------------------------------------- export
    def export(self, example_x, path=None, dynamic_batch: bool = True):
        """``torch.export`` of the numeric model (see :func:`kanlab.export.export_torch`)."""
        from .export import export_torch

        return export_torch(self, example_x, path=path, dynamic_batch=dynamic_batch)

    def export_onnx(self, path, example_x, **kwargs):
        """ONNX file of the model (needs ``onnx``; see :func:`kanlab.export.export_onnx`)."""
        from .export import export_onnx

        return export_onnx(self, example_x, path, **kwargs)

    def inference_module(self):
        """A plain-torch copy of the model for tracing and export (same outputs)."""
        from .export import inference_module

        return inference_module(self)

    def formula_latex(self, precision: int = 4, **formula_kw) -> list[str]:
        """LaTeX of every output's formula (the model must be fully symbolic)."""
        from .export import formula_to_latex

        exprs, _ = self.symbolic_formula(**formula_kw)
        return [formula_to_latex(e, precision) for e in exprs]

    def formula_numpy(self, **formula_kw):
        """The formula as a numpy callable f(X (n, d)) -> (n,) or (n, n_out)."""
        from .export import formula_to_numpy

        exprs, syms = self.symbolic_formula(**formula_kw)
        return formula_to_numpy(exprs if len(exprs) > 1 else exprs[0], syms)

    def formula_torch(self, **formula_kw):
        """The formula as a differentiable torch module (no sympy at call time)."""
        from .export import formula_to_torch

        exprs, syms = self.symbolic_formula(**formula_kw)
        return formula_to_torch(exprs if len(exprs) > 1 else exprs[0], syms)

    # ---------------------------------------------------------------- io
    def save(self, path, all_ranks: bool = False) -> None:
        """Write config and state to one file, atomically (see :mod:`kanlab.io`).

        Under torch.distributed only rank 0 writes (the replicas are identical after fit());
        ``all_ranks=True`` makes every rank write (give each its own path).
        """
        from .io import save_model

        if not all_ranks and torch.distributed.is_available() and \
                torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
            log.debug("save(%s) skipped on rank %d: rank 0 writes", path,
                      torch.distributed.get_rank())
            return
        save_model(self, path)

    @classmethod
    def load(cls, path, map_location=None, base_fun=None) -> "KAN":
        """Load a model written by :meth:`save`; pass ``base_fun`` for a custom callable."""
        from .io import load_model

        return load_model(path, map_location=map_location, base_fun=base_fun, cls=cls)

    def copy(self) -> "KAN":
        """A deep copy (parameters, buffers and settings)."""
        import copy

        return copy.deepcopy(self)

    def speed(self, compile: bool = False) -> "KAN":
        """pykan compatibility: kanlab always runs its fast path; returns self."""
        return self
