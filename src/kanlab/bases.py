"""Base functions ``b(x)`` of the residual path, by name."""
from __future__ import annotations

from typing import Callable

import torch

__all__ = ["BASE_FUNCTIONS", "resolve_base_fun"]


def _zero(x: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(x)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


BASE_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": torch.nn.functional.silu,
    "identity": _identity,
    "zero": _zero,
    "tanh": torch.tanh,
    "gelu": torch.nn.functional.gelu,
    "relu": torch.relu,
}


def resolve_base_fun(base_fun) -> tuple[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Return (name, function) for a base function given by name or as a callable.

    A callable is used as is and gets the name ``"custom"`` (a model with a custom base
    function saves its weights but needs the same callable passed again to ``KAN.load``).
    """
    if callable(base_fun) and not isinstance(base_fun, str):
        if isinstance(base_fun, torch.nn.SiLU):
            return "silu", BASE_FUNCTIONS["silu"]
        if isinstance(base_fun, torch.nn.Identity):
            return "identity", BASE_FUNCTIONS["identity"]
        return "custom", base_fun
    if isinstance(base_fun, str):
        key = base_fun.lower()
        if key in BASE_FUNCTIONS:
            return key, BASE_FUNCTIONS[key]
        raise ValueError(
            f"unknown base function {base_fun!r}: use one of {sorted(BASE_FUNCTIONS)} or pass a callable"
        )
    raise ValueError(f"base_fun must be a name or a callable, got {type(base_fun).__name__}")
