"""The exact response cache shared by every gateway replica, in Redis (``TETHER_REDIS_URL``).

Same keys as the in-process `ExactCache` (SHA-256 over tenant, version, messages, tools, format and decoding:
the partitions are in the key), so an answer cached by one replica is served by another to the same tenant and
version only. Each entry is a Redis string ``tether:exact:<key>`` (orjson of the `Cached` entry) that expires
after the version's TTL; a set ``tether:exact:version:<id>`` names the keys a version wrote, so the
invalidation on a version change drops them for every replica at once. There is no local copy: a local copy
would outlive another replica's invalidation.

Redis unreachable: a lookup is a miss and a write is skipped (counted as ``errors``); the request is answered
by the model as without a cache, never from a stale or foreign entry.

The semantic cache and its calibration are shared another way (``llm.shared_semantic``): vectors cannot be
searched in a Redis without modules, so each replica's index follows a stream.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import orjson

from tether.llm.cache import Cached, ExactCache

log = logging.getLogger("tether.llm.cache")

PREFIX = "tether:exact:"


class SharedExactCache(ExactCache):
    shared = True

    def __init__(self, client: Any, *, max_ttl: int = 30 * 86400, prefix: str = PREFIX) -> None:
        super().__init__()
        self.redis, self.max_ttl, self.prefix = client, max_ttl, prefix
        self.errors = 0
        #: The newest TTL asked for in a lookup, what a write's expiry follows (entries are checked on read too).
        self._ttl = float(max_ttl)

    def get(self, key: str, ttl: float, now: float | None = None) -> Cached | None:
        self._ttl = min(float(self.max_ttl), ttl)
        try:
            raw = self.redis.get(self.prefix + key)
        except Exception as e:
            self.errors += 1
            log.warning("shared exact cache unreachable (a miss): %s", e)
            self.misses += 1
            return None
        if raw is None:
            self.misses += 1
            return None
        c = Cached(**orjson.loads(raw))
        if (now or time.time()) - c.created > ttl:
            self.misses += 1
            return None
        self.hits += 1
        return c

    def put(self, key: str, value: Cached) -> None:
        ex = max(1, int(self._ttl))
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.set(self.prefix + key, orjson.dumps(dataclasses.asdict(value)), ex=ex)
            pipe.sadd(f"{self.prefix}version:{value.version_id}", key)
            pipe.expire(f"{self.prefix}version:{value.version_id}", self.max_ttl)
            pipe.execute()
        except Exception as e:
            self.errors += 1
            log.warning("shared exact cache unreachable (not cached): %s", e)

    def invalidate(self, version_id: str) -> int:
        index = f"{self.prefix}version:{version_id}"
        try:
            keys = [k.decode() for k in self.redis.smembers(index)]
            if not keys:
                return 0
            pipe = self.redis.pipeline(transaction=True)
            for k in keys:
                pipe.delete(self.prefix + k)
            pipe.delete(index)
            gone = pipe.execute()
        except Exception as e:
            self.errors += 1
            log.error("could not invalidate the shared exact cache of %s: %s", version_id[:12], e)
            return 0
        return int(sum(gone[:-1]))

    def __len__(self) -> int:
        return 0  # not counted: scanning Redis for a statistic is not worth its cost (stats say "shared")
