"""Budgets: reserved before dispatch so concurrency cannot overspend; the ledger survives a restart."""

from datetime import UTC, datetime, timedelta

import pytest

from tether.llm.ledger import BudgetExceeded, Budgets, LedgerWriter, Limits, read_limits, seed_from_ledger, write_limits
from tether.store import Store

NOW = datetime(2026, 11, 30, 23, 59, 30, tzinfo=UTC)


def test_reservations_never_exceed_the_limit():
    b = Budgets()
    b.set_limits({"tenant:a": Limits(tokens_per_day=1000)})
    held = []
    refused = 0
    for _ in range(50):  # fifty requests in flight at once, each may use up to 64 tokens
        try:
            held.append(b.reserve(["tenant:a"], 64, 0.0, NOW))
        except BudgetExceeded as e:
            refused += 1
            assert e.budget == "tokens per day" and e.resets == datetime(2026, 12, 1, tzinfo=UTC)
    assert len(held) == 1000 // 64 and refused == 50 - len(held)
    for r in held:
        b.settle(r, 10, 0.0)  # real use is smaller: the rest comes back
    assert b.usage("tenant:a", NOW)["tokens_today"] == 10 * len(held)
    b.reserve(["tenant:a"], 64, 0.0, NOW)


def test_rpm_and_cost_budgets_say_when_they_reset():
    b = Budgets()
    b.set_limits({"key:k1": Limits(requests_per_minute=2), "tenant:a": Limits(cost_per_month=1.0)})
    b.reserve(["tenant:a", "key:k1"], 1, 0.1, NOW)
    b.reserve(["tenant:a", "key:k1"], 1, 0.1, NOW + timedelta(seconds=10))
    with pytest.raises(BudgetExceeded, match="requests per minute") as e:
        b.reserve(["tenant:a", "key:k1"], 1, 0.1, NOW + timedelta(seconds=20))
    assert e.value.retry_after(NOW + timedelta(seconds=20)) == 40
    b.reserve(["tenant:a", "key:k1"], 1, 0.1, NOW + timedelta(seconds=61))  # December: a new month
    with pytest.raises(BudgetExceeded, match="cost per month.*2026-12-01"):
        b.reserve(["tenant:a"], 1, 0.85, NOW)
    # A refusal reserves nothing anywhere.
    assert b.usage("tenant:a", NOW)["cost_this_month"] == pytest.approx(0.2)
    assert b.usage("tenant:a", NOW + timedelta(seconds=61))["cost_this_month"] == pytest.approx(0.1)


def test_limits_and_ledger_persist(backend_settings):
    store = Store.open(backend_settings)
    write_limits(store.db, "tenant:a", Limits(tokens_per_day=500), NOW, "me")
    assert read_limits(store.db)["tenant:a"].tokens_per_day == 500
    with pytest.raises(Exception, match="not tenant:NAME"):
        write_limits(store.db, "team-a", Limits(tokens_per_day=1), NOW, "me")
    w = LedgerWriter(store.db)
    base = dict(
        key_id="k1",
        model_name="m",
        version_id="v" * 64,
        status="ok",
        cache="none",
        cached_tokens=0,
        currency="USD",
        saved_tokens=0,
        saved_cost=0.0,
        trimmed_tokens=0,
        latency_s=0.1,
    )
    w.add({**base, "trace_id": "t1", "at": NOW, "tenant": "a", "input_tokens": 100, "output_tokens": 50, "cost": 0.2})
    w.add(
        {
            **base,
            "trace_id": "t2",
            "at": NOW - timedelta(days=2),
            "tenant": "a",
            "input_tokens": 7,
            "output_tokens": 3,
            "cost": 0.1,
        }
    )
    assert w.flush() == 2
    b = Budgets()
    seed_from_ledger(store.db, b, NOW)
    assert b.usage("tenant:a", NOW)["tokens_today"] == 150  # yesterday's tokens are not today's
    assert b.usage("key:k1", NOW)["cost_this_month"] == pytest.approx(0.3)
    store.close()
