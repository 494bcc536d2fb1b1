"""Running attempts: one in this process or a worker, many on a process pool or Ray."""
from __future__ import annotations

import time

from .attempt import _attempt
from .structure import _structured_attempt
from .additive import sum_attempt
from .affine import affine_attempt
from .symmetry import reduced_attempt
from .groups import group_attempt


def _attempt_job(job):
    """One attempt in this process or a worker: (index, (result, error, seconds, stages))."""
    a, h, s, remaining, common = job
    (dataset, d, grid, refine_grid, lamb, steps, lib, zs, back, symbols, ysd, yc, Xtr, ytr, Xte,
     yte, snap, record_shares, floor) = common
    st = {k: 0.0 for k in ("train", "prune", "refine", "symbolic", "formula")}
    t0 = time.perf_counter()
    try:
        deadline = t0 + max(remaining, 0.0)
        if isinstance(h, tuple):
            opts = dict(lib=lib, grid=grid, refine_grid=refine_grid, lamb=lamb, steps=steps,
                        dtype=dataset["train_input"].dtype)
            if h[0] == "sum":
                res = sum_attempt(h, s, st, symbols, Xtr, ytr, Xte, yte, snap, deadline, opts,
                                  floor)
            elif h[0] == "affine":
                res = affine_attempt(h, s, st, symbols, Xtr, ytr, Xte, yte, snap, deadline,
                                     opts, floor)
            elif h[0] == "groups":
                res = group_attempt(h, s, st, symbols, Xtr, ytr, Xte, yte, snap, deadline,
                                    opts, floor)
            elif h[0] == "reduce":
                res = reduced_attempt(h, s, st, symbols, Xtr, ytr, Xte, yte, snap, deadline,
                                      opts, floor)
            else:
                res = _structured_attempt(dataset, h, s, st, symbols, ysd, yc, Xtr, ytr, Xte,
                                          yte, snap, deadline, opts, floor)
        else:
            res = _attempt(dataset, d, h, s, grid, refine_grid, lamb, steps, lib, st, zs, back,
                           symbols, ysd, yc, Xtr, ytr, Xte, yte, snap, record_shares,
                           deadline=deadline, floor=floor)
        err = None
    except (RuntimeError, ValueError, ArithmeticError) as e:  # keep searching
        res, err = None, f"{type(e).__name__}: {e}"
    return a, (res, err, time.perf_counter() - t0, st)


def _run_parallel(job, go_on, record, workers, backend, max_attempts):
    """Attempts 0, 1, ... on ``workers`` processes (or Ray), at most ``workers`` in flight;
    outcomes are folded in attempt order and nothing starts once the serial loop would stop.
    Attempts running past that point are dropped, so the chosen formula is the serial one."""
    done: dict = {}
    nxt = 0  # next attempt to record
    started = 0

    def fold():
        nonlocal nxt
        while nxt in done:
            record(nxt, done.pop(nxt))
            nxt += 1

    if backend == "ray":
        import ray

        own = not ray.is_initialized()
        if own:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        try:
            remote = ray.remote(num_cpus=1)(_attempt_job)
            pending = []
            while True:
                while len(pending) < workers and started < max_attempts and go_on(started):
                    pending.append(remote.remote(job(started)))
                    started += 1
                if not pending:
                    break
                ready, pending = ray.wait(pending, num_returns=1)
                a, out = ray.get(ready[0])
                done[a] = out
                fold()
                if not go_on(nxt):
                    for ref in pending:
                        ray.cancel(ref, force=True)
                    break
        finally:
            if own:
                ray.shutdown()
        return

    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from ..parallel import _init_worker, _mp_context, _single_thread_env

    with _single_thread_env():
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context(),
                                   initializer=_init_worker)
    try:
        pending = set()
        while True:
            while len(pending) < workers and started < max_attempts and go_on(started):
                pending.add(pool.submit(_attempt_job, job(started)))
                started += 1
            if not pending:
                break
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                a, out = f.result()
                done[a] = out
            fold()
            if not go_on(nxt):
                # the serial loop would stop here: what is still running is not needed
                for f in pending:
                    f.cancel()
                break
    finally:
        # attempts still running are not needed (the serial search would not have run them):
        # stop their processes instead of letting them compete with the caller for the cores
        procs = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)

