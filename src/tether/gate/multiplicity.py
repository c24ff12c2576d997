"""Holm's step-down adjustment: family-wise error control for any dependence between the tests.

S. Holm (1979), "A simple sequentially rejective multiple test procedure", Scandinavian Journal of
Statistics 6(2).
"""

from __future__ import annotations

import numpy as np


def holm(pvalues: list[float] | np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (reject test i at family level alpha when adjusted[i] <= alpha).

    >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(pvalues, dtype=float)
    k = p.size
    if k == 0:
        return p
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((k - np.arange(k)) * p[order]))
    out = np.empty(k)
    out[order] = adjusted
    return out
