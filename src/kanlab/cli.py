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


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(
        prog="kanlab",
        description="Kolmogorov-Arnold Networks on PyTorch (pykan-compatible core).",
    )
    p.add_argument("--version", action="version", version=f"kanlab {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    d = sub.add_parser("demo", help="train the built-in toy example and print test RMSE and time")
    d.add_argument("--steps", type=_positive_int, default=50, help="LBFGS steps per stage (default 50)")
    d.add_argument("--save", metavar="PATH", help="save the trained model to PATH")
    d.add_argument("--progress", action="store_true", default=None, help="show a progress bar")
    d.set_defaults(func=_demo)
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
    except (ValueError, FileNotFoundError) as err:
        print(f"kanlab: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
