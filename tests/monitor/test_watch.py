"""Baselines, live profiles and the drift watch on a manual clock (the gateway path is in test_e2e_drift)."""

import math
from datetime import UTC, datetime

import numpy as np
import orjson
import pandas as pd
import pytest
from sqlalchemy import text

from tests.conftest import _load_example
from tether.core import ManualClock, NotFoundError
from tether.core.hashing import sha256_bytes
from tether.monitor import baseline as baseline_mod
from tether.monitor.assessment import assess, holm
from tether.monitor.config import SECONDS_PER_30_DAYS, MinShift, MonitorConfig
from tether.monitor.live import LiveProfiler
from tether.monitor.profile import CategoricalProfile, DatasetProfile, NumericProfile
from tether.monitor.watch import Watch
from tether.registry import Registry
from tether.store import is_immutability_violation

FAST = MonitorConfig(slice_seconds=10, window_seconds=60, check_seconds=10, min_rows=200)
INPUTS = ["amount", "merchant_category", "country", "hour", "device_age_days", "customer_age"]


@pytest.fixture
def watched(backend_settings, project):
    """On SQLite and on PostgreSQL (when it answers)."""
    clock = ManualClock(datetime(2026, 6, 1, tzinfo=UTC))
    reg = Registry.open(backend_settings, clock=clock)
    v1 = project.register(reg)
    profiler = LiveProfiler(reg, clock=clock)
    watch = Watch(reg, clock=clock)
    watch.set_config("fraud", FAST)
    profiler.configure("fraud", FAST)
    yield reg, v1, profiler, watch, clock
    reg.close()


def _records(rows, seed, age_shift=0.0):
    frame = _load_example("generate").generate(rows, seed=seed).drop(columns=["is_fraud", "gender"])
    frame["customer_age"] = frame["customer_age"] + age_shift
    return frame.to_dict("records")


