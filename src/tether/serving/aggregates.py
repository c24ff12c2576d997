"""Metric windows across replicas: each gateway publishes its slices, the controller judges their sum.

A replica's `MetricStore` keeps, per (model, version, arm) and ten-second slice, counts, error kinds, the
DDSketch latency sketches and label feedback; all of it merges by addition. `Publisher.publish` upserts the
slices that changed since its last run into ``metric_slices``, keyed by replica: each row holds the replica's
whole tally for that slice (not a delta), so a publication that is retried, or repeated after a crash, counts
once. `MergedMetrics.sync` reads the rows published lately and sets each slice to the sum over replicas, so
`tally` answers exactly what one process would have answered had it carried all the traffic (the same
sketch buckets, so the same quantiles and the same decisions). Its own replica's slices come from the live
store, not from the database, so the process that carries traffic judges it without delay.

Streaks (consecutive failures) do not add up across replicas: the merged streak is the largest any replica
reports, which trips ``failure_limit`` no later than one process would.

The evidence is as fresh as the last publication: ``publish_seconds`` (two by default) behind at most. A
replica that dies loses what it had not yet published (at most that long), never more; its published slices
stay.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from tether.core.clock import Clock
from tether.serving.window import SLICE_SECONDS, Key, MetricStore, Tally
from tether.store.database import Database, db_now
from tether.store.tables import metric_slices

log = logging.getLogger("tether.aggregates")

#: Rows published up to this long before a sync's start are read again: a transaction may commit a little
#: after the database time it stamped.
REREAD_SECONDS = 15.0
#: How far a replica's clock may be off the database's before its evidence is withheld (slices are 10 s).
MAX_SKEW_SECONDS = 2.0


def clock_skew(db: Database, clock: Clock) -> float:
    """How far ``clock`` runs ahead of the database server's (seconds; negative: behind), the round trip halved
    out."""
    t0 = clock.now().timestamp()
    with db.connect() as conn:
        server = float(conn.execute(select(db_now(db.dialect))).scalar_one())
    t1 = clock.now().timestamp()
    return (t0 + t1) / 2 - server


def _upsert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


class Publisher:
    """Upserts a replica's changed slices (call `publish` every few seconds, in a worker thread)."""

    def __init__(self, db: Database, store: MetricStore, replica: str) -> None:
        self.db, self.store, self.replica = db, store, replica
        store.track_changes = True  # from now on the store notes what changed, and `publish` drains it
        self.published = 0
        self.failures = 0
        #: Set by the replica while its clock is more than `MAX_SKEW_SECONDS` off the database's: its slices,
        #: stamped by that clock, would land in the wrong windows (a clock an hour ahead would count the same
        #: requests in every step for an hour), so they are withheld, counted, and the controller judges the
        #: other replicas' evidence. Serving goes on.
        self.withhold = False
        self.withheld = 0
        self._last_prune = 0.0
        self._newest: dict[str, int] = {}

    def publish(self) -> int:
        items = self.store.take_dirty()
        if not items:
            return 0
        if self.withhold:
            self.withheld += len(items)
            return 0
        ins = _upsert(self.db.dialect)(metric_slices)
        rows = [
            {
                "replica": self.replica,
                "model_name": key[0],
                "version_id": key[1],
                "arm": key[2],
                "slice": s,
                "tally": t.dump(),
                "streak": streak,
                "published": db_now(self.db.dialect),
            }
            for key, s, t, streak in items
        ]
        try:
            with self.db.begin() as conn:
                for row in rows:  # one statement per row: the upsert's SET refers to this row's values
                    stmt = ins.values(**row)
                    conn.execute(
                        stmt.on_conflict_do_update(
                            index_elements=["replica", "model_name", "version_id", "arm", "slice"],
                            set_={
                                "tally": stmt.excluded.tally,
                                "streak": stmt.excluded.streak,
                                "published": stmt.excluded.published,
                            },
                        )
                    )
                self._prune(conn)
        except Exception:
            self.failures += 1
            self.store.mark_dirty([(key, s) for key, s, _, _ in items])  # published next time: nothing lost
            raise
        self.published += len(rows)
        for key, s, _, _ in items:
            self._newest[key[0]] = max(self._newest.get(key[0], s), s)
        return len(rows)

    def _prune(self, conn: Connection) -> None:
        """Drop this replica's slices older than the store's retention (once a minute)."""
        now = time.monotonic()
        if now - self._last_prune < 60:
            return
        self._last_prune = now
        # Relative to the newest slice this replica has, so that a compressed clock prunes the same way.
        newest = max((s for s in self._newest.values()), default=None)
        if newest is None:
            return
        horizon = newest - int(self.store.retention.total_seconds()) // SLICE_SECONDS
        conn.execute(
            delete(metric_slices).where(metric_slices.c.replica == self.replica, metric_slices.c.slice < horizon)
        )


