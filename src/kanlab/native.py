"""kanlab's native CPU kernels (``_native.cpp``), loaded with ctypes.

The library is built by ``pip install`` (setup.py) when a C++ compiler is present; it has no
PyTorch headers, so it does not depend on the installed torch's C++ ABI. Without it (no compiler,
an unusual platform, ``KANLAB_NATIVE=0`` in the environment, or :func:`set_enabled(False)`)
every layer runs the pure-PyTorch path, which computes the same values up to float rounding
(sums in another order). Long L-BFGS runs amplify that rounding, so parameters trained on the two
paths are not bit-identical (tests/test_native.py compares them within tolerances).

The kernels build a KAN layer's fused feature matrix on the CPU (span search, Horner on the
span's polynomials, base column, zeros elsewhere) in one pass, and contract the feature gradient
with the B-spline derivatives in another; the matrix products stay with PyTorch.
"""
from __future__ import annotations

import ctypes
import importlib.machinery
import logging
import os
from pathlib import Path

import torch

__all__ = ["available", "set_enabled", "enabled", "load_error", "max_k", "supports", "features",
           "gather", "NativeTables"]

logger = logging.getLogger(__name__)

_lib = None
_load_error: str | None = None
_enabled = os.environ.get("KANLAB_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def _load():
    global _lib, _load_error
    if _lib is not None or _load_error is not None:
        return _lib
    here = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = here / f"_native{suffix}"
        if path.exists():
            break
    else:
        _load_error = "the native library was not built (no C++ compiler at install time?)"
        logger.debug("kanlab.native: %s", _load_error)
        return None
    try:
        lib = ctypes.CDLL(str(path))
        if lib.kanlab_native_abi() != 6:
            raise OSError("ABI version mismatch: reinstall kanlab")
    except (OSError, AttributeError) as e:
        _load_error = f"could not load {path.name}: {e}"
        logger.warning("kanlab.native: %s; using the PyTorch path", _load_error)
        return None
    p, i64, c_int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for suffix in ("f32", "f64"):
        fn = getattr(lib, f"kanlab_features_{suffix}")
        fn.argtypes = [p, p, i64, i64, i64, i64, i64, c_int, p, p, p, p, p, p, p, c_int]
        fn.restype = None
        fn = getattr(lib, f"kanlab_gather_{suffix}")
        fn.argtypes = [p, p, p, i64, i64, i64, i64, i64, p, p, c_int]
        fn.restype = None
    for suffix in ("f32", "f64"):
        fn = getattr(lib, f"kanlab_kan_objective_{suffix}")
        fn.argtypes = [i64, p, p, p, p, i64, p, p, p, c_int, c_int]
        fn.restype = c_int
    for suffix in ("f32", "f64"):
        fn = getattr(lib, f"kanlab_lbfgs_step_{suffix}")
        fn.argtypes = [i64, p, p, p, p, i64, p, p, c_int, i64, p, p, p, p, p, p, p, p, p]
        fn.restype = i64
    lib.kanlab_lbfgs_direction.argtypes = [i64, i64, p, p, p, p]
    lib.kanlab_lbfgs_direction.restype = None
    lib.kanlab_max_k.restype = c_int
    _lib = lib
    return lib


def available() -> bool:
    """Whether the native library is built and loads."""
    return _load() is not None


def enabled() -> bool:
    """Whether layers use the native kernels on CPU tensors (available and not switched off)."""
    return _enabled and available()


def set_enabled(flag: bool) -> None:
    """Switch the native kernels on or off for this process (off: the pure-PyTorch path)."""
    global _enabled
    _enabled = bool(flag)


def load_error() -> str | None:
    """Why the library is not available (None when it is)."""
    _load()
    return _load_error


class NativeTables:
    """The float64 tables of one knot grid that the kernels read (kept alive by the plan).

    Args:
        grid: (in, S+1) knots; k: spline order; uniform: whether every row is equally spaced;
        poly: (in, S, K, K) or, for a uniform grid, (K, K) span polynomials (powers x functions).
    """

    def __init__(self, grid: torch.Tensor, k: int, uniform: bool, poly: torch.Tensor,
                 t0: torch.Tensor | None = None, inv_h: torch.Tensor | None = None):
        g64 = grid.detach().to("cpu", torch.float64).contiguous()
        self.n_in, n_knots = g64.shape
        self.S = n_knots - 1
        self.P = n_knots - k - 1
        self.k = int(k)
        self.uniform = bool(uniform)
        self.poly = poly.detach().to("cpu", torch.float64).contiguous()
        if uniform:
            self.t0 = t0.detach().to("cpu", torch.float64).contiguous()
            self.inv_h = inv_h.detach().to("cpu", torch.float64).contiguous()
            self.knots = self.t0  # unused by the kernel
        else:
            d = g64[:, 1:] - g64[:, :-1]
            ih = torch.where(d > 0, 1.0 / torch.where(d > 0, d, torch.ones_like(d)),
                             torch.zeros_like(d))
            self.inv_h = ih.contiguous()
            self.knots = g64
            self.t0 = self.inv_h  # unused by the kernel
        self.args = (self.S, self.P, self.k, int(self.uniform), self.t0.data_ptr(),
                     self.inv_h.data_ptr(), self.knots.data_ptr(), self.poly.data_ptr())


def max_k() -> int:
    """The largest spline order the kernels handle (-1 without the library)."""
    return _lib.kanlab_max_k() if available() else -1


def supports(x: torch.Tensor) -> bool:
    """Whether the kernels take this input: a CPU float32/float64 matrix, outside tracing."""
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and x.dim() == 2
            and not torch.compiler.is_compiling())


