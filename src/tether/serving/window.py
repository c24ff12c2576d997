"""Per-version metric windows: what the rollout controller compares, kept in fixed time slices.

Every request adds to the slice of its arrival time for (model, version, arm): requests, errors by kind,
schema violations, a latency sketch, and, once feedback arrives, the confusion counts of labelled predictions
(attributed to the prediction's slice). `tally` merges the slices of any time range, so canary and champion
are compared over exactly the same window. Slices older than ``retention`` are dropped.

The store is in-process (one gateway process by default); every field merges by addition, which is what a
shared store for several replicas needs: ``serving.aggregates`` publishes each replica's changed slices and
merges every replica's into the view the controller judges.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tether.serving.sketch import LatencySketch

SLICE_SECONDS = 10


@dataclass
class Tally:
    requests: int = 0
    records: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    schema_violations: int = 0
    latency: LatencySketch = field(default_factory=LatencySketch)
    #: The instance's own time per request (no queueing), when it reports it; see ``serving.worker``.
    service: LatencySketch = field(default_factory=LatencySketch)
    labelled: int = 0
    labelled_negatives: int = 0
    false_positives: int = 0
    labelled_positives: int = 0
    true_positives: int = 0

    def merge(self, other: Tally) -> Tally:
        self.requests += other.requests
        self.records += other.records
        self.errors.update(other.errors)
        self.schema_violations += other.schema_violations
        self.latency.merge(other.latency)
        self.service.merge(other.service)
        self.labelled += other.labelled
        self.labelled_negatives += other.labelled_negatives
        self.false_positives += other.false_positives
        self.labelled_positives += other.labelled_positives
        self.true_positives += other.true_positives
        return self

    _COUNTS = (
        "requests",
        "records",
        "schema_violations",
        "labelled",
        "labelled_negatives",
        "false_positives",
        "labelled_positives",
        "true_positives",
    )

    def dump(self) -> dict[str, Any]:
        """Everything, exactly (sketch buckets included): what a replica publishes; `load` reverses it."""
        return {
            **{k: getattr(self, k) for k in self._COUNTS},
            "errors": dict(self.errors),
            "latency": self.latency.to_json(),
            "service": self.service.to_json(),
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> Tally:
        t = cls()
        for k in cls._COUNTS:
            setattr(t, k, int(data[k]))
        t.errors = Counter({str(k): int(v) for k, v in data["errors"].items()})
        t.latency = LatencySketch.from_json(data["latency"])
        t.service = LatencySketch.from_json(data["service"])
        return t

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def label_coverage(self) -> float:
        return self.labelled / self.records if self.records else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "records": self.records,
            "errors": dict(self.errors),
            "schema_violations": self.schema_violations,
            "latency_p50": self.latency.quantile(0.5) if self.latency.count else None,
            "latency_p99": self.latency.quantile(0.99) if self.latency.count else None,
            "service_p50": self.service.quantile(0.5) if self.service.count else None,
            "service_p99": self.service.quantile(0.99) if self.service.count else None,
            "labelled": self.labelled,
            "label_coverage": self.label_coverage,
            "false_positives": self.false_positives,
            "labelled_negatives": self.labelled_negatives,
            "false_positive_rate": self.false_positives / self.labelled_negatives if self.labelled_negatives else None,
            "precision": (
                self.true_positives / (self.true_positives + self.false_positives)
                if self.true_positives + self.false_positives
                else None
            ),
        }


Key = tuple[str, str, str]  # model, version, arm


class MetricStore:
    """Thread-safe time-sliced tallies per (model, version, arm)."""

    def __init__(self, *, retention: timedelta = timedelta(hours=6)) -> None:
        self._slices: dict[Key, dict[int, Tally]] = {}
        #: Consecutive version errors per (model, version, arm), warm-up requests included (the arm's base).
        self._streaks: dict[Key, int] = {}
        #: Slices changed since `take_dirty` last ran (what a replica publishes; see ``serving.aggregates``).
        self._dirty: set[tuple[Key, int]] = set()
        #: Whether to note changed slices at all: only a replica that publishes drains them (`take_dirty`).
        self.track_changes = False
        self._lock = threading.Lock()
        self.retention = retention

    @staticmethod
    def slice_of(at: datetime) -> int:
        return int(at.timestamp()) // SLICE_SECONDS

    def _tally(self, key: Key, at: datetime) -> Tally:
        slices = self._slices.setdefault(key, {})
        s = self.slice_of(at)
        t = slices.get(s)
        if self.track_changes:
            self._dirty.add((key, s))
        if t is None:
            t = slices[s] = Tally()
            horizon = s - int(self.retention.total_seconds()) // SLICE_SECONDS
            for old in [k for k in slices if k < horizon]:
                del slices[old]
        return t

    def record_request(
        self,
        model: str,
        version: str,
        arm: str,
        at: datetime,
        *,
        latency: float | None = None,
        service: float | None = None,
        records: int = 0,
        error: str | None = None,
        schema_violation: bool = False,
    ) -> None:
        with self._lock:
            t = self._tally((model, version, arm), at)
            t.requests += 1
            t.records += records
            base = (model, version, arm.split(":", 1)[0])
            self._streaks[base] = self._streaks.get(base, 0) + 1 if error else 0
            if error:
                t.errors[error] += 1
            if schema_violation:
                t.schema_violations += 1
            if latency is not None:
                t.latency.add(latency)
            if service is not None:
                t.service.add(service)

    def record_batch(
        self,
        model: str,
        version: str,
        arm: str,
        at: datetime,
        *,
        latencies: Any,
        services: Any = None,
        records: int,
        errors: dict[str, int] | None = None,
        schema_violations: int = 0,
    ) -> None:
        """Many requests at once (a gateway micro-batch, or a simulation): one sketch update, one lock."""
        with self._lock:
            t = self._tally((model, version, arm), at)
            n = len(latencies)
            t.requests += n
            t.records += records
            t.errors.update(errors or {})
            t.schema_violations += schema_violations
            if n:
                t.latency.add(latencies)
            if services is not None and len(services):
                t.service.add(services)

    def record_labels(
        self, model: str, version: str, arm: str, at: datetime, predicted: list[int], labels: list[int]
    ) -> None:
        with self._lock:
            t = self._tally((model, version, arm), at)
            for p, y in zip(predicted, labels, strict=True):
                t.labelled += 1
                if y:
                    t.labelled_positives += 1
                    t.true_positives += int(bool(p))
                else:
                    t.labelled_negatives += 1
                    t.false_positives += int(bool(p))

    def record_event(self, model: str, version: str, arm: str, at: datetime, error: str) -> None:
        """An error not tied to a request (an instance crash, say)."""
        with self._lock:
            self._tally((model, version, arm), at).errors[error] += 1

    def tally(
        self,
        model: str,
        version: str,
        arm: str,
        since: datetime,
        until: datetime | None = None,
        *,
        warmup: bool = True,
    ) -> Tally:
        """What (model, version, arm) served in the slices from ``since`` (to ``until``). ``warmup=False``
        leaves out each instance's warm-up requests (recorded as ``ARM:warmup``): what a rollout judges."""
        lo = self.slice_of(since)
        hi = self.slice_of(until) if until is not None else None
        out = Tally()
        with self._lock:
            for key in [(model, version, arm)] + ([(model, version, f"{arm}:warmup")] if warmup else []):
                for s, t in self._slices.get(key, {}).items():
                    if s >= lo and (hi is None or s <= hi):
                        out.merge(t)
        return out

    def streak(self, model: str, version: str, arm: str) -> int:
        """How many requests in a row have failed for (model, version, arm), up to now."""
        with self._lock:
            return self._streaks.get((model, version, arm), 0)

    def take_dirty(self) -> list[tuple[Key, int, Tally, int]]:
        """The slices changed since the last call, each as (key, slice, a copy of its tally, the key's streak)."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            out = []
            for key, s in dirty:
                t = self._slices.get(key, {}).get(s)
                if t is not None:
                    base = (key[0], key[1], key[2].split(":", 1)[0])
                    out.append((key, s, Tally().merge(t), self._streaks.get(base, 0)))
            return out

    def mark_dirty(self, items: list[tuple[Key, int]]) -> None:
        """Publish these again next time (a publication that failed)."""
        with self._lock:
            self._dirty.update(items)

    def keys(self) -> list[Key]:
        with self._lock:
            return list(self._slices)

    def series(
        self, model: str, version: str, arm: str, since: datetime, until: datetime | None = None
    ) -> list[tuple[datetime, Tally]]:
        """The slices of (model, version, arm) from ``since`` (to ``until``) in time order, each with its start
        time: what the dashboard charts (error rate and latency percentiles per slice). Warm-up requests out."""
        lo = self.slice_of(since)
        hi = self.slice_of(until) if until is not None else None
        with self._lock:
            rows = sorted(
                (s, Tally().merge(t))
                for s, t in self._slices.get((model, version, arm), {}).items()
                if s >= lo and (hi is None or s <= hi)
            )
        tz = since.tzinfo
        return [(datetime.fromtimestamp(s * SLICE_SECONDS, tz=tz), t) for s, t in rows]
