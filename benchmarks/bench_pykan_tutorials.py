"""pykan's own tutorial scripts, run unchanged on kanlab.pykan and on pykan.

Each script of ``../shared/pykan_tutorials/`` is copied to a scratch folder, its import lines are
rewritten by the rule in that folder's README (only the package name ``kan`` changes), and it is
run in a fresh interpreter with ``MPLBACKEND=Agg``, on the CPU, under a time limit. The same
script runs on pykan (the original imports) in the same scratch folder layout. The table says, per
script and side: ran to the end or the line where it stopped, seconds, and the last lines it
printed (losses, formulas).

    python benchmarks/bench_pykan_tutorials.py                 # both sides, all 19
    python benchmarks/bench_pykan_tutorials.py --only kanlab hellokan API_5_grid
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT.parent / "shared" / "pykan_tutorials"

_RULES = [
    (re.compile(r"^(\s*)from kan import "), r"\1from kanlab.pykan import "),
    (re.compile(r"^(\s*)from kan\.(\w[\w.]*) import "), r"\1from kanlab.pykan.\2 import "),
    (re.compile(r"^(\s*)import kan\s*$"), r"\1import kanlab.pykan as kan"),
    (re.compile(r"^(\s*)import kan\.(\w[\w.]*)\s*$"), r"\1import kanlab.pykan.\2"),
]


def port(source: str) -> str:
    """Apply the import rule: only import lines change, only the package name ``kan``."""
    out = []
    for line in source.splitlines():
        for pattern, repl in _RULES:
            if pattern.match(line):
                line = pattern.sub(repl, line)
                break
        out.append(line)
    return "\n".join(out) + "\n"


def scripts() -> list[Path]:
    return sorted(p for p in TUTORIALS.glob("*.py"))


def _where(stderr: str, name: str) -> str:
    """The script line and the error of a traceback, shortened."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    if not lines:
        return "no output"
    error = lines[-1].strip()[:160]
    at = ""
    for ln in lines:
        m = re.search(rf'File ".*{re.escape(name)}", line (\d+)', ln)
        if m:
            at = m.group(1)
    return f"line {at}: {error}" if at else error


def run_one(script: Path, side: str, limit: float, workdir: Path) -> dict:
    src = script.read_text()
    if side == "kanlab":
        src = port(src)
    folder = workdir / side / script.stem
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / script.name
    target.write_text(src)
    env = dict(os.environ, MPLBACKEND="Agg", CUDA_VISIBLE_DEVICES="", PYTHONHASHSEED="0",
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    if side == "kanlab":
        env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, target.name], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=limit)
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc = "timeout"
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = f"timed out after {limit:.0f} s"
    seconds = time.perf_counter() - t0
    printed = [ln for ln in out.splitlines() if ln.strip() and "%|" not in ln]
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                   if p.is_file() and p.name != script.name and "__pycache__" not in p.parts)
    return {
        "script": script.stem,
        "side": side,
        "ok": rc == 0,
        "stopped": "" if rc == 0 else _where(err, script.name),
        "seconds": round(seconds, 1),
        "last_printed": printed[-4:],
        "files_written": len(files),  # besides the script, in its folder
    }


def table(rows: list[dict]) -> str:
    by = {}
    for r in rows:
        by.setdefault(r["script"], {})[r["side"]] = r
    sides = sorted({r["side"] for r in rows}, key=lambda s: s != "kanlab")
    head = "| script | " + " | ".join(f"{s}: result | {s}: s | {s}: files" for s in sides) + " |"
    lines = [head, "|" + "---|" * (1 + 3 * len(sides))]
    for name in sorted(by):
        cells = []
        for s in sides:
            r = by[name].get(s)
            if r is None:
                cells += ["-", "-", "-"]
                continue
            res = "ran" if r["ok"] else "stopped " + r["stopped"].replace("|", "/")[:110]
            cells += [res, f"{r['seconds']:.1f}", str(r["files_written"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for s in sides:
        ok = sum(1 for r in rows if r["side"] == s and r["ok"])
        n = sum(1 for r in rows if r["side"] == s)
        lines.append(f"\n{s}: {ok} of {n} ran to the end")
    both = [(v["kanlab"], v["pykan"]) for v in by.values()
            if "kanlab" in v and "pykan" in v and v["kanlab"]["ok"] and v["pykan"]["ok"]]
    if both:
        ratios = sorted(p["seconds"] / k["seconds"] for k, p in both)
        lines.append(f"\nwhere both ran to the end ({len(both)} scripts): pykan's time over "
                     f"kanlab's, median {ratios[len(ratios) // 2]:.1f}x, range "
                     f"{ratios[0]:.1f}x-{ratios[-1]:.1f}x (whole scripts, interpreter start and "
                     f"imports included)")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="script stems (default: all)")
    ap.add_argument("--only", choices=["kanlab", "pykan"], help="run one side only")
    ap.add_argument("--limit", type=float, default=600.0, help="seconds per script")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pykan_tutorials"))
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args(argv)
    chosen = [p for p in scripts() if not args.names or p.stem in args.names]
    sides = [args.only] if args.only else ["kanlab", "pykan"]
    workdir = Path(tempfile.mkdtemp(prefix="kanlab_tutorials_"))
    rows = []
    try:
        for script in chosen:
            for side in sides:
                r = run_one(script, side, args.limit, workdir)
                rows.append(r)
                print(f"{r['script']:32s} {side:7s} {'ran' if r['ok'] else 'STOP'} "
                      f"{r['seconds']:7.1f} s  {r['stopped']}", flush=True)
    finally:
        if args.keep:
            print("scratch:", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    text = table(rows)
    print(text)
    if args.out:
        Path(args.out + ".json").write_text(json.dumps(rows, indent=1))
        Path(args.out + ".md").write_text(
            "# pykan's tutorials on kanlab.pykan and on pykan\n\n"
            "`python benchmarks/bench_pykan_tutorials.py`; import rule of "
            "`../shared/pykan_tutorials/README.md`, MPLBACKEND=Agg, CPU.\n\n" + text + "\n")


if __name__ == "__main__":
    main()
