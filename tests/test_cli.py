"""The ``kanlab`` command line."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

import kanlab
from kanlab import KAN
from kanlab.cli import main



def test_help_exits_zero_and_mentions_demo(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: kanlab" in out
    assert "demo" in out


def test_demo_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--steps" in out and "--save" in out


def test_no_arguments_prints_help_and_returns_zero(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "usage: kanlab" in out
    assert "demo" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"kanlab {kanlab.__version__}"


def test_unknown_command_is_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_bad_steps_is_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--steps", "many"])
    assert exc.value.code == 2


def test_demo_trains_prints_and_saves(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "m.kan"
    threads = torch.get_num_threads()
    assert main(["demo", "--steps", "2", "--save", str(path)]) == 0
    assert torch.get_num_threads() == threads
    out = capsys.readouterr().out
    rmse = re.findall(r"grid (\d+)\s*: test RMSE ([0-9.e+-]+)", out)
    assert [g for g, _ in rmse] == ["3", "10"], out
    values = [float(v) for _, v in rmse]
    assert all(0 <= v < 10 for v in values), out  # finite, and below the label scale
    assert "total training time" in out
    assert f"model saved to {path}" in out
    # only the requested file was written
    assert sorted(os.listdir(tmp_path)) == ["m.kan"]
    model = KAN.load(path)
    assert [w[0] for w in model.width] == [2, 5, 1]
    assert model.config()["grid"] == [10, 10]
    # the saved model is the trained one: its test RMSE matches the printed one
    f = lambda x: torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)  # noqa: E731
    ds = kanlab.create_dataset(f, n_var=2, train_num=1000, test_num=1000, seed=0)
    rmse_loaded = model.evaluate(ds)["test_loss"]
    assert rmse_loaded == pytest.approx(values[-1], rel=1e-2)


def test_demo_save_into_missing_folder_reports_error(tmp_path, capsys):
    bad = tmp_path / "missing" / "m.kan"
    assert main(["demo", "--steps", "1", "--save", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kanlab: error:")
    assert "does not exist" in err
    assert not bad.parent.exists()


def test_module_entry_point_help(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "kanlab.cli", "--help"], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "demo" in proc.stdout
    assert os.listdir(tmp_path) == []


def test_demo_negative_steps_is_reported(capsys):
    try:
        rc = main(["demo", "--steps", "-1"])
    except SystemExit as exc:  # rejected by the argument parser
        assert exc.code == 2
    else:
        assert rc == 2
        assert "steps" in capsys.readouterr().err


def test_demo_zero_steps_does_not_crash(capsys):
    try:
        rc = main(["demo", "--steps", "0"])
    except SystemExit as exc:  # rejected by the argument parser: fine
        assert exc.code == 2
    else:
        assert rc in (0, 2)
