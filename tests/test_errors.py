"""Bad inputs fail early with a ValueError that names the problem; no hidden global state;
training copes with data on any scale."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from kanlab import KAN, create_dataset



def _f(x):
    return x[:, [0]] * x[:, [1]]


def _ds(n=32, n_var=2, dtype=None):
    return create_dataset(_f, n_var=n_var, train_num=n, test_num=n, seed=0, dtype=dtype)


def _small(**kw):
    return KAN(width=kw.pop("width", [2, 3, 1]), grid=kw.pop("grid", 3), seed=0, **kw)


def _all_params_finite(model):
    return all(bool(torch.isfinite(p).all()) for p in model.parameters()) and all(
        bool(torch.isfinite(b).all()) for b in model.buffers()
    )


# ---------------------------------------------------------------- constructor
@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(width=[2]), r"at least two entries"),
        (dict(width=[]), r"at least two entries"),
        (dict(width=None), r"width must be a list"),
        (dict(width="2,1"), r"width must be a list"),
        (dict(width=[2, -1, 1]), r"width\[1\].*at least one node"),
        (dict(width=[2, 0, 1]), r"width\[1\].*at least one node"),
        (dict(width=[2, 2.5, 1]), r"width\[1\]"),
        (dict(width=[2, 3, 1], k=0), r"k \(spline order\)"),
        (dict(width=[2, 3, 1], grid=0), r"grid must be an integer >= 1"),
        (dict(width=[2, 3, 1], grid=-2), r"grid must be an integer >= 1"),
        (dict(width=[2, 3, 1], grid=[3]), r"grid given per layer needs 2 entries"),
        (dict(width=[2, 3, 1], base_fun="nope"), r"unknown base function 'nope'"),
        (dict(width=[2, 3, 1], base_fun=3), r"base_fun must be a name or a callable"),
        (dict(width=[2, 3, 1], grid_range=(1, -1)), r"grid_range.*low < high"),
        (dict(width=[2, 3, 1], grid_range=(0, 0)), r"grid_range.*low < high"),
        (dict(width=[2, 3, 1], grid_range=(0, float("inf"))), r"grid_range.*finite"),
        (dict(width=[2, 3, 1], grid_range=5), r"grid_range must be a pair"),
        (dict(width=[2, 3, 1], dtype="float8"), r"unknown dtype"),
        (dict(width=[2, 3, 1], grid_eps=2.0), r"grid_eps must lie in \[0, 1\]"),
    ],
)
def test_constructor_rejects(kw, match):
    with pytest.raises(ValueError, match=match):
        KAN(**kw)


# ---------------------------------------------------------------- forward
def test_forward_wrong_columns():
    model = _small()
    with pytest.raises(ValueError, match=r"shape \(batch, 2\), got \(4, 3\)"):
        model(torch.zeros(4, 3))


def test_forward_3d_input():
    model = _small()
    with pytest.raises(ValueError, match=r"shape \(batch, 2\), got \(4, 2, 1\)"):
        model(torch.zeros(4, 2, 1))


def test_forward_1d_input_for_two_inputs():
    model = _small()
    with pytest.raises(ValueError, match=r"shape \(batch, 2\)"):
        model(torch.zeros(2))


def test_forward_float64_on_float32_model_suggests_converting():
    model = _small()
    assert model.dtype == torch.float32
    with pytest.raises(ValueError, match=r"float64.*float32.*convert"):
        model(torch.zeros(4, 2, dtype=torch.float64))


@pytest.mark.parametrize("uniform", [True, False], ids=["uniform-grid", "adapted-grid"])
def test_forward_empty_batch(uniform):
    model = _small()
    if not uniform:
        model.update_grid_from_samples(torch.rand(16, 2))
    try:
        y = model(torch.zeros(0, 2))
    except ValueError as err:  # a clear refusal is acceptable too
        assert "empty" in str(err) or "0" in str(err)
    else:
        assert y.shape == (0, 1)


def test_forward_integer_input_is_converted():
    model = _small()
    y = model(torch.ones(4, 2, dtype=torch.int64))
    assert y.dtype == torch.float32
    assert torch.allclose(y, model(torch.ones(4, 2)))


# ---------------------------------------------------------------- fit
def _bad(key, fill, index=(3, 0)):
    ds = _ds()
    ds[key] = ds[key].clone()
    ds[key][index] = fill
    return ds


@pytest.mark.parametrize(
    "make, kwargs, match",
    [
        (lambda: _bad("train_input", float("nan")), {}, r"train_input'\] contains NaN or Inf.*index \(3, 0\)"),
        (lambda: _bad("train_label", float("inf")), {}, r"train_label'\] contains NaN or Inf"),
        (lambda: _bad("test_input", float("nan"), (0, 1)), {}, r"test_input'\] contains NaN or Inf"),
        (lambda: {**_ds(), "train_label": _ds()["train_label"][:-1]}, {},
         r"train_label has 31 rows but train_input has 32"),
        (lambda: {**_ds(), "train_label": torch.zeros(32, 2)}, {},
         r"train_label must have shape \(n, 1\)"),
        (lambda: {**_ds(), "train_input": torch.zeros(0, 2), "train_label": torch.zeros(0, 1)}, {},
         r"train_input is empty"),
        (lambda: {k: v for k, v in _ds().items() if k != "test_label"}, {},
         r"missing \['test_label'\]"),
        (lambda: [1, 2], {}, r"dataset must be a dict"),
        (lambda: {**_ds(), "train_input": torch.zeros(32, 3)}, {},
         r"train_input must have shape \(n, 2\), got \(32, 3\)"),
        (_ds, dict(opt="SGD"), r"opt must be 'LBFGS' or 'Adam', got 'SGD'"),
        (_ds, dict(lamb=-0.1), r"lamb must be a finite non-negative"),
        (_ds, dict(lamb=float("nan")), r"lamb must be a finite non-negative"),
        (_ds, dict(lr=-1.0), r"lr must be a finite non-negative"),
        (_ds, dict(batch=0), r"batch must be -1"),
        (_ds, dict(batch=-5), r"batch must be -1"),
        (_ds, dict(steps=-1), r"steps must be a non-negative integer"),
        (_ds, dict(reg_metric="nope"), r"reg_metric 'nope' is not supported"),
        (_ds, dict(save_fig=True), r"save_fig is not supported"),
    ],
)
def test_fit_rejects(make, kwargs, match):
    model = _small()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        model.fit(make(), steps=kwargs.pop("steps", 2), progress=False, **kwargs)
    # a rejected call changes nothing
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_fit_unknown_keyword_is_type_error():
    with pytest.raises(TypeError, match="not_an_option"):
        _small().fit(_ds(), steps=1, progress=False, not_an_option=1)


def test_update_grid_from_samples_rejects_nan():
    model = _small()
    x = torch.rand(16, 2)
    x[5, 1] = float("nan")
    grids = [layer.grid.clone() for layer in model.act_fun]
    with pytest.raises(ValueError, match=r"NaN or Inf.*index \(5, 1\)"):
        model.update_grid_from_samples(x)
    assert all(torch.equal(g, layer.grid) for g, layer in zip(grids, model.act_fun))


# ---------------------------------------------------------------- create_dataset
@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(n_var=0), r"n_var must be a positive integer, got 0"),
        (dict(n_var=2, ranges=[[0, 1], [0, 1], [0, 1]]), r"ranges must hold 2 pairs"),
        (dict(n_var=2, ranges=[0, 1, 2]), r"ranges must be \[low, high\]"),
        (dict(n_var=2, ranges=[1, 0]), r"low <= high"),
        (dict(n_var=2, train_num=0), r"train_num must be a positive integer, got 0"),
        (dict(n_var=2, test_num=-3), r"test_num must be a positive integer"),
        (dict(n_var=2, f_mode="diag"), r"f_mode must be 'col' or 'row'"),
    ],
)
def test_create_dataset_rejects(kw, match):
    with pytest.raises(ValueError, match=match):
        create_dataset(lambda x: x[:, [0]], **kw)


def test_create_dataset_rejects_nan_labels():
    with pytest.raises(ValueError, match=r"NaN or Inf"):
        create_dataset(lambda x: torch.log(x[:, [0]]), n_var=2, ranges=[-1, 1], train_num=50)


def test_create_dataset_rejects_wrong_label_rows():
    with pytest.raises(ValueError, match=r"one label row per sample"):
        create_dataset(lambda x: x[:3, [0]], n_var=2, train_num=10, test_num=10)


# ---------------------------------------------------------------- global RNG
def test_global_rng_untouched():
    torch.manual_seed(1234)
    np.random.seed(1234)
    random.seed(1234)
    torch_state = torch.random.get_rng_state()
    np_state = np.random.get_state()
    py_state = random.getstate()

    ds = create_dataset(_f, n_var=2, train_num=32, test_num=16, seed=0)
    model = KAN(width=[2, 3, 1], grid=3, seed=3)
    model.fit(ds, steps=2, progress=False)
    model.fit(ds, opt="Adam", steps=2, batch=8, lr=0.01, progress=False)
    model.refine(5)

    assert torch.equal(torch.random.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]
    assert random.getstate() == py_state


def test_seeds_make_results_reproducible():
    ds = create_dataset(_f, n_var=2, train_num=32, test_num=16, seed=0)
    a = KAN(width=[2, 3, 1], grid=3, seed=3)
    torch.manual_seed(999)  # the global RNG must not matter
    b = KAN(width=[2, 3, 1], grid=3, seed=3)
    c = KAN(width=[2, 3, 1], grid=3, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["act_fun.0.coef"], sc["act_fun.0.coef"])
    ha = a.fit(ds, opt="Adam", steps=3, batch=8, lr=0.01, progress=False)
    torch.manual_seed(5)
    hb = b.fit(ds, opt="Adam", steps=3, batch=8, lr=0.01, progress=False)
    assert ha["train_loss"] == hb["train_loss"]


# ---------------------------------------------------------------- data on any scale
def _scaled_dataset(kind):
    if kind == "positive":  # inputs in [1, 5], well outside the default grid [-1, 1]
        f = lambda x: x[:, [0]] * x[:, [1]] + x[:, [1]] ** 2  # noqa: E731
        ranges = [1, 5]
    else:  # inputs in [-100, 100]
        f = lambda x: torch.sin(x[:, [0]] / 30) + x[:, [1]] / 100  # noqa: E731
        ranges = [-100, 100]
    return create_dataset(f, n_var=2, ranges=ranges, train_num=100, test_num=50, seed=0)


@pytest.mark.parametrize("kind", ["positive", "wide"])
@pytest.mark.parametrize("update_grid", [True, False])
def test_data_on_any_scale(kind, update_grid):
    ds = _scaled_dataset(kind)
    model = KAN(width=[2, 5, 1], grid=5, seed=0)
    h = model.fit(ds, opt="LBFGS", steps=20, update_grid=update_grid, progress=False)
    assert "stopped" not in h, h.get("stopped")
    assert len(h["train_loss"]) == 20
    assert all(math.isfinite(v) for v in h["train_loss"] + h["test_loss"])
    assert _all_params_finite(model)
    with torch.no_grad():
        pred = model(ds["test_input"])
    assert torch.isfinite(pred).all()
    label_std = float(ds["train_label"].std())
    if update_grid:
        # the grids moved to the data, and training actually learned something
        lo = float(ds["train_input"].min())
        hi = float(ds["train_input"].max())
        g = model.act_fun[0].grid[:, model.act_fun[0].k]
        assert float(g.min()) >= lo - 1e-3 * max(abs(lo), 1) and float(g.max()) <= hi
        assert h["train_loss"][-1] < 0.3 * label_std
    assert h["train_loss"][-1] < h["train_loss"][0]
    fine = model.refine(10)
    with torch.no_grad():
        pred_fine = fine(ds["test_input"])
    assert torch.isfinite(pred_fine).all()
    assert _all_params_finite(fine)
    if update_grid:
        # on the training inputs (which refine refits on) the function is kept
        with torch.no_grad():
            diff = fine(ds["train_input"]) - model(ds["train_input"])
        assert float(diff.abs().max()) < 0.02 * label_std
    h2 = fine.fit(ds, opt="LBFGS", steps=3, update_grid=False, progress=False)
    assert all(math.isfinite(v) for v in h2["train_loss"])


# ---------------------------------------------------------------- degenerate data
def test_single_sample_dataset():
    x = torch.tensor([[0.3, -0.2]])
    y = torch.tensor([[0.5]])
    ds = {"train_input": x, "train_label": y, "test_input": x.clone(), "test_label": y.clone()}
    model = _small()
    try:
        h = model.fit(ds, steps=3, lamb=0.01, progress=False)
    except ValueError as err:
        assert "sample" in str(err) or "row" in str(err)
    else:
        assert all(math.isfinite(v) for v in h["train_loss"])
        assert "stopped" not in h, h.get("stopped")
    assert _all_params_finite(model)
    with torch.no_grad():
        assert torch.isfinite(model(torch.rand(8, 2) * 2 - 1)).all()


@pytest.mark.parametrize("lamb", [0.0, 0.01])
def test_constant_input_column(lamb):
    ds = _ds(n=64)
    for key in ("train_input", "test_input"):
        ds[key] = ds[key].clone()
        ds[key][:, 1] = 0.7
    model = _small()
    try:
        h = model.fit(ds, steps=5, lamb=lamb, progress=False)
    except ValueError as err:
        assert "constant" in str(err)
    else:
        assert all(math.isfinite(v) for v in h["train_loss"] + h["test_loss"])
        assert "stopped" not in h, h.get("stopped")
    assert _all_params_finite(model)
    knots = model.act_fun[0].grid[1]
    assert bool((knots[1:] > knots[:-1]).all()), "knots of a constant input must stay increasing"
    with torch.no_grad():
        assert torch.isfinite(model(ds["test_input"])).all()
    fine = model.refine(6)
    assert _all_params_finite(fine)


def test_fit_on_text_data_names_the_key():
    model = KAN(width=[2, 1], seed=0)
    text = np.array([["a", "b"]] * 20)
    data = {"train_input": text, "train_label": np.ones((20, 1)), "test_input": text,
            "test_label": np.ones((20, 1))}
    with pytest.raises(ValueError, match=r"train_input.*numbers"):
        model.fit(data, steps=1, progress=False)
    numbers = np.ones((20, 2), dtype=object)  # object arrays of numbers are numbers
    data = {"train_input": numbers, "train_label": np.ones((20, 1)), "test_input": numbers,
            "test_label": np.ones((20, 1))}
    model.fit(data, steps=1, progress=False)
