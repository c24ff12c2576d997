"""McNemar's test for paired binary outcomes (exact binomial, or mid-p).

Q. McNemar (1947), Psychometrika 12(2). Mid-p: M. W. Fagerland, S. Lydersen, P. Laake (2013), "The McNemar
test for binary matched-pairs data: mid-p and asymptotic are better than exact conditional", BMC Medical
Research Methodology 13:91.

``b`` counts pairs where only the first member is a failure, ``c`` pairs where only the second is.
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy.stats import binom


@dataclass(frozen=True)
class McNemar:
    b: int
    c: int
    two_sided: float
    #: One-sided p for "the first member fails more often" (b > c).
    greater: float


def mcnemar(b: int, c: int, *, mid_p: bool = True) -> McNemar:
    """Exact conditional McNemar test (with the mid-p correction unless ``mid_p=False``).

    >>> r = mcnemar(10, 2, mid_p=False)
    >>> round(r.two_sided, 5), round(r.greater, 5)
    (0.03857, 0.01929)
    """
    if b < 0 or c < 0:
        raise ValueError("discordant counts cannot be negative")
    n = b + c
    if n == 0:
        return McNemar(b, c, 1.0, 1.0)
    lo = min(b, c)
    if mid_p:
        two = 2 * (binom.cdf(lo, n, 0.5) - 0.5 * binom.pmf(lo, n, 0.5))
        greater = binom.sf(b, n, 0.5) + 0.5 * binom.pmf(b, n, 0.5)
    else:
        two = 2 * binom.cdf(lo, n, 0.5)
        greater = binom.sf(b - 1, n, 0.5)
    return McNemar(b, c, float(min(1.0, two)), float(min(1.0, greater)))