def _play(profiler, clock, v1, records, seconds=60, batch=50):
    """Spread the records evenly over ``seconds`` of the manual clock, flushing as the gateway would."""
    per_second = max(1, len(records) // seconds)
    for i in range(0, len(records), per_second):
        chunk = records[i : i + per_second]
        for j in range(0, len(chunk), batch):
            profiler.observe("fraud", v1.id, chunk[j : j + batch])
        profiler.flush()
        clock.advance(1)
    profiler.flush(close_all=True)


def test_the_training_baseline_is_computed_once_stored_by_digest_and_immutable(watched):
    reg, v1, _, _, _ = watched
    b = baseline_mod.ensure(reg, v1.ref)
    assert b.rows == 3000 and sorted(b.profile.features) == sorted(INPUTS)
    assert isinstance(b.profile.features["amount"], NumericProfile)
    assert isinstance(b.profile.features["country"], CategoricalProfile)
    assert set(b.segments) == {"country", "merchant_category"}  # categorical inputs with 2-20 values
    blob = reg.store.blobs.get_bytes(b.profile_digest)
    assert sha256_bytes(blob) == b.profile_digest and orjson.loads(blob)["data_digest"] == v1.data.digest
    assert baseline_mod.ensure(reg, v1.ref).profile_digest == b.profile_digest
    with pytest.raises(Exception) as exc, reg.store.db.begin() as conn:
        conn.execute(text("UPDATE baseline_profiles SET rows = 1"))
    assert is_immutability_violation(exc.value)
    with pytest.raises(NotFoundError, match="no gold baseline"):
        baseline_mod.ensure(reg, v1.ref, "gold")


def test_a_gold_baseline_comes_from_the_gold_set(watched, project, tmp_path):
    reg, v1, _, _, _ = watched
    gold = tmp_path / "gold.parquet"
    _load_example("generate").generate(1500, seed=5).to_parquet(gold)
    b = baseline_mod.ensure(reg, v1.ref, "gold", data=gold)
    assert b.rows == 1500 and b.data_digest != v1.data.digest
    assert baseline_mod.ensure(reg, v1.ref, "gold").profile_digest == b.profile_digest


def test_same_population_no_anomaly_then_an_age_shift_is_a_high_priority_anomaly_once(watched):
    reg, v1, profiler, watch, clock = watched
    _play(profiler, clock, v1, _records(3000, seed=11))
    assert watch.check("fraud") == []
    (vs,) = watch.evaluate("fraud")
    assert vs.live_rows == 3000 and not any(fs.alarm for fs in vs.features)
    # A marketing campaign brings customers 12 years younger (~0.85 sd).
    _play(profiler, clock, v1, _records(3000, seed=12, age_shift=-12))
    new = watch.check("fraud")
    assert {a.feature for a in new} == {"customer_age"}, [a.describe() for a in new]
    age = next(a for a in new if a.test == "welch_z")
    assert age.priority == "high" and age.live_value < age.baseline_value - 8
    assert age.evidence["family_alpha"] < 1e-3 and age.evidence["adjusted_p"] <= age.evidence["family_alpha"] * 16
    assert watch.check("fraud") == []  # still open: not recorded twice
    watch.resolve(age.id, reason="campaign confirmed", actor="analyst")
    assert age.id not in {a.id for a in watch.anomalies("fraud", open_only=True)}
    again = watch.check("fraud")
    assert [a.test for a in again if a.feature == "customer_age"] == ["welch_z"]


def test_segments_are_watched_each_against_their_own_baseline(watched):
    reg, v1, profiler, watch, clock = watched
    config = FAST.model_copy(update={"segments": ["country"]})
    watch.set_config("fraud", config)
    profiler.configure("fraud", config)
    records = _records(4000, seed=13)
    for r in records:  # only Brazil's traffic gets the younger customers
        if r["country"] == "BR":
            r["customer_age"] -= 20
    _play(profiler, clock, v1, records)
    new = watch.check("fraud")
    assert any(a.segment == "country=BR" and a.feature == "customer_age" for a in new), [a.describe() for a in new]
    assert not any(a.segment.startswith("country=") and a.segment != "country=BR" for a in new)


def test_bad_input_is_counted_as_what_it_is_and_never_raised(watched):
    reg, v1, profiler, watch, clock = watched
    records = _records(400, seed=14)
    for i, r in enumerate(records):
        if i % 4 == 0:
            r["amount"] = "twelve"  # the type changed
        if i % 5 == 0:
            r["device_age_days"] = math.inf
        if i % 7 == 0:
            r["merchant_category"] = "crypto"  # never seen in training
        r["coupon"] = "X1"  # unknown feature
        r["hour"] = None  # all missing
    _play(profiler, clock, v1, records, seconds=20)
    (vs,) = watch.evaluate("fraud")
    assert vs.issues["type_mismatch:amount"] == 100
    assert vs.issues["non_finite:device_age_days"] == 80
    assert vs.issues["unknown_feature:coupon"] == 400
    by = {fs.feature: fs for fs in vs.features}
    assert by["hour"].live["missing"] == 1.0
    assert by["merchant_category"].new_categories == ["crypto"]
    alarms = {(t.feature, t.finding.test) for fs in vs.features for t in fs.tests if t.alarm}
    assert ("hour", "two_proportion") in alarms and ("amount", "two_proportion") in alarms
    assert ("merchant_category", "chi_square") in alarms


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(0)
    for _ in range(50):
        p = list(rng.uniform(0, 0.1, 12) ** 2)
        rej, adj = holm(p, 0.05)
        ref_rej, ref_adj, _, _ = multipletests(p, 0.05, method="holm")
        assert rej == list(ref_rej) and np.allclose(adj, ref_adj)


def test_config_is_strict_and_budget_is_per_feature_and_check():
    with pytest.raises(ValueError, match="extra"):
        MonitorConfig.model_validate({"windw_seconds": 5})
    with pytest.raises(ValueError, match="shorter than slice_seconds"):
        MonitorConfig(window_seconds=5, slice_seconds=10)
    c = MonitorConfig()
    assert c.family_alpha(6) == pytest.approx(6 * 10 / SECONDS_PER_30_DAYS)


# -- error rates ------------------------------------------------------------------------------------------------
def _synthetic(rng, n, age_shift=0.0):
    return pd.DataFrame(
        {
            "amount": np.round(rng.lognormal(3.6, 1.0, n), 2),
            "age": np.clip(np.round(rng.normal(42 + age_shift, 14, n)), 18, 90),
            "score": rng.normal(0, 1, n),
            "tenure": np.where(rng.random(n) < 0.05, np.nan, rng.exponential(300, n)),
            "cat5": rng.choice(list("abcde"), n, p=[0.4, 0.3, 0.15, 0.1, 0.05]),
            "cat20": rng.choice([f"c{i}" for i in range(20)], n),
        }
    )


KINDS = {"amount": "numeric", "age": "numeric", "score": "numeric", "tenure": "numeric", "cat5": "c", "cat20": "c"}


def _profile(frame):
    p = DatasetProfile.for_kinds(KINDS)
    p.observe(frame)
    return p


def test_null_windows_alarm_at_most_at_the_budgeted_level():
    """Same population: the chance that a check alarms stays within its family level (here 5%, min shifts off)."""
    rng = np.random.default_rng(42)
    base = _profile(_synthetic(rng, 20_000))
    # Budget and cadence chosen so the per-check family level is 5%: 1000 checks per 30 days.
    tiny = MinShift(mean=1e-9, ks=1e-9, categories=1e-9, missing=1e-9)
    config = MonitorConfig(
        check_seconds=SECONDS_PER_30_DAYS / 1000, false_alarms_per_feature_per_30_days=0.05 * 1000 / 6, min_shift=tiny
    )
    runs = 300
    alarms = 0
    for _ in range(runs):
        statuses, alpha, m = assess([("", base, _profile(_synthetic(rng, 2000)), {})], config)
        assert alpha == pytest.approx(0.05) and m == 16  # 4 numeric x 3 tests + 2 categorical x 2
        alarms += any(fs.alarm for fs in statuses)
    # At most 5% + 3 binomial standard deviations.
    assert alarms / runs <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs), alarms


