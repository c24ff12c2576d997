"""Look-up: the stage that answers from a cache when it may, and fills the caches from fresh answers.

The exact cache first, then the semantic cache (single-turn prompts unless the version allows more), each
partitioned by tenant and version (see ``tether.llm.cache``). A sample of semantic hits is also answered by the
model, off the request path, to calibrate the version's similarity threshold.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

from tether.llm.cache import (
    ANSWER_AGREEMENT,
    Cached,
    Calibrator,
    ExactCache,
    SemanticCache,
    canonical_key,
    short_hash,
)
from tether.llm.call import CacheLookup, Call, Outcome, Upstream, VersionInfo, normal_text
from tether.llm.dispatch import Dispatcher


class CacheStage:
    """The gateway's caches; ``spawn`` runs a coroutine in the background (the gateway keeps the tasks)."""

    def __init__(self, dispatcher: Dispatcher, spawn: Callable[[Any], None]) -> None:
        self.dispatcher = dispatcher
        self.spawn = spawn
        settings = dispatcher.gw.registry.settings
        self.exact: ExactCache = ExactCache()
        if settings.redis_url:  # shared by every replica (docs/scale.md)
            from tether.llm.shared_cache import SharedExactCache
            from tether.store.redis import connect

            self.exact = SharedExactCache(connect(settings.redis_url), prefix=f"{settings.redis_namespace}:exact:")
        self._new_semantic: Callable[[], SemanticCache] = SemanticCache
        if settings.redis_url:
            from tether.llm.shared_semantic import shared_semantic

            self._new_semantic = shared_semantic(settings.redis_url, f"{settings.redis_namespace}:semantic")
        self.semantic: SemanticCache | None = None
        self._calibrators: dict[str, Calibrator] = {}
        self._embedder: Any = None
        self.calibration_samples = 0

    def invalidate(self, version_id: str) -> int:
        """Drop every entry a version wrote; the number dropped."""
        n = self.exact.invalidate(version_id)
        return n + (self.semantic.invalidate(version_id) if self.semantic is not None else 0)

    def embedder(self) -> Any:
        if self._embedder is None:
            from tether.graders.embed import shared

            self._embedder = shared()
            self.semantic = self._new_semantic()
            for vid, cal in self._calibrators.items():
                self._attach(vid, cal)
        return self._embedder

    def attach(self, info: VersionInfo) -> None:
        """A version loaded on this replica: its calibrator also counts the other replicas' samples."""
        self._calibrators[info.version_id] = info.calibrator
        self._attach(info.version_id, info.calibrator)

    def _attach(self, version_id: str, calibrator: Calibrator) -> None:
        from tether.llm.shared_semantic import SharedSemanticCache

        if isinstance(self.semantic, SharedSemanticCache):
            self.semantic.attach(version_id, calibrator)

    def close(self) -> None:
        from tether.llm.shared_semantic import SharedSemanticCache

        if isinstance(self.semantic, SharedSemanticCache):
            self.semantic.close()

    async def look_up(self, call: Call, outcome: Outcome) -> CacheLookup:
        """The exact cache, then the semantic cache (single-turn unless the version allows more)."""
        info, spec, req = call.info, call.info.spec, call.req
        look = CacheLookup()
        look.cacheable = call.decoding["temperature"] == 0 or spec.cache.allow_sampled
        look.exact_key = canonical_key(
            tenant=call.tenant,
            version=info.version_id,
            messages=call.messages,
            tools=call.tools,
            response_format=call.response_format,
            decoding=call.decoding,
        )
        if not look.cacheable:
            return look
        if spec.cache.exact:
            look.hit = self.exact.get(look.exact_key, spec.cache.ttl_s)
            if look.hit is not None:
                outcome.cache = "exact"
                return look
        turns = [m for m in req.messages if m["role"] not in ("system", "developer")]
        if not spec.cache.semantic or (len(turns) != 1 and not spec.cache.semantic_multi_turn):
            return look
        look.query = "\n".join(m["content"] for m in turns)
        look.partition = (
            call.tenant,
            info.version_id,
            info.system_hash,
            short_hash([call.tools, call.response_format, call.decoding]),
        )
        emb = self.embedder()
        look.vector = await asyncio.to_thread(emb.one, look.query)
        assert self.semantic is not None
        found = await asyncio.to_thread(
            self.semantic.lookup_near,
            look.partition,
            look.query,
            look.vector,
            info.calibrator.threshold,
            spec.cache.ttl_s,
            self.word_similarity,
        )
        if found.hit is not None:
            look.hit = found.hit.entry
            outcome.cache, outcome.similarity = "semantic", found.hit.similarity
            if random.random() < spec.cache.calibration_rate:
                self.spawn(self.calibrate(call, found.hit.entry, found.hit.similarity))
        elif found.near is not None:
            look.near = (found.near.entry, found.near.similarity)
        return look

    def remember(self, call: Call, look: CacheLookup, outcome: Outcome) -> None:
        info, c = call.info, call.info.spec.cache
        if (
            not look.cacheable
            or outcome.status != "ok"
            or outcome.finish_reason not in ("stop", "length", "tool_calls")
        ):
            return
        entry = Cached(
            outcome.text,
            outcome.finish_reason,
            outcome.prompt_tokens,
            outcome.completion_tokens,
            info.spec.prices.cost(outcome.prompt_tokens, outcome.cached_tokens, outcome.completion_tokens),
            time.time(),
            info.version_id,
            look.query,
            outcome.tool_calls,
        )
        if c.exact:
            self.exact.max_entries = c.max_entries
            self.exact.put(look.exact_key, entry)
        if look.vector is not None and self.semantic is not None:
            self.semantic.put(look.partition, look.vector, entry)
            if look.near is not None and random.random() < c.calibration_rate:
                # A calibration sample at no extra model call: the nearest cached answer the guard lets pass, below
                # the threshold; the model has just answered the same prompt. Sampled at the same rate as hits, so
                # that the samples weigh every similarity as the lookups do (see Calibrator).
                self.spawn(self.judge(info, look.near[0].text, outcome.text, look.near[1]))

    async def calibrate(self, call: Call, hit: Cached, sim: float) -> None:
        """A sampled semantic hit is also answered by the model, off the request path, and the answers compared."""
        body = self.dispatcher.body(call, call.messages)
        body["stream"] = False
        body.pop("stream_options", None)
        fresh = Outcome()
        try:
            await self.dispatcher.call(
                call.info,
                body,
                short_hash([call.info.system_hash, call.tools, call.response_format]),
                fresh,
                call.tenant,
            )
        except Upstream:
            return
        await self.judge(call.info, hit.text, fresh.text, sim)

    async def judge(self, info: VersionInfo, cached: str, fresh: str, sim: float) -> None:
        same = normal_text(cached) == normal_text(fresh)
        if not same:
            vecs = await asyncio.to_thread(self.embedder().encode, [cached, fresh])
            same = float(vecs[0] @ vecs[1]) >= ANSWER_AGREEMENT
        self.calibration_samples += 1
        info.calibrator.add(sim, not same)
        from tether.llm.shared_semantic import SharedSemanticCache

        if isinstance(self.semantic, SharedSemanticCache):
            await asyncio.to_thread(self.semantic.sample, info.version_id, sim, not same)

    def word_similarity(self, a: str, b: str) -> float:
        v = self.embedder().encode([a, b])
        return float(v[0] @ v[1])
