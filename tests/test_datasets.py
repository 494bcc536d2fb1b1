"""create_dataset: shapes, ranges, seeds, label values, normalization, dtype; pykan parity."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kanlab import create_dataset


KEYS = ("train_input", "train_label", "test_input", "test_label")


def _f2(x):
    return torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)


def test_shapes_and_keys():
    ds = create_dataset(_f2, n_var=2, train_num=70, test_num=30, seed=0)
    assert set(ds) == set(KEYS)
    assert ds["train_input"].shape == (70, 2)
    assert ds["train_label"].shape == (70, 1)
    assert ds["test_input"].shape == (30, 2)
    assert ds["test_label"].shape == (30, 1)
    assert all(ds[k].dtype == torch.get_default_dtype() for k in KEYS)
    assert all(ds[k].device.type == "cpu" for k in KEYS)


def test_multi_output_labels():
    f = lambda x: torch.cat([x[:, [0]] + x[:, [1]], x[:, [0]] * x[:, [2]]], dim=1)  # noqa: E731
    ds = create_dataset(f, n_var=3, train_num=40, test_num=20, seed=1)
    assert ds["train_input"].shape == (40, 3)
    assert ds["train_label"].shape == (40, 2)
    assert torch.equal(ds["train_label"], f(ds["train_input"]))
    assert torch.equal(ds["test_label"], f(ds["test_input"]))


def test_ranges_per_variable():
    ds = create_dataset(_f2, n_var=2, ranges=[[-1, 1], [2, 3]], train_num=2000, test_num=500, seed=0)
    for key in ("train_input", "test_input"):
        x = ds[key]
        assert float(x[:, 0].min()) >= -1 and float(x[:, 0].max()) <= 1
        assert float(x[:, 1].min()) >= 2 and float(x[:, 1].max()) <= 3
    x = ds["train_input"]
    # the samples fill each range (uniform draws), not a corner of it
    assert float(x[:, 0].min()) < -0.95 and float(x[:, 0].max()) > 0.95
    assert float(x[:, 1].min()) < 2.05 and float(x[:, 1].max()) > 2.95
    assert abs(float(x[:, 0].mean())) < 0.1
    assert abs(float(x[:, 1].mean()) - 2.5) < 0.05
    # uniform on [a, b] has std (b - a) / sqrt(12)
    assert abs(float(x[:, 0].std()) - 2 / 12 ** 0.5) < 0.03
    assert abs(float(x[:, 1].std()) - 1 / 12 ** 0.5) < 0.015


def test_shared_range_applies_to_every_variable():
    ds = create_dataset(lambda x: x[:, [0]], n_var=3, ranges=[0, 10], train_num=500, test_num=10, seed=0)
    x = ds["train_input"]
    assert float(x.min()) >= 0 and float(x.max()) <= 10
    assert (x.max(0).values > 9).all() and (x.min(0).values < 1).all()


def test_degenerate_range_gives_constant_column():
    ds = create_dataset(lambda x: x[:, [0]], n_var=2, ranges=[[0, 1], [3, 3]], train_num=20,
                        test_num=5, seed=0)
    assert torch.all(ds["train_input"][:, 1] == 3)


def test_same_seed_same_data_different_seed_different():
    a = create_dataset(_f2, n_var=2, train_num=50, test_num=20, seed=7)
    b = create_dataset(_f2, n_var=2, train_num=50, test_num=20, seed=7)
    c = create_dataset(_f2, n_var=2, train_num=50, test_num=20, seed=8)
    for k in KEYS:
        assert torch.equal(a[k], b[k]), k
    assert not torch.equal(a["train_input"], c["train_input"])
    assert not torch.equal(a["test_input"], c["test_input"])
    # train and test splits are different draws
    assert not torch.equal(a["train_input"][:20], a["test_input"])


def test_seed_does_not_depend_on_global_rng():
    torch.manual_seed(0)
    a = create_dataset(_f2, n_var=2, train_num=30, test_num=10, seed=3)
    torch.manual_seed(1)
    torch.rand(5)
    b = create_dataset(_f2, n_var=2, train_num=30, test_num=10, seed=3)
    assert all(torch.equal(a[k], b[k]) for k in KEYS)


def test_labels_equal_f_of_inputs():
    ds = create_dataset(_f2, n_var=2, train_num=100, test_num=50, seed=0)
    assert torch.equal(ds["train_label"], _f2(ds["train_input"]))
    assert torch.equal(ds["test_label"], _f2(ds["test_input"]))


def test_f_mode_row():
    f_row = lambda x: x[0] * x[1] + x[2]  # noqa: E731  (x is (n_var, n))
    f_col = lambda x: x[:, 0] * x[:, 1] + x[:, 2]  # noqa: E731
    row = create_dataset(f_row, n_var=3, f_mode="row", train_num=40, test_num=20, seed=2)
    col = create_dataset(f_col, n_var=3, f_mode="col", train_num=40, test_num=20, seed=2)
    assert row["train_label"].shape == (40, 1)
    assert torch.equal(row["train_input"], col["train_input"])
    assert torch.equal(row["train_label"], col["train_label"])
    assert torch.equal(row["test_label"], f_row(row["test_input"].T)[:, None])


def test_1d_label_is_unsqueezed():
    f = lambda x: x[:, 0] ** 2 - x[:, 1]  # noqa: E731  returns (n,)
    ds = create_dataset(f, n_var=2, train_num=25, test_num=15, seed=0)
    assert ds["train_label"].shape == (25, 1)
    assert ds["test_label"].shape == (15, 1)
    assert torch.equal(ds["train_label"][:, 0], f(ds["train_input"]))


def test_numpy_returning_f_is_accepted():
    f = lambda x: np.sin(x.numpy()[:, 0])  # noqa: E731
    ds = create_dataset(f, n_var=2, train_num=10, test_num=10, seed=0)
    assert ds["train_label"].shape == (10, 1)
    assert torch.allclose(ds["train_label"][:, 0], torch.sin(ds["train_input"][:, 0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normalization_uses_train_statistics(dtype):
    kw = dict(n_var=2, ranges=[[-1, 3], [0, 2]], train_num=300, test_num=200, seed=4, dtype=dtype)
    raw = create_dataset(_f2, **kw)
    norm = create_dataset(_f2, normalize_input=True, normalize_label=True, **kw)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for split in ("train", "test"):
        for part in ("input", "label"):
            assert norm[f"{split}_{part}"].dtype == dtype
    for part in ("input", "label"):
        tr, te = norm[f"train_{part}"], norm[f"test_{part}"]
        assert torch.allclose(tr.mean(0), torch.zeros_like(tr.mean(0)), atol=tol * 10)
        assert torch.allclose(tr.std(0), torch.ones_like(tr.std(0)), atol=tol * 10)  # unbiased std
        # the test split is standardized with the *training* mean and std
        r_tr, r_te = raw[f"train_{part}"], raw[f"test_{part}"]
        mean, std = r_tr.mean(0, keepdim=True), r_tr.std(0, keepdim=True)
        assert torch.allclose(te, (r_te - mean) / std, atol=tol * 10)
        assert not torch.allclose(te.mean(0), torch.zeros_like(te.mean(0)), atol=tol * 10)


def test_normalize_input_only_keeps_labels_raw():
    kw = dict(n_var=2, ranges=[0, 4], train_num=200, test_num=50, seed=0)
    raw = create_dataset(_f2, **kw)
    ds = create_dataset(_f2, normalize_input=True, **kw)
    assert torch.equal(ds["train_label"], raw["train_label"])
    assert torch.equal(ds["test_label"], raw["test_label"])
    assert torch.allclose(ds["train_input"].mean(0), torch.zeros(2), atol=1e-5)
    # labels still equal f of the raw (un-normalized) inputs
    assert torch.equal(ds["train_label"], _f2(raw["train_input"]))


def test_normalize_label_only_keeps_inputs_raw():
    kw = dict(n_var=2, train_num=200, test_num=50, seed=0)
    raw = create_dataset(_f2, **kw)
    ds = create_dataset(_f2, normalize_label=True, **kw)
    assert torch.equal(ds["train_input"], raw["train_input"])
    assert torch.allclose(ds["train_label"].mean(), torch.tensor(0.0), atol=1e-5)
    assert torch.allclose(ds["train_label"].std(), torch.tensor(1.0), atol=1e-5)


def test_normalize_constant_column_stays_finite():
    ds = create_dataset(lambda x: x[:, [0]] * 0 + 2.0, n_var=2, ranges=[[0, 1], [5, 5]],
                        train_num=30, test_num=10, seed=0, normalize_input=True, normalize_label=True)
    for k in KEYS:
        assert torch.isfinite(ds[k]).all(), k
    assert torch.all(ds["train_input"][:, 1] == 0)
    assert torch.all(ds["train_label"] == 0)


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch: std() of one sample
def test_normalize_single_training_sample_stays_finite():
    ds = create_dataset(lambda x: x[:, [0]] + 1, n_var=2, train_num=1, test_num=4, seed=0,
                        normalize_input=True, normalize_label=True)
    for k in KEYS:
        assert torch.isfinite(ds[k]).all(), k
    raw = create_dataset(lambda x: x[:, [0]] + 1, n_var=2, train_num=1, test_num=4, seed=0)
    # std of one sample is undefined: kanlab then only centres the data
    assert torch.allclose(ds["test_input"], raw["test_input"] - raw["train_input"])


def test_float64_dtype():
    ds = create_dataset(_f2, n_var=2, train_num=50, test_num=20, seed=0, dtype=torch.float64)
    assert all(ds[k].dtype == torch.float64 for k in KEYS)
    assert torch.equal(ds["train_label"], _f2(ds["train_input"]))
    # float64 inputs are not just upcast float32 draws
    x = ds["train_input"]
    assert not torch.equal(x, x.float().double())


def test_device_argument():
    ds = create_dataset(_f2, n_var=2, train_num=5, test_num=5, seed=0, device="cpu")
    assert all(ds[k].device == torch.device("cpu") for k in KEYS)


# ------------------------------------------------------------------ pykan parity
@pytest.fixture
def restore_global_rng():
    """pykan's create_dataset reseeds the global RNGs: put them back afterwards."""
    t, n = torch.random.get_rng_state(), np.random.get_state()
    yield
    torch.random.set_rng_state(t)
    np.random.set_state(n)