def _fn(kind: str, dtype: torch.dtype):
    return getattr(_lib, f"kanlab_{kind}_{'f32' if dtype == torch.float32 else 'f64'}")


def features(x: torch.Tensor, base: torch.Tensor, tables: NativeTables, with_der: bool = False):
    """Fused features (batch, in*(1+P)+1) of ``x`` (batch, in) with base values ``base``.

    With ``with_der`` also the spline derivatives (batch, in, k+1), already in units of x, and
    the span (batch, in) of every input (-1 outside the grid), for :func:`gather`: a backward
    pass computes them with the features it rebuilds, in the same sweep.
    """
    x = x.contiguous()
    base = base.to(x.dtype).contiguous()
    batch, n_in = x.shape
    feat = torch.empty(batch, n_in * (tables.P + 1) + 1, dtype=x.dtype)
    der = spans = None
    if with_der:
        der = torch.empty(batch, n_in, tables.k + 1, dtype=x.dtype)
        spans = torch.empty(batch, n_in, dtype=torch.int32)
    _fn("features", x.dtype)(x.data_ptr(), base.data_ptr(), batch, n_in, *tables.args,
                             feat.data_ptr(), der.data_ptr() if with_der else None,
                             spans.data_ptr() if with_der else None, torch.get_num_threads())
    return (feat, der, spans) if with_der else feat


def gather(gfeat: torch.Tensor, der: torch.Tensor | None, spans: torch.Tensor | None,
           tables: NativeTables, want_gx: bool = True, want_gbase: bool = False):
    """From the feature gradient (batch, in*(1+P)+1): the spline part of the input gradient
    (batch, in) (needs ``der``/``spans`` of :func:`features`) and the base column's gradient
    (batch, in), contiguous; each None when not wanted."""
    gfeat = (gfeat if der is None else gfeat.to(der.dtype)).contiguous()
    batch = gfeat.shape[0]
    n_in = tables.n_in
    gx = torch.empty(batch, n_in, dtype=gfeat.dtype) if want_gx else None
    gbase = torch.empty(batch, n_in, dtype=gfeat.dtype) if want_gbase else None
    if gx is None and gbase is None:
        return None, None
    _fn("gather", gfeat.dtype)(gfeat.data_ptr(), der.data_ptr() if want_gx else None,
                               spans.data_ptr() if want_gx else None, batch, n_in, tables.S,
                               tables.P, tables.k, gx.data_ptr() if want_gx else None,
                               gbase.data_ptr() if want_gbase else None, torch.get_num_threads())
    return gx, gbase


def lbfgs_direction(g: torch.Tensor, S: list, Y: list) -> torch.Tensor:
    """-H g of L-BFGS by the two-loop recursion, natively: ``g`` (n,) CPU, ``S``/``Y`` lists of
    contiguous float64 CPU curvature pairs (oldest first). Returns float64 (n,)."""
    g64 = g.detach().to(torch.float64).contiguous()
    d = torch.empty_like(g64)
    m = len(S)
    arr = (ctypes.c_void_p * (2 * m))(*[t.data_ptr() for t in S], *[t.data_ptr() for t in Y])
    _lib.kanlab_lbfgs_direction(g64.shape[0], m, arr, ctypes.byref(arr, m * ctypes.sizeof(ctypes.c_void_p)),
                                g64.data_ptr(), d.data_ptr())
    return d


_BASE_KINDS = {"silu": 0, "identity": 1, "zero": 2}
_NORMALIZED = {"edge_forward_spline_n": True, "edge_forward_sum": True, "edge_forward_spline_u": False}


