"""`tether serve`: the gateway, the instances and the rollout controller in one process (``role="all"``), or
one part of them beside other processes on shared engines (see `tether.api.replica`).

Background loops: every ``refresh_seconds`` the routing tables and API keys are re-read and instances are
reconciled (every version a table names is started; versions no table names are stopped); every
``tick_seconds`` the controller evaluates active rollouts (in a worker thread: it talks to the database);
the live profiler turns accepted requests into feature profiles every quarter second, and every second the
drift watch checks each deployed model whose ``check_seconds`` have passed, records anomalies and acts on
them (webhook, shadow routing to a diagnostic version, hold or roll back a running rollout).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import Any

from aiohttp import web
from aiohttp_asgi import ASGIResource

from tether.api.changes import ChangeReader, Delta
from tether.api.drift import DriftActions
from tether.api.llm_evals import LLMEvals
from tether.api.replica import Replica
from tether.audit.bridge import Bridge
from tether.audit.log import AuditLog
from tether.audit.sink import AuditSink
from tether.core.clock import Clock, SystemClock
from tether.core.settings import Settings
from tether.llm.gateway import LLMGateway
from tether.monitor.config import MonitorConfig
from tether.monitor.live import LiveProfiler
from tether.monitor.llm_config import LLMEvalConfig
from tether.monitor.watch import Watch
from tether.registry import Registry
from tether.registry.catalog import Live
from tether.rollout.controller import Controller
from tether.serving.auth import KeyRing
from tether.serving.gateway import Gateway
from tether.serving.runtime import CompositeRuntime, LocalRuntime, UrlRuntime
from tether.serving.window import MetricStore

DEFAULT_LLM_EVALS = LLMEvalConfig()
DEFAULT_MONITOR = MonitorConfig()
#: Instances are reconciled with the routing tables when those change, and this often regardless (retries).
RECONCILE_SECONDS = 5.0
#: A model counts as over an LLM budget this long after a request of it was last refused for one.
OVER_BUDGET_SECONDS = 900.0
log = logging.getLogger("tether.serve")


class Server:
    def __init__(
        self,
        settings: Settings,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        auth: bool = True,
        tick_seconds: float = 5.0,
        refresh_seconds: float = 0.5,
        clock: Clock | None = None,
        role: str = "all",
        replica: str | None = None,
        lease_ttl: float = 6.0,
        publish_seconds: float = 2.0,
    ) -> None:
        self.settings = settings
        self.host, self.port = host, port
        self.tick_seconds, self.refresh_seconds = tick_seconds, refresh_seconds
        self.clock = clock or SystemClock()
        self.registry = Registry.open(settings, clock=self.clock)
        self.metrics = MetricStore()
        self.replica = Replica(self, role=role, name=replica, lease_ttl=lease_ttl, publish_seconds=publish_seconds)
        ray = None
        if settings.ray_address:
            from tether.serving.ray_runtime import RayRuntime

            ray = RayRuntime(settings, on_crash=self._crashed, model_of=lambda vid: self.registry.get(vid).name)
        #: Versions that run in an instance of their own (canaries, shadows, embedded LLM engines), recomputed when
        #: the routing tables change; every other version is served by the pool.
        self._alone: set[str] = set()
        self._roles: dict[str, set[str]] = {}  # model -> its versions that run alone for their role
        self._flagged: dict[str, bool] = {}  # version -> alone (True) or pooled (False), as flagged by a person
        self._modules: dict[str, str] = {}
        self._endpoints: dict[str, tuple[str, str, str]] = {}
        self._reconciled = 0.0
        self.changes = ChangeReader(self.registry.store.db)
        pool = None
        if settings.pool_workers > 0 and not settings.ray_address:
            from tether.serving.pool import PoolRuntime

            pool = PoolRuntime(
                settings,
                workers=settings.pool_workers,
                budget_bytes=settings.pool_budget_bytes,
                idle_seconds=settings.pool_idle_seconds,
                on_slot_down=self._slot_down,
            )
        self.runtime = CompositeRuntime(
            LocalRuntime(
                settings,
                on_crash=self._crashed,
                module_for=self._worker_module,
                max_starting=settings.instance_starts,
            ),
            UrlRuntime(),
            ray,
            on_ray=lambda vid: self._worker_module(vid) == "tether.serving.worker",
            pool=pool,
            isolated=self._is_alone,
        )
        self.keys = KeyRing(self.registry.store.db, self.clock) if auth else None
        self.profiler = LiveProfiler(self.registry, clock=self.clock)
        self.audit: AuditSink | None = None
        if settings.audit:
            # Scaled out, each replica writes its own log of what it served, and the leader alone copies the
            # decisions onto the main log (`Replica.decisions_loop`): nothing is on the trail twice.
            log = AuditLog(settings, root=self.replica.audit_root)
            bridge = Bridge(self.registry, log) if log.writer and not self.replica.shared else None
            self.audit = AuditSink(
                log,
                policy=settings.audit_payload,
                redact=tuple(settings.audit_redact),
                before_seal=bridge.sync if bridge is not None else None,
            )
        self.watch = Watch(self.registry, clock=self.clock)
        self.drift = DriftActions(self)
        self.gateway = Gateway(
            self.registry,
            self.metrics,
            self.runtime,
            keys=self.keys,
            clock=self.clock,
            profiler=self.profiler,
            audit=self.audit,
        )
        if settings.redis_url:
            from tether.serving.traces import SharedTraceMemory
            from tether.store.redis import connect

            self.gateway.traces = SharedTraceMemory(
                self.gateway.traces.capacity, connect(settings.redis_url), prefix=f"{settings.redis_namespace}:trace:"
            )
        self.gateway.health_extra = self.replica.health
        self.gateway.metrics_extra = self.replica.prometheus
        # The controller judges the evidence of every replica (this process's alone on the embedded default);
        # when scaled out its automatic decisions, and the watches' anomalies, are fenced by the leader lease.
        self.controller = Controller(self.registry, self.replica.evidence, clock=self.clock, fence=self.replica.fence)
        self.watch.fence = self.replica.fence
        self.llm = LLMGateway(self.gateway, evals=self._llm_evals)
        self.llm_evals = LLMEvals(self)
        self.llm_evals.watch.watch.fence = self.replica.fence
        # The control plane and the dashboard answer what no data-plane route matched (registered last).
        from tether.api.control import control_app, mounted

        self.control = control_app(self)
        self.gateway.app.router.register_resource(ASGIResource(mounted(self.control), root_path="/"))
        self._loop: asyncio.AbstractEventLoop | None = None
        self.monitor_configs: dict[str, MonitorConfig] = {}
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._audit_tasks: list[asyncio.Task[None]] = []
        self._warm: asyncio.Future[None] | None = None
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._stopping: dict[str, asyncio.Future[None]] = {}
        self._settling: asyncio.Future[Any] | None = None
        self.slot_deaths = 0
        self._budget_seen: dict[str, tuple[int, float]] = {}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _worker_module(self, version_id: str) -> str:
        """LLM versions with a local backend run the embedded engine's OpenAI-compatible worker (read once per
        version: versions are immutable, and the runtime asks on the request path)."""
        module = self._modules.get(version_id)
        if module is None:
            mv = self.registry.get(version_id)
            local_llm = mv.flavor == "llm" and mv.flavor_config["spec"]["backend"]["kind"] == "local"
            module = self._modules[version_id] = "tether.llm.worker" if local_llm else "tether.serving.worker"
        return module

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.llm.start()
        self.refresh()  # at start a database that cannot be read is an error, not a degraded mode
        self.replica.start_listening(self._loop)
        if self.replica.lease is not None:
            await asyncio.to_thread(self.replica.lease.hold)
        if self.keys is not None:
            self.keys.refresh()
        self._runner = web.AppRunner(self.gateway.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        if self.replica.serves and self.runtime.pool is not None:
            self.runtime.pool.start()
        if self.replica.serves and self.llm.llm_models:
            self.gateway.warming.add("llm warm-up")
            self._warm = asyncio.ensure_future(self._warm_up())
        self._tasks = [
            asyncio.create_task(self._refresh_loop()),
            asyncio.create_task(self.llm.run()),
            asyncio.create_task(self.gateway.traces.run()),
        ]
        if self.replica.serves:
            self._tasks += [asyncio.create_task(self.profiler.run()), asyncio.create_task(self.llm.grading.run())]
        if self.replica.decides:
            self._tasks += [
                asyncio.create_task(self._control_loop()),
                asyncio.create_task(self.drift.loop()),
                asyncio.create_task(self.llm_evals.loop()),
            ]
        if self.replica.shared and self.replica.decides and self.settings.audit:
            self._tasks.append(asyncio.create_task(self.replica.decisions_loop()))
        if self.replica.shared or self.replica.redis is not None:
            self._tasks.append(asyncio.create_task(self.replica.publish_loop()))  # with the Redis check
        if self.replica.shared:
            self._tasks.append(asyncio.create_task(self.replica.lease_loop()))
        if self.audit is not None:
            # Kept apart: it must outlive the requests in flight at shutdown, whose records it seals.
            self._audit_tasks = [asyncio.create_task(self.audit.seal_every(2.0))]

    def refresh(self, *, full: bool = False) -> None:
        """Read what changed in the store (one query when nothing did: `tether.api.changes`) and apply it."""
        self.apply_changes(self.changes.read(full=full))

    async def refresh_async(self) -> None:
        """`refresh` with the database reads in a worker thread; only applying runs on the event loop."""
        self.apply_changes(await asyncio.to_thread(self.changes.read))

    def apply_changes(self, delta: Delta) -> None:
        """Apply what changed: routing tables, endpoints, monitor settings, placements, keys, budgets; then start
        and stop instances if what is served changed (and every `RECONCILE_SECONDS` regardless, to retry)."""
        moved: set[str] = set()
        for vid, (name, flavor, config) in delta.versions.items():
            local_llm = flavor == "llm" and config.get("spec", {}).get("backend", {}).get("kind") == "local"
            self._modules.setdefault(vid, "tether.llm.worker" if local_llm else "tether.serving.worker")
            if flavor != "llm":
                self.llm.not_llm(vid, name)
        if delta.routing is not None:
            gw = self.gateway
            changed = {m: t for m, (t, rev) in delta.routing.items() if gw.revisions.get(m) != rev}
            gone = set(gw.desired) - set(delta.routing) if delta.full else delta.retired & set(gw.desired)
            moved = gw.set_desired(changed, gone, {m: rev for m, (_t, rev) in delta.routing.items()})
            if changed or gone:
                self._routing_changed(set(changed) | gone)
        if delta.monitor is not None or (delta.routing and delta.full):
            self.apply_monitor_configs(delta.monitor or {}, full=delta.full)
        if delta.placements is not None:
            if delta.full:
                self._flagged.clear()
            self._flagged.update(delta.placements)
        if moved or delta.budgets is not None:
            dropped = self.llm.refresh(limits=delta.budgets)
            if dropped:
                # The version behind an alias changed: its cache entries are gone, and that is on the audit trail.
                self.llm._spawn(self.llm.audit_invalidation(dropped, "no routing table serves this version any more"))
        if delta.endpoints is not None or moved:
            if delta.endpoints is not None:
                self._endpoints = delta.endpoints
            self.runtime.remote.update({**self.llm.remote_endpoints(), **self._endpoints})
        if delta.keys and self.keys is not None:
            self.keys.refresh()
        self.changes.applied(delta)
        if not self.replica.serves:
            return  # a controller runs no instances
        now = time.monotonic()
        if not delta.empty or now - self._reconciled >= RECONCILE_SECONDS:
            self._reconciled = now
            self.reconcile()

    def _routing_changed(self, models: set[str]) -> None:
        """Routing of ``models`` changed: which versions must run alone is recomputed for them only."""
        for m in models:
            for vid in self._roles.pop(m, ()):
                self._alone.discard(vid)
            t = self.gateway.desired.get(m)
            if t is None:
                continue
            alone = {v for v in (t.canary, t.shadow) if v and v != t.champion}
            self._roles[m] = alone
            self._alone.update(alone)

    def apply_monitor_configs(self, configs: dict[str, MonitorConfig], *, full: bool = False) -> None:
        """Stored monitor settings that changed (all of them after a full read); models without any use the
        defaults (one shared object: building a default per model per refresh was 88% of a refresh at 1,000)."""
        if full:
            for model in set(self.monitor_configs) - set(configs):
                del self.monitor_configs[model]
                self.profiler.configure(model, DEFAULT_MONITOR)
        for model, config in configs.items():
            if self.monitor_configs.get(model) != config:
                self.monitor_configs[model] = config
                self.profiler.configure(model, config)

    def monitor_config(self, model: str) -> MonitorConfig:
        """A model's monitor settings as last read (on the event loop: no I/O)."""
        return self.monitor_configs.get(model, DEFAULT_MONITOR)

    def reconcile(self) -> None:
        """Start what the routing tables name (each where it belongs: alone or in the pool), stop what none names,
        and move versions that changed side once their new home is ready. Runs when what is served changed (and
        every few seconds to retry what failed): at a thousand models it is a few milliseconds."""
        wanted = self.gateway.serving_versions()
        for vid in wanted:
            if not self.runtime.ready(vid) and vid not in self._pending:
                task: asyncio.Future[Any] = asyncio.ensure_future(self.runtime.ensure(vid))
                self._pending[vid] = task
                task.add_done_callback(functools.partial(self._started, vid))
        for inst in self.runtime.running():
            if inst.version_id not in wanted and inst.version_id not in self._stopping:
                stopping: asyncio.Future[None] = asyncio.ensure_future(self.runtime.stop(inst.version_id))
                self._stopping[inst.version_id] = stopping
                stopping.add_done_callback(functools.partial(_discard, self._stopping, inst.version_id))
        if self._settling is None or self._settling.done():
            self._settling = asyncio.ensure_future(self.runtime.settle())

    def _is_alone(self, version_id: str) -> bool:
        """Whether a version runs in an instance of its own: flagged so (`tether serve-alone`), or a canary or a
        shadow and not flagged to be pooled, or an embedded LLM engine (which the pool cannot run)."""
        flag = self._flagged.get(version_id)
        if flag is not None:
            return flag or self._worker_module(version_id) != "tether.serving.worker"
        return version_id in self._alone or self._worker_module(version_id) != "tether.serving.worker"

    def refresh_safely(self) -> None:
        """`refresh`, keeping the last tables when the database cannot be read (fail static; counted, reported)."""
        try:
            self.refresh()
        except Exception as e:
            self.replica.refreshed(e)
        else:
            self.replica.refreshed(None)

    def refresh_soon(self) -> None:
        """Re-read the routing tables on the event loop now (from a control-plane route's worker thread)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.refresh)

    def refresh_keys_soon(self) -> None:
        if self._loop is not None and self.keys is not None:
            self._loop.call_soon_threadsafe(self.keys.refresh)

    def _started(self, vid: str, task: asyncio.Future[Any]) -> None:
        self._pending.pop(vid, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("instance for %s failed to start: %s", vid[:12], task.exception())
        elif not task.cancelled() and self.gateway.holding:
            # A version became ready: models waiting for it switch now, not at the next refresh.
            moved = self.gateway.apply()
            if moved:
                self.llm_refresh_after(moved)

    def llm_refresh_after(self, moved: set[str]) -> None:
        """The effective tables of ``moved`` changed outside a refresh: the LLM gateway follows."""
        dropped = self.llm.refresh()
        if dropped:
            self.llm._spawn(self.llm.audit_invalidation(dropped, "no routing table serves this version any more"))

    def live(self) -> Live:
        """What only this server knows for the fleet's health filters: models whose champion cannot answer, and
        models whose LLM requests were refused for a budget in the last `OVER_BUDGET_SECONDS`."""
        _, unready = self.gateway.readiness()
        now = time.monotonic()
        for (model, reason), n in list(self.gateway.rejected.items()):
            if reason == "budget" and self._budget_seen.get(model, (0, 0.0))[0] != n:
                self._budget_seen[model] = (n, now)
        over = {m for m, (_n, at) in self._budget_seen.items() if now - at < OVER_BUDGET_SECONDS}
        return Live(unready=set(unready), over_budget=over)

    def _slot_down(self, slot: int) -> None:
        """A pooled worker died: the infrastructure's failure, counted and logged, never a version's crash."""
        self.slot_deaths += 1
        self.gateway.rejected[("-", "worker_down")] += 1

    async def _warm_up(self) -> None:
        try:
            await asyncio.to_thread(self.llm.warm)
        finally:
            self.gateway.warming.discard("llm warm-up")

    async def wait_ready(self, timeout: float = 120.0) -> None:
        """Until every version the routing tables name answers from a ready instance, every table is in effect
        and the warm-up is done."""
        async with asyncio.timeout(timeout):
            while True:
                self.refresh()
                wanted = {v for t in self.gateway.desired.values() for v in (t.champion, t.canary, t.shadow) if v}
                if all(self.runtime.ready(v) for v in wanted) and not self.gateway.holding and not self.gateway.warming:
                    return
                await asyncio.sleep(0.1)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.refresh_async()
            except Exception as e:  # fail static: the last tables read keep serving
                self.replica.refreshed(e)
            else:
                self.replica.refreshed(None)

    async def _control_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick_seconds)
            if not self.replica.leads:
                continue
            try:
                for event in await loop.run_in_executor(None, self.controller.tick):
                    log.warning("rollout %s: %s (%s)", event.rollout_id, event.kind, event.reason)
                self.refresh()
            except Exception:
                log.exception("controller tick failed")

    # -- drift watch ---------------------------------------------------------------------------------------
    def _llm_evals(self, model: str) -> LLMEvalConfig:
        """The LLM evaluation settings of a model as last read (`sync_monitor_configs`; on the event loop: no I/O)."""
        config = self.monitor_configs.get(model)
        return config.llm if config is not None else DEFAULT_LLM_EVALS

    def _crashed(self, version_id: str) -> None:
        now = self.clock.now()
        for model, t in self.gateway.tables.items():
            for arm, vid in (("champion", t.champion), ("canary", t.canary), ("shadow", t.shadow)):
                if vid == version_id:
                    self.metrics.record_event(model, version_id, arm, now, "crash")

    async def stop(self) -> None:
        if self._warm is not None and not self._warm.done():  # a thread cannot be cancelled: let it finish
            await asyncio.wait([self._warm], timeout=60)
        for task in [*self._tasks, *self._pending.values()]:  # loops, and instance starts not yet under way
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):  # the last partial slices: profiled traffic is not dropped
            await asyncio.to_thread(self.profiler.flush, close_all=True)
        if self.drift.notifications:
            await asyncio.wait(self.drift.notifications, timeout=5)
        if self._runner is not None:
            await self._runner.cleanup()  # requests in flight finish, their audit records still being written
        for task in self._audit_tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.llm.close()  # background calibration calls, the last ledger rows
        if self.audit is not None:
            await self.audit.close()  # seals what the write-ahead log holds
        with contextlib.suppress(Exception):
            await self.replica.close()  # the last metric slices published, the lease given up
        await self.runtime.close()
        self.registry.close()

    async def run_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()


def _discard(mapping: dict[str, Any], key: str, _future: object) -> None:
    mapping.pop(key, None)
