"""Sums of a few power laws: ``T(y) = sum_k c_k * g_k * prod_i x_i**e_ik`` with free exponents.

The sparse search (:mod:`.algebraic`) only sees the terms of its dictionary, whose degree is
capped so that it stays small: ``c**4*k_f/(G*r**2)`` (degree 8) is out of its reach, and so is
the ``2*E_n*L**2*epsilon**2/(m*Z_1**2*Z_2**2*q**4)`` under a square root. When every input
keeps one sign, a sum of K power laws is a smooth model of K*(d+1) numbers, and a nonlinear
least-squares fit (Levenberg-Marquardt, exact Jacobian) reaches it from a handful of starts:
K = 1 from the log-log fit, each larger K from the best fit of K - 1 terms with one term
copied and nudged (a term splits in two), and from random small-integer exponents.

The inputs that change sign (or come near zero) enter instead through a factor ``g_k`` of each
term: 1, or one of ``u``, ``u**2``, ``sin(u)``, ``cos(u)``, ``sin(u)**2`` for such an input u
(at most two of them; a positive input from near zero, an angle, has the last three too): ``P*(w0**3/w**3 + w0/w - w0**2*sin(b)**2/w**2)``. A new term may copy
a term of the smaller fit with another factor.

The exponents found are rounded to integers or halves when that does not cost fit, and the
coefficients refitted; the caller snaps and scores the result like any other candidate. Terms
are added while BIC says each pays for itself (a term that fits noise does not).
"""
from __future__ import annotations

import math
import time

import numpy as np
import sympy
from scipy.optimize import least_squares

from .curve_factor import curve_factor
from .rational_factor import rational_factor
from .roots import whole_terms_of


__all__ = ["row_weights", "signomial_sums"]

_TRANSFORMS = ("y", "y^2", "1/y", "1/y^2")
_CURVE_SECONDS = 3.0  # for the search of a curve factor (at most 1.5 times the fits' own)
# a one-term fit's input is searched for a curve when a ratio in it leaves this share of the
# power law's residual at most (1/sin(theta/2)**4 behind Rutherford's powers: 0.1; the ratio
# (m1*r1 + m2*r2)/(m1 + m2), no curve of one input: 0.995)
_BENT = 0.5


def signomial_sums(X, transforms, symbols, live, *, deadline: float, max_terms: int = 3,
                   seconds: float = 3.0, seed: int = 0, lib=None, whole_terms=None):
    """``(expr, label, n_terms, relative residual of T(y))`` tuples, one per transform and
    number of terms worth keeping. ``transforms``: ``(name, T(y), inverse)`` as
    :func:`.algebraic._transforms` makes them (only y, y**2, 1/y and 1/y**2 are used);
    ``live``: which inputs vary. Nothing when no live input keeps one sign away from zero, or
    more than two do not. ``lib``: the library functions a curve factor may use (None: any).
    ``whole_terms``: a list that gets the terms of y's fits of two or more terms whose powers
    are integers (:func:`.roots.whole_terms_of`), for a caller that looks for what the other terms
    mimic."""
    space = _Space.of(X, symbols, live)
    if space is None:
        return []
    stop = min(deadline, time.perf_counter() + seconds)
    rng = np.random.default_rng(seed)
    # every transform's fits of one term, then of two, ...: a law that is a sum of two power
    # laws of y**2 is not kept waiting behind a search for three terms of y
    grow = [_Growth(name, t, inverse) for name, t, inverse in transforms
            if name in _TRANSFORMS and np.all(np.isfinite(t))]
    for K in range(1, max_terms + 1):
        active = [g for g in grow if g.going]
        for j, g in enumerate(active):
            now = time.perf_counter()
            if now > stop:
                break
            # what is left, shared by the fits left at this size and those of the sizes after
            slots = len(active) - j + len(active) * (max_terms - K)
            g.step(space, K, now + (stop - now) / slots, rng)
        if any(g.fits and g.fits[-1][2] < 1e-14 for g in grow):
            break  # exact to float precision
    out, bent = [], []
    for g in grow:
        # the closest fit, and the one a term shorter when that too is close (the noise may
        # not support the last term)
        fits = g.fits[-2:] if len(g.fits) > 1 and g.fits[-2][2] < 1e-3 else g.fits[-1:]
        for E, tags, rel in fits:
            found = _rounded(space, g.t, g.w, g.scale, E, tags, rel)
            if found is not None:
                out.append((g.inverse(found[0]), f"sum of {E.shape[0]} power laws of {g.name}",
                            E.shape[0], found[1]))
        # every size's terms with one input's share a ratio of polynomials: the power laws'
        # best bend of that share may be far off (and need a third term to make up for it)
        for E, tags, rel in g.fits:
            more = rational_factor(space, g.t, g.w, E, tags, rel)
            if more is not None:
                out.append((g.inverse(more[0]), f"sum of {E.shape[0]} power laws of {g.name}, "
                            f"rational in {more[2]}", E.shape[0], more[1]))
                if E.shape[0] == 1 and more[1] <= _BENT * rel:
                    bent.append((more[1], g, E, tags, space.names.index(more[2])))
        if g.name == "y" and whole_terms is not None:  # the closest fit's first, once each
            for E, tags, rel in g.fits[:0:-1]:
                for term in whole_terms_of(space, g.t, E, tags):
                    if all(term[0] != other[0] for other in whole_terms):
                        whole_terms.append(term)
    # one power law whose input u's share is far better a ratio than a power: u's share may
    # be a curve (the closest such fit's, searched once: a curve search takes a second or two)
    for _, g, E, tags, k in sorted(bent, key=lambda b: b[0])[:1]:
        for expr, rel, label in curve_factor(
                space, g.t, g.w, E, int(tags[0]), k, lib=lib,
                deadline=min(deadline, time.perf_counter() + min(_CURVE_SECONDS,
                                                                   1.5 * seconds))):
            out.append((g.inverse(expr), f"1 power law of {g.name} times a {label}", 1, rel))
    return out


