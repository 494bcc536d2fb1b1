"""Validation of training data: pykan-style dataset dicts, finite values, numeric types."""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["check_finite", "prepare_dataset"]


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise ValueError when ``t`` holds NaN or Inf, saying where."""
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        bad = (~torch.isfinite(t)).nonzero()
        first = tuple(int(v) for v in bad[0]) if bad.numel() else ()
        raise ValueError(
            f"{name} contains NaN or Inf ({int((~torch.isfinite(t)).sum())} entries, first at "
            f"index {first}): remove or impute those rows before training"
        )


def _numeric(v, key: str) -> torch.Tensor:
    """``dataset[key]`` as a tensor, or a ValueError naming the key when it holds text or
    objects that are not numbers."""
    try:
        return torch.as_tensor(v)
    except (TypeError, ValueError, RuntimeError):
        pass
    try:  # object arrays and nested lists of numbers
        return torch.as_tensor(np.asarray(v, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"dataset['{key}'] must hold numbers (an array or tensor); it holds "
                         f"text or other objects: convert or drop those columns first") from None


def prepare_dataset(model, dataset: dict, need_labels_match: bool = True) -> dict:
    """Validate a pykan-style dataset dict and move it to the model's dtype and device."""
    if not isinstance(dataset, dict):
        raise ValueError(
            "dataset must be a dict with 'train_input', 'train_label', 'test_input', 'test_label'"
        )
    missing = [k for k in ("train_input", "train_label", "test_input", "test_label") if k not in dataset]
    if missing:
        raise ValueError(f"dataset is missing {missing}; create it with kanlab.create_dataset")
    n_in = model.width_in[0]
    n_out = model.width_out[-1]
    out = {}
    for split in ("train", "test"):
        x = _numeric(dataset[f"{split}_input"], f"{split}_input")
        y = _numeric(dataset[f"{split}_label"], f"{split}_label")
        if x.dim() == 1 and n_in == 1:
            x = x[:, None]
        if x.dim() != 2 or x.shape[1] != n_in:
            raise ValueError(f"{split}_input must have shape (n, {n_in}), got {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"{split}_input is empty: a dataset needs at least one row per split")
        if y.dim() == 1 and need_labels_match:
            y = y[:, None]  # regression labels (n,) -> (n, 1); class indices stay (n,)
        if y.dim() == 0 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"{split}_label has {y.shape[0] if y.dim() else 0} rows but {split}_input has "
                f"{x.shape[0]}"
            )
        if need_labels_match and (y.dim() != 2 or y.shape[1] != n_out):
            raise ValueError(
                f"{split}_label must have shape (n, {n_out}) to match the model's outputs, got "
                f"{tuple(y.shape)}"
            )
        if x.is_complex() or y.is_complex():
            raise ValueError(f"dataset['{split}_input'/'{split}_label'] must be real, got "
                             f"{x.dtype} and {y.dtype}")
        x = x.to(device=model.device, dtype=model.dtype)
        if y.is_floating_point() or need_labels_match:  # regression targets become floats
            y = y.to(device=model.device, dtype=model.dtype)
        else:
            y = y.to(device=model.device)
        check_finite(x, f"dataset['{split}_input']")
        check_finite(y, f"dataset['{split}_label']")
        out[f"{split}_input"], out[f"{split}_label"] = x, y
    return out
