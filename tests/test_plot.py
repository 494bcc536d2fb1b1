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
    assert len(_boxes(fig)) == 44 + 10  # the 44 most important of layer 0's 100 edges boxed
    fig = big.plot(x=x, max_boxes=None)
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


def _px(fig, r):
    """(width, height) in pixels at 100 dpi of rectangle ``r`` on the figure's axes."""
    ax = fig.axes[0]
    (x0, y0), (x1, y1) = ax.transData.transform([(r.get_x(), r.get_y()),
                                                 (r.get_x() + r.get_width(),
                                                  r.get_y() + r.get_height())])
    return (x1 - x0) * 100 / fig.dpi, (y1 - y0) * 100 / fig.dpi


def test_wide_diagram_keeps_readable_boxes_and_boxes_the_important_edges():
    wide = KAN(width=[10, 21, 1], grid=3, seed=0)
    x = torch.rand(200, 10) * 2 - 1
    names = [f"v{i}" for i in range(10)]
    fig = wide.plot(x=x, in_vars=names, out_vars=["target"], beta=3)
    w, h = fig.get_size_inches()
    assert 8 <= w <= 16.0 + 1e-9 and w / h <= 3.0 + 1e-6  # no 5:1 strip
    boxes = _boxes(fig)
    assert len(boxes) == 44 + 21
    sizes = [_px(fig, r) for r in boxes]
    assert min(sw for sw, _ in sizes) >= 45 and min(sh for _, sh in sizes) >= 40
    # within a sub-row, no two boxes overlap
    rows = {}
    for r in boxes:
        rows.setdefault(round(r.get_y(), 6), []).append(r)
    for rs in rows.values():
        rs.sort(key=lambda r: r.get_x())
        for r1, r2 in zip(rs, rs[1:]):
            assert r1.get_x() + r1.get_width() <= r2.get_x() + 1e-9
    # layer 0's boxes (drawn first) are its 44 most important edges
    scores = np.sort(np.tanh(3 * wide.edge_scores[0].flatten().numpy()))[::-1]
    alphas = np.array([b.get_edgecolor()[3] for b in boxes[:44]]) - 0.1
    assert alphas.min() >= max(scores[44], 0.04) - 1e-6
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "44 most important of 210 edges" in texts
    assert {"v0", "v9", "target"} <= set(texts.split())


def test_small_diagram_size(trained):
    model, _, _ = trained
    fig = model.plot()
    w, h = fig.get_size_inches()
    assert 4 <= w <= 9 and 2.5 <= h <= 7 and w / h <= 3.0 + 1e-6
    assert min(_px(fig, r)[0] for r in _boxes(fig)) >= 45


def test_plot_edge_names_units_and_legend(trained):
    model, ds, _ = trained
    fig = model.plot_edge(0, 1, 2, in_vars=["speed", "mass"])
    ax = fig.axes[0]
    assert ax.get_xlabel() == "mass" and "hidden node 2 of layer 1" in ax.get_ylabel()
    assert "mass" in ax.get_title()
    # the model works on (x - 5) / 2: the axis shows x; the last layer's output times y_scale
    fig = model.plot_edge(0, 1, 2, in_vars=["speed", "mass"], x_center=[0.0, 5.0],
                          x_scale=[1.0, 2.0])
    ax = fig.axes[0]
    assert ax.get_xlabel() == "mass (data units)"
    x1 = ds["train_input"][:, 1]
    xd = ax.get_lines()[0].get_xdata()
    assert xd[0] == pytest.approx(5 + 2 * float(x1.min())) and xd[-1] == pytest.approx(
        5 + 2 * float(x1.max()))
    plain = model.plot_edge(1, 2, 0, out_vars=["force"]).axes[0]
    scaled = model.plot_edge(1, 2, 0, out_vars=["force"], y_scale=10.0).axes[0]
    assert plain.get_ylabel() == "contribution to force"
    assert scaled.get_ylabel() == "contribution to force (data units)"
    assert "internal units" in scaled.get_xlabel()
    np.testing.assert_allclose(scaled.get_lines()[0].get_ydata(),
                               10 * plain.get_lines()[0].get_ydata(), rtol=1e-6)
    # tick labels come from a bounded locator: a handful, not one every 0.25
    assert len(ax.get_xticks()) <= 8
    m = model.copy()
    m.fix_symbolic(0, 0, 1, "sin")
    with torch.no_grad():
        m.symbolic_fun[0].affine[1, 0] = torch.tensor([1.0, -3.57e-12, 1.0, 0.0])
    labels = [ln.get_label() for ln in m.plot_edge(0, 0, 1).axes[0].get_lines()]
    sym = [t for t in labels if t.startswith("symbolic")][0]
    assert sym == "symbolic sin: sin(x_1)" and "e-1" not in sym


