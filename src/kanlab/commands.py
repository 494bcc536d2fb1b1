"""The ``kanlab fit | predict | formula | plot`` commands (argument parsing lives in cli.py)."""
from __future__ import annotations

import csv
import logging
import math
import os
import sys
import time

import numpy as np
import sympy

__all__ = ["cmd_fit", "cmd_predict", "cmd_formula", "cmd_plot"]


def _scores(pred, y):
    err = pred - y
    if not np.all(np.isfinite(pred)):
        return {"rmse": math.inf, "r2": -math.inf}
    sst = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(err ** 2)) / sst if sst > 0 else float(np.all(err == 0))
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "r2": r2}


def _parse_hidden(args, d):
    if args.width and args.hidden:
        raise ValueError("give either --width or --hidden, not both")
    if args.width:
        try:
            w = [int(t) for t in args.width.split(",") if t.strip()]
        except ValueError:
            raise ValueError(f"--width takes comma-separated integers such as {d},5,1, "
                             f"got {args.width!r}") from None
        if len(w) < 3 or w[0] != d or w[-1] != 1 or min(w[1:-1]) < 1:
            raise ValueError(f"--width must be {d},H,1 or {d},H1,H2,...,1 ({d} features, hidden "
                             f"layers of H nodes, 1 target); got {args.width}")
        return [w[1]] if len(w) == 3 else [w[1:-1]]
    if args.hidden:
        try:
            h = [int(t) for t in args.hidden.split(",") if t.strip()]
        except ValueError:
            raise ValueError(f"--hidden takes comma-separated integers, got {args.hidden!r}") from None
        if not h or min(h) < 1:
            raise ValueError(f"--hidden needs positive integers, got {args.hidden}")
        return h
    return None


_RUN_FILES = ("model.kan", "run.json", "history.csv", "diagram.png", "report.html")


def _prepare_out(folder, overwrite):
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"--out {folder} is a file, not a folder")
    if os.path.isdir(folder) and os.listdir(folder) and not overwrite:
        raise ValueError(f"--out folder {folder} is not empty; choose another or pass --overwrite")
    os.makedirs(folder, exist_ok=True)
    for name in _RUN_FILES:  # --overwrite: no file of an earlier run may survive next to this one
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            os.unlink(path)


def _is_run(path) -> bool:
    """A run folder, or its run.json / model.kan (any other .kan file is a plain model)."""
    if os.path.isdir(path):
        return True
    return os.path.basename(path) in ("run.json", "model.kan") and os.path.exists(
        os.path.join(os.path.dirname(os.path.abspath(path)), "run.json"))


class _Progress(logging.Handler):
    """Prints discover's per-attempt messages as progress lines."""

    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("discover: attempt"):
            print("  " + msg[len("discover: "):], file=sys.stderr, flush=True)


def _note(message):
    print(f"kanlab: note: {message}", file=sys.stderr, flush=True)


def _check_fit_options(args):
    """Options of ``kanlab fit`` that need no data, checked before the data is read."""
    from .symbolic.library import check_lib

    if not 0.0 < args.test_size < 0.9:
        raise ValueError(f"--test-size must be in (0, 0.9), got {args.test_size}")
    if not args.time_budget > 0:
        raise ValueError(f"--time-budget must be a positive number of seconds, got "
                         f"{args.time_budget:g}")
    try:
        return check_lib(args.lib) if args.lib else None
    except ValueError as err:
        raise ValueError(f"--lib: {err}") from None


def cmd_fit(args) -> int:
    from .tabular import load_table, select_columns

    lib = _check_fit_options(args)
    table = load_table(args.data)
    features = [f.strip() for f in args.features.split(",")] if args.features else None
    names, X, y = select_columns(table.columns, table.data, target=args.target, features=features,
                                 path=args.data, text=table.text, note=_note)
    n, d = X.shape
    n_test = int(round(n * args.test_size))
    if n - n_test < 10 or n_test < 1:
        raise ValueError(f"{args.data} has {n} rows: too few for a {args.test_size:g} test split "
                         "(at least 10 training rows and 1 test row)")
    hidden = _parse_hidden(args, d)
    created = not os.path.exists(args.out)
    _prepare_out(args.out, args.overwrite)
    try:
        return _fit_and_write(args, names, X, y, n_test, hidden, lib)
    except BaseException:
        if created and os.path.isdir(args.out) and not os.listdir(args.out):
            os.rmdir(args.out)  # a failed run leaves no empty folder behind
        raise


