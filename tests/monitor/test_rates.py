"""Rates from sampled scores: seeded simulations of coverage, and of PPI's width against the judge alone."""

import numpy as np
import pytest

from tether.monitor.rates import judge_only_mean, ppi_mean, weighted_rate

RUNS = 400


def test_no_data_is_no_data_never_a_rate():
    r = weighted_rate([], errors=3)
    assert r.estimate is None and r.errors == 3 and r.method == "no data"
    assert ppi_mean([0.5] * 10, [0.5], [1.0]).estimate is None


def test_zero_events_still_get_an_upper_bound():
    r = weighted_rate([0.0] * 29)
    assert r.estimate == 0.0 and r.low == 0.0 and 0.118 < r.high < 0.121  # two-sided Clopper-Pearson 95%: [0, 0.119]


def test_stratified_unequal_sampling_is_unbiased_and_its_interval_covers():
    """Canary and cache hits oversampled 10x: the weighted rate covers the true traffic rate at >= 93%."""
    rng = np.random.default_rng(7)
    covered, naive_bias = 0, []
    for _ in range(RUNS):
        # 20,000 interactions: 10% in a stratum with a high failure rate, sampled at 20%; the rest at 2%.
        n = 20_000
        hot = rng.random(n) < 0.10
        fail = np.where(hot, rng.random(n) < 0.20, rng.random(n) < 0.02).astype(float)
        pi = np.where(hot, 0.20, 0.02)
        picked = rng.random(n) < pi
        r = weighted_rate(fail[picked], pi[picked])
        truth = fail.mean()
        covered += r.low <= truth <= r.high
        naive_bias.append(fail[picked].mean() - truth)
    assert covered / RUNS >= 0.93
    assert np.mean(naive_bias) > 0.03  # the unweighted mean of the sample is badly biased: the weights matter


@pytest.mark.parametrize("bias", [0.0, 0.25, -0.3])
def test_ppi_covers_however_biased_the_cheap_grader_and_is_narrower_than_the_judge_alone(bias):
    rng = np.random.default_rng(11)
    covered = covered_judge = 0
    widths, widths_judge = [], []
    for _ in range(RUNS):
        big_n, n = 2000, 100
        quality = rng.beta(4, 2, big_n + n)  # the judge's score
        cheap = np.clip(quality + bias + rng.normal(0, 0.08, big_n + n), 0, 1)  # correlated, biased
        truth = 4 / 6
        r = ppi_mean(cheap[:big_n], cheap[big_n:], quality[big_n:])
        j = judge_only_mean(quality[big_n:])
        covered += r.low <= truth <= r.high
        covered_judge += j.low <= truth <= j.high
        widths.append(r.high - r.low)
        widths_judge.append(j.high - j.low)
    assert covered / RUNS >= 0.93, covered / RUNS
    assert covered_judge / RUNS >= 0.92
    assert np.mean(widths) < 0.75 * np.mean(widths_judge)


def test_a_useless_cheap_grader_costs_ppi_nothing():
    rng = np.random.default_rng(3)
    widths, widths_judge = [], []
    for _ in range(100):
        y = rng.beta(2, 2, 100)
        r = ppi_mean(rng.random(2000), rng.random(100), y)
        widths.append(r.high - r.low)
        widths_judge.append(judge_only_mean(y).high - judge_only_mean(y).low)
    assert np.mean(widths) <= 1.02 * np.mean(widths_judge)