def test_symbolic_label_is_short():
    from kanlab.plot import symbolic_label

    assert symbolic_label("sin", 2.0, 1.0, 1.0, 0.0) == "sin(2x + 1)"
    assert symbolic_label("sin", 1.0, -3.57e-12, 1.0, 1e-13) == "sin(x)"
    assert symbolic_label("exp", 1.23456, 0.0, 2.71828, -0.5) == "2.72 exp(1.23x) - 0.5"
    assert symbolic_label("x^2", 1.0, -1.0, -0.5, 3.0) == "-0.5 (x - 1)^2 + 3"
    assert symbolic_label("1/x", 2.0, 0.0, 3.0, 0.0) == "3/(2x)"
    assert symbolic_label("1/sqrt(x)", 2.0, 1.0, 1.0, 0.0) == "1/sqrt(2x + 1)"
    assert symbolic_label("x", 2.0, 1.0, 3.0, 0.5) == "6x + 3.5"  # one line, not 3(2x + 1) + 0.5
    assert symbolic_label("tanh", 0.5, 0.0, -1.0, 0.0, var="bmi") == "-tanh(0.5\u00b7bmi)"


def test_history_units_and_named_stages(trained):
    _, _, h = trained
    h2 = {k: v[:3] for k, v in h.items() if isinstance(v, list)}
    fig = plot_history([dict(h, stage="train"), dict(h2, stage="refine")], y_scale=2.0,
                       units="data units of y")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "RMSE (data units of y)"
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(),
                               2.0 * np.array(h["train_loss"] + h2["train_loss"]))
    texts = {t.get_text().strip() for t in ax.texts}
    assert {"train", "refine"} <= texts
    assert "stage boundary" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert plot_history(h).axes[0].get_ylabel() == "RMSE"
    assert plot_history(h, units="standardized target").axes[0].get_ylabel() == \
        "RMSE (standardized target)"
    assert {"fit 1", "fit 2"} <= {t.get_text().strip() for t in plot_history([h, h2]).axes[0].texts}
    with pytest.raises(ValueError, match="stages has 1 names"):
        plot_history([h, h2], stages=["a"])
    fig = plot_shares([dict(h, stage="train"), dict(h2, stage="prune_1")])
    assert {"train", "prune 1"} <= {t.get_text().strip() for t in fig.axes[0].texts}


def test_cli_plot_edge_uses_the_run_names_units_and_data(tmp_path, monkeypatch):
    import json

    from matplotlib.figure import Figure

    from kanlab.cli import main

    rng = np.random.default_rng(0)
    X = np.c_[rng.uniform(10, 20, 60), rng.uniform(-3, 1, 60)]
    y = 3 * X[:, 0] + X[:, 1] ** 2
    np.savetxt(tmp_path / "d.csv", np.c_[X, y], delimiter=",", header="speed,mass,y",
               comments="")
    folder = tmp_path / "run"
    folder.mkdir()
    KAN(width=[2, 2, 1], grid=3, seed=0).save(folder / "model.kan")
    xc, xs = [15.0, -1.0], [5.0, 2.0]
    (folder / "run.json").write_text(json.dumps({
        "kanlab_run": 1, "features": ["speed", "mass"], "target": "y", "symbols": ["speed", "mass"],
        "formula_srepr": "Integer(0)", "x_center": xc, "x_scale": xs,
        "constant_columns": [False, False], "y_center": 40.0, "y_scale": 7.0,
        "data": {"file": str(tmp_path / "d.csv"), "rows": 60, "train_rows": 48, "test_rows": 12,
                 "seed": 0}}))
    figs = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: figs.append(self))
    assert main(["plot", str(folder), "--edge", "0,1,0", "--out", str(tmp_path / "e.png")]) == 0
    ax = figs[-1].axes[0]
    assert ax.get_xlabel() == "mass (data units)"
    train = X[np.random.default_rng(0).permutation(60)[12:], 1]  # kanlab fit's training rows
    xd = ax.get_lines()[0].get_xdata()
    assert xd[0] == pytest.approx(train.min()) and xd[-1] == pytest.approx(train.max())
    assert main(["plot", str(folder), "--edge", "1,0,0", "--out", str(tmp_path / "e.png")]) == 0
    assert figs[-1].axes[0].get_ylabel() == "contribution to y (data units)"
    assert main(["plot", str(folder), "--out", str(tmp_path / "d.png")]) == 0
    assert {"speed", "mass", "y"} <= {t.get_text() for t in figs[-1].axes[0].texts}
