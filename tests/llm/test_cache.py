"""Exact and semantic caches, partitions and the meaning guard (the real MiniLM embeddings)."""

import numpy as np
import pytest

from tether.graders.embed import shared
from tether.llm.cache import Cached, ExactCache, SemanticCache, canonical_key, meaning_guard


@pytest.fixture(scope="module")
def emb():
    return shared()


def _sim(emb):
    return lambda a, b: float(emb.one(a) @ emb.one(b))


def _entry(query, text="answer", vid="v1"):
    return Cached(text, "stop", 10, 5, 0.01, 1e12, vid, query)


@pytest.mark.parametrize(
    ("a", "b", "reason"),
    [
        ("Can I cancel my order?", "Can't I cancel my order?", "negation"),
        ("Is the refund possible?", "Is the refund not possible?", "negation"),
        ("Refund for 3 items", "Refund for 5 items", "numbers"),
        ("Book two seats", "Book three seats", "numbers"),
        ("How do I change my password?", "How do I change my email?", "content word"),
        ("Flights from Paris to London", "Flights from London to Paris", "word order"),
    ],
)
def test_guard_refuses_a_change_of_meaning(emb, a, b, reason):
    assert (meaning_guard(a, b, _sim(emb)) or "").startswith(reason)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How do I reset my password?", "What is the way to reset my password?"),
        ("How do I reset my password", "how do i reset my password please"),
        ("Where is my invoice?", "Where can I find my invoice?"),
    ],
)
def test_guard_lets_paraphrases_through(emb, a, b):
    assert meaning_guard(a, b, _sim(emb)) is None


def test_exact_key_covers_every_part():
    base = dict(
        tenant="t",
        version="v",
        messages=[{"role": "user", "content": "hi"}],
        tools=None,
        response_format=None,
        decoding={"temperature": 0},
    )
    k = canonical_key(**base)
    for change in (
        {"tenant": "u"},
        {"version": "w"},
        {"messages": [{"role": "user", "content": "hi!"}]},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"decoding": {"temperature": 0.1}},
    ):
        assert canonical_key(**{**base, **change}) != k
    cache = ExactCache(max_entries=2)
    cache.put(k, _entry("hi"))
    assert cache.get(k, ttl=60, now=1e12 + 1) is not None
    assert cache.get(k, ttl=60, now=1e12 + 61) is None  # expired


def test_semantic_partitions_threshold_and_invalidation(emb):
    cache = SemanticCache()
    q = "How do I reset my password?"
    a_part, b_part = ("tenant-a", "v1", "sys", "schema"), ("tenant-b", "v1", "sys", "schema")
    cache.put(a_part, emb.one(q), _entry(q))
    para = "What is the way to reset my password?"
    hit = cache.lookup_near(a_part, para, emb.one(para), 0.9, 3600, _sim(emb)).hit
    assert hit is not None and hit.similarity > 0.9
    assert cache.lookup_near(b_part, para, emb.one(para), 0.9, 3600, _sim(emb)).hit is None  # never across tenants
    assert cache.lookup_near(a_part, para, emb.one(para), 0.999, 3600, _sim(emb)).hit is None  # strict threshold
    neg = "Can't I reset my password?"
    found = cache.lookup_near(a_part, neg, emb.one(neg), 0.5, 3600, _sim(emb))
    assert found.hit is None and cache.guarded == 1
    assert cache.invalidate("v1") == 1 and len(cache) == 0


def test_the_nearest_entry_is_found_among_many(emb):
    cache = SemanticCache()
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(3_000, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    part = ("t", "v", "s", "x")
    for i, v in enumerate(vecs):
        cache.put(part, v, _entry(f"q{i}"))
    found = cache.lookup_near(part, "q7", vecs[7], 0.99, 3600).hit
    assert found is not None and found.entry.query == "q7"
