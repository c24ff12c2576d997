"""The semantic cache and its calibration shared through a Redis stream: a hit written by replica A is served by
replica B in its partition only; an invalidation reaches every replica in order; calibration samples are pooled,
so both replicas serve at the same threshold; a replica that starts late begins with the entries; Redis away
keeps a replica correct (its own entries only), never wrong."""

import time

import numpy as np
import pytest

from tests.conftest import REDIS_URL, needs_redis
from tether.llm.cache import Cached, Calibrator
from tether.llm.shared_semantic import SharedSemanticCache
from tether.store.redis import connect

pytest.importorskip("usearch")

DIM = 384
PART = ("acme", "v1", "sys", "tools")


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _entry(version="v1", text="Paris.", query="what is the capital of France?"):
    return Cached(text, "stop", 12, 2, 0.001, time.time(), version, query=query)


def _replica(stream, **kw):
    c = SharedSemanticCache(connect(REDIS_URL), stream=stream, block_ms=50, **kw)
    c.start()
    return c


def _until(cond, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


@needs_redis
def test_a_hit_written_by_one_replica_is_served_by_another_in_its_partition_only(redis_prefix):
    stream = redis_prefix + "semantic"
    a, b = _replica(stream), _replica(stream)
    try:
        v = _vec(1)
        q = "what is the capital of France?"
        assert b.lookup_near(PART, q, v, 0.9, ttl=60).hit is None
        a.put(PART, v, _entry())
        assert _until(lambda: b.lookup_near(PART, q, v, 0.9, ttl=60).hit is not None)
        hit = b.lookup_near(PART, q, v, 0.9, ttl=60).hit
        assert hit is not None and hit.entry.text == "Paris." and hit.similarity > 0.999
        # Another tenant, another version: never served the entry (the partition travels with it).
        assert b.lookup_near(("evil", "v1", "sys", "tools"), q, v, 0.9, ttl=60).hit is None
        assert b.lookup_near(("acme", "v2", "sys", "tools"), q, v, 0.9, ttl=60).hit is None
        # The meaning guard holds on the replica that did not write the entry.
        assert b.lookup_near(PART, "what is not the capital of France?", v, 0.9, ttl=60).hit is None
        assert a.applied == 0 and b.applied == 1  # a replica skips its own records
        # A replica that starts later begins with everything still in the stream.
        c = _replica(stream)
        try:
            assert c.lookup_near(PART, q, v, 0.9, ttl=60).hit is not None
        finally:
            c.close()
    finally:
        a.close()
        b.close()


@needs_redis
def test_an_invalidation_reaches_every_replica_in_stream_order(redis_prefix):
    stream = redis_prefix + "semantic"
    a, b = _replica(stream), _replica(stream)
    try:
        a.put(PART, _vec(1), _entry())
        a.put(("acme", "v2", "sys", "tools"), _vec(2), _entry("v2", query="capital of Spain?"))
        assert _until(lambda: len(b) == 2)
        assert b.invalidate("v1") == 1  # dropped here at once, and published
        assert _until(lambda: len(a) == 1)
        assert a.lookup_near(PART, "what is the capital of France?", _vec(1), 0.9, ttl=60).hit is None
        # A late replica replays put-then-invalidate in order: the entry is not resurrected.
        c = _replica(stream)
        try:
            assert len(c) == 1
        finally:
            c.close()
    finally:
        a.close()
        b.close()


@needs_redis
def test_calibration_samples_are_pooled_so_replicas_serve_at_one_threshold(redis_prefix):
    stream = redis_prefix + "semantic"
    a, b = _replica(stream), _replica(stream)
    try:
        ca, cb = Calibrator(0.95, 0.05, floor=0.85), Calibrator(0.95, 0.05, floor=0.85)
        a.attach("v1", ca)
        b.attach("v1", cb)
        # Too few for either replica alone to show any lower threshold safe (2 * each a multiple of 8, when the
        # calibrator chooses again: see Calibrator.add).
        each = int(0.6 * ca.min_evidence) // 4 * 4
        rng = np.random.default_rng(7)
        for cal, cache in [(ca, a)] * each + [(cb, b)] * each:
            sim = float(rng.uniform(0.90, 0.99))
            cal.add(sim, False)  # what the replica that judged the sample does (lookup.CacheStage.judge)
            cache.sample("v1", sim, False)
        alone = Calibrator(0.95, 0.05, floor=0.85)
        for sim, false in list(ca.samples)[:each]:
            alone.add(sim, false)
        assert not alone.shown and alone.threshold == 0.95
        assert _until(lambda: len(ca.samples) == len(cb.samples) == 2 * each)
        # The pool shows a lower threshold safe, the same on both replicas.
        assert ca.shown and cb.shown and ca.threshold == cb.threshold < 0.95
        # A replica that loads the version later counts every sample published before it did.
        c = _replica(stream)
        try:
            cc = Calibrator(0.95, 0.05, floor=0.85)
            c.attach("v1", cc)
            assert len(cc.samples) == 2 * each and cc.threshold == ca.threshold
        finally:
            c.close()
    finally:
        a.close()
        b.close()


def test_redis_away_keeps_a_replica_correct_with_its_own_entries():
    c = SharedSemanticCache(connect("redis://127.0.0.1:1/0"), block_ms=50)
    c.start()
    try:
        v = _vec(3)
        c.put(PART, v, _entry())
        assert c.lookup_near(PART, "what is the capital of France?", v, 0.9, ttl=60).hit is not None
        assert c.invalidate("v1") == 1
        assert c.errors >= 3
    finally:
        c.close()
