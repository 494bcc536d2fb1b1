"""Model files: one file holding the config and the state_dict.

Written atomically (temporary file in the same folder, flushed, then renamed) and read with
``torch.load(weights_only=True)``, so loading never runs code from the file.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

__all__ = ["save_model", "load_model", "FORMAT", "FORMAT_VERSION"]

FORMAT = "kanlab.KAN"
FORMAT_VERSION = 1


def save_model(model, path) -> None:
    """Save ``model`` to ``path`` atomically."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder: give a file name such as {path / 'model.kan'}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.exists():
        raise ValueError(f"folder {folder} does not exist: create it first")
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder: choose a path inside a folder")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "trainable": {n: bool(p.requires_grad) for n, p in model.named_parameters()},
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:64]}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp makes the file private; give it the mode a plain open() would (or the old one)
        if path.exists():
            mode = path.stat().st_mode & 0o7777
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load_model(path, map_location=None, base_fun=None):
    """Load a model written by :func:`save_model`.

    Args:
        path: model file.
        map_location: device to load onto (default: where it was saved from, i.e. CPU).
        base_fun: the callable, for a model saved with a custom base function.
    """
    from .model import KAN

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no model file at {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError,
            OSError, KeyError, AttributeError, IndexError) as err:
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
    try:
        model = KAN(**cfg)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path} holds an invalid config: {err}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path} does not match its config (damaged file?): {err}") from None
    for name, p in model.named_parameters():
        p.requires_grad_(bool(trainable.get(name, p.requires_grad)))
    if map_location is not None:
        model = model.to(map_location)
    return model