def _pykan_on_inputs(monkeypatch, pykan_create, raw, ranges, **kw):
    """Run pykan's create_dataset with its torch.rand draws replaced so that it samples
    exactly kanlab's (raw) inputs; everything after sampling is pykan's own code."""
    n_var = raw["train_input"].shape[1]
    r = np.asarray(ranges, dtype=np.float64)
    if r.ndim == 1:
        r = np.tile(r, (n_var, 1))
    lo = torch.tensor(r[:, 0], dtype=torch.float32)
    width = torch.tensor(r[:, 1] - r[:, 0], dtype=torch.float32)
    # pykan draws, per variable i: rand(train_num) for train, then rand(test_num) for test
    queue = []
    for i in range(n_var):
        w = width[i] if float(width[i]) > 0 else torch.tensor(1.0)
        queue.append((raw["train_input"][:, i] - lo[i]) / w)
        queue.append((raw["test_input"][:, i] - lo[i]) / w)
    real_rand = torch.rand

    def fake_rand(*shape, **kwargs):
        u = queue.pop(0)
        assert tuple(u.shape) == tuple(shape[0] if isinstance(shape[0], tuple) else shape)
        return u.clone()

    monkeypatch.setattr(torch, "rand", fake_rand)
    try:
        out = pykan_create(ranges=ranges, **kw)
    finally:
        monkeypatch.setattr(torch, "rand", real_rand)
    assert queue == []
    return out


