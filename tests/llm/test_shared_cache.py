"""The exact cache shared through Redis: written by one replica, served by another, to the same partition only;
dropped for all at once when its version goes."""

import time

import pytest

from tests.conftest import REDIS_URL, needs_redis
from tether.llm.cache import Cached, canonical_key
from tether.llm.shared_cache import SharedExactCache
from tether.store.redis import connect

REDIS = REDIS_URL


@pytest.fixture
def prefix(redis_prefix):
    return redis_prefix


def _entry(version="v1", text="Paris."):
    return Cached(text, "stop", 12, 2, 0.001, time.time(), version, query="capital of France?")


@needs_redis
def test_written_by_one_replica_served_by_another_in_its_partition_only(prefix):
    a, b = SharedExactCache(connect(REDIS), prefix=prefix), SharedExactCache(connect(REDIS), prefix=prefix)
    key = canonical_key(tenant="acme", version="v1", messages=[{"role": "user", "content": "capital of France?"}])
    other_tenant = canonical_key(
        tenant="evil", version="v1", messages=[{"role": "user", "content": "capital of France?"}]
    )
    assert b.get(key, ttl=60) is None
    a.get(key, ttl=60)
    a.put(key, _entry())
    hit = b.get(key, ttl=60)
    assert hit is not None and hit.text == "Paris." and hit.version_id == "v1"
    assert b.get(other_tenant, ttl=60) is None  # the tenant is in the key
    assert b.get(key, ttl=0.0, now=time.time() + 5) is None  # past the version's TTL: a miss
    assert a.invalidate("v1") == 1  # the version went: gone for every replica
    assert b.get(key, ttl=60) is None
    assert b.hits == 1 and a.invalidate("v1") == 0


def test_redis_away_is_a_miss_never_an_error():
    c = SharedExactCache(connect("redis://127.0.0.1:1/0"), prefix="x:")
    assert c.get("k", ttl=60) is None
    c.put("k", _entry())
    assert c.invalidate("v1") == 0
    assert c.errors == 3