def test_at_the_default_budget_a_quarter_sd_age_shift_is_found_within_a_bounded_window():
    """Default budget (one false alarm per feature per 30 days, a check every 10 s): rows needed to see 0.25 sd."""
    rng = np.random.default_rng(7)
    base = _profile(_synthetic(rng, 50_000))
    config = MonitorConfig(min_shift=MinShift(mean=0.1))
    found_at = []
    for _ in range(20):
        shifted = _synthetic(rng, 4000, age_shift=0.25 * 14)
        for n in range(200, 4001, 200):
            statuses, _, _ = assess([("", base, _profile(shifted.head(n)), {})], config)
            if any(t.alarm and t.feature == "age" for fs in statuses for t in fs.tests):
                found_at.append(n)
                break
        else:
            found_at.append(10**9)
        statuses, _, _ = assess([("", base, _profile(_synthetic(rng, 4000)), {})], config)
        assert not any(fs.alarm for fs in statuses)
    # (z_{alpha/(2m)} / 0.25)^2 with alpha ~2.3e-5 over 16 tests: about 390 rows; allow twice that.
    assert np.median(found_at) <= 800, found_at


def test_a_medium_anomaly_whose_shift_grows_is_escalated_once_to_high(watched):
    reg, v1, profiler, watch, clock = watched
    _play(profiler, clock, v1, _records(3000, seed=21))
    assert watch.check("fraud") == []
    # A mild shift (about 0.15 sd of age): found, above the minimum shift, but medium priority (under twice it).
    _play(profiler, clock, v1, _records(3000, seed=22, age_shift=-2.25))
    mild = [a for a in watch.check("fraud") if a.feature == "customer_age" and a.test == "welch_z"]
    assert [a.priority for a in mild] == ["medium"], [a.describe() for a in mild]
    _play(profiler, clock, v1, _records(3000, seed=23, age_shift=-2.25))
    assert not [a for a in watch.check("fraud") if a.test == "welch_z"]  # the same shift: still the open one
    # The shift grows: the open medium anomaly does not keep the high-priority actions from acting.
    _play(profiler, clock, v1, _records(3000, seed=24, age_shift=-12))
    grown = [a for a in watch.check("fraud") if a.feature == "customer_age" and a.test == "welch_z"]
    assert [a.priority for a in grown] == ["high"] and grown[0].evidence["escalates"] == mild[0].id
    assert not [a for a in watch.check("fraud") if a.test == "welch_z"]  # once
    open_now = {a.id for a in watch.anomalies("fraud", open_only=True)}
    assert {mild[0].id, grown[0].id} <= open_now  # the trail keeps both sightings
