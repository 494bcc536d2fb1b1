"""Base-vs-spline contributions, share tracking during fit, and the MLP baseline."""
import logging
import math

import pytest
import torch

import kanlab
from kanlab import KAN, MLP


def _ds(n_var=2, seed=0):
    f = lambda x: torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2  # noqa: E731
    return kanlab.create_dataset(f, n_var=n_var, train_num=300, test_num=100, seed=seed,
                                 dtype=torch.float64)


def test_contributions_values():
    model = KAN(width=[2, 3, 1], grid=5, seed=0, dtype=torch.float64)
    ds = _ds()
    x = ds["train_input"]
    c = model.contributions(x)
    assert len(c.edges) == 2 * 3 + 3 * 1 and [r["layer"] for r in c.layers] == [0, 1]
    acts = model.layer_inputs(x)
    with torch.no_grad():
        _, base, spline = model.act_fun[1].activations(acts[1], parts=True)
    row = next(r for r in c.edges if (r["layer"], r["i"], r["j"]) == (1, 2, 0))
    assert row["base_std"] == pytest.approx(float(base[:, 2, 0].std()))
    assert row["spline_std"] == pytest.approx(float(spline[:, 2, 0].std()))
    assert row["spline_share"] == pytest.approx(row["spline_std"] / (row["base_std"] + row["spline_std"]))
    assert row["total_std"] == pytest.approx(float((base + spline)[:, 2, 0].std()))
    lay = c.layers[1]
    assert lay["spline_share"] == pytest.approx(lay["spline_std"] / (lay["spline_std"] + lay["base_std"]))
    # the cheap per-layer version agrees
    shares = kanlab.inspect.layer_spline_shares(model, x)
    assert shares == pytest.approx([r["spline_share"] for r in c.layers])
    assert "spline_share" in c.to_markdown() and c.to_csv().count("\n") == len(c.edges) + 1


def test_contributions_extremes_and_modes(tmp_path):
    ds = _ds()
    zero = KAN(width=[2, 2, 1], base_fun="zero", seed=0, dtype=torch.float64)
    assert all(r["spline_share"] == 1.0 for r in zero.contributions(ds["train_input"]).layers)
    nosp = KAN(width=[2, 2, 1], seed=0, dtype=torch.float64)
    with torch.no_grad():
        for layer in nosp.act_fun:
            layer.scale_sp.zero_()
    assert all(r["spline_share"] == 0.0 for r in nosp.contributions(ds["train_input"]).layers)
    m = KAN(width=[2, 2, 1], seed=0, dtype=torch.float64)
    m.fit(ds, steps=3, progress=False)
    m.fix_symbolic(0, 0, 0, "sin", verbose=False)
    c = m.contributions()  # the last fit's data by default
    row = next(r for r in c.edges if (r["layer"], r["i"], r["j"]) == (0, 0, 0))
    assert row["mode"] == "s" and math.isnan(row["spline_share"])
    assert c.layers[0]["edges"] == 3
    c.to_csv(tmp_path / "edges.csv")
    assert (tmp_path / "edges.csv").read_text().startswith("layer,i,j,mode")
    with pytest.raises(ValueError, match="needs data"):
        KAN(width=[2, 1], seed=0).contributions()


def test_fit_tracks_shares_and_warns(caplog):
    ds = _ds()
    model = KAN(width=[2, 2, 1], seed=0, dtype=torch.float64)
    with torch.no_grad():
        for layer in model.act_fun:
            layer.scale_sp.mul_(1e-4)  # the base path dominates
    with caplog.at_level(logging.WARNING, logger="kanlab"):
        # small Adam steps: the splines stay idle (L-BFGS could wake them within a step)
        h = model.fit(ds, steps=3, opt="Adam", lr=1e-3, progress=False, track_shares=True,
                      update_grid=False)
    assert len(h["spline_share"]) == 3 and len(h["spline_share"][0]) == 2
    assert all(0 <= s <= 1 for step in h["spline_share"] for s in step)
    assert any("spline share" in r.message for r in caplog.records)


def test_mlp_baseline_same_interface():
    ds = _ds()
    mlp = MLP(width=[2, 8, 1], seed=0, dtype=torch.float64)
    h = mlp.fit(ds, steps=20, progress=False)
    assert set(h) >= {"train_loss", "test_loss", "reg", "time"}
    assert h["test_loss"][-1] < h["test_loss"][0]
    assert mlp.evaluate(ds)["test_loss"] == pytest.approx(h["test_loss"][-1], rel=1e-6)
    # pykan's sparsity regularizer on weight edges: |W| * std(input)
    hr = MLP(width=[2, 8, 1], seed=0, dtype=torch.float64).fit(ds, steps=5, lamb=0.01, progress=False)
    assert hr["reg"][-1] > 0
    _, acts, var = mlp.forward_with_stats(ds["train_input"])
    torch.testing.assert_close(var[0], mlp.linears[0].weight.t() ** 2 * acts[0].var(0)[:, None])
    same = MLP(width=[2, 8, 1], seed=0, dtype=torch.float64)
    other = MLP(width=[2, 8, 1], seed=0, dtype=torch.float64)
    torch.testing.assert_close(same.linears[0].weight, other.linears[0].weight)  # seeded
    with pytest.raises(ValueError, match="unknown activation"):
        MLP(width=[2, 1], act="nope")
    with pytest.raises(ValueError, match="width"):
        MLP(width=[2])
    with pytest.raises(ValueError, match="spline"):
        mlp.fit(ds, steps=1, lamb_coef=1.0)
