"""One power law times a curve of one input: ``T(y) = M(x) * g(u)``.

A law can be a power law in every input but one, u, times a function of u that is no power:
Rutherford's ``1/sin(theta/2)**4`` behind ``Z_1**2*Z_2**2*alpha**2/E_n**2``, a prefactor times
``exp(-u)`` or ``cos(u)**2``. A one-term power-law fit (:mod:`.signomial`) gets the other powers
right and bends g into a power, the rational-factor fit (:mod:`.rational_factor`) into a ratio of
polynomials: both are mimics, and on noisy data the mimic can be all that is found. The caller
runs this where the ratio beat the power law (g is no power of u); here the other powers are
rounded to integers or halves and g is searched by the exhaustive curve stage
(:mod:`.univariate`) on ``t / M``.

Noise: ``t / M`` carries t's noise divided by ``|M|``, and where M spans decades the rows with the
smallest ``|M|`` would drown the curve. So the curve is searched on the rows where ``w * |M|`` is
largest (w: the row weights that make a fit of T(y) one of y), with a lower bar on the
transformed fit (``1/sqrt(g)`` magnifies the noise of small g), and every curve found is refitted
as a whole, ``M * g(u)`` on all rows in the weighted least squares of t, so that it is judged by
what it predicts for y.
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np

from scipy.optimize import least_squares

from .rational_factor import round_powers
from .univariate import univariate_curves

__all__ = ["curve_factor"]

log = logging.getLogger("kanlab")

_ROWS = 256  # rows the curve is searched on (the curve stage refines on as many)
_MIN_R2 = 0.99  # of the transformed target: the refit on all rows decides
_PER_TARGET = 2  # functions kept per transformed target
_REFITS = 60  # curves refitted, best R2 on y first (each 10-20 ms)
_NFEV = 40  # least-squares evaluations per constant in the refit of a curve


def curve_factor(space, t, w, E, tag, k, *, deadline: float, lib=None, keep: int = 3):
    """Up to ``keep`` ``(expr of t, weighted relative residual, label)``, closest first, of the
    one-term power law ``E`` ((1, d) free exponents over ``space``'s inputs, factor column
    ``tag``) with the k-th input's power replaced by a curve; [] when the other powers are no
    integers or halves or no curve fits. ``lib``: the library functions the curve may use."""
    R = round_powers(np.delete(np.asarray(E, dtype=np.float64)[:1], k, axis=1))
    if R is None:
        return []
    R = np.insert(R, k, 0.0, axis=1)[0]
    with np.errstate(all="ignore"):
        M = np.exp(np.log(space.ax) @ R) * space.T[:, tag]
    tw = t * w
    tss = float(tw @ tw)
    if not (np.all(np.isfinite(M)) and np.all(M != 0) and tss > 0 and math.isfinite(tss)):
        return []
    u = space.ax[:, k]
    rows = np.argsort(-(w * np.abs(M)), kind="stable")[:_ROWS]
    try:
        curves = univariate_curves(u[rows], t[rows] / M[rows], lib=lib, deadline=deadline,
                                   min_r2=_MIN_R2, per_target=_PER_TARGET, always=False)
    except (RuntimeError, ValueError, ArithmeticError) as err:  # a failed search: no curve
        log.info("discover: the search of a curve factor failed: %s", err)
        return []
    fitted = []
    for cv in curves[:_REFITS]:
        if time.perf_counter() > deadline and fitted:
            break
        p, rel = _refit(cv, u, M, t, w, tss)
        if p is not None:
            fitted.append((rel, cv, p))
    fitted.sort(key=lambda e: e[0])
    m_expr = space.term(R, tag)
    out = []
    for rel, cv, p in fitted[:keep]:
        try:
            expr = m_expr * cv.expression(space.names[k], p)
        except Exception:  # sympy cannot form it: not a candidate
            continue
        out.append((expr, rel, f"{cv.label} in {space.names[k]}"))
    return out


def _refit(cv, u, M, t, w, tss):
    """(a, b, c, d) of the curve ``cv`` refitted so that ``M * curve(u)`` fits t in the
    weighted least squares, and the relative residual; (None, inf) when that is not finite."""
    def res(p):
        r = (M * cv.values(u, p) - t) * w
        return np.where(np.isfinite(r), r, 1e6)

    p0 = np.asarray(cv.params, dtype=np.float64)
    try:
        with np.errstate(all="ignore"):
            sol = least_squares(res, p0, method="lm", max_nfev=_NFEV * (len(p0) + 1),
                                x_scale="jac")
    except Exception:  # a failed refit is no candidate
        return None, math.inf
    p = sol.x
    try:
        with np.errstate(all="ignore"):
            r = (M * cv.values(u, p) - t) * w
    except (RuntimeError, ValueError, TypeError, ArithmeticError):
        return None, math.inf
    rel = float(r @ r) / tss
    return (p, rel) if math.isfinite(rel) else (None, math.inf)
