"""Ray backend of the parallel sweeps (runs only where ray is installed: an optional extra)."""
import numpy as np
import pytest

ray = pytest.importorskip("ray")
import kanlab  # noqa: E402
from kanlab.ablate import ablate  # noqa: E402


def test_ray_backend_equals_serial():
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (200, 2))
    y = np.sin(np.pi * X[:, 0]) + X[:, 1] ** 2 + 0.01 * rng.normal(size=200)
    kw = dict(time_budget=300, max_attempts=2, r2_target=2.0, steps=(6, 4, 4), grid=3,
              refine_grid=4, lib=["x", "x^2", "sin"])
    serial = kanlab.discover(X, y, **kw)
    par = kanlab.discover(X, y, workers=2, backend="ray", **kw)
    assert [a["r2"] for a in par.attempts] == [a["r2"] for a in serial.attempts]
    assert str(par.formula) == str(serial.formula)
    small = dict(task="toy", base_funs=("silu", "zero"), biases=(True,), seeds=(0,), steps=5,
                 plot=False, lib=("x", "x^2", "sin", "exp"))
    a1 = ablate(workers=1, **small)
    a2 = ablate(workers=2, backend="ray", **small)
    assert [r["test_rmse"] for r in a1.rows] == [r["test_rmse"] for r in a2.rows]
