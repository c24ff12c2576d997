"""Each statistic against an independent implementation: statsmodels, scipy, a brute-force DeLong."""

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.multitest import multipletests

from tether.gate import bootstrap as bs
from tether.gate import delong, holm, mcnemar


@pytest.mark.parametrize(("b", "c"), [(0, 0), (1, 0), (10, 2), (2, 10), (25, 25), (40, 17), (3, 90), (300, 250)])
def test_mcnemar_exact_matches_statsmodels(b, c):
    ours = mcnemar(b, c, mid_p=False)
    theirs = sm_mcnemar([[100, b], [c, 100]], exact=True).pvalue
    assert ours.two_sided == pytest.approx(theirs, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("b", "c"), [(10, 2), (5, 9), (40, 17), (300, 250)])
def test_mcnemar_mid_p_matches_its_definition(b, c):
    n, lo = b + c, min(b, c)
    pmf = [math.comb(n, k) / 2**n for k in range(n + 1)]
    two_sided = min(1.0, 2 * (sum(pmf[:lo]) + 0.5 * pmf[lo]))
    greater = sum(pmf[b + 1 :]) + 0.5 * pmf[b]
    r = mcnemar(b, c)
    assert r.two_sided == pytest.approx(two_sided, rel=1e-9)
    assert r.greater == pytest.approx(greater, rel=1e-9)


def test_holm_matches_statsmodels():
    rng = np.random.default_rng(1)
    for _ in range(20):
        p = rng.uniform(0, 0.2, size=rng.integers(1, 15))
        expected = multipletests(p, method="holm")[1]
        np.testing.assert_allclose(holm(p), expected, rtol=1e-12)


def _delong_brute(y, s1, s2):
    """DeLong et al. (1988) directly: the Mann-Whitney kernel over all pairs, O(m n)."""
    pos, neg = y == 1, y == 0
    out = []
    for s in (s1, s2):
        x, z = s[pos][:, None], s[neg][None, :]
        psi = (x > z) + 0.5 * (x == z)
        out.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    m, n = pos.sum(), neg.sum()
    v10 = np.vstack([o[1] for o in out])
    v01 = np.vstack([o[2] for o in out])
    cov = np.cov(v10) / m + np.cov(v01) / n
    return [o[0] for o in out], cov


def test_delong_matches_the_brute_force_definition_with_ties():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 400)
    s1 = np.round(y + rng.normal(0, 1.2, 400), 1)  # rounding makes ties
    s2 = np.round(0.5 * y + rng.normal(0, 1.0, 400), 1)
    fast = delong(y, s1, s2)
    aucs, cov = _delong_brute(y, s1, s2)
    np.testing.assert_allclose(fast.auc, aucs, rtol=1e-12)
    np.testing.assert_allclose(fast.covariance, cov, rtol=1e-9)
    assert fast.auc[0] == pytest.approx(roc_auc_score(y, s1), rel=1e-12)


def test_delong_on_the_hanley_mcneil_ratings():
    # Hanley & McNeil (1982), Radiology 143: 109 CT images rated 1-5; area 0.893, standard error 0.032.
    normal = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])
    abnormal = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])
    y = np.r_[np.zeros(58), np.ones(51)]
    s = np.r_[normal, abnormal].astype(float)
    r = delong(y, s)
    assert r.auc[0] == pytest.approx(0.893, abs=5e-4)
    assert r.se(0) == pytest.approx(0.032, abs=0.003)


def test_delong_variance_agrees_with_a_paired_bootstrap():
    rng = np.random.default_rng(7)
    n = 3000
    y = (rng.random(n) < 0.2).astype(int)
    s1 = y * 1.0 + rng.normal(0, 1, n)
    s2 = y * 0.9 + rng.normal(0, 1, n) + 0.3 * s1
    r = delong(y, s1, s2)
    diffs = []
    for _ in range(400):
        i = rng.integers(0, n, n)
        diffs.append(roc_auc_score(y[i], s1[i]) - roc_auc_score(y[i], s2[i]))
    assert r.difference_se == pytest.approx(np.std(diffs), rel=0.12)


def test_cell_bootstrap_is_the_row_bootstrap():
    """Multinomial cell counts have the same distribution as resampling rows: same mean and spread."""
    rng = np.random.default_rng(3)
    n = 5000
    y = (rng.random(n) < 0.1).astype(int)
    dc = (rng.random(n) < 0.05 + 0.5 * y).astype(int)
    dp = np.where(rng.random(n) < 0.9, dc, 1 - dc)
    code = y * 4 + dc * 2 + dp
    counts = bs.cell_counts(code, 8)
    cells = bs.resample_cells(counts, 4000, np.random.default_rng(0))
    fpr_cells = cells[:, [2, 3]].sum(1) / cells[:, :4].sum(1)
    fpr_rows = []
    for _ in range(4000):
        i = rng.integers(0, n, n)
        neg = y[i] == 0
        fpr_rows.append((dc[i] & neg).sum() / neg.sum())
    assert fpr_cells.mean() == pytest.approx(np.mean(fpr_rows), abs=2e-4)
    assert fpr_cells.std() == pytest.approx(np.std(fpr_rows), rel=0.06)


def test_percentile_interval_matches_scipy_bootstrap():
    rng = np.random.default_rng(11)
    n = 4000
    y = (rng.random(n) < 0.1).astype(int)
    dc = (rng.random(n) < 0.06 + 0.5 * y).astype(int)
    dp = (rng.random(n) < 0.05 + 0.5 * y).astype(int)

    def fpr_diff(yy, a, b, axis=-1):
        neg = yy == 0
        return (a * neg).sum(axis) / neg.sum(axis) - (b * neg).sum(axis) / neg.sum(axis)

    theirs = stats.bootstrap(
        (y, dc, dp),
        fpr_diff,
        paired=True,
        vectorized=True,
        n_resamples=4000,
        confidence_level=0.9,
        method="percentile",
        random_state=0,
    ).confidence_interval
    counts = bs.cell_counts(y * 4 + dc * 2 + dp, 8)
    c = bs.resample_cells(counts, 4000, np.random.default_rng(0))
    neg = c[:, :4].sum(1)
    ours = bs.percentile_interval(c[:, [2, 3]].sum(1) / neg - c[:, [1, 3]].sum(1) / neg, 0.9)
    assert ours[0] == pytest.approx(theirs.low, abs=1.5e-3)
    assert ours[1] == pytest.approx(theirs.high, abs=1.5e-3)


def test_bootstrap_p_values():
    from scipy.stats import norm

    s = np.random.default_rng(0).normal(1.0, 0.5, 2000)
    # Enough resamples on the null side: the empirical percentile p-value, exactly.
    assert bs.p_at_most(s, 0.25) == pytest.approx((1 + np.sum(s <= 0.25)) / 2001)
    assert bs.p_at_least(s, 1.5) == pytest.approx((1 + np.sum(s >= 1.5)) / 2001)
    # None on the null side: not floored at 1/(B+1), but the normal tail of the bootstrap distribution.
    p = bs.p_at_most(s, -2.0)
    assert p < 1 / 2001 and p == pytest.approx(norm.sf((s.mean() + 2.0) / s.std(ddof=1)))
    # Undefined resamples count against rejection, and a degenerate distribution says nothing about its tail.
    assert bs.p_at_most(np.array([np.nan, 1.0]), 0.0) == pytest.approx(2 / 3)
    assert bs.p_at_most(np.zeros(1000), -0.1) == pytest.approx(1 / 1001)
