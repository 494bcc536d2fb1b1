"""Data sets generated from formulas (pykan's ``create_dataset``)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

__all__ = ["create_dataset"]


def _ranges(ranges, n_var: int) -> np.ndarray:
    arr = np.asarray(ranges, dtype=np.float64)
    if arr.ndim == 1:
        if arr.shape != (2,):
            raise ValueError(f"ranges must be [low, high] or one pair per variable, got {ranges!r}")
        arr = np.tile(arr, (n_var, 1))
    if arr.shape != (n_var, 2):
        raise ValueError(f"ranges must hold {n_var} pairs [low, high], got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr[:, 1] < arr[:, 0]):
        raise ValueError(f"every range must be finite with low <= high, got {arr.tolist()}")
    return arr


def create_dataset(
    f: Callable,
    n_var: int = 2,
    f_mode: str = "col",
    ranges=(-1, 1),
    train_num: int = 1000,
    test_num: int = 1000,
    normalize_input: bool = False,
    normalize_label: bool = False,
    device="cpu",
    seed: int = 0,
    dtype: torch.dtype | None = None,
) -> dict:
    """Sample inputs uniformly in ``ranges`` and label them with ``f``.

    Args:
        f: maps (n, n_var) inputs to (n,) or (n, n_out) labels (``f_mode="col"``), or
            (n_var, n) inputs to labels (``f_mode="row"``).
        n_var: number of input variables.
        ranges: ``[low, high]`` for all variables or one pair per variable.
        train_num, test_num: number of samples per split.
        normalize_input, normalize_label: standardize with the training split's mean and std.
        device: device of the returned tensors.
        seed: seed of a private generator; the global RNG is not touched.
        dtype: tensor dtype (default: torch's default dtype).

    Returns:
        dict with ``train_input`` (train_num, n_var), ``train_label`` (train_num, n_out),
        ``test_input``, ``test_label``.
    """
    if isinstance(n_var, bool) or not isinstance(n_var, (int, np.integer)) or n_var < 1:
        raise ValueError(f"n_var must be a positive integer, got {n_var!r}")
    for name, n in (("train_num", train_num), ("test_num", test_num)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"{name} must be a positive integer, got {n!r}")
    if f_mode not in ("col", "row"):
        raise ValueError(f"f_mode must be 'col' or 'row', got {f_mode!r}")
    r = _ranges(ranges, n_var)
    dtype = dtype or torch.get_default_dtype()
    gen = torch.Generator().manual_seed(int(seed))
    lo = torch.tensor(r[:, 0], dtype=dtype)
    width = torch.tensor(r[:, 1] - r[:, 0], dtype=dtype)

    def sample(n):
        return torch.rand(n, n_var, generator=gen, dtype=dtype) * width + lo

    train_input, test_input = sample(train_num), sample(test_num)

    def label(x):
        y = f(x) if f_mode == "col" else f(x.T)
        y = torch.as_tensor(y, dtype=dtype)
        if y.dim() == 1:
            y = y[:, None]
        if y.dim() != 2 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"f must return one label row per sample: got shape {tuple(y.shape)} for "
                f"{x.shape[0]} samples"
            )
        if not bool(torch.isfinite(y).all()):
            raise ValueError("f returned NaN or Inf on the sampled inputs: narrow `ranges`")
        return y

    train_label, test_label = label(train_input), label(test_input)

    def standardize(train, test):
        mean = train.mean(0, keepdim=True)
        # one training row has no spread: keep std 1 (and avoid torch's n-1 warning)
        std = train.std(0, keepdim=True) if train.shape[0] > 1 else torch.zeros_like(mean)
        std = torch.where(std > 0, std, torch.ones_like(std))
        return (train - mean) / std, (test - mean) / std

    if normalize_input:
        train_input, test_input = standardize(train_input, test_input)
    if normalize_label:
        train_label, test_label = standardize(train_label, test_label)
    return {
        "train_input": train_input.to(device),
        "test_input": test_input.to(device),
        "train_label": train_label.to(device),
        "test_label": test_label.to(device),
    }
