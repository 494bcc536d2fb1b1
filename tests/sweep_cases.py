"""Test helper: one small discover() case for serial-vs-parallel comparisons."""
import numpy as np


def parallel_discover_case():
    """(X, y, discover keywords): two attempts that always both run (the R2 target is
    unreachable), small enough for a test."""
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (200, 2))
    y = np.sin(np.pi * X[:, 0]) + X[:, 1] ** 2 + 0.01 * rng.normal(size=200)
    kw = dict(time_budget=300, max_attempts=2, r2_target=2.0, steps=(6, 4, 4), grid=3,
              refine_grid=4, lib=["x", "x^2", "sin"])
    return X, y, kw