def _fit_and_write(args, names, X, y, n_test, hidden, lib) -> int:
    from .discovery import discover
    from .runs import RUN_FORMAT, write_json_atomic

    n = X.shape[0]
    perm = np.random.default_rng(args.seed).permutation(n)
    te, tr = perm[:n_test], perm[n_test:]
    print(f"kanlab fit: {args.data}: {n} rows, target {args.target!r}, features {names}; "
          f"{len(tr)} train / {len(te)} test rows; time budget {args.time_budget:g} s", flush=True)

    handler = _Progress()
    logger = logging.getLogger("kanlab")
    old_level, old_propagate = logger.level, logger.propagate
    if not args.quiet:
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > logging.INFO:  # not verbose: only our progress lines
            logger.setLevel(logging.INFO)
            logger.propagate = False
    t0 = time.perf_counter()
    try:
        res = discover(X[tr], y[tr], var_names=names, time_budget=args.time_budget, seed=args.seed,
                       hidden=hidden, grid=args.grid, steps=(args.steps,) * 3,
                       record_shares=True,  # history.csv and the report show them
                       lib=lib)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate
    seconds = time.perf_counter() - t0
    train_s = _scores(res.predict(X[tr]), y[tr])
    test_s = _scores(res.predict(X[te]), y[te])

    expr = res.formula
    print(f"\n{args.target} = {_middle(str(expr))}\n")
    print(f"train RMSE {train_s['rmse']:.4g}  R2 {train_s['r2']:.10g}")
    print(f"test  RMSE {test_s['rmse']:.4g}  R2 {test_s['r2']:.10g}  "
          f"(complexity {res.complexity}, {len(res.attempts)} attempt(s), {seconds:.1f} s)")
    overfit = overfitting(train_s["r2"], test_s["r2"])
    if overfit:
        print(f"warning: {overfit}", file=sys.stderr)

    const = res.constant_columns  # the columns the model was fed as 0
    folder = args.out
    res.model.save(os.path.join(folder, "model.kan"))
    info = {
        "kanlab_run": RUN_FORMAT,
        "data": {"file": os.path.abspath(args.data), "rows": n, "train_rows": len(tr),
                 "test_rows": len(te), "seed": args.seed},
        "features": names, "target": args.target,
        "symbols": [s.name for s in res.variables],
        "formula": str(expr), "formula_srepr": sympy.srepr(expr), "latex": sympy.latex(expr),
        "complexity": res.complexity,
        "scores": {"train_rmse": train_s["rmse"], "train_r2": train_s["r2"],
                   "test_rmse": test_s["rmse"], "test_r2": test_s["r2"],
                   "discover_heldout_r2": res.r2},
        "overfitting": overfit or None,
        "x_center": res.x_center, "x_scale": res.x_scale, "constant_columns": const.tolist(),
        "y_center": res.y_center, "y_scale": res.y_scale,
        "stages_seconds": res.stages, "seconds": seconds,
        "attempts": [{k: v for k, v in a.items() if k != "expr"} for a in res.attempts],
        "model_note": "model.kan works on standardized inputs (x - x_center) / x_scale and "
                      "predicts (y - y_center) / y_scale",
        # "symbolic": model.kan computes the formula; "surrogate": a numeric network of the data
        "model_kind": res.model_kind,
    }
    write_json_atomic(os.path.join(folder, "run.json"), info)
    _write_history(os.path.join(folder, "history.csv"), res.history)
    files = ["model.kan", "run.json", "history.csv"]
    if not args.no_plots:
        z = (X[tr] - res.x_center) / res.x_scale
        z[:, const] = 0.0
        import torch

        zt = torch.as_tensor(z, dtype=res.model.dtype)
        fig = res.model.plot(x=zt, in_vars=names, out_vars=[args.target],
                             title=_diagram_title(args.target, expr, res.model_kind))
        fig.savefig(os.path.join(folder, "diagram.png"), dpi=130, bbox_inches="tight")
        files.append("diagram.png")
        from .report import write_report

        staged = [dict(h, stage=h.get("stage", name))  # the training figure names the stages
                  for name, h in zip(_stage_names(len(res.history)), res.history)]
        write_report(os.path.join(folder, "report.html"), res.model, formula=expr,
                     target_name=args.target, history=staged, x=zt, in_vars=names,
                     y_scale=res.y_scale,
                     title=f"kanlab fit: {os.path.basename(args.data)}",
                     model_kind=res.model_kind,
                     scores={"train RMSE": train_s["rmse"], "train R2": train_s["r2"],
                             "test RMSE": test_s["rmse"], "test R2": test_s["r2"],
                             "complexity": res.complexity, "seconds": round(seconds, 2),
                             **({"overfitting": overfit} if overfit else {})},
                     data_info={"file": os.path.basename(args.data), "rows": n,
                                "train / test": f"{len(tr)} / {len(te)}",
                                "features": ", ".join(names), "target": args.target})
        files.append("report.html")
    print(f"wrote {', '.join(files)} to {os.path.abspath(folder)}")
    return 0