class _Space:
    """What the terms are made of: ``L``, the logs of the one-signed inputs over their
    geometric means (``ax`` their magnitudes, ``names`` their symbols, negated for negative
    inputs), and ``T``, the factors a term may carry (column 0 is 1), with ``T_expr``."""

    def __init__(self, ax, names, T, T_expr):
        self.ax, self.names, self.T, self.T_expr = ax, names, T, T_expr
        L = np.log(ax)
        self.L = L - L.mean(axis=0)  # inputs over their geometric means: columns near 1

    def term(self, e, tag):
        """The term with powers ``e`` (integers or halves) and factor column ``tag``, as sympy."""
        out = self.T_expr[tag]
        for sym, p in zip(self.names, e):
            if p != 0:
                out = out * sym ** sympy.Rational(int(round(2 * p)), 2)
        return out

    @classmethod
    def of(cls, X, symbols, live):
        """The space of ``X``'s live inputs; None when none keeps one sign away from zero, or
        more than two do not. Inputs that do not enter only through factors; a positive input
        that comes within 5% of zero (an angle from 0 to 2*pi) also enters through the
        trigonometric ones, when that makes two such inputs at most."""
        idx = [int(i) for i in np.flatnonzero(live)]
        pos, other, near = [], [], []
        for i in idx:
            a = np.abs(X[:, i])
            one_sign = bool(np.all(X[:, i] > 0) or np.all(X[:, i] < 0))
            if not (one_sign and a.min() >= 1e-3 * a.max()):
                other.append(i)
                continue
            pos.append(i)
            if a.min() < 0.05 * a.max():
                near.append(i)
        if not pos or len(pos) > 10 or len(other) > 2:
            return None
        names = [symbols[i] if np.all(X[:, i] > 0) else -symbols[i] for i in pos]
        T, T_expr = [np.ones(len(X))], [sympy.Integer(1)]
        for i in other + (near if len(other) + len(near) <= 2 else []):
            u, s = X[:, i], symbols[i]
            if i in other:
                T += [u, u * u]
                T_expr += [s, s ** 2]
            T += [np.sin(u), np.cos(u), np.sin(u) ** 2]
            T_expr += [sympy.sin(s), sympy.cos(s), sympy.sin(s) ** 2]
        return cls(np.abs(X[:, pos]), names, np.column_stack(T), T_expr)


class _Growth:
    """The fits ``(exponents (K, d), factor of each term (K,), relative residual)`` of one
    transform T(y) with 1, 2, ... terms, each the best of its starts (stopped early once three
    starts agree on it), grown while another term pays for itself."""

    def __init__(self, name, t, inverse):
        self.name, self.t, self.inverse = name, t, inverse
        self.scale = float(np.sqrt(np.mean(t * t))) or 1.0
        self.w = row_weights(name, t)
        self.fits, self.going = [], True

    def step(self, space, K, deadline, rng, starts: int = 20):
        t = self.t / self.scale
        prev = self.fits[-1][:2] if self.fits else None
        best, agree = None, 0
        for E0, tags in _starts(space, t, prev, K, rng, starts, self.w):
            if time.perf_counter() > deadline and best is not None:
                break
            got = _fit(space, t, E0, tags, w=self.w)
            if got is None:
                continue
            if best is not None and abs(got[2] - best[2]) <= 0.01 * best[2]:
                agree += 1
            elif best is None or got[2] < best[2]:
                best, agree = got, 1
            if best[2] < 1e-14 or agree >= 3:
                break
        # a term is kept when BIC says so: its d + 1 numbers must lower n*log(residual) by
        # more than (d + 1)*log(n) (on noisy data a real term may lower it by less than half)
        n, d = space.L.shape
        if best is None or (self.fits and n * math.log(
                max(best[2], 1e-300) / max(self.fits[-1][2], 1e-300)) > -(d + 1) * math.log(n)):
            self.going = False
            return
        self.fits.append(best)
        self.going = best[2] >= 1e-14


