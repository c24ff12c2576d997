"""Seeded simulations of continuous monitoring: peeking after every batch does not inflate false alarms."""

import numpy as np
from scipy.stats import binomtest

from tether.monitor.sequential import Decision, compare_rates, confidence_sequence

ALPHA = 0.05


def _monitor(rng, p_canary, p_champion, *, margin, steps=200, batch=50, share=0.05):
    """Traffic arrives in batches; the canary gets ``share`` of it; the guardrail is checked after every batch."""
    ce = cn = pe = pn = 0
    for step in range(steps):
        n_c = rng.binomial(batch * 20, share)
        n_p = batch * 20 - n_c
        ce += rng.binomial(n_c, p_canary)
        pe += rng.binomial(n_p, p_champion)
        cn += n_c
        pn += n_p
        c = compare_rates(ce, cn, pe, pn, margin=margin, alpha=ALPHA)
        if c.decision is Decision.HARM:
            return "harm", cn
        if c.decision is Decision.SAFE:
            return "safe", cn
    return "undecided", cn


def test_no_real_difference_rarely_raises_harm_despite_constant_peeking():
    runs = 400
    harms = sum(_monitor(np.random.default_rng([3, r]), 0.02, 0.02, margin=0.0)[0] == "harm" for r in range(runs))
    assert binomtest(harms, runs, ALPHA, alternative="greater").pvalue > 0.01, f"{harms}/{runs} false rollbacks"


def test_a_real_regression_is_caught_within_a_bounded_number_of_canary_requests():
    outcomes = [_monitor(np.random.default_rng([4, r]), 0.06, 0.02, margin=0.01) for r in range(100)]
    caught = [n for what, n in outcomes if what == "harm"]
    assert len(caught) >= 95
    assert np.percentile(caught, 95) < 3000


def test_a_good_canary_is_shown_safe():
    outcomes = [_monitor(np.random.default_rng([5, r]), 0.02, 0.02, margin=0.01, steps=400) for r in range(100)]
    assert sum(what == "safe" for what, _ in outcomes) >= 90


def test_the_sequence_is_wider_than_a_fixed_sample_interval():
    lo, hi = confidence_sequence(0.0, 1e-4, alpha=0.05, tau=0.02)
    assert hi - lo > 2 * 1.96 * 1e-2  # wider than the z interval: the price of peeking


def test_too_few_samples_is_undecided():
    assert compare_rates(5, 10, 0, 1000, margin=0.0, alpha=ALPHA).decision is Decision.UNDECIDED
