"""Honest rates from sampled, graded interactions: weighted estimates and prediction-powered inference.

**Weighted estimates.** The sampler grades an interaction with a known probability (its *inclusion*, which
differs by stratum: canary versions and semantic-cache hits are oversampled, and the daily budget lowers
every probability as it runs out). The mean of a score over all traffic is the Hajek estimator
``sum(y/pi) / sum(1/pi)``; its variance is the linearised Poisson-sampling variance
``sum((1-pi)/pi^2 (y - mean)^2) / (sum 1/pi)^2``. The interval for a 0/1 metric is Clopper-Pearson at the
Kish effective sample size (Korn and Graubard, 1998), so a rate of 0 events still gets an upper bound above
0; a continuous score gets a normal (Student t) interval. Rows with a grader error are not scores: they are
counted apart and never enter an estimate.

**Prediction-powered inference** (Angelopoulos, Bates, Fannjiang, Jordan, Zrnic, Science 2023; with the power
tuning of Angelopoulos, Duchi and Zrnic, "PPI++", 2023). A cheap grader scores N interactions, the judge a random
subset of n of them. The estimate is ``lambda * mean_N(f) + mean_n(y - lambda * f)``: the cheap scores carry the
sample size, the judged subset corrects their bias, whatever it is. ``lambda`` is chosen from the data to
minimise the variance (0 gives the judge-only estimate back; a useless cheap grader costs nothing), and the
interval is ``estimate +- z * sqrt(lambda^2 var_N(f)/N + var_n(y - lambda f)/n)``.
``tests/monitor/test_rates.py`` simulates coverage and width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Rate:
    estimate: float | None  # None: no data (never "healthy")
    low: float | None
    high: float | None
    n: int  # scores used
    effective_n: float
    errors: int = 0  # grader errors, never in the estimate
    method: str = "weighted"
    confidence: float = 0.95

    def to_json(self) -> dict[str, Any]:
        return {
            "estimate": _round(self.estimate),
            "low": _round(self.low),
            "high": _round(self.high),
            "n": self.n,
            "effective_n": round(self.effective_n, 2),
            "errors": self.errors,
            "method": self.method,
            "confidence": self.confidence,
        }


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 6)


NO_DATA = Rate(None, None, None, 0, 0.0, method="no data")


def _binary(y: np.ndarray) -> bool:
    return bool(np.all((y == 0) | (y == 1)))


#: Inclusion probabilities at least this close to 1 count as a census (no sampling weight): np.allclose's margin.
CENSUS = 1 - 1e-5


@dataclass(frozen=True)
class Sums:
    """The sufficient statistics of weighted scores: everything `weighted_rate` and `mean_and_variance` need.

    The watch sums them in the database (`tether.graders.scores.sums`), one row per metric and grader, instead
    of reading every score of an epoch back into Python at every check; `Sums.of` builds them from arrays, so
    both paths share one computation. ``w`` is the sum of 1/pi, ``a`` of (1-pi)/pi^2 (the Poisson-sampling
    variance weight), ``y`` and ``y2`` of the raw values and their squares."""

    n: int = 0
    w: float = 0.0
    wy: float = 0.0
    w2: float = 0.0
    a: float = 0.0
    ay: float = 0.0
    ay2: float = 0.0
    y: float = 0.0
    y2: float = 0.0
    non_binary: int = 0  # scores other than 0 and 1
    weighted: int = 0  # scores sampled with pi below CENSUS
    errors: int = 0  # grader errors: counted, never in an estimate

    @classmethod
    def of(cls, values: Any, inclusion: Any | None = None, *, errors: int = 0) -> Sums:
        y = np.asarray(values, dtype=np.float64)
        pi = np.ones_like(y) if inclusion is None else np.asarray(inclusion, dtype=np.float64)
        w = 1.0 / pi
        a = (1.0 - pi) / pi**2
        return cls(
            n=int(y.size),
            w=float(w.sum()),
            wy=float((w * y).sum()),
            w2=float((w * w).sum()),
            a=float(a.sum()),
            ay=float((a * y).sum()),
            ay2=float((a * y * y).sum()),
            y=float(y.sum()),
            y2=float((y * y).sum()),
            non_binary=int(np.count_nonzero((y != 0) & (y != 1))),
            weighted=int(np.count_nonzero(pi < CENSUS)),
            errors=errors,
        )

    @property
    def binary(self) -> bool:
        return self.non_binary == 0

    @property
    def mean(self) -> float:
        return self.wy / self.w

    @property
    def effective_n(self) -> float:
        return self.w**2 / self.w2

    def hajek_variance(self) -> float:
        """The linearised Poisson-sampling variance of the weighted mean."""
        m = self.mean
        return max(0.0, self.ay2 - 2 * m * self.ay + m * m * self.a) / self.w**2

    def sample_variance(self) -> float:
        """The values' sample variance (ddof 1); nought for constant values, whatever the rounding."""
        if self.n < 2:
            return math.inf
        spread = self.y2 - self.y * self.y / self.n
        return 0.0 if spread <= 1e-12 * max(self.y2, 1.0) else spread / (self.n - 1)


