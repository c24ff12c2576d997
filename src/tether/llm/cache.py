"""Response caches: exact, semantic (with the meaning guard of `tether.llm.meaning`) and the threshold calibration.

**Exact.** The key is SHA-256 of the canonical JSON of (tenant, version id, every message, tools and response
format, decoding parameters). A sampled request (temperature > 0) is cached only when its version opts in.

**Semantic.** A single-turn prompt (multi-turn only if the version says so) is embedded with MiniLM and looked up
in a usearch HNSW index of its *partition*: tenant, version, system-prompt hash and tools/schema hash. Entries of
one partition are never served to another. A neighbour counts only if its cosine similarity reaches the
threshold *and* the meaning guard finds no change of meaning the embedding glosses over: a negation on one side
only ("can I" / "can't I"), different numbers, a content word replaced by one of another meaning ("password" /
"email"), or the same content words in another order ("Paris to London" / "London to Paris").

**Calibration.** A sample of semantic hits (``calibration_rate``) is also sent to the model; the fresh answer
is compared with the cached one (equal text, or answers whose embeddings agree to ``ANSWER_AGREEMENT``). Among
the sampled hits at similarity >= t, the false-hit rate has a one-sided Clopper-Pearson upper bound; the
threshold is the lowest candidate (from a fixed descending grid, tested in order: a fixed-sequence procedure,
so the family of candidates keeps the error level ``alpha``) whose bound is under the budget. Until a bound can
be shown the strict default stays; if the bound at the current threshold exceeds the budget, the threshold
moves up at once (to 1.0, which serves nothing, if no candidate qualifies). Claim: the false-hit rate of
served semantic hits is at or under ``false_hit_budget`` with probability ``1 - alpha`` (tests/llm/
test_calibration.py simulates it).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from scipy.stats import beta, binom

from tether.graders.embed import DIM
from tether.llm.meaning import meaning_guard

ANSWER_AGREEMENT = 0.92
GRID_LOW = 0.80  # the lowest threshold the calibration can ever choose; neighbours below it are not sampled


def canonical_key(**parts: Any) -> str:
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


def short_hash(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


@dataclass
class Cached:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cost: float
    created: float
    version_id: str
    query: str = ""
    tool_calls: list[dict[str, Any]] | None = None


class ExactCache:
    #: In Redis for every replica (``llm.shared_cache``) rather than in this process.
    shared = False

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._d: OrderedDict[str, Cached] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: str, ttl: float, now: float | None = None) -> Cached | None:
        c = self._d.get(key)
        if c is None or (now or time.time()) - c.created > ttl:
            if c is not None:
                del self._d[key]
            self.misses += 1
            return None
        self._d.move_to_end(key)
        self.hits += 1
        return c

    def put(self, key: str, value: Cached) -> None:
        self._d[key] = value
        self._d.move_to_end(key)
        while len(self._d) > self.max_entries:
            self._d.popitem(last=False)

    def invalidate(self, version_id: str) -> int:
        gone = [k for k, c in self._d.items() if c.version_id == version_id]
        for k in gone:
            del self._d[k]
        return len(gone)

    def __len__(self) -> int:
        return len(self._d)


# -- the semantic cache ---------------------------------------------------------------------------------------
@dataclass
class _Partition:
    index: Any
    entries: dict[int, Cached] = field(default_factory=dict)
    next_key: int = 0


@dataclass
class SemanticHit:
    entry: Cached
    similarity: float


@dataclass
class Lookup:
    hit: SemanticHit | None = None
    near: SemanticHit | None = None


class SemanticCache:
    #: Kept in step with every replica through Redis (``llm.shared_semantic``) rather than this process's only.
    shared = False

    def __init__(self, *, max_entries: int = 100_000, expansion: int = 64) -> None:
        from usearch.index import Index  # the extra's ANN index

        self._Index = Index
        self.max_entries = max_entries
        self.expansion = expansion
        self._parts: dict[tuple[str, ...], _Partition] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = self.guarded = 0

    def _part(self, key: tuple[str, ...]) -> _Partition:
        p = self._parts.get(key)
        if p is None:
            # f32 keeps similarities exact to ~1e-7 near the threshold; expansion_add 64 (default 128) halves the
            # insert cost for no recall lost at these sizes (bench/llm_cache.py).
            index = self._Index(ndim=DIM, metric="cos", dtype="f32", expansion_add=64, expansion_search=self.expansion)
            p = self._parts[key] = _Partition(index)
        return p

    def lookup_near(
        self,
        partition: tuple[str, ...],
        query: str,
        vector: np.ndarray,
        threshold: float,
        ttl: float,
        similar: Callable[[str, str], float] | None = None,
        now: float | None = None,
        explore: float = GRID_LOW,
    ) -> Lookup:
        """The hit, if any; else the nearest entry the guard lets pass with similarity >= ``explore`` (the
        calibration compares its answer with the model's fresh one at no extra model call)."""
        now = now or time.time()
        with self._lock:
            p = self._parts.get(partition)
            if p is None or len(p.entries) == 0:
                self.misses += 1
                return Lookup()
            found = p.index.search(vector, min(4, len(p.entries)))
            candidates = [(int(k), 1.0 - float(d)) for k, d in zip(found.keys, found.distances, strict=True)]
            entries = {k: p.entries.get(k) for k, _ in candidates}
        guarded = False
        near: SemanticHit | None = None
        for key, sim in candidates:
            if sim < explore:
                break
            entry = entries[key]
            if entry is None or now - entry.created > ttl:
                continue
            if meaning_guard(query, entry.query, similar) is not None:
                guarded = guarded or sim >= threshold
                continue
            if sim >= threshold:
                self.hits += 1
                return Lookup(hit=SemanticHit(entry, sim))
            if near is None:
                near = SemanticHit(entry, sim)
        self.misses += 1
        self.guarded += guarded
        return Lookup(near=near)

    def put(self, partition: tuple[str, ...], vector: np.ndarray, entry: Cached) -> None:
        with self._lock:
            p = self._part(partition)
            key = p.next_key
            p.next_key += 1
            p.index.add(key, vector)
            p.entries[key] = entry
            while len(p.entries) > self.max_entries:
                oldest = next(iter(p.entries))
                del p.entries[oldest]
                p.index.remove(oldest)

    def put_many(self, partition: tuple[str, ...], vectors: np.ndarray, entries: list[Cached]) -> None:
        """Bulk load (a warm start, a benchmark): one batched, multi-threaded index insert."""
        with self._lock:
            p = self._part(partition)
            keys = np.arange(p.next_key, p.next_key + len(entries), dtype=np.uint64)
            p.index.add(keys, vectors)
            p.entries.update(zip(keys.tolist(), entries, strict=True))
            p.next_key += len(entries)
            while len(p.entries) > self.max_entries:
                oldest = next(iter(p.entries))
                del p.entries[oldest]
                p.index.remove(oldest)

    def invalidate(self, version_id: str) -> int:
        with self._lock:
            gone = [k for k in self._parts if version_id in k]
            n = sum(len(self._parts[k].entries) for k in gone)
            for k in gone:
                del self._parts[k]
            return n

    def __len__(self) -> int:
        return sum(len(p.entries) for p in self._parts.values())


# -- calibration ----------------------------------------------------------------------------------------------
GRID = tuple(round(x, 3) for x in np.arange(0.99, GRID_LOW - 0.001, -0.01))


def upper_bound(false: int, n: int, alpha: float) -> float:
    """One-sided Clopper-Pearson upper confidence bound of a binomial rate."""
    if n == 0 or false >= n:
        return 1.0
    return float(beta.ppf(1 - alpha, false + 1, n - false))


def lower_bound(false: int, n: int, alpha: float) -> float:
    """One-sided Clopper-Pearson lower confidence bound of a binomial rate."""
    if false == 0 or n == 0:
        return 0.0
    return float(beta.ppf(alpha, false, n - false + 1))


class Calibrator:
    """Judged semantic neighbours of one version, (similarity, false hit?), and the serving threshold.

    Every candidate threshold t of the grid (plus the default) is tested on its own: "the false-hit rate of hits
    at similarity >= t exceeds the budget" is rejected when the one-sided Clopper-Pearson upper bound at level
    ``alpha / len(candidates)`` is under the budget (Bonferroni: with probability >= 1 - alpha no candidate is
    declared safe wrongly, however many are checked, however often). The threshold is the lowest candidate
    declared safe, never under ``floor``. While none is, the strict default holds (the prior, stated as such),
    unless the data show harm at it (lower bound over the budget): then nothing is served (1.0) until some
    candidate is shown safe. Samples must be taken with the same probability at every similarity (the gateway
    samples hits and below-threshold neighbours at ``calibration_rate`` alike), so that the rate among samples
    is the rate among lookups; the newest ``max_samples`` are kept, so old traffic ages out.
    """

    def __init__(
        self,
        default: float,
        budget: float,
        *,
        floor: float | None = None,
        alpha: float = 0.05,
        max_samples: int = 20_000,
    ) -> None:
        self.default, self.budget, self.alpha = default, budget, alpha
        self.floor = floor if floor is not None else default
        self.candidates = np.array(sorted({*GRID, default}, reverse=True))
        self.level = alpha / len(self.candidates)
        self.n = np.zeros(len(self.candidates), dtype=np.int64)  # samples with similarity >= candidate
        self.k = np.zeros(len(self.candidates), dtype=np.int64)  # of which false hits
        self.threshold = default
        self.shown = False  # the threshold is one declared safe, not the prior
        self.samples: deque[tuple[float, bool]] = deque()
        self.max_samples = max_samples
        self._lock = threading.Lock()

    @property
    def min_evidence(self) -> int:
        """Samples at a threshold before zero false hits there can show it safe."""
        return int(np.ceil(np.log(self.level) / np.log(1 - self.budget)))

    def add(self, similarity: float, false_hit: bool) -> float:
        with self._lock:
            self._count(similarity, false_hit, +1)
            self.samples.append((similarity, false_hit))
            if len(self.samples) > self.max_samples:
                self._count(*self.samples.popleft(), -1)
            # A false hit can only make things worse: decide at once. A good one can only lower the threshold,
            # which may wait for the next few samples (that delay is on the safe side).
            if false_hit or len(self.samples) % 8 == 0:
                self._choose()
            return self.threshold

    def _count(self, similarity: float, false_hit: bool, sign: int) -> None:
        at = self.candidates <= similarity + 1e-12
        self.n[at] += sign
        if false_hit:
            self.k[at] += sign

    def _choose(self) -> None:
        # Upper bound <= budget  <=>  P(Binomial(n, budget) <= k) <= level (the Clopper-Pearson duality).
        safe = (self.n > 0) & (binom.cdf(self.k, np.maximum(self.n, 1), self.budget) <= self.level)
        safe &= self.candidates >= self.floor - 1e-12
        if safe.any():
            self.threshold, self.shown = float(self.candidates[safe].min()), True
            return
        self.shown = False
        at_default = int(np.argmin(np.abs(self.candidates - self.default)))
        n, k = int(self.n[at_default]), int(self.k[at_default])
        self.threshold = 1.0 if lower_bound(k, n, self.level) > self.budget else self.default

    def bound_at(self, t: float) -> tuple[int, int, float]:
        i = int(np.argmin(np.abs(self.candidates - t))) if t <= self.candidates[0] else None
        if i is None:
            return 0, 0, 1.0
        n, k = int(self.n[i]), int(self.k[i])
        return n, k, upper_bound(k, n, self.level)

    def state(self) -> dict[str, Any]:
        n, k, ub = self.bound_at(self.threshold)
        return {
            "threshold": self.threshold,
            "shown_safe": self.shown,
            "samples": len(self.samples),
            "at_threshold": n,
            "false_hits": k,
            "false_hit_upper_bound": round(ub, 5),
            "budget": self.budget,
            "alpha": self.alpha,
        }
