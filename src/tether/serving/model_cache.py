"""The models a pooled worker holds: loaded on first use, accounted in bytes, evicted least-recently-used.

ModelMesh's way, in one process: every version is loaded from the verified store the first time a request (or the
pool, warming it) asks for it; concurrent requests for a version that is loading wait for that one load. Each load
is measured (`tether.serving.memory.Growth`: what it added to the heap or the resident set, never less than the
weights on disk) and, when the sum goes over the byte budget, versions are evicted:

1. unpinned versions (no routing table names them any more), least recently used first;
2. then, only if the pinned ones alone do not fit, pinned versions, least recently used first, each counted as a
   *pressure eviction* (the budget is too small for the fleet: a reload costs the next request a cold load).

The version just loaded is never the one evicted to make room for itself. Unpinned versions idle for
``idle_seconds`` are evicted too, so memory goes back once traffic has moved on. After evictions the worker
collects garbage and trims the heap (`tether.serving.memory.trim`).

Loads run one at a time in a worker thread (so each load's growth is its own, and the event loop keeps answering
requests for loaded models meanwhile). A load that imported code (the first model of its kind) is measured again
on a second load, so the model is not charged for the library. Predictions go through a `Batcher` per version, as
in a one-model instance.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tether.registry.flavors import LoadedModel
from tether.serving import memory
from tether.serving.batcher import Batcher

log = logging.getLogger("tether.pool")

#: What loading a version gives: the model and the bytes its files take on disk (the accounting's floor).
Loader = Callable[[str], tuple[LoadedModel, int]]


@dataclass
class Resident:
    version_id: str
    model: LoadedModel = field(repr=False)
    batcher: Batcher = field(repr=False)
    bytes: int
    load_seconds: float
    last_used: float
    requests: int = 0


class ModelCache:
    def __init__(
        self,
        loader: Loader,
        budget_bytes: int,
        *,
        max_batch: int = 64,
        idle_seconds: float = 600.0,
        now: Callable[[], float] = time.monotonic,
        measure: Callable[[], memory.Growth] = memory.Growth,
    ) -> None:
        self.loader = loader
        self.budget_bytes = budget_bytes
        self.max_batch = max_batch
        self.idle_seconds = idle_seconds
        self.now = now
        self.measure = measure
        #: Least recently used first.
        self._resident: OrderedDict[str, Resident] = OrderedDict()
        self._loading: dict[str, asyncio.Future[Resident]] = {}
        self._pins: set[str] = set()
        self._load_lock = threading.Lock()
        self.loads = 0
        self.load_failures = 0
        self.evictions = 0
        self.pressure_evictions = 0
        self.baseline_rss = memory.rss_bytes()

    # -- pins ---------------------------------------------------------------------------------------------
    def pin(self, version_id: str) -> None:
        self._pins.add(version_id)

    def unpin(self, version_id: str) -> None:
        self._pins.discard(version_id)

    @property
    def pins(self) -> frozenset[str]:
        return frozenset(self._pins)

    # -- use ----------------------------------------------------------------------------------------------
    def resident(self, version_id: str) -> Resident | None:
        return self._resident.get(version_id)

    async def get(self, version_id: str) -> tuple[Resident, float]:
        """The loaded version, loading it first if needed; with the seconds this call waited for a load (0 when
        it was resident already)."""
        res = self._resident.get(version_id)
        if res is not None:
            self._resident.move_to_end(version_id)
            res.last_used = self.now()
            res.requests += 1
            return res, 0.0
        started = time.perf_counter()
        future = self._loading.get(version_id)
        if future is None:
            future = asyncio.ensure_future(self._load(version_id))
            self._loading[version_id] = future
            future.add_done_callback(functools.partial(_forget, self._loading, version_id))
        res = await asyncio.shield(future)
        res.last_used = self.now()
        res.requests += 1
        return res, time.perf_counter() - started

    async def _load(self, version_id: str) -> Resident:
        try:
            model, disk_bytes, used, seconds = await asyncio.to_thread(self._load_measured, version_id)
        except BaseException:
            self.load_failures += 1
            raise
        res = Resident(
            version_id,
            model,
            Batcher(model, max_records=self.max_batch),
            bytes=max(used, disk_bytes),
            load_seconds=seconds,
            last_used=self.now(),
        )
        self._resident[version_id] = res
        self.loads += 1
        if self.used_bytes > self.budget_bytes:
            await self._make_room(keep=version_id)
        return res

    def _load_measured(self, version_id: str) -> tuple[LoadedModel, int, int, float]:
        with self._load_lock:  # one load at a time: each load's growth is its own
            started = time.perf_counter()
            modules = len(sys.modules)
            with self.measure() as grown:
                model, disk_bytes = self.loader(version_id)
            seconds = time.perf_counter() - started
            if len(sys.modules) != modules:
                # The load imported code (the first model of its kind in this worker: scikit-learn's modules, say):
                # what it grew by is mostly the code. Load it again to measure the model alone, keep that copy.
                model.close()
                with self.measure() as grown:
                    model, disk_bytes = self.loader(version_id)
            return model, disk_bytes, grown.bytes, seconds

    # -- eviction -----------------------------------------------------------------------------------------
    @property
    def used_bytes(self) -> int:
        return sum(r.bytes for r in self._resident.values())

    def victims(self, keep: str | None = None) -> list[tuple[str, bool]]:
        """Which versions to evict to get under the budget, in order, each with whether it was pinned."""
        over = self.used_bytes - self.budget_bytes
        out: list[tuple[str, bool]] = []
        if over <= 0:
            return out
        for pinned in (False, True):
            for vid, res in self._resident.items():  # least recently used first
                if vid == keep or (vid in self._pins) != pinned:
                    continue
                out.append((vid, pinned))
                over -= res.bytes
                if over <= 0:
                    return out
        return out

    async def _make_room(self, keep: str | None = None) -> None:
        chosen = self.victims(keep)
        for vid, pinned in chosen:
            self._drop(vid)
            if pinned:
                self.pressure_evictions += 1
                log.warning(
                    "pool memory budget of %d bytes is too small for its pinned models: evicted %s (it will "
                    "load again on its next request; raise TETHER_POOL_MEMORY or add pool workers)",
                    self.budget_bytes,
                    vid[:12],
                )
        if chosen:
            await asyncio.to_thread(_collect)

    def _drop(self, version_id: str) -> bool:
        res = self._resident.pop(version_id, None)
        if res is None:
            return False
        self.evictions += 1
        res.model.close()  # its materialised files; the objects go with the last request using them
        return True

    async def evict(self, version_id: str) -> bool:
        """Unload a version now (requests already running on it finish)."""
        dropped = self._drop(version_id)
        if dropped:
            await asyncio.to_thread(_collect)
        return dropped

    async def sweep(self) -> list[str]:
        """Evict unpinned versions idle for ``idle_seconds``; returns them."""
        cutoff = self.now() - self.idle_seconds
        idle = [v for v, r in self._resident.items() if v not in self._pins and r.last_used < cutoff]
        for vid in idle:
            self._drop(vid)
        if idle:
            await asyncio.to_thread(_collect)
        return idle

    async def close(self) -> None:
        for vid in list(self._resident):
            self._drop(vid)

    def stats(self) -> dict[str, Any]:
        return {
            "budget_bytes": self.budget_bytes,
            "used_bytes": self.used_bytes,
            "rss_bytes": memory.rss_bytes(),
            "baseline_rss_bytes": self.baseline_rss,
            "loads": self.loads,
            "load_failures": self.load_failures,
            "evictions": self.evictions,
            "pressure_evictions": self.pressure_evictions,
            "loading": sorted(self._loading),
            "resident": {
                vid: {
                    "bytes": r.bytes,
                    "load_seconds": round(r.load_seconds, 6),
                    "requests": r.requests,
                    "pinned": vid in self._pins,
                }
                for vid, r in self._resident.items()
            },
        }


def _forget(mapping: dict[str, Any], key: str, _future: object) -> None:
    mapping.pop(key, None)


def _collect() -> None:
    gc.collect()
    memory.trim()