def weighted_rate(values: Any, inclusion: Any | None = None, *, errors: int = 0, confidence: float = 0.95) -> Rate:
    """The mean of ``values`` over the traffic they were sampled from, each sampled with ``inclusion``."""
    if inclusion is not None:
        pi = np.asarray(inclusion, dtype=np.float64)
        if np.any(pi <= 0) or np.any(pi > 1):
            raise ValueError("inclusion probabilities must be in (0, 1]")
    return rate_of(Sums.of(values, inclusion, errors=errors), confidence=confidence)


def rate_of(s: Sums, *, confidence: float = 0.95) -> Rate:
    """`weighted_rate` from sums (see `Sums`)."""
    if s.n == 0:
        return Rate(None, None, None, 0, 0.0, errors=s.errors, method="no data", confidence=confidence)
    mean, var, n_eff = s.mean, s.hajek_variance(), s.effective_n
    alpha = 1 - confidence
    if s.binary:
        # Clopper-Pearson at the effective sample size (Korn-Graubard): events scaled to it.
        if var > 0:
            n_eff = min(n_eff, mean * (1 - mean) / var) if 0 < mean < 1 else n_eff
        k = mean * n_eff
        low = 0.0 if k <= 0 else float(stats.beta.ppf(alpha / 2, k, n_eff - k + 1))
        high = 1.0 if k >= n_eff else float(stats.beta.ppf(1 - alpha / 2, k + 1, n_eff - k))
        return Rate(mean, low, high, s.n, n_eff, s.errors, "weighted, Clopper-Pearson at effective n", confidence)
    if s.n < 2:
        return Rate(mean, None, None, 1, n_eff, s.errors, "weighted (one score: no interval)", confidence)
    if not s.weighted:
        var = s.sample_variance() / s.n  # a census of what was graded: the sample variance of the mean
    half = float(stats.t.ppf(1 - alpha / 2, max(1.0, n_eff - 1)) * math.sqrt(var))
    return Rate(mean, mean - half, mean + half, s.n, n_eff, s.errors, "weighted, t", confidence)


def mean_and_variance(values: Any, inclusion: Any | None = None) -> tuple[float, float, int]:
    """The weighted (Hajek) mean, its variance and the number of scores: what the decay tests compare
    (`sums_mean_and_variance` from sums)."""
    return sums_mean_and_variance(Sums.of(values, inclusion))


def sums_mean_and_variance(s: Sums) -> tuple[float, float, int]:
    """A 0/1 metric at a rate of exactly 0 or 1 has no spread to estimate; half an event keeps its variance
    honest (as the rollout's rate tests do)."""
    if s.n == 0:
        return 0.0, math.inf, 0
    mean = s.mean
    sample = s.sample_variance()
    if not s.weighted:
        var = sample / s.n if s.n > 1 else math.inf
    else:
        var = max(s.hajek_variance(), sample / s.effective_n if s.n > 1 else math.inf)
    if s.binary:
        floor = 0.5 / s.n * (1 - 0.5 / s.n) / s.n
        var = max(var, floor)
    return mean, var, s.n


def ppi_mean(
    cheap_all: Any,
    cheap_judged: Any,
    judged: Any,
    *,
    confidence: float = 0.95,
    tune: bool = True,
) -> Rate:
    """The mean of the judge's score over the population, from a cheap grader on ``cheap_all`` (N rows) and the
    judge on a random subset (``judged``, with the cheap scores of the same rows in ``cheap_judged``)."""
    f_n = np.asarray(cheap_all, dtype=np.float64)
    f_j = np.asarray(cheap_judged, dtype=np.float64)
    y = np.asarray(judged, dtype=np.float64)
    if f_j.shape != y.shape:
        raise ValueError("cheap_judged and judged must be the cheap and judge scores of the same rows")
    n, big_n = y.size, f_n.size
    if n < 2:
        return Rate(None, None, None, n, float(n), method="no data (fewer than 2 judged)", confidence=confidence)
    lam = 1.0
    if tune and big_n >= 2:
        var_f = float(np.var(np.concatenate([f_n, f_j]), ddof=1))
        cov = float(np.cov(y, f_j, ddof=1)[0, 1])
        lam = 0.0 if var_f <= 0 else min(1.0, max(0.0, cov / ((1 + n / big_n) * var_f)))
    rect = y - lam * f_j
    estimate = lam * float(f_n.mean()) + float(rect.mean())
    var = (lam**2 * float(f_n.var(ddof=1)) / big_n if big_n >= 2 else 0.0) + float(rect.var(ddof=1)) / n
    z = float(stats.norm.ppf(1 - (1 - confidence) / 2))
    half = z * math.sqrt(var)
    eff = float(y.var(ddof=1)) / var if var > 0 else float(n)
    return Rate(estimate, estimate - half, estimate + half, n + big_n, eff, 0, f"PPI++ (lambda {lam:.2f})", confidence)


def judge_only_mean(judged: Any, *, confidence: float = 0.95) -> Rate:
    """The classical interval from the judged rows alone (what PPI is compared with)."""
    y = np.asarray(judged, dtype=np.float64)
    if y.size < 2:
        return Rate(None, None, None, int(y.size), float(y.size), method="no data", confidence=confidence)
    z = float(stats.norm.ppf(1 - (1 - confidence) / 2))
    half = z * float(y.std(ddof=1)) / math.sqrt(y.size)
    m = float(y.mean())
    return Rate(m, m - half, m + half, int(y.size), float(y.size), 0, "judge only, normal", confidence)