class MergedMetrics(MetricStore):
    """Every replica's published slices summed, plus this process's own live store (when it carries traffic)."""

    def __init__(
        self,
        db: Database,
        *,
        local: MetricStore | None = None,
        replica: str | None = None,
        retention: timedelta = timedelta(hours=6),
        min_interval: float = 0.5,
    ) -> None:
        super().__init__(retention=retention)
        self.db, self.local, self.replica = db, local, replica
        #: (replica, key, slice) -> that replica's tally; (replica, key) -> (published, streak)
        self._remote: dict[tuple[str, Key, int], Tally] = {}
        self._remote_streaks: dict[tuple[str, Key], tuple[float, int]] = {}
        self._cursor: float | None = None
        self._synced_at = 0.0
        self.min_interval = min_interval
        self._sync_lock = threading.Lock()

    def sync(self, *, force: bool = False) -> None:
        """Read what replicas published since the last sync and rebuild the merged slices it touched."""
        with self._sync_lock:
            if not force and time.monotonic() - self._synced_at < self.min_interval:
                return
            with self.db.connect() as conn:
                now = float(conn.execute(select(db_now(self.db.dialect))).scalar_one())
                # Publication times, not slice times: slices follow the serving clock (compressed in the demo
                # and in tests), publications the database's.
                since = (
                    self._cursor - REREAD_SECONDS if self._cursor is not None else now - self.retention.total_seconds()
                )
                q = select(metric_slices).where(metric_slices.c.published >= since)
                rows = conn.execute(q).mappings().all()
            touched: set[tuple[Key, int]] = set()
            for r in rows:
                if r["replica"] == self.replica and self.local is not None:
                    continue  # this replica's own traffic is read live from `local`
                key = (r["model_name"], r["version_id"], r["arm"])
                self._remote[(r["replica"], key, int(r["slice"]))] = Tally.load(r["tally"])
                base = (key[0], key[1], key[2].split(":", 1)[0])
                seen = self._remote_streaks.get((r["replica"], base))
                if seen is None or r["published"] >= seen[0]:
                    self._remote_streaks[(r["replica"], base)] = (float(r["published"]), int(r["streak"]))
                touched.add((key, int(r["slice"])))
            self._cursor = now
            self._synced_at = time.monotonic()
            if touched:
                self._rebuild(touched)

    def _rebuild(self, touched: set[tuple[Key, int]]) -> None:
        by_slice: dict[tuple[Key, int], Tally] = {}
        for (_replica, key, s), t in self._remote.items():
            if (key, s) in touched:
                by_slice.setdefault((key, s), Tally()).merge(t)
        with self._lock:
            for (key, s), t in by_slice.items():
                self._slices.setdefault(key, {})[s] = t
            streaks: dict[Key, int] = {}
            for (_replica, base), (_at, n) in self._remote_streaks.items():
                streaks[base] = max(streaks.get(base, 0), n)
            self._streaks = streaks

    # -- reads: the remote sum plus the live local store -------------------------------------------------
    def tally(self, model: str, version: str, arm: str, since: Any, until: Any = None, *, warmup: bool = True) -> Tally:
        self.sync()
        out = super().tally(model, version, arm, since, until, warmup=warmup)
        if self.local is not None:
            out.merge(self.local.tally(model, version, arm, since, until, warmup=warmup))
        return out

    def streak(self, model: str, version: str, arm: str) -> int:
        self.sync()
        mine = self.local.streak(model, version, arm) if self.local is not None else 0
        return max(super().streak(model, version, arm), mine)

    def keys(self) -> list[Key]:
        self.sync()
        return sorted(set(super().keys()) | set(self.local.keys() if self.local is not None else []))

    def series(self, model: str, version: str, arm: str, since: Any, until: Any = None) -> list[Any]:
        self.sync()
        merged: dict[Any, Tally] = {}
        for store in [MetricStore.series(self, model, version, arm, since, until)] + (
            [self.local.series(model, version, arm, since, until)] if self.local is not None else []
        ):
            for at, t in store:
                merged.setdefault(at, Tally()).merge(t)
        return sorted(merged.items())

    def record_event(self, model: str, version: str, arm: str, at: Any, error: str) -> None:
        # Events seen by this process (an instance it runs crashed) go to the live store, which is published.
        if self.local is not None:
            self.local.record_event(model, version, arm, at, error)
        else:
            super().record_event(model, version, arm, at, error)
