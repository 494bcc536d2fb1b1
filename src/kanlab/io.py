"""Model files: one file holding the config and the state_dict.

Written atomically (temporary file in the same folder, flushed, then renamed) and read with
``torch.load(weights_only=True)``, so loading never runs code from the file.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from .atomic import atomic_write

__all__ = ["save_model", "load_model", "FORMAT", "FORMAT_VERSION"]

FORMAT = "kanlab.KAN"
FORMAT_VERSION = 2  # 2: symbolic edges (names + affine + masks) and multiplication nodes


def check_output_path(path, example: str) -> Path:
    """``path`` as a Path to a new or existing file in an existing folder, else ValueError."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder: give a file name such as {path / example}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.exists():
        raise ValueError(f"folder {folder} does not exist: create it first")
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder: choose a path inside a folder")
    return path


def save_model(model, path) -> None:
    """Save ``model`` to ``path`` atomically."""
    path = check_output_path(path, "model.kan")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "trainable": {n: bool(p.requires_grad) for n, p in model.named_parameters()},
        "symbolic": [[list(row) for row in s.funs_name] for s in model.symbolic_fun],
    }
    payload["checksum"] = _checksum(payload)
    atomic_write(path, lambda fh: torch.save(payload, fh), binary=True)


def load_model(path, map_location=None, base_fun=None, *, cls):
    """Load a model written by :func:`save_model`.

    Args:
        path: model file.
        map_location: device to load onto (default: where it was saved from, i.e. CPU).
        base_fun: the callable, for a model saved with a custom base function.
        cls: the model class to build (``KAN.load`` passes its own class).
    """

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no model file at {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to parse an untrusted file means "unreadable"
        # (damaged bytes surface as RuntimeError, UnpicklingError, BadZipFile, EOFError, but
        # also AssertionError, TypeError, UnicodeDecodeError, ... from torch's reader)
        raise ValueError(
            f"{path} is not a readable kanlab model file (corrupt, truncated or another format): "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a kanlab model file (no '{FORMAT}' header)")
    version = payload.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{path} has an invalid format_version {version!r}: the file is damaged")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path} was written in model format {version}, newer than this kanlab reads "
            f"({FORMAT_VERSION}): upgrade kanlab"
        )
    cfg = payload.get("config")
    if not isinstance(cfg, dict):
        raise ValueError(f"{path} has no valid config (got {type(cfg).__name__}): the file is damaged")
    cfg = dict(cfg)
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise ValueError(f"{path} has no state_dict: the file is damaged")
    trainable = payload.get("trainable", {})
    if not isinstance(trainable, dict):
        raise ValueError(f"{path} has an invalid 'trainable' field: the file is damaged")
    if cfg.get("base_fun") == "custom":
        if base_fun is None:
            raise ValueError(
                f"{path} was saved with a custom base function: pass it again, "
                "KAN.load(path, base_fun=your_function)"
            )
        cfg["base_fun"] = base_fun
    _check_tensors(path, cfg, state)
    _check_size(path, cfg, state)
    if "checksum" in payload and payload["checksum"] != _checksum(payload):
        raise ValueError(f"{path} is damaged: its contents do not match the checksum stored "
                         f"when it was saved (a changed byte?); save the model again")
    try:
        model = cls(**cfg)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path} holds an invalid config: {err}") from None
    names = payload.get("symbolic")
    if names is None:  # no symbolic edge may be on without its function's name
        if any(isinstance(v, torch.Tensor) and k.startswith("symbolic_fun.") and k.endswith(".mask")
               and bool((v != 0).any()) for k, v in state.items()):
            raise ValueError(f"{path} has symbolic edges but no function names: the file is damaged")
    else:
        _check_names(path, names, model)
    try:
        if version == 1:  # written before symbolic edges existed: they start switched off
            missing, unexpected = model.load_state_dict(state, strict=False)
            if unexpected or any(not k.startswith("symbolic_fun.") for k in missing):
                raise RuntimeError(f"missing keys {missing}, unexpected keys {unexpected}")
        else:
            model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path} does not match its config (damaged file?): {err}") from None
    if names is not None:
        for layer, rows in zip(model.symbolic_fun, names):
            layer.funs_name = [list(r) for r in rows]
    for name, p in model.named_parameters():
        p.requires_grad_(bool(trainable.get(name, p.requires_grad)))
    if map_location is not None:
        model = model.to(map_location)
    return model


