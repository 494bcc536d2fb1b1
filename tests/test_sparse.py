"""The sparse least-squares search against brute force."""
import itertools

import numpy as np

from kanlab.discovery.sparse import _best_pairs, _one_and_pair


def _unit(A):
    return A / np.linalg.norm(A, axis=0)


def _rss(A, t, cols):
    coef, *_ = np.linalg.lstsq(A[:, cols], t, rcond=None)
    r = A[:, cols] @ coef - t
    return float(r @ r)


def test_best_pairs_rank_every_pair_as_least_squares_does():
    rng = np.random.default_rng(0)
    A = _unit(rng.normal(size=(60, 12)))
    t = rng.normal(size=60)
    tss = float(t @ t)
    found = _best_pairs(A.T @ A, A.T @ t, 5)
    brute = sorted((_rss(A, t, [i, j]), (i, j)) for i, j in itertools.combinations(range(12), 2))
    assert [p for p, _ in found] == [p for _, p in brute[:5]]
    for (i, j), gain in found:
        assert np.isclose(tss - gain, _rss(A, t, [i, j]), rtol=1e-9)


def test_one_and_pair_finds_the_best_triple_holding_one_of_the_given_columns():
    """The triple search projects each given column out through the pool's Gram matrix; its
    choice and residual must be those of least squares on every such triple."""
    rng = np.random.default_rng(1)
    A = _unit(rng.normal(size=(80, 15)))
    t = A[:, [2, 7, 11]] @ np.array([1.0, -2.0, 0.5]) + 0.05 * rng.normal(size=80)
    tss = float(t @ t)
    ok = np.ones(15, dtype=bool)
    ones = [0, 7, 4]
    sup, rel = _one_and_pair(A, t, tss, ok, ones, np.arange(15))
    brute = min((_rss(A, t, sorted({c, i, j})), sorted({c, i, j}))
                for c in ones for i, j in itertools.combinations(range(15), 2)
                if len({c, i, j}) == 3)
    assert sup == brute[1] == [2, 7, 11]
    assert np.isclose(rel * tss, brute[0], rtol=1e-9)
    # an exact triple: the residual is computed, not left as a difference of large numbers
    exact = A[:, [2, 7, 11]] @ np.array([1.0, -2.0, 0.5])
    sup, rel = _one_and_pair(A, exact, float(exact @ exact), ok, ones, np.arange(15))
    assert sup == [2, 7, 11] and rel < 1e-24
