"""The ablation runner: kanlab.ablate.ablate() and ``kanlab ablate``."""
from __future__ import annotations

import csv
import importlib
import math
import sys
import os
from typing import ClassVar

import pytest
import sympy
import torch

from kanlab import KAN
from kanlab.ablate import FIELDS, TASKS, AblationResult, Task, ablate
from kanlab.cli import main

ab = importlib.import_module("kanlab.ablate")  # the module (kanlab.ablate is the function)

# tiny settings: every run takes about a second
LIB = ("x", "x^2", "sin", "exp")
TINY = dict(width=[2, 2, 1], steps=2, train_num=100, test_num=100, lib=LIB)


def softsign(x: torch.Tensor) -> torch.Tensor:
    """A custom base function defined at module level (picklable)."""
    return x / (1 + x.abs())


def line(x: torch.Tensor) -> torch.Tensor:
    """A custom task: 2 x_1 - x_2."""
    return 2 * x[:, [0]] - x[:, [1]]


class RecordingKAN(KAN):
    """KAN that remembers every instance the ablation builds, to check what it trains (models
    derived by prune() or refine() have the same class but are not recorded)."""

    built: ClassVar[list] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller == ab.__name__:
            RecordingKAN.built.append(self)


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    """3 base functions x bias on/off, one seed, tiny; files written to a fresh folder."""
    out = tmp_path_factory.mktemp("abl") / "results"
    mp = pytest.MonkeyPatch()
    RecordingKAN.built = []
    mp.setattr(ab, "KAN", RecordingKAN)
    try:
        res = ablate("toy", ("silu", "identity", "zero"), (True, False), (0,), out_dir=out, **TINY)
    finally:
        mp.undo()
    return res, out, list(RecordingKAN.built)


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


# ----------------------------------------------------------------------------- values
def test_rows_complete_finite_and_in_order(grid_run):
    res, _, _ = grid_run
    assert isinstance(res, AblationResult)
    assert [(r["base_fun"], r["bias"]) for r in res.rows] == [
        ("silu", True), ("silu", False), ("identity", True), ("identity", False),
        ("zero", True), ("zero", False)]
    for r in res.rows:
        assert tuple(r) == FIELDS
        assert r["task"] == "toy" and r["seed"] == 0
        for key in ("test_rmse", "train_rmse", "spline_share", "seconds"):
            assert isinstance(r[key], float) and math.isfinite(r[key]), (key, r)
        assert 0 < r["test_rmse"] < 10 and r["seconds"] > 0
        assert 0.0 <= r["spline_share"] <= 1.0
        assert r["edges_total"] == 2 * 2 + 2 * 1  # [2, 2, 1]
        assert 0 <= r["edges_after_prune"] <= r["edges_total"]
        assert len(r["pruned_width"]) == 3 and r["pruned_width"][0] == 2
        assert len(r["spline_share_layers"]) == 2
        assert isinstance(r["recovered"], bool)  # the toy has a target
        assert isinstance(r["formula"], str) and r["formula"]
        sympy.sympify(r["formula"])  # the formula is valid sympy


def test_base_and_bias_reach_the_model(grid_run):
    res, _, built = grid_run
    assert len(built) == len(res.rows)  # one model per run, in run order
    for r, m in zip(res.rows, built):
        assert m.base_fun_name == r["base_fun"]
        assert m.use_bias == r["bias"]
        assert all((b is None) != r["bias"] for b in m.node_bias)  # bias off: no bias at all
    # the zero base has no base path: the splines carry everything
    zero = [r for r in res.rows if r["base_fun"] == "zero"]
    assert all(r["spline_share"] == 1.0 for r in zero)
    assert all(r["spline_share"] < 1.0 for r in res.rows if r["base_fun"] != "zero")
    # the base function changes the trained model (same seed, data and initial splines)
    rmse = {(r["base_fun"], r["bias"]): r["test_rmse"] for r in res.rows}
    assert len({rmse[(b, True)] for b in ("silu", "identity", "zero")}) == 3
    assert rmse[("silu", True)] != rmse[("silu", False)]