def _checksum(payload: dict) -> str:
    """SHA-256 of the config, the symbolic names, the trainable flags and every tensor."""
    h = hashlib.sha256()
    for key in ("config", "symbolic", "trainable"):
        h.update(json.dumps(payload.get(key), sort_keys=True, default=str).encode())
    state = payload.get("state_dict") or {}
    for k in sorted(state):
        v = state[k]
        h.update(k.encode())
        if isinstance(v, torch.Tensor):
            t = v.detach().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _check_tensors(path, cfg: dict, state: dict) -> None:
    """Every tensor backed by its own storage (no zero strides or storage smaller than the
    shape claims: such a tensor expands to any size once used), finite, and of the model's
    dtype where it is a floating tensor."""
    want = cfg.get("dtype")
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"{path}: state entry {k!r} is not a tensor: the file is damaged")
        if v.numel() > 1 and any(st == 0 and n > 1 for st, n in zip(v.stride(), v.shape)):
            raise ValueError(f"{path}: tensor {k!r} claims shape {tuple(v.shape)} over a "
                             f"repeated (zero-stride) storage: the file is damaged or crafted")
        if v.numel():
            last = v.storage_offset() + sum((n - 1) * st for n, st in zip(v.shape, v.stride()))
            if (last + 1) * v.element_size() > v.untyped_storage().nbytes():
                raise ValueError(f"{path}: tensor {k!r} claims more data than the file holds: "
                                 f"the file is damaged")
        if v.is_floating_point():
            if want is not None and str(v.dtype).replace("torch.", "") != want:
                raise ValueError(f"{path}: tensor {k!r} is {str(v.dtype).replace('torch.', '')} "
                                 f"but the model is {want}: the file is damaged")
            if not bool(torch.isfinite(v).all()):
                raise ValueError(f"{path}: tensor {k!r} holds NaN or Inf values: the model "
                                 f"cannot predict with it (was it saved after a diverged fit?)")


def _check_names(path, names, model) -> None:
    """Symbolic function names: right shape, strings, and registered in this process."""
    from .symbolic.library import SYMBOLIC_LIB

    ok = isinstance(names, list) and len(names) == model.depth
    if ok:
        for l, rows in enumerate(names):
            shape_ok = (isinstance(rows, list) and len(rows) == model.width_out[l + 1]
                        and all(isinstance(r, list) and len(r) == model.width_in[l] for r in rows))
            if not shape_ok or not all(isinstance(n, str) for r in rows for n in r):
                ok = False
                break
    if not ok:
        raise ValueError(f"{path} has an invalid list of symbolic function names: the file is damaged")
    unknown = sorted({n for rows in names for r in rows for n in r if n not in SYMBOLIC_LIB})
    if unknown:
        raise ValueError(
            f"{path} uses symbolic function(s) {unknown} that are not registered in this session: "
            f"register them first with kanlab.add_symbolic(name, torch_fn, sympy_fn, complexity)"
        )


def _check_size(path, cfg: dict, state: dict) -> None:
    """Refuse a config that asks for more spline coefficients than the file holds.

    Building the model allocates and initializes every coefficient before the state is loaded,
    so a damaged or hostile config (``grid=10**9``) would otherwise exhaust memory or run for
    hours instead of failing. Configs that cannot be parsed are left to the constructor.
    """
    from .widths import parse_arity as _parse_arity
    from .widths import parse_width as _parse_width
    from .widths import per_layer as _per_layer

    try:
        width = _parse_width(cfg.get("width"))
        arity = _parse_arity(cfg.get("mult_arity", 2), width)
        depth = len(width) - 1
        grids = [int(g) for g in _per_layer("grid", cfg.get("grid", 3), depth)]
        ks = [int(k) for k in _per_layer("k", cfg.get("k", 3), depth)]
    except (TypeError, ValueError):
        return
    w_in = [w[0] + w[1] for w in width]
    w_out = [w[0] + sum(a) for w, a in zip(width, arity)]
    need = sum(w_in[l] * w_out[l + 1] * (grids[l] + ks[l]) for l in range(depth))
    have = sum(v.numel() for k, v in state.items()
               if isinstance(v, torch.Tensor) and isinstance(k, str) and k.endswith(".coef"))
    if need > have:
        raise ValueError(
            f"{path} does not match its config (damaged file?): the config asks for {need} "
            f"spline coefficients but the file holds {have}"
        )
