"""Figures: the network diagram, single edges, training curves, spline shares."""
import os

import numpy as np
import pytest
import torch

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
from matplotlib.patches import Rectangle  # noqa: E402

from kanlab import KAN, create_dataset, plot_history, plot_shares  # noqa: E402


def _toy():
    f = lambda x: torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)  # noqa: E731
    return create_dataset(f, n_var=2, train_num=300, test_num=300, seed=0)


@pytest.fixture(scope="module")
def trained():
    ds = _toy()
    model = KAN(width=[2, 3, 1], grid=5, k=3, seed=0)
    h = model.fit(ds, steps=8, lamb=0.003, track_shares=True)
    return model, ds, h


def _boxes(fig):
    return [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]


def test_plot_writes_png_and_svg_and_nothing_else(trained, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    model, ds, _ = trained
    before = plt.get_fignums()
    fig = model.plot(in_vars=["a", "b"], out_vars=["f"], title="toy")
    assert os.listdir(tmp_path) == []  # no path: nothing written (pykan writes ./figures)
    assert plt.get_fignums() == before  # not registered with pyplot
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert {"a", "b", "f"} <= set(texts)
    assert fig.axes[0].get_title() == "toy"
    # one box per active edge: 2*3 + 3*1
    assert len(_boxes(fig)) == 9
    png, svg = tmp_path / "net.png", tmp_path / "net.svg"
    model.plot(path=png)
    model.plot(path=svg, metric="forward_u")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert svg.read_text().count("<path") > 30


def test_plot_opacity_follows_importance(trained):
    model, ds, _ = trained
    model.attribute(x=ds["train_input"])
    fig = model.plot(beta=3)
    scores = model.edge_scores[0].t()  # (in, out)
    # the first layer's curves are drawn in (i, j) order after their two lines each
    boxes = _boxes(fig)[:6]
    alphas = np.array([b.get_edgecolor()[3] for b in boxes])
    expect = np.clip(np.tanh(3 * scores.flatten().numpy()), 0.04, None) + 0.1
    np.testing.assert_allclose(alphas, np.minimum(expect, 1.0), rtol=1e-6)


def test_plot_symbolic_edges_named_and_pruned_edges_hidden(trained):
    model, ds, _ = trained
    m = model.copy()
    m.fix_symbolic(0, 0, 0, "sin")
    m.remove_edge(0, 1, 2)
    fig = m.plot()
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "sin" in texts
    assert len(_boxes(fig)) == 8
    assert len(_boxes(m.plot(show_off=True))) == 9


def test_plot_wide_model_stays_bounded_and_mult_nodes(tmp_path):
    big = KAN(width=[10, 10, 1], grid=3, seed=0)
    x = torch.rand(200, 10) * 2 - 1
    fig = big.plot(x=x, path=tmp_path / "big.png")
    w, h = fig.get_size_inches()
    assert w <= 16.0 + 1e-9 and h > 2
    assert len(_boxes(fig)) == 110
    # boxes of the 100-edge layer do not overlap each other
    b = sorted(_boxes(fig), key=lambda r: (r.get_y(), r.get_x()))
    rows = {}
    for r in b:
        rows.setdefault(round(r.get_y(), 6), []).append(r)
    for rs in rows.values():
        for r1, r2 in zip(rs, rs[1:]):
            assert r1.get_x() + r1.get_width() <= r2.get_x() + 1e-9
    mm = KAN(width=[2, [1, 2], 1], mult_arity=2, seed=0)
    fig = mm.plot(x=x[:, :2], path=tmp_path / "mult.png")
    assert (tmp_path / "mult.png").stat().st_size > 10_000
    assert len(_boxes(fig)) == 2 * (1 + 2 * 2) + 3 * 1  # sub-nodes in, nodes out


def test_plot_edge_curves_are_the_edge(trained, tmp_path):
    model, ds, _ = trained
    fig = model.plot_edge(0, 1, 2, path=tmp_path / "edge.png")
    assert (tmp_path / "edge.png").stat().st_size > 10_000
    lines = {ln.get_label().split(":")[0]: ln for ln in fig.axes[0].get_lines()}
    t = torch.tensor(lines["total"].get_xdata(), dtype=torch.float32)
    layer = model.act_fun[0]
    xs = t[:, None].expand(-1, 2).contiguous()
    with torch.no_grad():
        total, base, spline = layer.activations(xs, parts=True)
    np.testing.assert_allclose(lines["total"].get_ydata(), total[:, 1, 2].numpy(), atol=1e-6)
    np.testing.assert_allclose(lines["base silu"].get_ydata(), base[:, 1, 2].numpy(), atol=1e-6)
    np.testing.assert_allclose(lines["spline"].get_ydata(), spline[:, 1, 2].numpy(), atol=1e-6)
    # the x range is the data range of that input
    x1 = ds["train_input"][:, 1]
    assert t[0] == pytest.approx(float(x1.min())) and t[-1] == pytest.approx(float(x1.max()))


def test_plot_edge_symbolic_curve(trained):
    model, _, _ = trained
    m = model.copy()
    m.fix_symbolic(0, 0, 1, "x^2")
    fig = m.plot_edge(0, 0, 1)
    lines = {ln.get_label().split(":")[0]: ln for ln in fig.axes[0].get_lines()}
    assert "symbolic x^2" in lines
    a, b, c, d = m.symbolic_fun[0].affine[1, 0].detach().tolist()
    xx = lines["symbolic x^2"].get_xdata()
    np.testing.assert_allclose(lines["symbolic x^2"].get_ydata(), c * (a * xx + b) ** 2 + d,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lines["total"].get_ydata(), lines["symbolic x^2"].get_ydata(),
                               atol=1e-6)


def test_history_and_shares_plots(trained, tmp_path):
    model, ds, h1 = trained
    m = model.refine(8)
    h2 = m.fit(ds, steps=4, track_shares=True)
    fig = plot_history([h1, h2], path=tmp_path / "hist.png")
    ax = fig.axes[0]
    train = ax.get_lines()[0]
    np.testing.assert_allclose(train.get_ydata(), h1["train_loss"] + h2["train_loss"])
    assert (tmp_path / "hist.png").stat().st_size > 10_000
    fig = plot_shares([h1, h2], path=tmp_path / "shares.png")
    layer0 = fig.axes[0].get_lines()[0]
    np.testing.assert_allclose(layer0.get_ydata(), [r[0] for r in h1["spline_share"] + h2["spline_share"]])
    assert (tmp_path / "shares.png").stat().st_size > 10_000


def test_plot_errors(trained):
    model, _, h = trained
    with pytest.raises(ValueError, match="in_vars has 3 names"):
        model.plot(in_vars=["a", "b", "c"])
    with pytest.raises(ValueError, match="metric"):
        model.plot(metric="sideways")
    with pytest.raises(ValueError, match="l must be|out of range|edge"):
        model.plot_edge(5, 0, 0)
    with pytest.raises(ValueError, match="history"):
        plot_history({"nope": 1})
    with pytest.raises(ValueError, match="track_shares"):
        plot_shares({"train_loss": [1.0]})
    fresh = KAN(width=[2, 2, 1], seed=0)  # no data yet: draws over the grid range
    fig = fresh.plot()
    assert len(_boxes(fig)) == 6