def _starts(space, t, prev, K, rng, count, w=None):
    """Starting ``(exponents, factors)`` for K terms: the log-log fit for K = 1 (with each
    factor); else the K - 1 best with one of its terms copied and either its exponents moved
    (:func:`_moves`) or its factor changed; in turn, the split whose linear fit (exponents
    held) is closest among those left, a split drawn at random, and random small integers."""
    d, G = space.L.shape[1], space.T.shape[1]
    if prev is None:
        ll = _loglog(space.L, t)
        for g in range(G):
            yield ll, np.array([g])
        for _ in range(count - G):
            yield _random(rng, 1, d), rng.integers(0, G, size=1) * rng.integers(0, 2, size=1)
        return
    E, tags = prev
    made = []
    for j in range(len(E)):
        for step in _moves(d):
            made.append((np.vstack([E, E[j] + step]), np.append(tags, tags[j])))
        for g in range(G):
            if g != tags[j]:
                made.append((np.vstack([E, E[j]]), np.append(tags, g)))
    # a start's coefficients alone, fitted by least squares, rank it: a few milliseconds for
    # all of them, where one Levenberg-Marquardt run takes tens; the law's split is near the
    # top even when its terms are far from their final exponents
    ranked = sorted(range(len(made)), key=lambda k: (_linear_rss(space, t, *made[k], w), k))
    shuffled = list(rng.permutation(len(made)))
    tried = set()
    for n in range(count):
        # in turn: the best-ranked split not yet tried, one in random order, random exponents
        pool = ranked if n % 3 == 0 else shuffled
        while pool and pool[0] in tried:
            pool.pop(0)
        if n % 3 == 2 or not pool:
            yield _random(rng, K, d), rng.integers(0, G, size=K) * rng.integers(0, 2, size=K)
            continue
        tried.add(pool[0])
        yield made[pool.pop(0)]


def _moves(d):
    """Steps of a copied term's exponents: one exponent by 1, or two by 1 each, alike (a
    product x_i*x_k) or opposite (a ratio x_i/x_k: ``w0**3/w**3 + w0/w`` is one term split
    along w0/w)."""
    out = []
    for i in range(d):
        for s in (-1.0, 1.0):
            e = np.zeros(d)
            e[i] = s
            out.append(e)
            for k in range(i + 1, d):
                for t in (-1.0, 1.0):
                    e2 = e.copy()
                    e2[k] = t
                    out.append(e2)
    return out


def _linear_rss(space, t, E, tags, w=None) -> float:
    """Residual of ``t`` fitted by the terms ``E`` (factors ``tags``) with their exponents held
    (inf when the columns overflow)."""
    w = np.ones(len(t)) if w is None else w
    with np.errstate(all="ignore"):
        A = np.exp(np.clip(space.L @ E.T, -60.0, 60.0)) * space.T[:, tags] * w[:, None]
        try:
            c, *_ = np.linalg.lstsq(A, t * w, rcond=None)
        except (ValueError, np.linalg.LinAlgError):
            return math.inf
        r = A @ c - t * w
    rss = float(r @ r)
    return rss if math.isfinite(rss) else math.inf


def row_weights(name, t):
    """Row weights that make a fit of T(y) one of y: noise of size e on y moves T(y) by about
    e * |T'(y)|, so each row counts 1 / |T'(y)| (scaled to mean 1)."""
    with np.errstate(all="ignore"):
        a = np.abs(t)
        w = {"y": np.ones_like(t), "y^2": 1 / np.sqrt(a), "1/y": 1 / a ** 2,
             "1/y^2": a ** -1.5}[name]
    w = np.where(np.isfinite(w), w, 0.0)
    return w / (np.mean(w) or 1.0)


def _random(rng, K, d):
    """Small-integer exponents, about half of them zero."""
    return rng.integers(-2, 3, size=(K, d)).astype(float) * rng.integers(0, 2, size=(K, d))


def _loglog(L, t):
    """One power law off log|t| (rows weighed by t**2), as a start."""
    w = np.abs(t)
    A = np.column_stack([np.ones(len(t)), L]) * w[:, None]
    with np.errstate(all="ignore"):
        coef, *_ = np.linalg.lstsq(A, np.log(np.maximum(np.abs(t), 1e-300)) * w, rcond=None)
    return coef[None, 1:] if np.all(np.isfinite(coef)) else np.zeros((1, L.shape[1]))


