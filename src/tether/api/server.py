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
from typing import Any

from aiohttp import web
from aiohttp_asgi import ASGIResource

from tether.api.llm_evals import LLMEvals
from tether.api.replica import Replica
from tether.audit.bridge import Bridge
from tether.audit.log import AuditLog
from tether.audit.sink import AuditSink
from tether.core.clock import Clock, SystemClock
from tether.core.errors import TetherError
from tether.core.settings import Settings
from tether.llm.gateway import LLMGateway
from tether.monitor.config import MonitorConfig, ShadowAction, read_configs
from tether.monitor.live import LiveProfiler
from tether.monitor.llm_config import LLMEvalConfig
from tether.monitor.notify import post_json
from tether.monitor.watch import Anomaly, Watch
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.serving import table as routing_table
from tether.serving.auth import KeyRing
from tether.serving.gateway import Gateway
from tether.serving.runtime import CompositeRuntime, LocalRuntime, UrlRuntime
from tether.serving.window import MetricStore

DEFAULT_LLM_EVALS = LLMEvalConfig()
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
        self.runtime = CompositeRuntime(
            LocalRuntime(settings, on_crash=self._crashed, module_for=self._worker_module),
            UrlRuntime(),
            ray,
            on_ray=lambda vid: self._worker_module(vid) == "tether.serving.worker",
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
        self._last_check: dict[str, float] = {}
        self.notifications: set[asyncio.Task[bool]] = set()
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._audit_tasks: list[asyncio.Task[None]] = []
        self._warm: asyncio.Future[None] | None = None
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._stopping: dict[str, asyncio.Future[None]] = {}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _worker_module(self, version_id: str) -> str:
        """LLM versions with a local backend run the embedded engine's OpenAI-compatible worker."""
        mv = self.registry.get(version_id)
        if mv.flavor == "llm" and mv.flavor_config["spec"]["backend"]["kind"] == "local":
            return "tether.llm.worker"
        return "tether.serving.worker"

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
                asyncio.create_task(self._monitor_loop()),
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

    def refresh(self) -> None:
        self.gateway.refresh_routing()
        self.sync_monitor_configs()
        dropped = self.llm.refresh()
        if dropped:
            # The version behind an alias changed: its cache entries are gone, and that is on the audit trail.
            self.llm._spawn(self.llm.audit_invalidation(dropped, "no routing table serves this version any more"))
        with self.registry.store.db.connect() as conn:
            endpoints = routing_table.read_endpoints(conn)
        self.runtime.remote.update({**self.llm.remote_endpoints(), **endpoints})
        if not self.replica.serves:
            return  # a controller runs no instances
        wanted = {v for t in self.gateway.tables.values() for v in (t.champion, t.canary, t.shadow) if v}
        for vid in wanted:
            if self.runtime.instance(vid) is None and vid not in self._pending:
                task: asyncio.Future[Any] = asyncio.ensure_future(self.runtime.ensure(vid))
                self._pending[vid] = task
                task.add_done_callback(functools.partial(self._started, vid))
        for inst in self.runtime.running():
            if inst.version_id not in wanted and inst.version_id not in self._stopping:
                stopping: asyncio.Future[None] = asyncio.ensure_future(self.runtime.stop(inst.version_id))
                self._stopping[inst.version_id] = stopping
                stopping.add_done_callback(functools.partial(_discard, self._stopping, inst.version_id))

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

    async def _warm_up(self) -> None:
        try:
            await asyncio.to_thread(self.llm.warm)
        finally:
            self.gateway.warming.discard("llm warm-up")

    async def wait_ready(self, timeout: float = 120.0) -> None:
        """Until every version the routing tables name has a running instance and the warm-up is done."""
        async with asyncio.timeout(timeout):
            while True:
                self.refresh()
                wanted = {v for t in self.gateway.tables.values() for v in (t.champion, t.canary, t.shadow) if v}
                if all(self.runtime.instance(v) is not None for v in wanted) and not self.gateway.warming:
                    return
                await asyncio.sleep(0.1)

    async def _refresh_loop(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(self.refresh_seconds)
            self.refresh_safely()
            n += 1
            if self.keys is not None and n % 10 == 0:
                with contextlib.suppress(Exception):  # the last keys read stay valid while the database is away
                    self.keys.refresh()

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
    async def _monitor_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            if not self.replica.leads:
                continue
            try:
                found = await loop.run_in_executor(None, self.monitor_tick)
                for model, new in found.items():
                    self.act(model, new)
            except Exception:
                log.exception("drift check failed")

    def sync_monitor_configs(self) -> None:
        """Read the stored monitor settings of every model this replica routes (at start, before it serves, and
        with every routing refresh), so the drift profiler and the LLM sampler apply them on every replica from
        the first request. They were read only by the leader's monitor loop: until its first tick, and on every
        replica that did not lead, a model's LLM requests were sampled and graded with the defaults, even for a
        model whose evaluation was turned off (``tests/llm/test_monitor_sync.py``)."""
        models = sorted(self.gateway.tables)
        if not models:
            return
        for model, config in read_configs(self.registry, models).items():
            if self.monitor_configs.get(model) != config:
                self.monitor_configs[model] = config
                self.profiler.configure(model, config)

    def _llm_evals(self, model: str) -> LLMEvalConfig:
        """The LLM evaluation settings of a model as last read (`sync_monitor_configs`; on the event loop: no I/O)."""
        config = self.monitor_configs.get(model)
        return config.llm if config is not None else DEFAULT_LLM_EVALS

    def monitor_tick(self) -> dict[str, list[Anomaly]]:
        """Re-read the monitor settings of the deployed models and check those whose interval has passed."""
        found: dict[str, list[Anomaly]] = {}
        now = self.clock.now().timestamp()
        for model in list(self.gateway.tables):
            config = self.watch.config(model)
            if self.monitor_configs.get(model) != config:
                self.monitor_configs[model] = config
                self.profiler.configure(model, config)
            if not config.enabled or now - self._last_check.get(model, 0.0) < config.check_seconds:
                continue
            self._last_check[model] = now
            if new := self.watch.check(model):
                found[model] = new
        return found

    def act(self, model: str, new: list[Anomaly]) -> list[str]:
        """Carry out the model's configured actions for newly recorded anomalies; returns what was done."""
        config = self.monitor_configs.get(model) or self.watch.config(model)
        done: list[str] = []
        for a in new:
            log.warning("drift anomaly %s on %s: %s", a.id, model, a.describe())
        done += self.notify(config.actions.webhook, "drift_anomaly", new)
        rank = {"medium": 1, "high": 2}
        acting = [a for a in new if rank[a.priority] >= rank[config.actions.min_priority]]
        if not acting:
            return done
        why = f"drift anomaly {acting[0].id}: {acting[0].describe()}"
        try:
            done += self.steer_rollout(model, config.actions.rollout, why, "drift-watch")
            done += self.shadow_to(model, config.actions.shadow)
        except TetherError as e:
            log.error("drift action on %s failed: %s", model, e)
        if done:
            log.warning("drift actions on %s: %s", model, "; ".join(done))
            self.refresh()
        return done

    # -- what alarms may do (the drift watch's and the LLM watch's) ------------------------------------------
    def notify(self, webhook: str | None, event: str, anomalies: list[Anomaly]) -> list[str]:
        """POST each anomaly to ``webhook`` in the background (retried; never blocks serving)."""
        if not webhook:
            return []
        for a in anomalies:
            task = asyncio.ensure_future(post_json(self.gateway.session, webhook, {"event": event, **a.to_json()}))
            self.notifications.add(task)
            task.add_done_callback(self.notifications.discard)
        return [f"notified {webhook}"]

    def steer_rollout(self, model: str, mode: str, why: str, actor: str) -> list[str]:
        """Hold (``hold``) or roll back (``rollback``) the model's running rollout; nothing for ``none``."""
        ro = self.controller.latest(model)
        if ro is None or ro.state != "running" or mode == "none":
            return []
        if mode == "hold":
            self.controller.pause(model, reason=why, actor=actor)
            return [f"held rollout {ro.id}"]
        self.controller.abort(model, reason=why, actor=actor)
        return [f"rolled back rollout {ro.id}"]

    def shadow_to(self, model: str, shadow: ShadowAction | None) -> list[str]:
        """Send copies of the model's traffic to the diagnostic version, unless it already gets them."""
        table = self.gateway.tables.get(model)
        if shadow is None or table is None:
            return []
        target = self.registry.get(shadow.version)
        if table.shadow == target.id or table.champion == target.id:
            return []
        self.controller.shadow(model, target.ref, shadow.percent)
        return [f"shadow {shadow.percent:g}% -> {target.ref}"]

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
        if self.notifications:
            await asyncio.wait(self.notifications, timeout=5)
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
