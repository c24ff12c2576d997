"""Semantic cache quality and speed: tether beside GPTCache at its defaults, the same embeddings, the same run.

The set (built here, see `build_set`): support questions ("How do I reset my password?"), each cached with its
own answer; then asked again as paraphrases (a hit is right: same intent) and as near-misses that change the
meaning while staying close in wording: another object or verb, a negation, other numbers, swapped entities
(any hit is a false hit). Both caches embed with the bundled all-MiniLM-L6-v2 through the same object.

- tether: `SemanticCache` (usearch HNSW) at the default threshold 0.92 with the meaning guard;
- GPTCache 0.1.44: `init_similar_cache` with a faiss index and its default `SearchDistanceEvaluation`, at its
  default `similarity_threshold` 0.8 (documented default of `gptcache.config.Config`).

Printed: hit rate on paraphrases, false hits on near-misses, false-hit share of all hits; then lookup latency
at 100,000 entries (random unit vectors in the same index, the query's own embedding excluded), tether's
usearch partition beside GPTCache's faiss store.

    make bench-llm     (creates bench/.venv-llm with GPTCache and LiteLLM; tether's own venv has neither)
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from tether.graders.embed import DIM, shared
from tether.llm.cache import Cached, SemanticCache

VERBS = ["reset", "cancel", "change", "update", "download", "renew"]
OBJECTS = ["password", "order", "invoice", "subscription", "email address", "payment method", "shipping address"]
PARAPHRASES = [
    "What is the way to {v} my {o}?",
    "How can I {v} my {o}?",
    "I want to {v} my {o}, how do I do that?",
    "How would I go about {v}ing my {o}?",
]
CITIES = [("Paris", "London"), ("Berlin", "Madrid"), ("Rome", "Vienna"), ("Oslo", "Lisbon"), ("Dublin", "Prague")]


@dataclass
class Query:
    text: str
    intent: str | None  # the intent whose answer is right, None: no cached answer is right


def _ing(v: str) -> str:
    return (v[:-1] if v.endswith("e") else v) + "ing"


def build_set() -> tuple[dict[str, str], list[Query], list[Query]]:
    """(cached intent -> question, paraphrases, near-misses)."""
    cached: dict[str, str] = {}
    para: list[Query] = []
    near: list[Query] = []
    rng = np.random.default_rng(7)
    combos = list(itertools.product(VERBS, OBJECTS))
    chosen = [combos[i] for i in rng.choice(len(combos), 24, replace=False)]
    for v, o in chosen:
        intent = f"{v}:{o}"
        cached[intent] = f"How do I {v} my {o}?"
        for p in PARAPHRASES:
            para.append(Query(p.format(v=v, o=o).replace(f"{v}ing", _ing(v)), intent))
    for v, o in chosen:  # near-misses: never a question that is itself cached
        other_o = next(x for x in OBJECTS if x != o and f"{v}:{x}" not in cached)
        other_v = next(x for x in VERBS if x != v and f"{x}:{o}" not in cached)
        near += [
            Query(f"How do I {v} my {other_o}?", None),
            Query(f"How do I {other_v} my {o}?", None),
            Query(f"Why can't I {v} my {o}?", None),
            Query(f"How do I not {v} my {o}?", None),
        ]
    for n in (2, 3, 5, 10):
        cached[f"refund:{n}"] = f"Can I get a refund for {n} items?"
        para += [
            Query(f"Is a refund possible for {n} items?", f"refund:{n}"),
            Query(f"Could I be refunded for {n} items?", f"refund:{n}"),
        ]
        near += [
            Query(f"Can I get a refund for {n + 1} items?", None),
            Query(f"Can I get a refund for {n * 10} items?", None),
        ]
    for a, b in CITIES:
        cached[f"ship:{a}:{b}"] = f"How long does shipping take from {a} to {b}?"
        para += [
            Query(f"What is the delivery time from {a} to {b}?", f"ship:{a}:{b}"),
            Query(f"How many days to ship from {a} to {b}?", f"ship:{a}:{b}"),
        ]
        near += [Query(f"How long does shipping take from {b} to {a}?", None)]
    return cached, para, near


def run_tether(emb, cached, queries, threshold=0.92):
    cache = SemanticCache()
    part = ("bench", "v", "s", "x")
    vecs = emb.encode(list(cached.values()))
    for (intent, q), v in zip(cached.items(), vecs, strict=True):
        cache.put(part, v, Cached(intent, "stop", 10, 10, 0.0, time.time(), "v", q))

    def similar(a: str, b: str) -> float:
        x = emb.encode([a, b])
        return float(x[0] @ x[1])

    out = []
    qv = emb.encode([q.text for q in queries])
    for q, v in zip(queries, qv, strict=True):
        hit = cache.lookup_near(part, q.text, v, threshold, 3600, similar).hit
        out.append(None if hit is None else hit.entry.text)
    return out


def run_gptcache(emb, cached, queries):
    from gptcache import Config
    from gptcache.adapter.api import get, init_similar_cache, put
    from gptcache.similarity_evaluation.distance import SearchDistanceEvaluation

    class MiniLM:  # GPTCache's embedding interface, over the very same model object as tether's
        dimension = DIM

        def to_embeddings(self, data, **_kwargs):
            return emb.encode([data])[0]

    from gptcache import Cache
    from gptcache.manager import manager_factory

    # GPTCache writes its faiss index at exit: the folder must outlive this function.
    tmp = tempfile.mkdtemp(prefix="gptcache-bench-")
    manager = manager_factory("sqlite,faiss", data_dir=tmp, vector_params={"dimension": DIM})
    cache = Cache()
    init_similar_cache(
        data_dir=tmp,
        cache_obj=cache,
        embedding=MiniLM(),
        data_manager=manager,
        evaluation=SearchDistanceEvaluation(),
        config=Config(),  # similarity_threshold 0.8: the default
    )
    for intent, q in cached.items():
        put(q, intent, cache_obj=cache)
    return [get(q.text, cache_obj=cache) for q in queries]


def score(name, answers_para, para, answers_near, near):
    right = sum(a == q.intent for a, q in zip(answers_para, para, strict=True))
    wrong_para = sum(a is not None and a != q.intent for a, q in zip(answers_para, para, strict=True))
    false_near = sum(a is not None for a in answers_near)
    hits = sum(a is not None for a in answers_para) + false_near
    false = wrong_para + false_near
    print(
        f"{name:28} paraphrase hit rate {right / len(para):6.1%}   near-miss false hits {false_near:3}/{len(near)} "
        f"({false_near / len(near):5.1%})   false share of all hits {false / max(hits, 1):6.1%}"
    )


def latency(emb, n=100_000, queries=200):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(n, DIM)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    qs = emb.encode([f"How do I reset my password, take {i}?" for i in range(queries)])
    cache = SemanticCache()
    part = ("bench", "v", "s", "x")
    t = time.perf_counter()
    cache.put_many(part, base, [Cached(str(i), "stop", 1, 1, 0.0, time.time(), "v", f"q{i}") for i in range(n)])
    build = time.perf_counter() - t
    times = []
    for v in qs:
        t = time.perf_counter()
        cache.lookup_near(part, "How do I reset my password?", v, 0.92, 3600)
        times.append(time.perf_counter() - t)
    ours = statistics.median(times) * 1e6
    import faiss

    index = faiss.IndexFlatL2(DIM)  # GPTCache's faiss store: a flat L2 index
    index.add(base)
    times = []
    for v in qs:
        t = time.perf_counter()
        index.search(v.reshape(1, -1), 1)
        times.append(time.perf_counter() - t)
    theirs = statistics.median(times) * 1e6
    t = time.perf_counter()
    emb.model.encode(["How do I reset my password, once more?"], normalize_embeddings=True)
    embed_ms = (time.perf_counter() - t) * 1000
    print(
        f"lookup at {n:,} entries: tether (usearch HNSW) p50 {ours:.0f} us, GPTCache's faiss flat index p50 "
        f"{theirs:.0f} us (ratio {theirs / ours:.1f}x); index built in {build:.1f} s; one MiniLM embedding "
        f"{embed_ms:.1f} ms (both pay it)"
    )


def main() -> None:
    emb = shared()
    cached, para, near = build_set()
    print(f"set: {len(cached)} cached questions, {len(para)} paraphrases, {len(near)} near-misses")
    t_para = run_tether(emb, cached, para)
    t_near = run_tether(emb, cached, near)
    score("tether (0.92 + guard)", t_para, para, t_near, near)
    t_para = run_tether(emb, cached, para, threshold=0.80)
    t_near = run_tether(emb, cached, near, threshold=0.80)
    score("tether (0.80 + guard)", t_para, para, t_near, near)
    try:
        g_para = run_gptcache(emb, cached, para)
        g_near = run_gptcache(emb, cached, near)
        score("GPTCache defaults (0.8)", g_para, para, g_near, near)
    except ImportError as e:
        print(f"GPTCache not installed here ({e}); run 'make bench-llm'")
    latency(emb)


if __name__ == "__main__":
    main()
