"""The ``kanlab`` command."""
from __future__ import annotations

import argparse
import logging
import sys
import time

__all__ = ["main"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _demo(args) -> int:
    from pathlib import Path

    import torch

    from . import KAN, create_dataset

    if args.save:
        folder = Path(args.save).parent
        if not folder.is_dir():
            raise ValueError(f"cannot save to {args.save}: folder {folder} does not exist")
    f = lambda x: torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2)  # noqa: E731
    dataset = create_dataset(f, n_var=2, train_num=1000, test_num=1000, seed=0)
    print("kanlab demo: f(x, y) = exp(sin(pi x) + y^2), 1000 train / 1000 test samples")
    print(f"model KAN(width=[2, 5, 1], grid=3, k=3); LBFGS {args.steps} steps, refine to grid 10, "
          f"LBFGS {args.steps} steps")
    t0 = time.perf_counter()
    model = KAN(width=[2, 5, 1], grid=3, k=3, seed=1)
    h1 = model.fit(dataset, opt="LBFGS", steps=args.steps, lamb=0.001, progress=args.progress)
    t1 = time.perf_counter()
    print(f"  grid 3 : test RMSE {h1['test_loss'][-1]:.3e}  ({t1 - t0:.2f} s)")
    model = model.refine(10)
    h2 = model.fit(dataset, opt="LBFGS", steps=args.steps, progress=args.progress)
    t2 = time.perf_counter()
    print(f"  grid 10: test RMSE {h2['test_loss'][-1]:.3e}  ({t2 - t1:.2f} s)")
    print(f"total training time {t2 - t0:.2f} s")
    if args.save:
        model.save(args.save)
        print(f"model saved to {args.save}")
    return 0


def _split(text: str, what: str) -> list[str]:
    """Comma-separated values of option ``what``, blanks dropped; ValueError if none."""
    items = [t.strip() for t in text.split(",")]
    items = [t for t in items if t]
    if not items:
        raise ValueError(f"{what} is empty: give comma-separated values")
    return items


_BIAS_WORDS = {"on": True, "off": False, "true": True, "false": False, "yes": True, "no": False,
               "1": True, "0": False}


def _parse_bias(text: str) -> list[bool]:
    """``on,off`` (or true/false, yes/no, 1/0) -> ``[True, False]``."""
    out = []
    for t in _split(text, "--bias"):
        if t.lower() not in _BIAS_WORDS:
            raise ValueError(f"--bias takes on/off values such as 'on,off', got {t!r}")
        out.append(_BIAS_WORDS[t.lower()])
    return out


def _parse_ints(text: str, what: str) -> list[int]:
    """``2,5,1`` -> ``[2, 5, 1]``; ValueError naming option ``what`` otherwise."""
    try:
        return [int(t) for t in _split(text, what)]
    except ValueError:
        raise ValueError(f"{what} takes comma-separated integers, got {text!r}") from None


def _parse_seeds(text: str):
    """``0,1,5`` is a list of seeds; a single number N (no comma) means N seeds 0..N-1."""
    if "," not in text:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"--seeds takes a count (2) or a list (0,1,5), got {text!r}") from None
    return _parse_ints(text, "--seeds")


def _ablate(args) -> int:
    """``kanlab ablate``: check the options, run, print each run and the tables, write files."""
    from pathlib import Path

    from .ablate import _plan, _run_plan

    try:
        plan = _plan(
            args.task, _split(args.base, "--base"), _parse_bias(args.bias), _parse_seeds(args.seeds),
            width=_parse_ints(args.width, "--width") if args.width else None, grid=args.grid,
            steps=args.steps, lamb=args.lamb, train_num=args.train_num, test_num=args.train_num,
            lib=_split(args.lib, "--lib") if args.lib else None, workers=args.workers,
            backend=args.backend, out_dir=args.out, plot=not args.no_plot,
        )
    except ImportError as err:  # backend='ray' without ray installed
        raise ValueError(str(err)) from None
    n_runs = len(plan.specs)
    finished = []

    def show(row):
        finished.append(row)
        rec = {True: "yes", False: "no", None: "-"}[row["recovered"]]
        bias = "bias" if row["bias"] else "no bias"
        print(f"  [{len(finished)}/{n_runs}] {row['base_fun']:>8} {bias:>7} seed {row['seed']}: "
              f"test RMSE {row['test_rmse']:.3e}, {row['edges_after_prune']} edges after pruning, "
              f"recovered {rec} ({row['seconds']:.1f} s)", flush=True)

    print(f"kanlab ablate: task {plan.task.name} = {plan.task.target}, {n_runs} runs, "
          f"{plan.workers} {plan.backend} worker(s)", flush=True)
    t0 = time.perf_counter()
    result = _run_plan(plan, callback=show)
    print()
    print(result.to_markdown("runs"))
    print()
    print(result.to_markdown("summary"))
    print()
    files = ["results.csv", "results.md"] + ([] if args.no_plot else ["ablation.png"])
    print(f"wrote {', '.join(files)} to {Path(args.out).resolve()} "
          f"({time.perf_counter() - t0:.1f} s in all)")
    return 0


