"""Delayed labels reach the version that answered, whichever replica the label is sent to."""

from datetime import UTC, datetime

from tests.conftest import REDIS_URL, needs_redis
from tether.serving.traces import SharedTraceMemory, TraceMemory
from tether.store.redis import connect

REDIS = REDIS_URL


def test_the_local_memory_keeps_the_newest():
    m = TraceMemory(2)
    at = datetime.now(UTC)
    for t in ("a", "b", "c"):
        m.remember(t, ("m", "v", "champion", at, b"{}"))
    assert m.get("a") is None and m.get("c") is not None


@needs_redis
def test_a_prediction_remembered_by_one_replica_is_found_by_another(redis_prefix):
    prefix = redis_prefix
    a = SharedTraceMemory(10, connect(REDIS), prefix=prefix, ttl=60)
    b = SharedTraceMemory(10, connect(REDIS), prefix=prefix, ttl=60)
    at = datetime(2026, 12, 3, 12, 0, 0, 123456, tzinfo=UTC)
    entry = ("fraud", "v" * 64, "canary", at, b'{"outputs": [{"prediction": 1}]}')
    a.remember("t1", entry)
    assert b.get("t1") is None  # not yet shared: a 404 the client may retry, never a wrong version
    assert a.flush() == 1
    assert b.get("t1") == entry


def test_with_redis_away_the_memory_degrades_to_this_process():
    m = SharedTraceMemory(10, connect("redis://127.0.0.1:1/0"), prefix="x:")
    at = datetime.now(UTC)
    m.remember("t1", ("m", "v", "champion", at, b"{}"))
    assert m.flush() == 0 and m.failures == 1  # logged and counted, not raised into a request
    assert m.get("t1") is not None  # this replica still knows its own
    assert m.get("t2") is None and m.failures == 2
