"""Drift tests between a baseline profile and a live window, and a sequential detector.

Each window test returns a `Finding` with a p-value *and* an effect size; a feature alarms only when the
(multiplicity-adjusted) p-value is small *and* the effect is at least the feature's minimum shift that
matters, so huge traffic does not alarm on trivia.

* Categorical: Pearson's chi-square on the 2 x K table (baseline counts, live counts), which treats the
  reference as a sample too (a goodness-of-fit test against the baseline proportions would not, and alarms on
  identical data); categories expected below 5 are pooled. Effect: total variation distance.
* Missing ratio: the pooled two-proportion z-test. Effect: absolute difference of the ratios.
* Mean: Welch's z on the two means. Effect: the shift in baseline standard deviations.
* Distribution: the two-sample Kolmogorov-Smirnov distance read from the two KLL sketches, minus the sketches'
  rank error (so the sketch can never be what alarms), against the asymptotic KS distribution.
* PSI on the baseline's decile bins, reported as a familiar number (it has no error rate of its own).
* `Cusum`: Page's CUSUM on standardised rows, vectorised (S_t = C_t - min(0, min_j<=t C_j)), with the threshold
  set from a false-alarm budget by Siegmund's approximation of the in-control run length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from tether.monitor.profile import CategoricalProfile, NumericProfile


@dataclass(frozen=True)
class Finding:
    test: str
    statistic: float
    p_value: float
    effect: float
    baseline: float | None = None
    live: float | None = None


def categorical_test(baseline: CategoricalProfile, live: CategoricalProfile) -> Finding:
    cats = sorted(set(baseline.counts) | set(live.counts))
    table = np.array([[baseline.counts.get(c, 0) for c in cats], [live.counts.get(c, 0) for c in cats]], float)
    n_b, n_l = table.sum(axis=1)
    if n_b == 0 or n_l == 0:
        return Finding("chi_square", 0.0, 1.0, 0.0)
    tvd = 0.5 * float(np.abs(table[0] / n_b - table[1] / n_l).sum())
    expected = table.sum(axis=0) * min(n_b, n_l) / (n_b + n_l)
    rare = expected < 5
    if rare.any():
        pooled = table[:, rare].sum(axis=1, keepdims=True)
        table = np.hstack([table[:, ~rare], pooled]) if (~rare).any() else pooled
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return Finding("chi_square", 0.0, 1.0, tvd)
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    return Finding("chi_square", float(chi2), float(p), tvd)


def missing_test(baseline: NumericProfile | CategoricalProfile, live: NumericProfile | CategoricalProfile) -> Finding:
    nb, nl = baseline.count + baseline.missing, live.count + live.missing
    if nb == 0 or nl == 0:
        return Finding("two_proportion", 0.0, 1.0, 0.0)
    pb, pl = baseline.missing / nb, live.missing / nl
    pooled = (baseline.missing + live.missing) / (nb + nl)
    se = math.sqrt(pooled * (1 - pooled) * (1 / nb + 1 / nl))
    if se == 0:
        return Finding("two_proportion", 0.0, 1.0, abs(pl - pb), pb, pl)
    z = (pl - pb) / se
    return Finding("two_proportion", z, float(2 * stats.norm.sf(abs(z))), abs(pl - pb), pb, pl)


def mean_shift_test(baseline: NumericProfile, live: NumericProfile) -> Finding:
    if baseline.count < 2 or live.count < 2:
        return Finding("welch_z", 0.0, 1.0, 0.0, baseline.mean, live.mean)
    se = math.sqrt(baseline.variance / baseline.count + live.variance / live.count)
    sd = math.sqrt(baseline.variance)
    if se == 0 or sd == 0:
        return Finding("welch_z", 0.0, 1.0, 0.0, baseline.mean, live.mean)
    z = (live.mean - baseline.mean) / se
    return Finding(
        "welch_z", z, float(2 * stats.norm.sf(abs(z))), abs(live.mean - baseline.mean) / sd, baseline.mean, live.mean
    )


def ks_sketch_test(baseline: NumericProfile, live: NumericProfile, grid: int = 512) -> Finding:
    if baseline.count == 0 or live.count == 0:
        return Finding("ks", 0.0, 1.0, 0.0)
    qs = np.linspace(0, 1, grid)
    points = np.unique(np.concatenate([baseline.sketch.get_quantiles(qs), live.sketch.get_quantiles(qs)]))
    fb = np.array(baseline.sketch.get_cdf(points.tolist())[:-1])
    fl = np.array(live.sketch.get_cdf(points.tolist())[:-1])
    d = float(np.max(np.abs(fb - fl)))
    eps = baseline.rank_error + live.rank_error
    d_adj = max(0.0, d - eps)
    n, m = baseline.count, live.count
    en = math.sqrt(n * m / (n + m))
    p = float(stats.kstwobign.sf(d_adj * en)) if d_adj > 0 else 1.0
    return Finding("ks", d, p, d_adj)


def psi(baseline: NumericProfile, live: NumericProfile, bins: int = 10) -> float:
    """Population stability index over the baseline's quantile bins (smoothed to avoid log of zero)."""
    edges = np.unique(baseline.sketch.get_quantiles(np.linspace(0, 1, bins + 1)[1:-1]))
    cb = np.diff(np.concatenate([[0.0], baseline.sketch.get_cdf(edges.tolist())]))
    cl = np.diff(np.concatenate([[0.0], live.sketch.get_cdf(edges.tolist())]))
    b = np.clip(cb, 1e-4, None)
    lv = np.clip(cl, 1e-4, None)
    return float(np.sum((lv - b) * np.log(lv / b)))


