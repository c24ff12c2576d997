"""DeLong's test for correlated ROC AUCs, with the fast midrank algorithm.

E. R. DeLong, D. M. DeLong, D. L. Clarke-Pearson (1988), "Comparing the areas under two or more correlated
receiver operating characteristic curves: a nonparametric approach", Biometrics 44(3).
X. Sun, W. Xu (2014), "Fast implementation of DeLong's algorithm for comparing the areas under correlated
receiver operating characteristic curves", IEEE Signal Processing Letters 21(11): O(n log n) via midranks.

Pure functions over arrays. Preconditions: labels are 0/1 with at least one of each; scores are finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata


@dataclass(frozen=True)
class AucComparison:
    """AUCs of two models on the same rows and the DeLong covariance of the estimates."""

    auc: tuple[float, ...]
    covariance: np.ndarray  # k x k

    @property
    def difference(self) -> float:
        """AUC of model 0 minus AUC of model 1."""
        return self.auc[0] - self.auc[1]

    @property
    def difference_se(self) -> float:
        c = self.covariance
        return float(np.sqrt(max(c[0, 0] + c[1, 1] - 2 * c[0, 1], 0.0)))

    def se(self, k: int = 0) -> float:
        return float(np.sqrt(max(self.covariance[k, k], 0.0)))


def delong(labels: np.ndarray, *scores: np.ndarray) -> AucComparison:
    """AUC of each score vector and their joint DeLong covariance.

    >>> y = np.array([0, 0, 1, 1, 1])
    >>> r = delong(y, np.array([0.1, 0.2, 0.6, 0.7, 0.8]), np.array([0.3, 0.6, 0.2, 0.7, 0.9]))
    >>> [round(a, 4) for a in r.auc]
    [1.0, 0.6667]
    """
    y = np.asarray(labels).astype(bool)
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        raise ValueError(f"AUC needs both classes; got {m} positives and {n} negatives")
    s = np.vstack([np.asarray(x, dtype=np.float64) for x in scores])
    pos, neg = s[:, y], s[:, ~y]
    k = s.shape[0]
    v01 = np.empty((k, m))
    v10 = np.empty((k, n))
    aucs = []
    for r in range(k):
        tx = rankdata(pos[r])
        ty = rankdata(neg[r])
        tz = rankdata(np.concatenate([pos[r], neg[r]]))
        aucs.append(float((tz[:m].sum() - m * (m + 1) / 2) / (m * n)))
        v01[r] = (tz[:m] - tx) / n
        v10[r] = 1.0 - (tz[m:] - ty) / m
    sx = np.atleast_2d(np.cov(v01)) if m > 1 else np.zeros((k, k))
    sy = np.atleast_2d(np.cov(v10)) if n > 1 else np.zeros((k, k))
    return AucComparison(tuple(aucs), sx / m + sy / n)