def objective_unsupported(model, x: torch.Tensor) -> str | None:
    """Why :class:`KANObjective` cannot evaluate ``model`` on ``x`` (None when it can)."""
    if not enabled():
        return "the native library is not available or switched off"
    layers = list(getattr(model, "act_fun", ()))
    if not layers or not hasattr(model, "symbolic_fun"):
        return "not a KAN"
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return "not a float32/float64 CPU model"
    if torch.is_autocast_enabled("cpu"):
        return "autocast is on"
    if any(a for a in getattr(model, "_arity", [])):
        return "multiplication nodes"
    for l, layer in enumerate(layers):
        if model.symbolic_fun[l].is_active():
            return "symbolic edges are on"
        if layer.base_fun_name not in _BASE_KINDS:
            return f"base function {layer.base_fun_name!r}"
        if layer.k > max_k():
            return "spline order too high"
        if layer.coef.dtype != x.dtype or layer.grid.device.type != "cpu":
            return "dtype or device mismatch"
        if l > 0 and layer.in_dim != layers[l - 1].out_dim:
            return "layer widths do not chain"
    return None


class KANObjective:
    """The training objective of a numeric KAN on fixed data, evaluated natively.

    ``objective()`` returns ``mse + lamb * (sparsity + coefficient penalties)`` (pykan's
    regularizer, as :func:`kanlab.train.regularization` computes it) and writes the gradient of
    every trainable parameter into its ``.grad``, which must exist. Values match the autograd
    path to rounding (the kernel accumulates in float64). Check
    :func:`objective_unsupported` first.
    """

    def __init__(self, model, x: torch.Tensor, y: torch.Tensor | None, lamb=0.0, lamb_l1=1.0,
                 lamb_entropy=2.0, lamb_coef=0.0, lamb_coefdiff=0.0,
                 reg_metric="edge_forward_spline_n"):
        if _load() is None:
            raise RuntimeError(f"kanlab's native library is not available: {_load_error}")
        self.model = model
        self.layers = list(model.act_fun)
        why = objective_unsupported(model, x)
        if why is not None:
            raise ValueError(f"KANObjective cannot evaluate this model: {why}")
        if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] != self.layers[0].in_dim:
            raise ValueError(f"x must be (batch >= 1, {self.layers[0].in_dim}), got {tuple(x.shape)}")
        if y is not None and (y.dim() != 2 or tuple(y.shape) != (x.shape[0], self.layers[-1].out_dim)):
            raise ValueError(f"y must be ({x.shape[0]}, {self.layers[-1].out_dim}), got {tuple(y.shape)}")
        self.x = x.detach().contiguous()
        self.y = y.detach().to(x.dtype).contiguous() if y is not None else None
        self.dtype = x.dtype
        self.hyper = (ctypes.c_double * 6)(float(lamb), float(lamb_l1), float(lamb_entropy),
                                           float(lamb_coef), float(lamb_coefdiff),
                                           float(_NORMALIZED[reg_metric]))
        self.out = (ctypes.c_double * 3)()
        self._probe = None
        self._fn = getattr(_lib, f"kanlab_kan_objective_{'f32' if x.dtype == torch.float32 else 'f64'}")
        self.mse = self.reg = float("nan")

    def _descriptor(self):
        """Build the pointer tables the library reads (see :meth:`_refresh` for when)."""
        plans = [layer.plan() for layer in self.layers]
        L = len(self.layers)
        meta = (ctypes.c_int64 * (8 * L))()
        ptrs = (ctypes.c_void_p * (13 * L))()
        keep = []
        for l, (layer, plan) in enumerate(zip(self.layers, plans)):
            tab = plan.native_tables()
            if tab is None:
                raise RuntimeError("native tables unavailable")
            meta[8 * l: 8 * l + 8] = [layer.in_dim, layer.out_dim, tab.S, tab.P, tab.k,
                                      int(tab.uniform), _BASE_KINDS[layer.base_fun_name],
                                      int(layer.bias is not None)]
            ts = [layer.scale_base, layer.scale_sp, layer.coef, layer.mask, layer.bias]
            for t in ts:
                if t is not None and not t.is_contiguous():
                    raise RuntimeError("non-contiguous parameter")
            gs = [t.grad if t is not None and t.requires_grad else None
                  for t in (layer.scale_base, layer.scale_sp, layer.coef, layer.bias)]
            for g in gs:
                if g is not None and (not g.is_contiguous() or g.dtype != self.dtype):
                    raise RuntimeError("gradient buffers must be contiguous and of the model's dtype")
            vals = [tab.t0.data_ptr(), tab.inv_h.data_ptr(), tab.knots.data_ptr(),
                    tab.poly.data_ptr()]
            vals += [t.data_ptr() if t is not None else None for t in ts]
            vals += [g.data_ptr() if g is not None else None for g in gs]
            ptrs[13 * l: 13 * l + 13] = vals
            keep += [plan, tab]
        self._meta, self._ptrs, self._keep = meta, ptrs, keep

    def _tensors(self):
        """Every tensor whose storage the descriptor points into, with what decides its use."""
        out = []
        for layer in self.layers:
            out.append((layer.grid, layer.grid._version))
            for t in (layer.scale_base, layer.scale_sp, layer.coef, layer.mask, layer.bias):
                if t is not None:
                    g = t.grad if t.requires_grad else None
                    out.append((t, t.requires_grad))
                    if g is not None:
                        out.append((g, 0))
        return out

    def _fresh(self) -> bool:
        """Whether the cached descriptor still describes the model: the same tensors (held by
        the descriptor, so their addresses cannot be reused), storage, grid versions and
        trainable flags."""
        if self._probe is None:
            return False
        cur = self._tensors()
        if len(cur) != len(self._probe):
            return False
        return all(a is b and a.data_ptr() == p and f == g
                   for (a, f), (b, g, p) in zip(cur, self._probe))

    def _refresh(self) -> None:
        if not self._fresh():
            self._descriptor()
            self._probe = [(t, f, t.data_ptr()) for t, f in self._tensors()]

    def _call(self, x, y, pred, want_grad):
        self._refresh()
        rc = self._fn(len(self.layers), self._meta, self._ptrs, x.data_ptr(),
                      y.data_ptr() if y is not None else None, x.shape[0], self.hyper, self.out,
                      pred.data_ptr() if pred is not None else None, want_grad,
                      torch.get_num_threads())
        if rc != 0:
            raise RuntimeError(f"native KAN objective failed (code {rc})")

    def objective(self) -> float:
        """Objective at the current parameters; gradients written into the parameters' .grad."""
        for layer in self.layers:
            for t in (layer.scale_base, layer.scale_sp, layer.coef, layer.bias):
                if t is not None and t.requires_grad and t.grad is None:
                    t.grad = torch.zeros_like(t)
        self._call(self.x, self.y, None, 1)
        self.mse, self.reg = self.out[1], self.out[2]
        return self.out[0]

    def lbfgs_step(self, opt) -> float:
        """One step of :class:`kanlab.optim.LBFGS` ``opt`` (over this model's parameters) run
        natively: the same algorithm and settings as ``opt.step``, with every evaluation of
        the objective inside the library. Returns the loss at the start of the step, like
        ``opt.step``; the optimizer's counters and state are updated."""
        st = opt.native_state()
        for layer in self.layers:  # the optimizer's flat buffers back every .grad
            for t in (layer.scale_base, layer.scale_sp, layer.coef, layer.bias):
                if t is not None and t.requires_grad and t.grad is None:
                    raise RuntimeError("lbfgs_step needs the optimizer's gradient views")
        self._refresh()
        fn = getattr(_lib, f"kanlab_lbfgs_step_{'f32' if self.dtype == torch.float32 else 'f64'}")
        n = opt.flat.numel()
        evals = fn(len(self.layers), self._meta, self._ptrs, self.x.data_ptr(), self.y.data_ptr(),
                   self.x.shape[0], self.hyper, self.out, torch.get_num_threads(), n,
                   opt.flat.data_ptr(), opt.grad.data_ptr(),
                   None if opt.scale is None else opt.scale.data_ptr(), st["d"].data_ptr(),
                   st["prev"].data_ptr(), st["S"].data_ptr(), st["Y"].data_ptr(),
                   st["istate"].data_ptr(), st["dstate"].data_ptr())
        if evals < 0:
            raise RuntimeError("native L-BFGS step failed")
        opt.sync_native_state()
        self.mse, self.reg = self.out[1], self.out[2]
        return float(st["dstate"][5])

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The model's output on ``x`` (no gradients)."""
        if x.dim() != 2 or x.shape[1] != self.layers[0].in_dim:
            raise ValueError(f"x must be (batch, {self.layers[0].in_dim}), got {tuple(x.shape)}")
        x = x.detach().to("cpu", self.dtype).contiguous()
        pred = torch.empty(x.shape[0], self.layers[-1].out_dim, dtype=self.dtype)
        if x.shape[0] == 0:
            return pred
        self._call(x, None, pred, -1)
        return pred
