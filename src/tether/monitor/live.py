"""Live profiles at the gateway: the request path only appends; a background task does the profiling.

`LiveProfiler.observe` is called by the gateway for every accepted request with the records it already
parsed: it appends a reference to a list (about a microsecond) and returns. `flush` (run every
``interval`` seconds by `run`) turns each model version's pending records into one DataFrame and updates
the current slice's `DatasetProfile` (plus one per segment value) in a single vectorised pass, in a worker
thread so the event loop keeps serving. Closed slices go to the ``live_profiles`` table, where the drift
watch of any process, and ``tether monitor status``, merge them (profiles from several gateway replicas
merge the same way). Nothing here can fail a request: bad values are counted as issues, and an unexpected
error in profiling is logged and counted, never raised into the request path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import delete, insert

from tether.core.clock import Clock, SystemClock
from tether.monitor.config import MonitorConfig, read_config
from tether.monitor.profile import OTHER, DatasetProfile, kinds_of
from tether.registry import Registry
from tether.store.tables import live_profiles

log = logging.getLogger("tether.monitor")

MAX_SEGMENT_VALUES = 20
#: Pending records per (model, version) beyond which the oldest are dropped (and counted) rather than letting
#: a stalled profiler grow the gateway's memory without bound.
MAX_PENDING = 200_000


#: How often a closed slice is offered to the database before it is dropped (and counted).
WRITE_TRIES = 3


@dataclass
class _Slice:
    start: datetime
    whole: DatasetProfile
    segments: dict[tuple[str, str], DatasetProfile] = field(default_factory=dict)
    issues: Counter[str] = field(default_factory=Counter)
    rows: int = 0
    tries: int = 0


@dataclass
class _Target:
    kinds: dict[str, str]
    segments: list[str]
    slice_seconds: float
    current: _Slice | None = None


class LiveProfiler:
    def __init__(
        self,
        registry: Registry,
        *,
        clock: Clock | None = None,
        interval: float = 0.25,
        retention: timedelta = timedelta(days=7),
    ) -> None:
        self.registry = registry
        self.clock = clock or SystemClock()
        self.interval = interval
        self.retention = retention
        self.replica = f"{os.uname().nodename}:{os.getpid()}"[:64]
        self._pending: dict[tuple[str, str], list[list[dict[str, Any]]]] = {}
        self._pending_rows: Counter[tuple[str, str]] = Counter()
        self._targets: dict[tuple[str, str], _Target] = {}
        self._configs: dict[str, MonitorConfig] = {}
        self._lock = threading.Lock()
        self.dropped = 0
        self.failures = 0
        #: Slices that could not be written (tried again, then dropped and counted; see `_write`).
        self.write_failures = 0
        self.last_error = ""
        self.dropped_rows = 0
        self._unwritten: list[tuple[str, str, _Slice]] = []

    # -- the request path --------------------------------------------------------------------------------
    def observe(self, model: str, version_id: str, records: list[dict[str, Any]]) -> None:
        key = (model, version_id)
        if self._pending_rows[key] >= MAX_PENDING:
            self.dropped += len(records)
            return
        self._pending.setdefault(key, []).append(records)
        self._pending_rows[key] += len(records)

    # -- configuration -------------------------------------------------------------------------------------
    def configure(self, model: str, config: MonitorConfig) -> None:
        """New settings apply from the next slice of each of the model's versions."""
        self._configs[model] = config

    def _target(self, model: str, version_id: str) -> _Target | None:
        key = (model, version_id)
        config = self._configs.get(model)
        if config is None:  # not configured by the server yet: the stored settings (or the defaults)
            config = self._configs[model] = read_config(self.registry, model)
        target = self._targets.get(key)
        if target is not None and target.segments == config.segments and target.slice_seconds == config.slice_seconds:
            return target
        if not config.enabled:
            return None
        mv = self.registry.get(version_id)
        kinds = kinds_of(mv.input_schema, config.features)
        target = _Target(kinds, list(config.segments), config.slice_seconds, target.current if target else None)
        self._targets[key] = target
        return target

    # -- the background side -------------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self.flush)
            except Exception:
                self.failures += 1
                log.exception("live profiling failed; the requests were served and are not profiled")

    def flush(self, *, close_all: bool = False) -> int:
        """Profile what is pending and write the slices that have closed; returns the rows profiled."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._pending_rows.clear()
            now = self.clock.now()
            profiled = 0
            for (model, version_id), batches in pending.items():
                target = self._target(model, version_id)
                if target is None:
                    continue
                rows = [r for batch in batches for r in batch]
                profiled += len(rows)
                self._add(model, version_id, target, pd.DataFrame.from_records(rows), now)
            self._retry_unwritten()
            self._close(now, close_all)
            return profiled

    def _slice_start(self, at: datetime, seconds: float) -> datetime:
        epoch = at.timestamp()
        return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)

    def _add(self, model: str, version_id: str, target: _Target, frame: pd.DataFrame, now: datetime) -> None:
        start = self._slice_start(now, target.slice_seconds)
        if target.current is not None and target.current.start != start:
            self._write(model, version_id, target.current)
            target.current = None
        if target.current is None:
            target.current = _Slice(start, DatasetProfile.for_kinds(target.kinds))
        sl = target.current
        sl.rows += len(frame)
        sl.issues.update(sl.whole.observe(frame))
        for col in target.segments:
            if col not in frame.columns:
                continue
            values = frame[col].astype("string").fillna("__missing__")
            for value, part in frame.groupby(values, sort=False):
                key = (col, str(value))
                if key not in sl.segments and sum(1 for c, _ in sl.segments if c == col) >= MAX_SEGMENT_VALUES:
                    key = (col, OTHER)
                prof = sl.segments.get(key)
                if prof is None:
                    prof = sl.segments[key] = DatasetProfile.for_kinds(target.kinds)
                prof.observe(part)

    def _close(self, now: datetime, close_all: bool) -> None:
        for (model, version_id), target in self._targets.items():
            sl = target.current
            if sl is not None and (close_all or sl.start + timedelta(seconds=target.slice_seconds) <= now):
                self._write(model, version_id, sl)
                target.current = None

    def _write(self, model: str, version_id: str, sl: _Slice) -> None:
        """Write a closed slice. A slice that cannot be written is dropped after a few tries, counted and said
        (``write_failures``, ``last_error``, the server's health route): it never blocks the slices after it."""
        rows: list[dict[str, Any]] = [self._row(model, version_id, "", sl.whole, sl.rows, sl.start, sl.issues)]
        for (col, value), prof in sl.segments.items():
            n = _rows_of(prof)
            rows.append(self._row(model, version_id, f"{col}={value}", prof, n, sl.start, Counter()))
        try:
            with self.registry.store.db.begin() as conn:
                conn.execute(insert(live_profiles), rows)
                conn.execute(delete(live_profiles).where(live_profiles.c.slice_start < sl.start - self.retention))
        except Exception as e:
            self.write_failures += 1
            self.last_error = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
            sl.tries += 1
            if sl.tries < WRITE_TRIES:
                self._unwritten.append((model, version_id, sl))  # tried again on the next flush
                return
            self.dropped_rows += sl.rows
            log.error("live profile slice of %s dropped after %d tries: %s", model, sl.tries, self.last_error)

    def _retry_unwritten(self) -> None:
        again, self._unwritten = self._unwritten, []
        for model, version_id, sl in again:
            self._write(model, version_id, sl)

    def _row(
        self,
        model: str,
        version_id: str,
        segment: str,
        prof: DatasetProfile,
        rows: int,
        start: datetime,
        issues: Counter[str],
    ) -> dict[str, Any]:
        return {
            "model_name": model,
            "version_id": version_id,
            "segment": segment,
            "slice_start": start,
            "rows": rows,
            "profile": prof.to_json(),
            "issues": dict(issues),
            "replica": self.replica,
        }


def _rows_of(prof: DatasetProfile) -> int:
    counts = [p.count + p.missing for p in prof.features.values()]
    return max(counts) if counts else 0
