"""What one `tether serve` process does to work beside others on shared engines (``--role``).

- ``all`` (the default): the gateway, its instances, the controller, the drift watch and the LLM evaluation
  loop in one process. On the embedded default (SQLite) that is all there is: in-process metric windows and
  no lease, exactly as before. On PostgreSQL several ``all`` processes may share the database: they publish
  their metric windows and elect one leader as below.
- ``gateway``: the data plane and its instances, the control API and the dashboard; publishes its metric
  windows every ``publish_seconds``; never decides.
- ``controller``: the control API and the dashboard, and, when it holds the leader lease, the rollout
  controller, the drift watch and the LLM evaluation loop, judging the merged windows of every replica. It
  starts no instances.

Routing tables are re-read on every PostgreSQL notification and by a poll; when the database cannot be read
the replica keeps serving on the last tables it read (fail static) and says so in ``/healthz`` and
``/metrics`` until a read succeeds again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy.dialects import postgresql, sqlite

from tether.audit.bridge import Bridge
from tether.audit.log import AuditLog
from tether.audit.logset import MAIN
from tether.audit.ship import Shipper
from tether.core import loop as event_loop
from tether.core.clock import SystemClock
from tether.core.errors import InvalidInputError
from tether.rollout.leader import Lease, holder_name
from tether.serving.aggregates import MAX_SKEW_SECONDS, MergedMetrics, Publisher, clock_skew
from tether.serving.listen import ChangeListener
from tether.serving.window import MetricStore
from tether.store.database import db_now
from tether.store.tables import replicas

if TYPE_CHECKING:
    from tether.api.server import Server

log = logging.getLogger("tether.replica")
ROLES = ("all", "gateway", "controller")
NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


class Replica:
    def __init__(
        self,
        server: Server,
        *,
        role: str = "all",
        name: str | None = None,
        lease_ttl: float = 6.0,
        publish_seconds: float = 2.0,
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        self.server, self.role = server, role
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        if not NAME.fullmatch(self.name):
            raise InvalidInputError(
                f"replica name {self.name!r} must be 1 to 100 letters, digits, '.', '_' or '-'",
                hint="tether serve --replica gw-a",
            )
        self.db = server.registry.store.db
        self.shared = role != "all" or self.db.dialect == "postgresql"
        self.serves = role in ("all", "gateway")  # runs instances, profiles, grades
        self.decides = role in ("all", "controller")  # may run the controller, the watch, the LLM evaluation loop
        self.publish_seconds = publish_seconds
        self.lease = (
            Lease(self.db, holder=holder_name(self.name), ttl=lease_ttl) if self.shared and self.decides else None
        )
        self.publisher = Publisher(self.db, server.metrics, self.name) if self.shared and self.serves else None
        self.evidence: MetricStore = (
            MergedMetrics(self.db, local=server.metrics if self.serves else None, replica=self.name)
            if self.shared
            else server.metrics
        )
        self.listener: ChangeListener | None = None
        self.started = time.time()
        self.stale_since: float | None = None
        self.refresh_failures = 0
        self.last_refresh_error: str | None = None
        self.publish_failures = 0
        self.clock_skew: float | None = None
        settings = server.settings
        #: Checked every publication (a ping): what /healthz and /metrics say of the shared Redis.
        self.redis: Any = None
        if settings.redis_url:
            from tether.store.redis import connect

            self.redis = connect(settings.redis_url)
        self.redis_error: str | None = None
        #: Where this replica's own audit log lives (None: the main log, as on the embedded default).
        self.audit_root = settings.home / "audit" / "replicas" / self.name if self.shared else None
        self._decisions: tuple[AuditLog, Bridge] | None = None
        blobs = server.registry.store.blobs
        #: Sealed segments and checkpoints go to the shared blob store when it is not this disk (docs/scale.md).
        self.ships = self.shared and not blobs.local
        self.shipper = Shipper(blobs, self.audit_root, self.name) if self.ships and self.audit_root else None
        self._main_shipper: Shipper | None = None
        self.ship_failures = 0

    @property
    def fence(self) -> Any:
        return self.lease.fence if self.lease is not None else None

    @property
    def leads(self) -> bool:
        """Whether this process runs the deciding loops now."""
        if not self.decides:
            return False
        return self.lease is None or self.lease.leader

    # -- routing: listen, poll, fail static -------------------------------------------------------------------
    def start_listening(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.db.dialect != "postgresql":
            return

        def changed(table: str | None) -> None:
            # Whatever changed, the counters say what to read (`tether.api.changes`).
            loop.call_soon_threadsafe(self.server.refresh_safely)

        self.listener = ChangeListener(self.db.url, changed)
        self.listener.start()

    def refreshed(self, error: BaseException | None) -> None:
        if error is None:
            if self.stale_since is not None:
                log.warning("routing tables readable again after %.1f s", time.time() - self.stale_since)
            self.stale_since = None
            return
        self.refresh_failures += 1
        self.last_refresh_error = f"{type(error).__name__}: {error}"
        if self.stale_since is None:
            self.stale_since = time.time()
            log.error("cannot read the routing tables (%s): serving on the last tables read", self.last_refresh_error)

    # -- loops --------------------------------------------------------------------------------------------------
    async def lease_loop(self) -> None:
        if self.lease is None:
            return
        lease = self.lease
        while True:
            was = lease.leader
            try:
                await asyncio.to_thread(lease.hold)
            except Exception as e:
                lease._lost(f"the database is unreachable: {e}")
            if lease.leader != was:
                log.warning("%s is %s", self.name, "the leader" if lease.leader else "a standby")
            await asyncio.sleep(lease.ttl / 3)

    async def publish_loop(self) -> None:
        while True:
            await asyncio.sleep(self.publish_seconds)
            await self.publish()

    def check_clock(self) -> None:
        """Measure this replica's clock against the database's; withhold its evidence while it is too far off.
        Only a wall clock is checked: a test's manual clock or the demo's compressed one is off on purpose."""
        if self.publisher is None or not isinstance(self.server.clock, SystemClock):
            return
        self.clock_skew = clock_skew(self.db, self.server.clock)
        skewed = abs(self.clock_skew) > MAX_SKEW_SECONDS
        if skewed != self.publisher.withhold:
            if skewed:
                log.error(
                    "this replica's clock is %+.1f s off the database's (more than %.0f s): its metric windows are "
                    "withheld from the rollout evidence until it is set right (it keeps serving)",
                    self.clock_skew,
                    MAX_SKEW_SECONDS,
                )
            else:
                log.warning("clock back within %.0f s of the database's: publishing evidence again", MAX_SKEW_SECONDS)
        self.publisher.withhold = skewed

    def check_redis(self) -> None:
        if self.redis is None:
            return
        try:
            self.redis.ping()
        except Exception as e:
            if self.redis_error is None:
                log.error("Redis unreachable (%s): %s", self.server.settings.redis_url, e)
            self.redis_error = f"{type(e).__name__}: {e}"
            return
        if self.redis_error is not None:
            log.warning("Redis reachable again")
        self.redis_error = None

    def redis_errors(self) -> dict[str, int]:
        """Operations on the shared Redis that failed, per part (each fell back as docs/scale.md states)."""
        llm = self.server.llm
        out = {
            "budgets": int(getattr(llm.budgets, "fallbacks", 0)),
            "exact_cache": int(getattr(llm.exact, "errors", 0)),
            "semantic_cache": int(getattr(llm.semantic, "errors", 0)),
            "traces": int(getattr(self.server.gateway.traces, "failures", 0)),
        }
        return out

    async def publish(self) -> None:
        await asyncio.to_thread(self.check_redis)
        try:
            if self.publisher is not None:
                await asyncio.to_thread(self.check_clock)
                await asyncio.to_thread(self.publisher.publish)
            if self.shared:  # one process on the embedded default has no replica row (its log is the main one)
                await asyncio.to_thread(self._heartbeat)
            if self.shipper is not None:
                await asyncio.to_thread(self.shipper.ship)
        except Exception as e:
            self.publish_failures += 1
            log.warning("could not publish metric windows (kept, retried): %s", e)

    def _heartbeat(self) -> None:
        ins = (postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert)(replicas)
        audit = self.server.audit
        info = {
            "leader": self.leads,
            "url": self.server.url,
            "stale_since": self.stale_since,
            "clock_skew_seconds": self.clock_skew,
            # What `tether audit verify` checks this replica's log against (a log that lost its newest segments).
            "audit_size": audit.log.tree.size if audit is not None else 0,
        }
        stmt = ins.values(name=self.name, role=self.role, started=self.started, seen=db_now(self.db.dialect), info=info)
        with self.db.begin() as conn:
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["name"],
                    set_={"seen": stmt.excluded.seen, "info": stmt.excluded.info, "role": stmt.excluded.role},
                )
            )

    async def decisions_loop(self, seconds: float = 2.0) -> None:
        """While this process leads: copy new decision rows onto the main audit log and seal it."""
        while True:
            await asyncio.sleep(seconds)
            try:
                await asyncio.to_thread(self._decide_trail)
            except Exception:
                log.exception("copying decisions onto the audit trail failed (retried)")

    def _decide_trail(self) -> None:
        if not self.leads:
            self._close_decisions()  # a standby holds no writer lock: the next leader on this host needs it
            return
        if self._decisions is None:
            trail = AuditLog(self.server.settings)
            if not trail.writer:  # the previous leader on this host has not let go yet
                trail.close()
                return
            self._decisions = (trail, Bridge(self.server.registry, trail))
        trail, bridge = self._decisions
        if bridge.sync():
            trail.seal()
        if self.ships:
            if self._main_shipper is None:
                self._main_shipper = Shipper(self.server.registry.store.blobs, trail.root, MAIN)
            try:
                self._main_shipper.ship()
            except Exception:
                self.ship_failures += 1
                raise

    def _close_decisions(self) -> None:
        if self._decisions is not None:
            trail, bridge = self._decisions
            with contextlib.suppress(Exception):
                if self.leads:
                    bridge.sync()
                trail.seal()
            trail.close()
            self._decisions = None

    async def close(self) -> None:
        await asyncio.to_thread(self._close_decisions)
        if self.publisher is not None:
            try:
                await self.publish()  # the last slices: a clean stop loses nothing
            except Exception:
                log.warning("last publication failed", exc_info=True)
        if self.lease is not None:
            await asyncio.to_thread(self.lease.release)
        if self.listener is not None:
            await asyncio.to_thread(self.listener.stop)

    # -- what health and metrics say ---------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "replica": self.name, "event_loop": event_loop.name()}
        if self.lease is not None:
            out["leader"] = self.lease.leader
        if self.stale_since is not None:
            out["routing"] = {
                "state": "stale",
                "since_seconds": round(time.time() - self.stale_since, 1),
                "error": self.last_refresh_error,
                "serving": "the last routing tables read (fail static)",
            }
        if self.listener is not None:
            out["listening"] = self.listener.connected
        if self.redis_error is not None:
            refuse = self.server.settings.budget_fallback == "refuse"
            out["redis"] = {
                "state": "unreachable",
                "error": self.redis_error,
                "budgets": "budgeted LLM requests refused (503)"
                if refuse
                else f"each budget held to 1/{self.server.settings.gateway_replicas} on this replica",
                "caches": "misses (answers come from the model)",
            }
        pool = self.server.runtime.pool
        if pool is not None and self.serves:
            out["pool"] = pool.health()
        if self.publisher is not None and self.publisher.withhold:
            out["clock"] = {
                "state": "skewed",
                "skew_seconds": round(self.clock_skew or 0.0, 3),
                "evidence": f"withheld: more than {MAX_SKEW_SECONDS:g} s off the database's clock",
            }
        return out

    def prometheus(self) -> list[str]:
        lines = [
            "# TYPE tether_routing_stale gauge",
            f"tether_routing_stale {int(self.stale_since is not None)}",
            "# TYPE tether_routing_refresh_failures_total counter",
            f"tether_routing_refresh_failures_total {self.refresh_failures}",
            "# TYPE tether_publish_failures_total counter",
            f"tether_publish_failures_total {self.publish_failures}",
        ]
        if self.lease is not None:
            lines += ["# TYPE tether_leader gauge", f"tether_leader {int(self.lease.leader)}"]
            lines += [
                "# TYPE tether_leader_takeovers_total counter",
                f"tether_leader_takeovers_total {self.lease.takeovers}",
            ]
        if self.redis is not None:
            lines += ["# TYPE tether_redis_reachable gauge", f"tether_redis_reachable {int(self.redis_error is None)}"]
            lines.append("# TYPE tether_redis_errors_total counter")
            lines += [f'tether_redis_errors_total{{part="{k}"}} {v}' for k, v in self.redis_errors().items()]
        if self.publisher is not None:
            lines += [
                "# TYPE tether_evidence_withheld gauge",
                f"tether_evidence_withheld {int(self.publisher.withhold)}",
                "# TYPE tether_evidence_withheld_slices_total counter",
                f"tether_evidence_withheld_slices_total {self.publisher.withheld}",
            ]
            if self.clock_skew is not None:
                lines += ["# TYPE tether_clock_skew_seconds gauge", f"tether_clock_skew_seconds {self.clock_skew:.4f}"]
        if self.listener is not None:
            lines += ["# TYPE tether_listen_connected gauge", f"tether_listen_connected {int(self.listener.connected)}"]
        pool = self.server.runtime.pool
        if pool is not None and self.serves:
            lines += pool.prometheus()
        gw = self.server.gateway
        lines += ["# TYPE tether_cold_loads_total counter"]
        lines += [f'tether_cold_loads_total{{model="{m}"}} {n}' for m, n in sorted(gw.cold_loads.items())]
        if gw.cold_load_seconds.count:
            lines += ["# TYPE tether_cold_load_seconds summary"]
            lines += [
                f'tether_cold_load_seconds{{quantile="{q}"}} {gw.cold_load_seconds.quantile(q):.6f}'
                for q in (0.5, 0.99)
            ]
            lines.append(f"tether_cold_load_seconds_count {gw.cold_load_seconds.count}")
        return lines