def cusum_arl0(h: float, k: float) -> float:
    """Siegmund's approximation of the in-control average run length of a one-sided CUSUM on N(0, 1) rows."""
    b = h + 1.166
    return (math.exp(2 * k * b) - 2 * k * b - 1) / (2 * k * k)


def cusum_threshold(arl0: float, k: float) -> float:
    """The threshold h whose in-control run length is ``arl0`` rows (bisection on `cusum_arl0`)."""
    lo, hi = 0.0, 1.0
    while cusum_arl0(hi, k) < arl0:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cusum_arl0(mid, k) < arl0 else (lo, mid)
    return hi


class Cusum:
    """Two-sided CUSUM on standardised values ``(x - mean) / sd`` for a shift of ``delta`` sd.

    ``arl0`` is the false-alarm budget as the expected number of in-control rows between false alarms (split
    evenly between the two sides). `update` takes a batch and returns the index of the first alarm in it.
    """

    def __init__(self, mean: float, sd: float, *, delta: float, arl0: float) -> None:
        if sd <= 0 or delta <= 0 or arl0 <= 1:
            raise ValueError("Cusum needs sd > 0, delta > 0 and arl0 > 1")
        self.mean, self.sd, self.k = mean, sd, delta / 2
        self.h = cusum_threshold(2 * arl0, self.k)
        self.up = self.down = 0.0
        self.seen = 0

    def update(self, values: np.ndarray) -> int | None:
        z = (np.asarray(values, dtype=float) - self.mean) / self.sd
        first: int | None = None
        for sign in (1.0, -1.0):
            start = self.up if sign > 0 else self.down
            c = start + np.cumsum(sign * z - self.k)
            s = c - np.minimum(0.0, np.minimum.accumulate(c))
            hit = np.flatnonzero(s > self.h)
            if hit.size:
                first = int(hit[0]) if first is None else min(first, int(hit[0]))
            end = float(s[-1]) if s.size else start
            if sign > 0:
                self.up = end
            else:
                self.down = end
        self.seen += int(z.size)
        return first

    def reset(self) -> None:
        self.up = self.down = 0.0

    def expected_delay(self, shift: float) -> float:
        """Approximate rows to detect a sustained shift of ``shift`` sd (Siegmund), for reports."""
        drift = abs(shift) - self.k
        if drift <= 0:
            return math.inf
        return (self.h + 1.166) / drift


class SliceCusum:
    """Two-sided CUSUM on a feature's mean fed with whole slices: (rows, mean) per slice.

    The per-row CUSUM statistic S = max(0, S + z - k), z = (x - mean) / sd, is advanced by a slice of n rows
    with mean m in one step: S = max(0, S + n (m - mean) / sd - n k). Sampled only at slice ends, S never exceeds
    the per-row statistic (its running minimum is taken over fewer points), so the false-alarm rate is at most
    the per-row CUSUM's, whose threshold comes from Siegmund's run length for ``arl0`` rows; and a slice's sum
    is close to normal by the central limit theorem even when rows are skewed. ``delta`` is the shift (in sd)
    the detector is tuned to; `estimate` is the shift over the current run (rows since S last left zero).
    """

    def __init__(self, mean: float, sd: float, *, delta: float, arl0: float) -> None:
        if sd <= 0 or delta <= 0 or arl0 <= 1:
            raise ValueError("SliceCusum needs sd > 0, delta > 0 and arl0 > 1")
        self.mean, self.sd, self.delta, self.arl0 = mean, sd, delta, arl0
        self.k = delta / 2
        self.h = cusum_threshold(2 * arl0, self.k)
        self.s = [0.0, 0.0]  # up, down
        self._run = [(0, 0.0), (0, 0.0)]  # (rows, sum of z) since each side last left zero
        self.rows = 0

    def update(self, n: int, mean: float) -> bool:
        """Advance by one slice; True when either side crosses the threshold (then call `reset`)."""
        if n <= 0 or not math.isfinite(mean):
            return False
        z = n * (mean - self.mean) / self.sd
        self.rows += n
        hit = False
        for i, sign in enumerate((1.0, -1.0)):
            s = self.s[i] + sign * z - n * self.k
            if s <= 0:
                self.s[i], self._run[i] = 0.0, (0, 0.0)
                continue
            rows, total = self._run[i]
            self.s[i], self._run[i] = s, (rows + n, total + z)
            hit = hit or s > self.h
        return hit

    @property
    def statistic(self) -> float:
        return max(self.s)

    def estimate(self) -> float:
        """The mean shift (in sd, signed) over the run of the side that is higher."""
        i = 0 if self.s[0] >= self.s[1] else 1
        rows, total = self._run[i]
        return total / rows if rows else 0.0

    def expected_delay(self, shift: float) -> float:
        """Approximate rows to detect a sustained shift of ``shift`` sd (Siegmund), for reports."""
        drift = abs(shift) - self.k
        return (self.h + 1.166) / drift if drift > 0 else math.inf

    def reset(self) -> None:
        self.s = [0.0, 0.0]
        self._run = [(0, 0.0), (0, 0.0)]
