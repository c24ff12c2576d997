"""Paired bootstrap, vectorised, seeded.

Most gate statistics depend on a row only through a small discrete *cell*: for binary decisions the cell is
(label, candidate decision, champion decision), optionally crossed with a group. Resampling n rows with
replacement puts Multinomial(n, cell shares) rows in each cell, so drawing the cell counts directly is *exactly*
the row bootstrap, at a cost of O(resamples x cells) instead of O(resamples x rows). That is what makes a
1,000-resample bootstrap of a million-row gold set take milliseconds (see bench/gate.py).

Statistics that need the row values themselves (regression errors) use `row_weights`: multinomial row
counts drawn in batches.

B. Efron, R. Tibshirani (1993), An Introduction to the Bootstrap, ch. 13 (percentile intervals).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy.stats import norm


def cell_counts(cells: np.ndarray, n_cells: int) -> np.ndarray:
    """How many rows fall in each cell (cells are integer codes in [0, n_cells))."""
    return np.bincount(np.asarray(cells, dtype=np.int64), minlength=n_cells)


def resample_cells(counts: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap cell counts: a (resamples, cells) array, each row Multinomial(n, counts / n)."""
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if n == 0:
        return np.zeros((resamples, counts.size), dtype=np.int64)
    return rng.multinomial(n, counts / n, size=resamples)


def row_weights(
    n: int, resamples: int, rng: np.random.Generator, *, max_values: int = 20_000_000
) -> Iterator[np.ndarray]:
    """Multinomial row counts for each resample, yielded in (batch, n) blocks of at most ``max_values``."""
    batch = max(1, min(resamples, max_values // max(n, 1)))
    done = 0
    while done < resamples:
        b = min(batch, resamples - done)
        yield np.stack([np.bincount(rng.integers(0, n, size=n), minlength=n) for _ in range(b)])
        done += b


#: Below this many resamples on the null side, the empirical tail is too coarse to rank (its floor is
#: 1/(B+1), which Holm over a large family can never reach); the tail then comes from a normal fitted to the
#: bootstrap distribution (the Wald test on the bootstrap standard error), never larger than the empirical one.
TAIL_HITS = 10


def _p(samples: np.ndarray, bound: float, upper: bool) -> float:
    s = np.asarray(samples, dtype=float)
    hits = np.count_nonzero(~(s > bound)) if upper else np.count_nonzero(~(s < bound))
    empirical = float((1 + hits) / (s.size + 1))
    if hits >= TAIL_HITS:
        return empirical
    finite = s[np.isfinite(s)]
    if finite.size < s.size or finite.size < 2:
        return empirical  # undefined resamples count against rejection: no extrapolation past them
    sd = float(finite.std(ddof=1))
    if not sd > 0:
        return empirical  # a degenerate distribution says nothing about its tail (e.g. zero events)
    z = (float(finite.mean()) - bound) / sd
    return min(empirical, float(norm.sf(z if upper else -z)))


def p_at_most(samples: np.ndarray, bound: float) -> float:
    """Bootstrap p-value for H0: statistic <= bound (small when the samples sit above the bound).

    Percentile-inversion form with the +1 correction, (1 + #{s <= bound}) / (B + 1), refined in the far tail
    (see `TAIL_HITS`). NaN samples (statistic undefined in that resample) count against rejection.
    """
    return _p(samples, bound, True)


def p_at_least(samples: np.ndarray, bound: float) -> float:
    """Bootstrap p-value for H0: statistic >= bound (small when the samples sit below the bound)."""
    return _p(samples, bound, False)


def percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    """Two-sided percentile interval at ``level`` (ignoring resamples where the statistic is undefined)."""
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return (float("nan"), float("nan"))
    a = (1 - level) / 2
    lo, hi = np.quantile(s, [a, 1 - a])
    return (float(lo), float(hi))