def overfitting(train_r2: float, test_r2: float) -> str:
    """A warning when the test rows are fitted far worse than the training rows (the
    unexplained share of the test target at least 3x the training one, plus 5 points);
    '' otherwise."""
    if not (math.isfinite(train_r2) and math.isfinite(test_r2)):
        return ""
    if 1 - test_r2 <= 3 * (1 - train_r2) + 0.05:
        return ""
    return (f"the formula fits the training rows far better than the test rows (train R2 "
            f"{train_r2:.4g}, test R2 {test_r2:.4g}): it is overfitting. Trust the test score; "
            f"a smaller --width, fewer --lib functions or more rows give simpler formulas")


def _middle(text: str, width: int = 400) -> str:
    """``text`` shortened in the middle when longer than ``width`` (the full formula is in
    run.json)."""
    if len(text) <= width:
        return text
    keep = (width - 60) // 2
    return (f"{text[:keep]} ... [{len(text) - 2 * keep} characters left out; the whole formula "
            f"is in run.json] ... {text[-keep:]}")


def _diagram_title(target, expr, model_kind) -> str:
    """A whole title: the formula when it is short, never one cut in the middle of a term."""
    if model_kind == "surrogate":
        return f"numeric network of {target} (the formula is in run.json)"
    text = f"{target} = {_short(expr)}"
    return text if len(text) <= 90 else f"the network of {target}'s formula (see run.json)"


def _short(expr):
    return expr.xreplace({f: sympy.Float(f, 4) for f in expr.atoms(sympy.Float)})


def _write_history(path, histories):
    rows = []
    for stage, h in zip(_stage_names(len(histories)), histories):
        stage = h.get("stage", stage)  # a divide-and-conquer result names its surrogate's fits
        shares = h.get("spline_share") or []
        for s in range(len(h["train_loss"])):
            row = {"stage": stage, "step": s + 1, "train_rmse": h["train_loss"][s],
                   "test_rmse": h["test_loss"][s], "reg": h["reg"][s]}
            if s < len(shares):
                for l, v in enumerate(shares[s]):
                    row[f"spline_share_{l}"] = v
            rows.append(row)
    fields = ["stage", "step", "train_rmse", "test_rmse", "reg"]
    extra = sorted({k for r in rows for k in r if k not in fields})
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields + extra, restval="")
        w.writeheader()
        w.writerows(rows)


def _stage_names(n):
    if n <= 0:
        return []
    names = ["train"] + [f"prune_{i + 1}" for i in range(max(n - 3, 0))] + ["refine", "symbolic"]
    return names[-n:] if n < 3 else names