def test_recovers_the_toy_with_silu():
    res = ablate("toy", ("silu",), (True,), (0,), width=[2, 1, 1], steps=10, train_num=200,
                 test_num=200)
    (row,) = res.rows
    assert row["recovered"] is True, row
    x1, x2 = sympy.symbols("x_1 x_2")
    assert sympy.simplify(sympy.sympify(row["formula"], locals={"x_1": x1, "x_2": x2})
                          - sympy.exp(sympy.sin(sympy.pi * x1) + x2 ** 2)) == 0
    assert row["symbolic_test_rmse"] < 1e-4
    assert row["edges_after_prune"] == 3


def test_recovery_check_accepts_equivalent_forms_and_rejects_near_misses():
    x1, x2 = sympy.symbols("x_1 x_2")
    target = TASKS["toy"].target_expr()
    X = torch.rand(50, 2, generator=torch.Generator().manual_seed(0)).double().numpy() * 2 - 1
    same = sympy.exp(x2 ** 2) * sympy.exp(sympy.sin(sympy.pi * x1))
    assert ab._same_function(same, target, [x1, x2], X)
    near = target + (9 - 9 * sympy.sin(sympy.Rational(11, 7))) / 11  # off by ~2e-7
    assert not ab._same_function(near, target, [x1, x2], X)
    assert not ab._same_function(sympy.exp(x2 ** 2 + sympy.sin(3.14159 * x1)), target, [x1, x2], X)
    assert not ab._same_function(sympy.log(x1 - 5), target, [x1, x2], X)  # complex: no


def test_custom_task_callable_base_and_no_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    task = Task("line", line, n_var=2, ranges=(-2.0, 2.0))
    res = ablate(task, (softsign, "identity"), (False,), 1, **TINY)
    assert [r["base_fun"] for r in res.rows] == ["softsign", "identity"]
    assert all(r["task"] == "line" and r["recovered"] is None for r in res.rows)
    assert res.rows[0]["test_rmse"] != res.rows[1]["test_rmse"]
    assert os.listdir(tmp_path) == []  # nothing written without out_dir
    # a target turns the recovered column on
    with_target = Task("line", line, n_var=2, target="2*x_1 - x_2")
    assert with_target.target_expr() == 2 * sympy.Symbol("x_1") - sympy.Symbol("x_2")


# ----------------------------------------------------------------------------- parallel
def test_parallel_equals_serial():
    kw = dict(task="toy", base_funs=("silu", "zero"), biases=(True,), seeds=(0,), **TINY)
    threads = torch.get_num_threads()
    env = dict(os.environ)
    serial = ablate(**kw)
    parallel = ablate(**kw, workers=2)
    assert torch.get_num_threads() == threads and dict(os.environ) == env
    assert len(serial.rows) == len(parallel.rows) == 2
    for a, b in zip(serial.rows, parallel.rows):
        assert a["test_rmse"] == b["test_rmse"]
        for key in FIELDS:
            if key != "seconds":
                assert _same(a[key], b[key]), (key, a[key], b[key])


def test_unpicklable_callables_need_one_worker():
    with pytest.raises(ValueError, match="module level"):
        ablate("toy", (lambda x: x,), workers=2)
    task = Task("local", lambda x: x[:, [0]], n_var=2)
    with pytest.raises(ValueError, match="module level"):
        ablate(task, workers=2)


