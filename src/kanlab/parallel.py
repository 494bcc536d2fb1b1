"""Process pools shared by the ablation runner and discover(): fresh worker processes
(``forkserver`` with kanlab preloaded, else ``spawn``), one thread each."""
from __future__ import annotations

import contextlib
import multiprocessing
import os

import torch

__all__ = ["_torch_threads", "_single_thread_env", "_mp_context", "_init_worker", "check_backend"]


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