def _lazy(name):
    """A command implemented in kanlab.commands, imported only when it runs."""
    def run(args):
        from . import commands

        return getattr(commands, name)(args)

    return run


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(
        prog="kanlab",
        description="Kolmogorov-Arnold Networks on PyTorch (pykan-compatible core).",
    )
    p.add_argument("--version", action="version", version=f"kanlab {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    d = sub.add_parser("demo", help="train the built-in toy example and print test RMSE and time",
                       description="Train KAN(width=[2, 5, 1]) on exp(sin(pi x) + y^2) (1000 "
                                   "samples), refine its grid from 3 to 10, and print the test "
                                   "RMSE and time of each stage.")
    d.add_argument("--steps", type=_positive_int, default=50, help="LBFGS steps per stage (default 50)")
    d.add_argument("--save", metavar="PATH", help="save the trained model to PATH")
    d.add_argument("--progress", action="store_true", default=None, help="show a progress bar")
    d.set_defaults(func=_demo)

    f = sub.add_parser(
        "fit", help="find a formula for a column of a CSV/.npz/.parquet table (discovery pipeline)",
        description=(
            "Load a table, split train/test, run kanlab's discovery pipeline (train a KAN with "
            "sparsity, prune, refine, snap edges to functions, snap constants), print the formula "
            "and scores, and write model.kan, run.json, history.csv, diagram.png and report.html "
            "into the --out folder."))
    f.add_argument("data", help="table with a header row: .csv/.tsv, .npz (X and y, or one "
                                "array per column) or .parquet (needs pyarrow)")
    f.add_argument("--target", required=True, help="name of the column to predict")
    f.add_argument("--features", metavar="A,B,...", help="feature columns (default: all others)")
    f.add_argument("--width", metavar="D,H,1", help="network width to try, e.g. 2,5,1, or with "
                                                    "several hidden layers 4,5,5,1")
    f.add_argument("--hidden", metavar="H,...", help="hidden widths to try in turn (default 2d, "
                                                     "2d+1, d+2)")
    f.add_argument("--grid", type=_positive_int, default=5, help="grid intervals (default 5)")
    f.add_argument("--steps", type=_positive_int, default=30,
                   help="LBFGS steps per stage (default 30)")
    f.add_argument("--lib", metavar="NAMES", help="candidate functions, e.g. x,x^2,sin,exp "
                                                  "(default: the whole library)")
    f.add_argument("--time-budget", type=float, default=60.0, metavar="SECONDS",
                   help="time for the whole search (default 60)")
    f.add_argument("--test-size", type=float, default=0.2, help="test fraction (default 0.2)")
    f.add_argument("--seed", type=int, default=0, help="split and training seed (default 0)")
    f.add_argument("--out", default="kanlab-fit", metavar="DIR",
                   help="output folder (default ./kanlab-fit; must be empty or new)")
    f.add_argument("--overwrite", action="store_true", help="allow a non-empty --out folder")
    f.add_argument("--no-plots", action="store_true", help="skip diagram.png and report.html")
    f.add_argument("-q", "--quiet", action="store_true", help="no per-attempt progress lines")
    f.set_defaults(func=_lazy("cmd_fit"))

    pr = sub.add_parser("predict", help="predict a table's rows with a fitted run",
                        description="Evaluate a run's formula (or its network) on a table that "
                                    "has the run's feature columns; prints RMSE/R2 too when the "
                                    "table has the target column.")
    pr.add_argument("run", help="run folder written by 'kanlab fit' (or its model.kan)")
    pr.add_argument("data", help="table with the feature columns (.csv, .npz, .parquet)")
    pr.add_argument("--out", metavar="CSV", help="write features and predictions here "
                                                 "(default: predictions to stdout)")
    pr.add_argument("--use", choices=("formula", "model"), default="formula",
                    help="the formula (default) or the symbolic network")
    pr.set_defaults(func=_lazy("cmd_predict"))

    fo = sub.add_parser("formula", help="print a run's (or a symbolic model file's) formula",
                        description="Print the formula of a run folder written by 'kanlab fit' "
                                    "(read from run.json, never executed), or of a .kan model "
                                    "file whose edges are all symbolic, as text or LaTeX.")
    fo.add_argument("run", help="run folder, or a .kan model whose edges are all symbolic")
    fo.add_argument("--latex", action="store_true", help="print LaTeX")
    fo.add_argument("--digits", type=int, metavar="N", help="round constants to N decimals")
    fo.set_defaults(func=_lazy("cmd_formula"))

    pl = sub.add_parser("plot", help="draw a model's network diagram (or one edge) to PNG/SVG",
                        description="Draw the network diagram of a run folder or .kan model "
                                    "(every edge's learned curve, opacity by importance, symbolic "
                                    "edges named), or with --edge one edge's total, base and "
                                    "spline parts; the file type follows --out's suffix.")
    pl.add_argument("run", help="run folder or .kan model file")
    pl.add_argument("--out", metavar="FILE", help="image file (default: diagram.png next to "
                                                  "the model)")
    pl.add_argument("--edge", metavar="L,I,J", help="plot edge I -> J of layer L instead")
    pl.add_argument("--beta", type=float, default=3.0, help="opacity sharpness (default 3)")
    pl.add_argument("--dpi", type=_positive_int, default=150, help="resolution (default 150)")
    pl.set_defaults(func=_lazy("cmd_plot"))

    a = sub.add_parser(
        "ablate",
        help="train one task across base functions, bias on/off and seeds; write a results table and a plot",
        description=(
            "Train the same task for every combination of base function, bias setting and seed "
            "(sparsity training, pruning, auto_symbolic, formula), print a markdown table "
            "(test RMSE, edges left after pruning, spline share, formula recovered, time) and "
            "write results.csv, results.md and ablation.png into the --out folder."
        ),
    )
    a.add_argument("--task", default="toy",
                   help="built-in task: toy = exp(sin(pi*x_1) + x_2**2) (default), sin_square, "
                        "squares, sum3")
    a.add_argument("--base", default="silu,identity,zero", metavar="NAMES",
                   help="comma-separated base functions (silu, identity, zero, tanh, gelu, relu); "
                        "default silu,identity,zero")
    a.add_argument("--bias", default="on,off", metavar="on,off", help="bias settings to try (default on,off)")
    a.add_argument("--seeds", default="2", metavar="SEEDS",
                   help="a count N (seeds 0..N-1) or a comma-separated list such as 0,1,5 "
                        "(a single seed 7: '7,'); default 2")
    a.add_argument("--steps", type=_positive_int, default=40,
                   help="LBFGS steps of the sparsity training (the pruning round and the symbolic "
                        "retrains take half as many); default 40")
    a.add_argument("--lamb", type=float, default=0.005, help="sparsity strength (default 0.005)")
    a.add_argument("--width", metavar="W", help="network width such as 2,5,1 (default [n, 2n+1, 1])")
    a.add_argument("--grid", type=_positive_int, default=5, help="grid intervals (default 5)")
    a.add_argument("--train-num", type=_positive_int, default=1000, metavar="N",
                   help="training samples, and as many test samples (default 1000)")
    a.add_argument("--lib", metavar="NAMES",
                   help="comma-separated candidate functions for auto_symbolic, such as "
                        "x,x^2,sin,exp (default: the whole library)")
    a.add_argument("--workers", type=_positive_int, default=1,
                   help="processes running configurations at once (default 1); results do not "
                        "depend on it")
    a.add_argument("--backend", choices=("process", "ray"), default="process",
                   help="process pool (default) or ray (needs ray installed)")
    a.add_argument("--out", default="ablation-results", metavar="DIR",
                   help="folder (created if missing) that receives results.csv, results.md and "
                        "ablation.png; default ./ablation-results")
    a.add_argument("--no-plot", action="store_true", help="do not write ablation.png")
    a.set_defaults(func=_ablate)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into head & co.: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, FileNotFoundError) as err:
        print(f"kanlab: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # a run that could not finish: one line, details on request
        if args.verbose:
            raise
        print(f"kanlab: error: {err} (run again with --verbose for the details)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
