"""Process pools shared by the ablation runner and discover(): fresh worker processes
(``forkserver`` with kanlab preloaded, else ``spawn``), one thread each."""
from __future__ import annotations

import contextlib
import multiprocessing
import os

import torch

__all__ = ["_torch_threads", "_single_thread_env", "_mp_context", "_init_worker", "check_backend",
           "unguarded_main_call"]


@contextlib.contextmanager
def _torch_threads(n: int):
    """Run the block on ``n`` torch threads, restoring the caller's setting afterwards."""
    old = torch.get_num_threads()
    if old != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


@contextlib.contextmanager
def _single_thread_env():
    """Processes started inside the block (spawned workers, or the forkserver the workers are
    forked from) get one BLAS/OpenMP thread each; this process's environment is restored after."""
    keys = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _mp_context():
    """``forkserver`` with kanlab preloaded where the platform has it, else ``spawn``.

    Both start workers from a fresh interpreter state (never a fork of this process and its
    threads). With the forkserver, torch and kanlab are imported once in the server and every
    worker is forked from it ready to run, instead of importing them again (seconds per worker);
    Python keeps that server process idle until this process exits.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["kanlab"])
        return ctx
    return multiprocessing.get_context("spawn")


def unguarded_main_call() -> str | None:
    """Where this call sits if it comes from a script's top level outside an
    ``if __name__ == "__main__":`` block (``"script.py, line 12"``), else None.

    Worker processes (spawn and forkserver alike) import the main script again; a call there that
    the guard does not protect would run again in every worker and break the pool
    (BrokenProcessPool), so the caller runs serially instead and says why."""
    import ast
    import sys

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path or not os.path.isfile(path) or multiprocessing.parent_process() is not None:
        return None
    frame = sys._getframe(1)
    line = None
    while frame is not None:  # the outermost frame running the script's own top-level code
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__main__":
            line = frame.f_lineno
        frame = frame.f_back
    if line is None:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
    except (OSError, SyntaxError, ValueError):
        return None

    def is_guard(node) -> bool:
        test = node.test
        return (isinstance(test, ast.Compare) and len(test.ops) == 1
                and isinstance(test.ops[0], ast.Eq)
                and {ast.dump(test.left), ast.dump(test.comparators[0])} ==
                {ast.dump(ast.Name("__name__", ast.Load())), ast.dump(ast.Constant("__main__"))})

    for node in ast.walk(tree):
        if isinstance(node, ast.If) and is_guard(node) and \
                node.body[0].lineno <= line <= (node.body[-1].end_lineno or line):
            return None
    return f"{os.path.basename(path)}, line {line}"


def _init_worker() -> None:
    """Worker process set-up: one torch thread, so N workers use N cores."""
    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)




def check_backend(backend: str, workers) -> None:
    """Validate ``backend``/``workers``; ImportError when Ray is asked for but missing."""
    if backend not in ("process", "ray"):
        raise ValueError(f"backend must be 'process' or 'ray', got {backend!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ImportError("backend='ray' needs the ray package (pip install ray); or use "
                              "the default backend='process'") from None