@pytest.mark.parametrize(
    "norm_in, norm_label",
    [(False, False), (True, False), (False, True), (True, True)],
)
@pytest.mark.parametrize("ranges", [[-1, 1], [[-1, 1], [2, 3]]], ids=["shared", "per-var"])
def test_pykan_parity(monkeypatch, restore_global_rng, norm_in, norm_label, ranges):
    pytest.importorskip("kan")
    from kan.utils import create_dataset as pykan_create_dataset

    common = dict(n_var=2, train_num=120, test_num=60)
    ours = create_dataset(_f2, ranges=ranges, normalize_input=norm_in, normalize_label=norm_label,
                          seed=0, **common)
    raw = create_dataset(_f2, ranges=ranges, seed=0, **common)

    # pykan's own draws: same shapes, labels are f of its inputs, inputs within the ranges
    theirs = pykan_create_dataset(_f2, ranges=ranges, seed=0, **common)
    for k in KEYS:
        assert theirs[k].shape == ours[k].shape, k
        assert theirs[k].dtype == ours[k].dtype, k
    assert torch.equal(theirs["train_label"], _f2(theirs["train_input"]))
    assert torch.equal(raw["train_label"], _f2(raw["train_input"]))

    # pykan's code on kanlab's inputs gives kanlab's dataset (labels and normalization)
    replay = _pykan_on_inputs(monkeypatch, pykan_create_dataset, raw, ranges, f=_f2,
                              normalize_input=norm_in, normalize_label=norm_label, seed=0,
                              **common)
    for k in KEYS:
        assert replay[k].shape == ours[k].shape, k
        assert torch.allclose(replay[k], ours[k], rtol=1e-5, atol=1e-5), k


def test_pykan_parity_row_mode_and_1d_labels(monkeypatch, restore_global_rng):
    pytest.importorskip("kan")
    from kan.utils import create_dataset as pykan_create_dataset

    f = lambda x: x[0] ** 2 + torch.sin(x[1])  # noqa: E731  row mode, returns (n,)
    common = dict(n_var=2, train_num=50, test_num=40, f_mode="row", normalize_label=True)
    ours = create_dataset(f, ranges=[-2, 2], seed=5, **common)
    raw = create_dataset(f, ranges=[-2, 2], seed=5, n_var=2, train_num=50, test_num=40, f_mode="row")
    replay = _pykan_on_inputs(monkeypatch, pykan_create_dataset, raw, [-2, 2], f=f, seed=5, **common)
    for k in KEYS:
        assert replay[k].shape == ours[k].shape, k
        assert torch.allclose(replay[k], ours[k], rtol=1e-5, atol=1e-5), k
