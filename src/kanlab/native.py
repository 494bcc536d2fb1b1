"""kanlab's native CPU kernels (``_native.cpp``), loaded with ctypes.

The library is built by ``pip install`` (setup.py) when a C++ compiler is present; it has no
PyTorch headers, so it does not depend on the installed torch's C++ ABI. Without it (no compiler,
an unusual platform, ``KANLAB_NATIVE=0`` in the environment, or :func:`set_enabled(False)`)
every layer runs the pure-PyTorch path, which computes the same values.

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
        if lib.kanlab_native_abi() != 2:
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
