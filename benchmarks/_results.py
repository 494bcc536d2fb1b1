"""Writing a benchmark's results: PREFIX.md (the printed report) and PREFIX.json (raw numbers)."""
from __future__ import annotations

import json
import os


def write_results(prefix: str, text: str, payload) -> None:
    """Write ``text`` to ``prefix.md`` and ``payload`` as JSON to ``prefix.json``."""
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    with open(prefix + ".md", "w") as fh:
        fh.write(text)
    with open(prefix + ".json", "w") as fh:
        json.dump(payload, fh, indent=1)