# ----------------------------------------------------------------------------- output
def test_files_written_and_readable(grid_run):
    res, out, _ = grid_run
    assert sorted(os.listdir(out)) == ["ablation.png", "results.csv", "results.md"]
    with open(out / "results.csv", newline="", encoding="utf-8") as fh:
        back = list(csv.DictReader(fh))
    assert len(back) == len(res.rows)
    assert tuple(back[0]) == FIELDS
    for r, b in zip(res.rows, back):
        assert float(b["test_rmse"]) == r["test_rmse"]  # exact round trip
        assert int(b["edges_after_prune"]) == r["edges_after_prune"]
        assert b["bias"] == str(r["bias"]) and b["base_fun"] == r["base_fun"]
        assert b["formula"] == r["formula"]
    md = (out / "results.md").read_text(encoding="utf-8")
    assert "exp(sin(pi*x_1) + x_2**2)" in md
    assert md.count("| silu |") == 2 * 2  # runs table and summary table
    png = (out / "ablation.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_markdown_and_plot_objects(grid_run, tmp_path):
    res, _, _ = grid_run
    md = res.to_markdown()
    lines = md.splitlines()
    assert len(lines) == 2 + len(res.rows)
    assert "test RMSE" in lines[0] and "recovered" in lines[0]
    summary = res.summary()
    assert len(summary) == 6 and all(s["runs"] == 1 for s in summary)
    assert len(res.to_markdown("summary").splitlines()) == 2 + 6
    with pytest.raises(ValueError, match="table"):
        res.to_markdown("nope")
    fig = res.plot()
    assert len(fig.axes) == 3
    assert fig.axes[0].get_yscale() == "log"
    assert os.listdir(tmp_path) == []
    assert res.to_csv().splitlines()[0] == ",".join(FIELDS)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, match", [
    (dict(task="nope"), "unknown task 'nope'"),
    (dict(task=3), "task must be"),
    (dict(base_funs=("silu", "swish")), "unknown base function 'swish'"),
    (dict(base_funs=()), "base_funs is empty"),
    (dict(biases=[]), "biases is empty"),
    (dict(seeds=[]), "seeds is empty"),
    (dict(seeds=0), "seeds as a count"),
    (dict(seeds=(1, 1)), "repeated"),
    (dict(base_funs=("silu", "SiLU")), "repeated"),
    (dict(biases=("yes",)), "True/False"),
    (dict(workers=0), "workers must be an integer >= 1"),
    (dict(steps=0), "steps"),
    (dict(lamb=-1.0), "lamb"),
    (dict(width=[3, 5, 1]), "task's 2 inputs"),
    (dict(dtype="float16"), "dtype"),
    (dict(backend="dask"), "backend"),
    (dict(lib=("x", "sinc")), "unknown symbolic function 'sinc'"),
    (dict(lib=()), "lib is empty"),
    (dict(task=Task("bad", line, 2, target="x_1 + y")), r"target uses \['y'\]"),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ablate(**kwargs)


def test_worker_without_a_registered_function_says_so():
    spec = ab._plan("toy", ("silu",), (True,), (0,), **TINY).specs[0]
    spec = ab._RunSpec(**{**spec.__dict__, "lib": ("x", "my_fn")})  # as a worker would see it
    with pytest.raises(ValueError, match="add_symbolic .* workers=1"):
        ab._run_one(spec)


def test_out_dir_that_is_a_file(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        ablate(out_dir=f)


def test_ray_backend_without_ray_is_a_clear_error():
    try:
        import ray  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install ray"):
            ablate(backend="ray")
    else:  # pragma: no cover - ray is not a dependency
        pytest.skip("ray is installed")


# ----------------------------------------------------------------------------- CLI
def test_cli_ablate_end_to_end(tmp_path, capsys):
    out = tmp_path / "abl"
    rc = main(["ablate", "--base", "silu,zero", "--bias", "on", "--seeds", "1", "--steps", "2",
               "--width", "2,2,1", "--train-num", "100", "--lib", "x,x^2,sin,exp",
               "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| base | bias | seed | test RMSE" in text
    assert "[2/2]" in text
    assert str(out.resolve()) in text
    assert sorted(os.listdir(out)) == ["ablation.png", "results.csv", "results.md"]
    with open(out / "results.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["base_fun"] for r in rows] == ["silu", "zero"]
    assert all(math.isfinite(float(r["test_rmse"])) for r in rows)


def test_cli_ablate_help_says_what_it_writes(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["ablate", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for word in ("--task", "--base", "--bias", "--seeds", "--steps", "--workers", "--out",
                 "results.csv", "results.md", "ablation.png"):
        assert word in text


@pytest.mark.parametrize("argv, match", [
    (["--task", "nope"], "unknown task"),
    (["--base", "silu,foo"], "unknown base function 'foo'"),
    (["--bias", "maybe"], "--bias"),
    (["--seeds", "a"], "--seeds"),
    (["--width", "3,5,1"], "task's 2 inputs"),
    (["--backend", "ray"], "ray"),
])
def test_cli_ablate_errors(argv, match, tmp_path, capsys):
    if argv[0] == "--backend":
        try:
            import ray  # noqa: F401
            pytest.skip("ray is installed")
        except ImportError:
            pass
    out = tmp_path / "never"
    assert main(["ablate", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kanlab: error:") and match in err
    assert not out.exists()


def test_cli_workers_must_be_positive():
    with pytest.raises(SystemExit) as exc:
        main(["ablate", "--workers", "0"])
    assert exc.value.code == 2
