"""Every Python snippet of the README runs as pasted, in order, in one fresh interpreter."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_snippets() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


def test_readme_has_snippets():
    blocks = readme_snippets()
    assert len(blocks) >= 5
    assert any("from kanlab import KAN" in b for b in blocks)


def test_readme_snippets_run_as_pasted(tmp_path):
    pytest.importorskip("sklearn")
    script = "\n\n".join(readme_snippets())
    (tmp_path / "readme_snippets.py").write_text(script)
    env = dict(os.environ, MPLBACKEND="Agg",
               PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "readme_snippets.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("toy.kan", "net.png", "edge.png", "training.png", "shares.png"):
        assert (tmp_path / name).stat().st_size > 0, name
