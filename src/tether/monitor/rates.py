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


def weighted_rate(values: Any, inclusion: Any | None = None, *, errors: int = 0, confidence: float = 0.95) -> Rate:
    """The mean of ``values`` over the traffic they were sampled from, each sampled with ``inclusion``."""
    y = np.asarray(values, dtype=np.float64)
    if y.size == 0:
        return Rate(None, None, None, 0, 0.0, errors=errors, method="no data", confidence=confidence)
    pi = np.ones_like(y) if inclusion is None else np.asarray(inclusion, dtype=np.float64)
    if np.any(pi <= 0) or np.any(pi > 1):
        raise ValueError("inclusion probabilities must be in (0, 1]")
    w = 1.0 / pi
    total = w.sum()
    mean = float((w * y).sum() / total)
    var = float(((1 - pi) / pi**2 * (y - mean) ** 2).sum() / total**2)
    n_eff = float(total**2 / (w**2).sum())
    alpha = 1 - confidence
    if _binary(y):
        # Clopper-Pearson at the effective sample size (Korn-Graubard): events scaled to it.
        if var > 0:
            n_eff = min(n_eff, mean * (1 - mean) / var) if 0 < mean < 1 else n_eff
        k = mean * n_eff
        low = 0.0 if k <= 0 else float(stats.beta.ppf(alpha / 2, k, n_eff - k + 1))
        high = 1.0 if k >= n_eff else float(stats.beta.ppf(1 - alpha / 2, k + 1, n_eff - k))
        return Rate(mean, low, high, int(y.size), n_eff, errors, "weighted, Clopper-Pearson at effective n", confidence)
    if y.size < 2:
        return Rate(mean, None, None, 1, n_eff, errors, "weighted (one score: no interval)", confidence)
    if inclusion is None or np.allclose(pi, 1.0):
        var = float(y.var(ddof=1) / y.size)  # a census of what was graded: the sample variance of the mean
    half = float(stats.t.ppf(1 - alpha / 2, max(1.0, n_eff - 1)) * math.sqrt(var))
    return Rate(mean, mean - half, mean + half, int(y.size), n_eff, errors, "weighted, t", confidence)


def mean_and_variance(values: Any, inclusion: Any | None = None) -> tuple[float, float, int]:
    """The weighted (Hajek) mean, its variance and the number of scores: what the decay tests compare.

    A 0/1 metric at a rate of exactly 0 or 1 has no spread to estimate; half an event keeps its variance
    honest (as the rollout's rate tests do)."""
    y = np.asarray(values, dtype=np.float64)
    if y.size == 0:
        return 0.0, math.inf, 0
    pi = np.ones_like(y) if inclusion is None else np.asarray(inclusion, dtype=np.float64)
    w = 1.0 / pi
    total = w.sum()
    mean = float((w * y).sum() / total)
    if np.allclose(pi, 1.0):
        var = float(y.var(ddof=1)) / y.size if y.size > 1 else math.inf
    else:
        var = float(((1 - pi) / pi**2 * (y - mean) ** 2).sum() / total**2)
        n_eff = float(total**2 / (w**2).sum())
        var = max(var, float(y.var(ddof=1)) / n_eff if y.size > 1 else math.inf)
    if _binary(y):
        floor = 0.5 / y.size * (1 - 0.5 / y.size) / y.size
        var = max(var, floor)
    return mean, var, int(y.size)


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
