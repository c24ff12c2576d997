"""The trace memory that joins a delayed label to its prediction: which model, version and arm answered, when,
and what it answered.

`TraceMemory` keeps the newest ``capacity`` predictions in process (one gateway). With Redis
(``TETHER_REDIS_URL``), `SharedTraceMemory` also writes each one to Redis (``tether:trace:<id>``, expiring
after ``ttl`` seconds) so that feedback sent to any replica finds a prediction another replica answered: the
request path only appends to a buffer, and `run` writes the buffer in one pipeline every ``flush_seconds``
(50 ms). A label that arrives sooner than that at another replica, or while Redis is away, is answered 404
(unknown trace) and may be sent again; nothing is ever attributed to the wrong version.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from datetime import datetime
from typing import Any

import orjson

log = logging.getLogger("tether.traces")

Entry = tuple[str, str, str, datetime, bytes]  # model, version, arm, at, the raw answer


class TraceMemory:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._local: OrderedDict[str, Entry] = OrderedDict()

    def remember(self, trace: str, entry: Entry) -> None:
        self._local[trace] = entry
        while len(self._local) > self.capacity:
            self._local.popitem(last=False)

    def get(self, trace: str) -> Entry | None:
        return self._local.get(trace)

    async def run(self) -> None:
        return None

    def describe(self) -> str:
        return f"the gateway keeps the last {self.capacity:,}"


class SharedTraceMemory(TraceMemory):
    PREFIX = "tether:trace:"

    def __init__(
        self, capacity: int, client: Any, *, ttl: int = 7 * 86400, flush_seconds: float = 0.05, prefix: str = PREFIX
    ) -> None:
        super().__init__(capacity)
        self.redis, self.ttl, self.flush_seconds, self.prefix = client, ttl, flush_seconds, prefix
        self._pending: list[tuple[str, Entry]] = []
        self.failures = 0

    def remember(self, trace: str, entry: Entry) -> None:
        super().remember(trace, entry)
        self._pending.append((trace, entry))

    def get(self, trace: str) -> Entry | None:
        found = super().get(trace)
        if found is not None:
            return found
        try:
            raw = self.redis.get(self.prefix + trace)
        except Exception as e:
            self.failures += 1
            log.warning("trace memory in Redis unreachable: %s", e)
            return None
        if raw is None:
            return None
        model, version, arm, at, outputs = orjson.loads(raw)
        return model, version, arm, datetime.fromisoformat(at), outputs.encode()

    def flush(self) -> int:
        batch, self._pending = self._pending, []
        return self._write(batch)

    def _write(self, batch: list[tuple[str, Entry]]) -> int:
        if not batch:
            return 0
        try:
            pipe = self.redis.pipeline(transaction=False)
            for trace, (model, version, arm, at, outputs) in batch:
                value = orjson.dumps([model, version, arm, at.isoformat(), outputs.decode()])
                pipe.set(self.prefix + trace, value, ex=self.ttl)
            pipe.execute()
        except Exception as e:  # kept in process; other replicas will not find these traces
            self.failures += 1
            log.warning("could not share %d traces in Redis: %s", len(batch), e)
            return 0
        return len(batch)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            batch, self._pending = self._pending, []  # taken on the event loop: no append is lost
            await asyncio.to_thread(self._write, batch)

    def describe(self) -> str:
        return f"shared through Redis for {self.ttl // 3600} h, and this gateway's last {self.capacity:,}"
