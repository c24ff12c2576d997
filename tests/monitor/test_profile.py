"""Profiles checked against numpy after every update, batch = repeated singles, merge = whole."""

import numpy as np
import pandas as pd
import pytest

from tether.monitor.profile import OTHER, CategoricalProfile, DatasetProfile, NumericProfile


def test_running_moments_match_numpy_after_every_update():
    rng = np.random.default_rng(0)
    p = NumericProfile()
    seen = []
    for _ in range(30):
        batch = rng.normal(5, 3, rng.integers(1, 200))
        batch[rng.random(batch.size) < 0.1] = np.nan
        p.update(batch)
        seen.extend(batch.tolist())
        arr = np.array(seen)
        present = arr[np.isfinite(arr)]
        assert p.count == present.size and p.missing == arr.size - present.size
        assert p.mean == pytest.approx(present.mean(), rel=1e-12)
        if present.size > 1:
            assert p.variance == pytest.approx(present.var(ddof=1), rel=1e-9)


def test_batch_update_equals_single_updates():
    values = np.random.default_rng(1).lognormal(size=500)
    a, b = NumericProfile(), NumericProfile()
    a.update(values)
    for v in values:
        b.update(np.array([v]))
    assert (a.count, a.missing) == (b.count, b.missing)
    assert a.mean == pytest.approx(b.mean, rel=1e-12) and a.variance == pytest.approx(b.variance, rel=1e-9)


def test_merging_split_streams_equals_the_whole_within_the_sketch_error():
    values = np.random.default_rng(2).gamma(2.0, 3.0, 200_000)
    whole = NumericProfile()
    whole.update(values)
    parts = [NumericProfile() for _ in range(4)]
    for i, part in enumerate(parts):
        part.update(values[i::4])
    merged = parts[0].merge(parts[1]).merge(parts[2]).merge(parts[3])
    assert merged.count == whole.count
    assert merged.mean == pytest.approx(whole.mean, rel=1e-12)
    assert merged.variance == pytest.approx(whole.variance, rel=1e-9)
    eps = max(merged.rank_error, whole.rank_error)
    for q in (0.01, 0.1, 0.5, 0.9, 0.99):
        rank = np.mean(values <= merged.quantile(q))
        assert abs(rank - q) <= eps, (q, rank)


def test_categorical_counts_cap_into_other_and_merge():
    a = CategoricalProfile(cap=3)
    a.update(["x", "y", None, "x", "z", "w", "v"])
    assert a.counts == {"x": 2, "y": 1, "z": 1, OTHER: 2} and a.missing == 1
    b = CategoricalProfile(cap=3)
    b.update(["x", "q"])
    a.merge(b)
    assert a.counts["x"] == 3 and a.counts[OTHER] == 3 and a.count == 8


def test_dataset_profile_round_trips_and_merges():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"age": rng.integers(18, 90, 1000), "country": rng.choice(["US", "BR"], 1000)})
    p = DatasetProfile.of(frame)
    back = DatasetProfile.from_json(p.to_json())
    assert back.features["age"].quantile(0.5) == p.features["age"].quantile(0.5)
    assert back.features["country"].counts == p.features["country"].counts
    p.merge(DatasetProfile.of(frame))
    assert p.features["age"].count == 2000
    p.update(frame.drop(columns=["country"]))
    assert p.features["country"].missing == 1000


def test_a_poison_value_is_counted_and_isolated():
    import json

    import pandas as pd

    from tether.monitor.profile import DatasetProfile, NumericProfile

    prof = DatasetProfile({"amount": NumericProfile()})
    issues = prof.observe(pd.DataFrame({"amount": [10.0, 1e308, -1e200, 12.0]}))
    assert issues["out_of_range:amount"] == 2
    p = prof.features["amount"]
    assert p.count == 2 and p.missing == 2 and p.mean == 11.0
    json.dumps(prof.to_json(), allow_nan=False)  # what the database accepts (strict JSON): never inf or nan
    prof.observe(pd.DataFrame({"amount": [11.0] * 10}))
    assert prof.features["amount"].count == 12


def test_a_slice_the_database_refuses_is_retried_dropped_counted_and_never_blocks(tmp_path, project):
    from datetime import UTC, datetime

    from tests.monitor.test_watch import FAST, _records
    from tether.core import ManualClock, Settings
    from tether.monitor.live import WRITE_TRIES, LiveProfiler
    from tether.registry import Registry

    clock = ManualClock(datetime(2026, 6, 1, tzinfo=UTC))
    reg = Registry.open(Settings(home=tmp_path / "h", database_url="", blob_url=""), clock=clock)
    v1 = project.register(reg)
    profiler = LiveProfiler(reg, clock=clock)
    profiler.configure("fraud", FAST)
    real = reg.store.db.begin
    broken = {"on": True}

    def begin():
        if broken["on"]:
            raise RuntimeError("disk says no")
        return real()

    reg.store.db.begin = begin  # type: ignore[method-assign]
    for _ in range(WRITE_TRIES + 2):
        profiler.observe("fraud", v1.id, _records(20, seed=1))
        profiler.flush()
        clock.advance(FAST.slice_seconds)
    assert profiler.write_failures >= WRITE_TRIES and "disk says no" in profiler.last_error
    assert profiler.dropped_rows > 0
    broken["on"] = False
    profiler.observe("fraud", v1.id, _records(20, seed=2))
    clock.advance(FAST.slice_seconds)
    profiler.flush(close_all=True)
    from sqlalchemy import func, select

    from tether.store.tables import live_profiles

    with reg.store.db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(live_profiles)).scalar_one() > 0
    reg.close()