def _fit(space, t, E0, tags, free=None, w=None):
    """Levenberg-Marquardt on coefficients and exponents together from ``E0`` (only the
    exponents where ``free``, when given), each term times its factor ``space.T[:, tags[k]]``:
    ``(exponents, tags, relative residual)``, or None when it fails or ends on two terms of
    the same factor and nearly the same exponents."""
    L = space.L
    n, d = L.shape
    K = E0.shape[0]
    free = np.ones((K, d), dtype=bool) if free is None else free
    fi = np.flatnonzero(free.ravel())
    w = np.ones(n) if w is None else w
    t = t * w
    F = space.T[:, tags] * w[:, None]

    def exps(p):
        e = E0.ravel().copy()
        e[fi] = p[K:]
        return e

    def cols(e):
        return np.exp(np.clip(L @ e.reshape(K, d).T, -60.0, 60.0)) * F

    def res(p):
        return cols(exps(p)) @ p[:K] - t

    def jac(p):
        A = cols(exps(p))
        dE = ((A * p[:K])[:, :, None] * L[:, None, :]).reshape(n, K * d)
        return np.concatenate([A, dE[:, fi]], axis=1)

    with np.errstate(all="ignore"):
        try:
            c0, *_ = np.linalg.lstsq(cols(E0.ravel()), t, rcond=None)
            p0 = np.concatenate([c0, E0.ravel()[fi]])
            sol = least_squares(res, p0, jac=jac, method="lm", max_nfev=20 * (len(p0) + 1))
        except (ValueError, np.linalg.LinAlgError):
            return None
    rel = float(sol.fun @ sol.fun) / max(float(t @ t), 1e-300)
    E = exps(sol.x).reshape(K, d)
    # two terms of nearly the same exponents with large opposite coefficients are x**a*log(x),
    # a difference quotient: no sum of power laws, and a trap that many starts fall into
    close = [tags[a] == tags[b] and np.max(np.abs(E[a] - E[b])) < 0.25
             for a in range(K) for b in range(a + 1, K)]
    return (E, np.asarray(tags), rel) if math.isfinite(rel) and not any(close) else None


def _integer_exponents(space, t, w, E, tags, rel):
    """``E`` with every exponent an integer, set one at a time (all those within 0.05 of one at
    once, else the nearest), the free ones refitted after each step: on noisy data a term's
    ``a**-0.34`` becomes ``a**0`` once the others are fixed. None when that costs more than
    half again the residual ``rel`` of the free fit."""
    E, free = E.copy(), np.ones(E.shape, dtype=bool)
    limit = 1.5 * rel + 1e-13
    while free.any():
        dist = np.where(free, np.abs(E - np.round(E)), np.inf)
        fix = free & (dist <= 0.05)
        if not fix.any():
            fix = np.zeros_like(free)
            fix[np.unravel_index(int(np.argmin(dist)), dist.shape)] = True
        E[fix] = np.round(E[fix])
        free &= ~fix
        if not free.any():
            break
        got = _fit(space, t, E, tags, free, w=w)
        if got is None or got[2] > limit:
            return None
        E = got[0]
    return E


def _rounded(space, t, w, scale, E, tags, rel):
    """``(expression of T(y), relative residual)`` with integer exponents
    (:func:`_integer_exponents`), or else the free ones rounded to halves, and the coefficients
    refitted, if that costs at most half again the residual of the free fit; else None (a sum
    of power laws with odd exponents is no law)."""
    whole = _integer_exponents(space, t / scale, w, E, tags, rel)
    for R in ([whole] if whole is not None else []) + [np.round(2.0 * E) / 2.0]:
        if np.any(np.abs(R - E) > 0.5) or np.any(np.abs(R) > 8):
            continue
        # two terms that round alike (factor too) are one
        RT = np.unique(np.column_stack([R, tags]), axis=0)
        R, tg = RT[:, :-1], RT[:, -1].astype(int)
        with np.errstate(all="ignore"):
            A = np.exp(np.log(space.ax) @ R.T) * space.T[:, tg]
            s = np.sqrt(np.mean(A * A, axis=0))
            if not np.all(np.isfinite(s)) or np.any(s == 0):
                continue
            c, *_ = np.linalg.lstsq(A / s * w[:, None], t * w, rcond=None)
            r = (A / s @ c - t) * w
        rel_r = float(r @ r) / max(float((t * w) @ (t * w)), 1e-300)
        if not math.isfinite(rel_r) or rel_r > 1.5 * rel + 1e-13:
            continue
        expr = sympy.Integer(0)
        for k in range(len(R)):
            term = sympy.Float(float(c[k] / s[k]), 15) * space.term(R[k], tg[k])
            expr = expr + term
        return expr, rel_r
    return None
