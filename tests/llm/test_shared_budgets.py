"""Budgets shared by several gateway replicas through Redis: together they never overspend."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from tests.conftest import REDIS_URL, needs_redis
from tether.llm.ledger import BudgetExceeded, Limits
from tether.llm.shared_budgets import BudgetUnavailable, RedisBudgets
from tether.store.redis import connect

REDIS = REDIS_URL
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
pytestmark = needs_redis


@pytest.fixture
def prefix(redis_prefix):
    return redis_prefix


def _replicas(prefix, n=3, **kw):
    out = [RedisBudgets(REDIS, prefix=prefix, replicas=n, **kw) for _ in range(n)]
    for b in out:
        b.set_limits({"tenant:acme": Limits(tokens_per_day=10_000, cost_per_month=5.0)})
    return out


def test_parallel_requests_over_three_replicas_stay_within_one_budget(prefix):
    replicas = _replicas(prefix)

    def one(i):
        try:
            return replicas[i % 3].reserve(["tenant:acme", f"key:k{i % 5}"], 137, 0.001, NOW)
        except BudgetExceeded:
            return None

    with ThreadPoolExecutor(24) as pool:
        held = [r for r in pool.map(one, range(400)) if r is not None]
    assert sum(r.tokens for r in held) <= 10_000
    assert len(held) == 10_000 // 137  # and the budget is used up to the last request that fits
    assert replicas[0].usage("tenant:acme", NOW)["tokens_today"] == len(held) * 137


def test_settlement_replaces_the_reservation_by_the_real_use(prefix):
    a, b = _replicas(prefix, 2)
    res = a.reserve(["tenant:acme"], 9_000, 1.0, NOW)
    with pytest.raises(BudgetExceeded) as e:
        b.reserve(["tenant:acme"], 2_000, 0.1, NOW)
    assert e.value.budget == "tokens per day" and e.value.resets.day == 4
    a.settle(res, 400, 0.05)  # the answer was short: 8,600 tokens come back
    assert b.reserve(["tenant:acme"], 2_000, 0.1, NOW).tokens == 2_000
    assert a.usage("tenant:acme", NOW)["tokens_today"] == 2_400


def test_requests_per_minute_are_counted_across_replicas(prefix):
    replicas = [RedisBudgets(REDIS, prefix=prefix) for _ in range(2)]
    for r in replicas:
        r.set_limits({"key:k1": Limits(requests_per_minute=5)})
    for i in range(5):
        replicas[i % 2].reserve(["key:k1"], 1, 0.0, NOW)
    with pytest.raises(BudgetExceeded) as e:
        replicas[1].reserve(["key:k1"], 1, 0.0, NOW)
    assert e.value.budget == "requests per minute"


def test_the_day_starts_from_the_ledger_once_whichever_replica_is_first(prefix):
    a, b = _replicas(prefix, 2)
    a.seed("tenant:acme", "2026-12-03", 9_500, "2026-12", 0.0)
    b.seed("tenant:acme", "2026-12-03", 9_500, "2026-12", 0.0)
    a.reserve(["tenant:acme"], 400, 0.0, NOW)
    with pytest.raises(BudgetExceeded):
        b.reserve(["tenant:acme"], 400, 0.0, NOW)  # 9,500 seeded once, not twice; 9,900 + 400 > 10,000


def test_redis_unreachable_refuses_budgeted_requests_by_default(prefix):
    dead = RedisBudgets("redis://127.0.0.1:1/0", prefix=prefix)
    dead.set_limits({"tenant:acme": Limits(tokens_per_day=10_000)})
    with pytest.raises(BudgetUnavailable, match="unreachable"):
        dead.reserve(["tenant:acme"], 10, 0.0, NOW)
    assert dead.fallbacks == 1
    assert dead.reserve(["tenant:other"], 10, 0.0, NOW).tokens == 10  # no budget applies: nothing to overspend


def test_redis_unreachable_with_share_enforces_a_replicas_part_of_each_budget(prefix):
    live = RedisBudgets(REDIS, prefix=prefix, fallback="share", replicas=4)
    live.set_limits({"tenant:acme": Limits(tokens_per_day=10_000)})
    live.reserve(["tenant:acme"], 2_000, 0.0, NOW)  # own use so far: 2,000 of a 2,500 share
    live.redis = connect("redis://127.0.0.1:1/0")
    live._reserve = live.redis.register_script("return 1")
    assert live.reserve(["tenant:acme"], 500, 0.0, NOW).local
    with pytest.raises(BudgetExceeded):
        live.reserve(["tenant:acme"], 1, 0.0, NOW)


def test_a_redis_that_loses_its_keys_starts_again_from_the_ledger_not_from_zero(prefix, tmp_path):
    """A Redis restarted without persistence (here: its keys deleted) must not hand the day's budget out again:
    the seeds are re-read from the ledger (the gateway does so every few seconds), not kept from start."""
    from tether.core import Settings
    from tether.llm.ledger import LedgerWriter
    from tether.store import Store

    store = Store.open(Settings(home=tmp_path / "home", database_url="", blob_url=""))
    (a,) = _replicas(prefix, 1)
    a.reseed(store.db, NOW)  # at start: an empty ledger
    held = a.reserve(["tenant:acme"], 6_000, 0.0, NOW)
    a.settle(held, 6_000, 0.0)
    w = LedgerWriter(store.db)
    w.add(
        dict(
            trace_id="t1",
            at=NOW,
            tenant="acme",
            key_id=None,
            model_name="m",
            version_id="v" * 64,
            status="ok",
            cache="none",
            input_tokens=5_000,
            output_tokens=1_000,
            cached_tokens=0,
            cost=0.0,
            currency="USD",
            saved_tokens=0,
            saved_cost=0.0,
            trimmed_tokens=0,
            latency_s=0.1,
        )
    )
    w.flush()
    a.reseed(store.db, NOW)
    r = connect(REDIS)
    for k in r.scan_iter(prefix + "*"):
        r.delete(k)  # what a restart without persistence leaves
    with pytest.raises(BudgetExceeded):
        a.reserve(["tenant:acme"], 6_000, 0.0, NOW)  # 6,000 spent today (the ledger) + 6,000 > 10,000
    assert a.usage("tenant:acme", NOW)["tokens_today"] == 6_000
    store.close()
