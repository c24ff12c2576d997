"""Decay tests: false alarms within budget when nothing changes, however often the watch looks, and power that
holds as the family of watched metrics grows."""

import numpy as np

from tether.monitor.decay import compare, epoch_alpha

RUNS = 300


def _epoch(rng, p_base, p_live, n_base, n_live, alpha, looks=30):
    """One epoch: the live sample grows, the watch looks ``looks`` times; True if any look alarmed."""
    base = (rng.random(n_base) < p_base).astype(float)
    live = (rng.random(n_live) < p_live).astype(float)
    for k in np.linspace(60, n_live, looks).astype(int):
        t = compare(
            "m",
            "g",
            (list(base), [1.0] * n_base),
            (list(live[:k]), [1.0] * k),
            min_shift=0.02,
            alpha=alpha,
            min_samples=50,
        )
        if t.alarm:
            return True
    return False


def test_nothing_changed_alarms_at_most_at_alpha_per_epoch_with_thirty_looks():
    rng = np.random.default_rng(0)
    alpha = 0.05
    alarms = sum(_epoch(rng, 0.05, 0.05, 1000, 1000, alpha) for _ in range(RUNS))
    assert alarms / RUNS <= alpha
    # A change smaller than min_shift is not an alarm either, however many samples.
    small = sum(_epoch(rng, 0.05, 0.06, 3000, 3000, alpha, looks=5) for _ in range(100))
    assert small / 100 <= alpha


def test_power_on_a_five_point_break_and_it_does_not_collapse_as_the_family_grows():
    rng = np.random.default_rng(1)
    for metrics in (1, 5, 20):
        alpha = epoch_alpha(1.0, 3600, metrics)  # the default budget: one false alarm per metric per 30 days
        found = sum(_epoch(rng, 0.0, 0.05, 2000, 2000, alpha, looks=10) for _ in range(60))
        assert found / 60 >= 0.95, (metrics, found)


def test_a_continuous_score_drop_is_found_and_weights_are_honoured():
    rng = np.random.default_rng(2)
    base = rng.normal(0.6, 0.1, 400).clip(0, 1)
    live = rng.normal(0.5, 0.1, 400).clip(0, 1)
    t = compare(
        "relevance",
        "g",
        (list(base), [0.1] * 400),
        (list(live), [0.1] * 400),
        min_shift=0.02,
        alpha=1e-4,
        min_samples=50,
    )
    assert t.decision == "changed" and t.difference < -0.08
    more = rng.normal(0.6, 0.1, 3000).clip(0, 1)
    same = compare(
        "relevance",
        "g",
        (list(more), [0.1] * 3000),
        (list(more[::-1]), [0.1] * 3000),
        min_shift=0.02,
        alpha=1e-4,
        min_samples=50,
    )
    assert same.decision == "stable"  # shown within +-min_shift once there is enough evidence
    assert compare("m", "g", ([], []), ([1.0], [1.0]), min_shift=0.02, alpha=0.01, min_samples=50).decision == "no data"
