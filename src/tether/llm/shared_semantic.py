"""The semantic cache and its calibration shared by every gateway replica, through one Redis stream.

Redis from Debian has no vector search module, so the vectors cannot be searched in Redis: each replica keeps
its own in-process HNSW index (``SemanticCache``) and keeps it in step with the others through a Redis stream
(``tether:semantic``), which carries three kinds of record, each stamped with the writing replica:

* ``put``: a partition (tenant, version, system-prompt hash, tools/schema hash), the entry's MiniLM vector and
  the cached answer. Every replica adds it to its index, so a hit written by replica A is served by replica B,
  in the same partition only (the partition travels with the entry);
* ``inv``: a version's entries dropped (its version left the routing tables), applied in stream order, so an
  entry written before an invalidation never survives it on another replica;
* ``cal``: a calibration sample (similarity, false hit?) of a version. Every replica's `Calibrator` of that
  version counts every sample, so all replicas serve at the same threshold, shown safe on the pooled evidence
  (samples of versions a replica has not loaded yet wait, bounded, until it does).

The writer applies its own records at once and skips them when they come back. A replica that starts (or first
uses the semantic cache) reads the stream from its start, so it begins with every entry still in it; the
stream is capped (``maxlen``, trimmed approximately), which bounds Redis memory and the warm-up; entries past
their version's TTL are skipped on lookup as in one process.

Redis unreachable: writes and samples stay local (counted as ``errors``, logged), the follower retries every
second and resumes where it stopped; a replica never serves an entry from another partition or after its
invalidation was read. What a replica missed while Redis was away it does not learn (the stream is its only
channel): its hit rate drops, never its correctness.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from tether.llm.cache import Cached, Calibrator, SemanticCache

log = logging.getLogger("tether.llm.cache")

STREAM = "tether:semantic"
READ_BATCH = 1000


class SharedSemanticCache(SemanticCache):
    """A `SemanticCache` whose writes, invalidations and calibration samples every replica applies."""

    shared = True

    def __init__(
        self,
        client: Any,
        *,
        stream: str = STREAM,
        maxlen: int = 50_000,
        block_ms: int = 250,
        max_pending: int = 20_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.redis, self.stream, self.maxlen, self.block_ms = client, stream, maxlen, block_ms
        self.origin = uuid.uuid4().hex[:16].encode()
        self.errors = 0
        self.applied = 0  # records written by other replicas applied here
        self.last_id = b"0-0"
        self._calibrators: dict[str, Calibrator] = {}
        self._pending: dict[str, deque[tuple[float, bool]]] = {}
        self.max_pending = max_pending
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- writes ---------------------------------------------------------------------------------------------
    def put(self, partition: tuple[str, ...], vector: np.ndarray, entry: Cached) -> None:
        super().put(partition, vector, entry)
        self._publish(
            b"put",
            partition=orjson.dumps(list(partition)),
            vector=np.asarray(vector, dtype=np.float32).tobytes(),
            entry=orjson.dumps(entry),
        )

    def invalidate(self, version_id: str) -> int:
        n = super().invalidate(version_id)
        self._publish(b"inv", version=version_id.encode())
        return n

    def sample(self, version_id: str, similarity: float, false_hit: bool) -> None:
        """Publish a calibration sample this replica has already added to its own calibrator."""
        flag = b"1" if false_hit else b"0"
        self._publish(b"cal", version=version_id.encode(), sim=repr(float(similarity)).encode(), false=flag)

    def attach(self, version_id: str, calibrator: Calibrator) -> None:
        """The calibrator of a version this replica loaded: it counts the samples other replicas publish (and
        those that arrived before it was loaded)."""
        with self._lock:
            self._calibrators[version_id] = calibrator
            waiting = self._pending.pop(version_id, ())
        for sim, false in waiting:
            calibrator.add(sim, false)

    def _publish(self, kind: bytes, **fields: bytes) -> None:
        record: dict[bytes, bytes] = {b"kind": kind, b"origin": self.origin}
        record.update((k.encode(), v) for k, v in fields.items())
        try:
            self.redis.xadd(self.stream, record, maxlen=self.maxlen, approximate=True)
        except Exception as e:
            self.errors += 1
            log.warning("shared semantic cache unreachable (kept on this replica only): %s", e)

    # -- following ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Follow the stream from its start in a daemon thread (call once)."""
        if self._thread is not None:
            return
        try:
            while self.catch_up() == READ_BATCH:
                pass
        except Exception as e:  # Redis away at start: this replica's own entries until the follower reaches it
            self.errors += 1
            log.warning("shared semantic cache: Redis unreachable at start (%s); following when it is back", e)
        self._thread = threading.Thread(target=self._follow, name="tether-semantic-feed", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.block_ms / 1000 + 1)

    def catch_up(self, block_ms: int | None = None) -> int:
        """Apply the records after the last one seen; how many were read (``block_ms``: wait that long for one)."""
        got = self.redis.xread({self.stream: self.last_id}, count=READ_BATCH, block=block_ms)
        n = 0
        for _stream, records in got or ():
            for rid, fields in records:
                self._apply(fields)
                self.last_id = rid
                n += 1
        return n

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                self.catch_up(self.block_ms)
            except Exception as e:
                self.errors += 1
                log.warning("shared semantic cache: cannot read the stream (retrying in 1 s): %s", e)
                self._stop.wait(1.0)

    def _apply(self, f: dict[bytes, bytes]) -> None:
        if f.get(b"origin") == self.origin:
            return
        kind = f.get(b"kind")
        try:
            if kind == b"put":
                partition = tuple(orjson.loads(f[b"partition"]))
                vector = np.frombuffer(f[b"vector"], dtype=np.float32)
                SemanticCache.put(self, partition, vector, Cached(**orjson.loads(f[b"entry"])))
            elif kind == b"inv":
                SemanticCache.invalidate(self, f[b"version"].decode())
            elif kind == b"cal":
                self._calibrate(f[b"version"].decode(), float(f[b"sim"]), f[b"false"] == b"1")
            else:
                return
        except (KeyError, ValueError, TypeError) as e:  # a record of another tether release: skipped, said
            log.warning("shared semantic cache: skipped a record it cannot read (%s): %s", kind, e)
            return
        self.applied += 1

    def _calibrate(self, version_id: str, sim: float, false: bool) -> None:
        with self._lock:
            cal = self._calibrators.get(version_id)
            if cal is None:
                self._pending.setdefault(version_id, deque(maxlen=self.max_pending)).append((sim, false))
                return
        cal.add(sim, false)


def shared_semantic(redis_url: str, stream: str = STREAM) -> Callable[[], SemanticCache]:
    """The factory the gateway's cache stage calls when it first needs a semantic cache."""
    from tether.store.redis import connect

    def make() -> SemanticCache:
        cache = SharedSemanticCache(connect(redis_url), stream=stream)
        cache.start()
        return cache

    return make