def cmd_predict(args) -> int:
    from .runs import load_run
    from .tabular import load_table, select_columns

    run = load_run(args.run)
    table = load_table(args.data)
    cols, data = table
    _, X, _ = select_columns(cols, data, features=run.features, path=args.data, text=table.text)
    y = data[:, cols.index(run.target)] if run.target in cols and run.target not in table.text \
        else None  # only for a score
    pred = run.predict(X, use=args.use)
    out_name = f"{run.target}_pred"
    if args.out:
        with open(args.out, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(run.features + ([run.target] if y is not None else []) + [out_name])
            for k in range(len(pred)):
                target = [("" if not np.isfinite(y[k]) else repr(float(y[k])))] if y is not None \
                    else []
                w.writerow([repr(float(v)) for v in X[k]] + target + [repr(float(pred[k]))])
        print(f"wrote {len(pred)} predictions to {args.out}")
    else:
        w = csv.writer(sys.stdout)
        w.writerow([out_name])
        for v in pred:
            w.writerow([repr(float(v))])
    if y is not None:
        known = np.isfinite(y)
        if known.any():
            s = _scores(pred[known], y[known])
            rows = "" if known.all() else f" ({int(known.sum())} rows with a value)"
            print(f"{args.data}: RMSE {s['rmse']:.4g}  R2 {s['r2']:.10g} against column "
                  f"{run.target!r}{rows}", file=sys.stderr)
    return 0


def cmd_formula(args) -> int:
    from .symbolic.formula import ex_round

    if _is_run(args.run):
        from .runs import load_run

        run = load_run(args.run)
        exprs, names = [run.formula], [run.target]
    else:
        from .model import KAN

        model = KAN.load(args.run)
        exprs, _ = model.symbolic_formula()
        names = ["y"] if len(exprs) == 1 else [f"y_{k + 1}" for k in range(len(exprs))]
    for name, e in zip(names, exprs):
        if args.digits is not None:
            e = ex_round(e, args.digits)
        print(sympy.latex(e) if args.latex else f"{name} = {e}")
    return 0


def cmd_plot(args) -> int:
    out = args.out
    names = {}  # a run: its feature and target names, and its standardization for --edge
    x = None
    if _is_run(args.run):
        from .runs import load_run

        run = load_run(args.run)
        model, base = run.model, run.folder
        names = dict(in_vars=run.features, out_vars=[run.target])
        x = _run_inputs(run, model)
    else:
        from .model import KAN

        model = KAN.load(args.run)
        base = os.path.dirname(os.path.abspath(args.run))
    if args.edge:
        try:
            l, i, j = (int(t) for t in args.edge.split(","))
        except ValueError:
            raise ValueError(f"--edge takes l,i,j (layer, input node, output node), got "
                             f"{args.edge!r}") from None
        units = {} if not names else dict(x_center=run.x_center, x_scale=run.x_scale,
                                          y_scale=run.y_scale)
        fig = model.plot_edge(l, i, j, x=x, **names, **units)
        out = out or os.path.join(base, f"edge_{l}_{i}_{j}.png")
    else:
        fig = model.plot(x=x, beta=args.beta, **names)
        out = out or os.path.join(base, "diagram.png")
    fig.savefig(out, dpi=args.dpi, bbox_inches="tight")
    print(f"wrote {out}")
    return 0


def _run_inputs(run, model):
    """The run's training rows, standardized as the model sees them, to draw the curves over
    (what ``kanlab fit`` drew diagram.png on); None, with a note, when the data file is gone or
    changed (the curves are then drawn over the grid range)."""
    import torch

    from .tabular import load_table, select_columns

    data = run.info.get("data")
    data = data if isinstance(data, dict) else {}
    try:
        table = load_table(data["file"])
        _, X, _ = select_columns(table.columns, table.data, features=run.features,
                                 path=data["file"], text=table.text)
    except (KeyError, OSError, ValueError, TypeError) as err:
        _note(f"drawing over the grid range, not the run's data ({err})")
        return None
    n, n_test = X.shape[0], data.get("test_rows")
    if n == data.get("rows") and isinstance(n_test, int):  # the rows kanlab fit trained on
        X = X[np.random.default_rng(data.get("seed", 0)).permutation(n)[n_test:]]
    z = (X - run.x_center) / run.x_scale
    z[:, run.constant_columns] = 0.0
    return torch.as_tensor(z, dtype=model.dtype)
