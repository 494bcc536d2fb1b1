"""pykan's model history (versions ``round.state``), kept in memory unless a folder is named.

pykan writes every version of a model to ``./model`` by default. Here versions are snapshots in
memory (a model copy without its cached data); they go to disk only when the user passes a
``ckpt_path``: one kanlab model file per version, ``{ckpt_path}/{round}.{state}``, beside a
``history.txt`` log in pykan's format.
"""
from __future__ import annotations

import copy
from pathlib import Path


class History:
    """Versions of one model lineage, shared by the models derived from it (refine, prune)."""

    def __init__(self, ckpt_path=None):
        self.ckpt_path = None if ckpt_path is None else Path(ckpt_path)
        self.versions: dict[str, object] = {}
        self.lines: list[str] = []
        if self.ckpt_path is not None:
            self.ckpt_path.mkdir(parents=True, exist_ok=True)

    def note(self, line: str) -> None:
        self.lines.append(line)
        if self.ckpt_path is not None:
            with open(self.ckpt_path / "history.txt", "a") as fh:
                fh.write(line + "\n")

    def store(self, version: str, model) -> None:
        self.versions[version] = snapshot(model)
        if self.ckpt_path is not None:
            model.save(self.ckpt_path / version)

    def get(self, version: str):
        version = str(version)
        if version in self.versions:
            return snapshot(self.versions[version])
        if self.ckpt_path is not None and (self.ckpt_path / version).exists():
            from .MultKAN import MultKAN

            return MultKAN.loadckpt(self.ckpt_path / version)
        known = ", ".join(self.versions) or "none"
        raise KeyError(f"no model version {version!r} in this model's history (known: {known})")


def snapshot(model):
    """A deep copy of ``model`` that shares its history and cached input instead of copying them."""
    hist, cache = model.__dict__.get("_history"), model.__dict__.get("_cache_x")
    model.__dict__["_history"], model.__dict__["_cache_x"] = None, None
    try:
        twin = copy.deepcopy(model)
    finally:
        model.__dict__["_history"], model.__dict__["_cache_x"] = hist, cache
    twin.__dict__["_history"], twin.__dict__["_cache_x"] = hist, cache
    return twin
