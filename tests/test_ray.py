"""Ray backend of the parallel sweeps (runs only where ray is installed: an optional extra)."""
import pytest

ray = pytest.importorskip("ray")
import kanlab  # noqa: E402
from kanlab.ablate import ablate  # noqa: E402
from sweep_cases import parallel_discover_case  # noqa: E402


def test_ray_backend_equals_serial():
    X, y, kw = parallel_discover_case()
    serial = kanlab.discover(X, y, **kw)
    par = kanlab.discover(X, y, workers=2, backend="ray", **kw)
    assert [a["r2"] for a in par.attempts] == [a["r2"] for a in serial.attempts]
    assert str(par.formula) == str(serial.formula)
    small = dict(task="toy", base_funs=("silu", "zero"), biases=(True,), seeds=(0,), steps=5,
                 plot=False, lib=("x", "x^2", "sin", "exp"))
    a1 = ablate(workers=1, **small)
    a2 = ablate(workers=2, backend="ray", **small)
    assert [r["test_rmse"] for r in a1.rows] == [r["test_rmse"] for r in a2.rows]
