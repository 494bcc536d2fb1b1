"""report.html: self-contained, and rendered by headless Chromium without console errors."""
import html
import os
import re
import shutil
import subprocess

import pytest
import torch

pytest.importorskip("matplotlib")
from kanlab import KAN, create_dataset  # noqa: E402
from kanlab.report import write_report  # noqa: E402

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _browser():
    for b in _BROWSERS:
        path = shutil.which(b)
        if path:
            return path
    return None


def _render(path):
    """Open ``path`` in headless Chromium: (dumped DOM, console lines)."""
    exe = _browser()
    if exe is None:
        pytest.skip("no chromium on this machine (.ci/run installs Debian's chromium package)")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=5000", "--dump-dom", f"file://{os.path.abspath(path)}"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    console = [ln for ln in res.stderr.splitlines() if ":CONSOLE" in ln]
    return res.stdout, console


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    f = lambda x: torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)  # noqa: E731
    ds = create_dataset(f, n_var=2, train_num=200, test_num=200, seed=0)
    model = KAN(width=[2, 3, 1], grid=5, seed=0)
    h = model.fit(ds, steps=5, lamb=0.003, track_shares=True)
    sym = model.copy()
    sym.auto_symbolic(verbose=0, lib=["x", "x^2", "sin", "exp"])
    (expr,), _ = sym.symbolic_formula()
    path = tmp_path_factory.mktemp("rep") / "report.html"
    write_report(path, model, formula=expr, history=h, target_name="f",
                 scores={"test RMSE": h["test_loss"][-1]}, data_info={"samples": 200})
    return path


def test_report_is_self_contained(report):
    text = report.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert text.count('src="data:image/png;base64,') == 3  # diagram, training, shares
    # nothing is fetched from anywhere: no src/href pointing outside the file
    assert not re.search(r'(src|href)\s*=\s*"(https?:|//)', text)
    assert "<math" in text and "test RMSE" in text
    assert oct(report.stat().st_mode & 0o777) != oct(0o600)  # a normal file, not a private temp


def test_report_renders_in_headless_chromium(report, tmp_path):
    dom, console = _render(report)
    m = re.search(r'data-rendered="images (\d+)/(\d+) formulas (\d+)/(\d+)"', dom)
    assert m, "the page's render check did not run"
    imgs_ok, imgs, maths_ok, maths = map(int, m.groups())
    assert imgs == 3 and imgs_ok == 3
    assert maths == 1 and maths_ok == 1
    assert console == []
    shown, natural = map(int, re.search(r'data-diagram="(\d+)/(\d+)"', dom).groups())
    assert natural > 400 and shown == natural  # the diagram at its own size, not shrunk
    # the harness does catch a broken page: a missing image and a script error
    bad = tmp_path / "bad.html"
    text = report.read_text(encoding="utf-8")
    bad.write_text(text.replace("</body>", '<img src="missing.png"><script>nope();</script></body>'),
                   encoding="utf-8")
    dom, console = _render(bad)
    assert 'data-rendered="images 3/4' in dom
    assert any("nope is not defined" in ln for ln in console)


def test_report_says_which_model_the_diagram_shows_and_all_symbolic_contributions():
    from kanlab.report import render_report

    model = KAN(width=[2, 1], grid=3, k=3, seed=0)
    x = torch.rand(50, 2) * 2 - 1
    model(x)
    html_sur = render_report(model, x=x, model_kind="surrogate")
    assert "not the formula" in html_sur
    assert "spline left to compare" not in html_sur and "<td>nan</td>" not in html_sur
    model.fix_symbolic(0, 0, 0, "sin", x=x, verbose=False)
    model.fix_symbolic(0, 1, 0, "x^2", x=x, verbose=False)
    html_sym = render_report(model, x=x, model_kind="symbolic")
    assert "own network: every edge is the function shown on it" in html_sym
    assert "Every edge is symbolic" in html_sym and "nan" not in html_sym.split("Base function")[1][:400]


def test_report_diagram_at_its_own_size_and_curves_in_target_units():
    from kanlab.report import render_report

    model = KAN(width=[2, 3, 1], grid=3, seed=0)
    x = torch.rand(50, 2) * 2 - 1
    h = {"train_loss": [1.0, 0.5, 0.25], "test_loss": [1.1, 0.6, 0.3], "reg": [0.0] * 3}
    text = render_report(model, x=x, in_vars=["speed", "mass"], target_name="f", y_scale=4.0,
                         history=[dict(h, stage="train"), dict(h, stage="refine")])
    # the diagram has a figure of its own, not the 520-px cap of the side-by-side figures
    assert re.search(r'<figure class="diagram"><img alt="[^"]*" src="data:image/png;base64,', text)
    css = text.split("<style>")[1].split("</style>")[0]
    assert "520px" not in css
    rule = re.search(r"figure\.diagram img \{([^}]*)\}", css).group(1)
    assert "calc(100vw" in rule  # as wide as the window allows, beyond the text column
    assert text.count('src="data:image/png;base64,') == 2  # diagram, training curves
    assert "in the target's own units" in html.unescape(text)
    assert "Dotted lines separate the stages" in text
    single = render_report(model, x=x, history=h)
    assert "Dotted lines" not in single and "own units" not in single
