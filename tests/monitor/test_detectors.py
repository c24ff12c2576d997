"""Seeded null simulations (no alarm beyond the nominal rate) and power checks for the drift tests."""

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from tether.monitor.detectors import (
    Cusum,
    categorical_test,
    cusum_arl0,
    ks_sketch_test,
    mean_shift_test,
    missing_test,
    psi,
)
from tether.monitor.profile import CategoricalProfile, NumericProfile

ALPHA = 0.05


def _ok(alarms, runs):
    return binomtest(alarms, runs, ALPHA, alternative="greater").pvalue > 0.01


@pytest.mark.parametrize("k", [5, 20, 200])
def test_categorical_test_on_identical_sources_alarms_at_most_alpha(k):
    rng = np.random.default_rng(k)
    probs = rng.dirichlet(np.ones(k))
    cats = np.array([f"c{i}" for i in range(k)])
    runs, alarms = 300, 0
    for _ in range(runs):
        b, live = CategoricalProfile(), CategoricalProfile()
        b.update(rng.choice(cats, 5000, p=probs))
        live.update(rng.choice(cats, 2000, p=probs))
        alarms += categorical_test(b, live).p_value <= ALPHA
    assert _ok(alarms, runs), f"{alarms}/{runs} alarms on identical data with {k} categories"


def test_categorical_test_sees_a_real_shift():
    rng = np.random.default_rng(1)
    b, live = CategoricalProfile(), CategoricalProfile()
    b.update(rng.choice(["a", "b", "c"], 5000, p=[0.5, 0.3, 0.2]))
    live.update(rng.choice(["a", "b", "c"], 2000, p=[0.4, 0.3, 0.3]))
    f = categorical_test(b, live)
    assert f.p_value < 1e-6 and f.effect == pytest.approx(0.1, abs=0.03)


def test_missing_and_mean_tests_null_and_power():
    rng = np.random.default_rng(2)
    runs, miss_alarms, mean_alarms = 300, 0, 0
    for _ in range(runs):
        b, live = NumericProfile(), NumericProfile()
        xb = rng.normal(40, 12, 4000)
        xl = rng.normal(40, 12, 1500)
        xb[rng.random(4000) < 0.05] = np.nan
        xl[rng.random(1500) < 0.05] = np.nan
        b.update(xb)
        live.update(xl)
        miss_alarms += missing_test(b, live).p_value <= ALPHA
        mean_alarms += mean_shift_test(b, live).p_value <= ALPHA
    assert _ok(miss_alarms, runs) and _ok(mean_alarms, runs)
    b, live = NumericProfile(), NumericProfile()
    b.update(rng.normal(40, 12, 4000))
    live.update(rng.normal(43, 12, 1500))  # 0.25 sd
    f = mean_shift_test(b, live)
    assert f.p_value < 1e-6 and f.effect == pytest.approx(0.25, abs=0.06)


def test_ks_from_sketches_never_alarms_on_sketch_error_alone():
    rng = np.random.default_rng(3)
    runs, alarms = 100, 0
    for _ in range(runs):
        b, live = NumericProfile(), NumericProfile()
        b.update(rng.gamma(2, 3, 200_000))
        live.update(rng.gamma(2, 3, 200_000))
        alarms += ks_sketch_test(b, live).p_value <= ALPHA
    assert _ok(alarms, runs)
    shifted = NumericProfile()
    shifted.update(rng.gamma(2, 3, 200_000) * 1.2)
    assert ks_sketch_test(b, shifted).p_value < 1e-6
    assert psi(b, live) < 0.01 < psi(b, shifted)


def test_siegmund_arl_matches_simulation():
    rng = np.random.default_rng(4)
    c = Cusum(0.0, 1.0, delta=1.0, arl0=200)
    lengths = []
    for _ in range(300):
        c.reset()
        n = 0
        while True:
            hit = c.update(rng.normal(0, 1, 500))
            if hit is not None:
                lengths.append(n + hit + 1)
                break
            n += 500
    assert np.mean(lengths) == pytest.approx(200, rel=0.25)
    assert cusum_arl0(c.h, c.k) == pytest.approx(400, rel=1e-6)  # each side gets half the budget


@pytest.mark.parametrize("delta", [0.25, 0.1])
def test_cusum_detection_delay_is_within_twice_the_bound(delta):
    arl0 = 30 * 24 * 60 * 60  # one false alarm per feature per 30 days at one row a second
    rng = np.random.default_rng(int(delta * 100))
    delays = []
    for _ in range(60):
        c = Cusum(0.0, 1.0, delta=delta, arl0=arl0)
        n = 0
        while True:
            hit = c.update(rng.normal(delta, 1, 2000))
            if hit is not None:
                delays.append(n + hit + 1)
                break
            n += 2000
    bound = 2 * math.log(arl0) / delta**2
    assert np.mean(delays) <= 2 * bound, (np.mean(delays), bound)


@pytest.mark.parametrize("dist", ["normal", "lognormal"])
def test_slice_cusum_false_alarms_stay_within_the_budget(dist):
    """In control, alarms per row stay under 1 / ARL0, on skewed rows too (slices of 100 rows)."""
    from tether.monitor.detectors import SliceCusum

    rng = np.random.default_rng(3)
    arl0, slice_rows, slices = 20_000, 100, 20_000
    mean, sd = (0.0, 1.0) if dist == "normal" else (math.exp(0.5), math.sqrt((math.e - 1) * math.e))
    c = SliceCusum(mean, sd, delta=0.25, arl0=arl0)
    alarms = 0
    for _ in range(slices):
        x = rng.normal(0, 1, slice_rows) if dist == "normal" else rng.lognormal(0, 1, slice_rows)
        if c.update(slice_rows, float(x.mean())):
            alarms += 1
            c.reset()
    expected = slices * slice_rows / arl0  # 100 if every run lasted exactly ARL0 rows
    assert alarms <= expected, alarms


def test_slice_cusum_detects_a_quarter_sd_shift_within_twice_the_bound():
    from tether.monitor.detectors import SliceCusum

    rng = np.random.default_rng(4)
    arl0 = 1_000_000
    bound = 2 * math.log(arl0) / 0.25**2
    delays = []
    for _ in range(50):
        c = SliceCusum(0.0, 1.0, delta=0.25, arl0=arl0)
        rows = 0
        while not c.update(50, float(rng.normal(0.25, 1, 50).mean())):
            rows += 50
        delays.append(rows + 50)
        assert abs(c.estimate() - 0.25) < 0.25
    assert np.median(delays) <= 2 * bound, (np.median(delays), bound)
