"""`tether serve`: the gateway, the instances and the rollout controller in one process.

Background loops: every ``refresh_seconds`` the routing tables and API keys are re-read and instances are
reconciled (every version a table names is started; versions no table names are stopped); every
``tick_seconds`` the controller evaluates active rollouts (in a worker thread: it talks to the database).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

from aiohttp import web

from tether.core.clock import Clock, SystemClock
from tether.core.settings import Settings
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.serving import table as routing_table
from tether.serving.auth import KeyRing
from tether.serving.gateway import Gateway
from tether.serving.runtime import CompositeRuntime, LocalRuntime, UrlRuntime
from tether.serving.window import MetricStore

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
    ) -> None:
        self.settings = settings
        self.host, self.port = host, port
        self.tick_seconds, self.refresh_seconds = tick_seconds, refresh_seconds
        self.clock = clock or SystemClock()
        self.registry = Registry.open(settings, clock=self.clock)
        self.metrics = MetricStore()
        self.runtime = CompositeRuntime(LocalRuntime(settings, on_crash=self._crashed), UrlRuntime())
        self.keys = KeyRing(self.registry.store.db) if auth else None
        self.gateway = Gateway(self.registry, self.metrics, self.runtime, keys=self.keys, clock=self.clock)
        self.controller = Controller(self.registry, self.metrics, clock=self.clock)
        self.gateway.app.router.add_get("/v1/rollouts/{name}", self.rollout_status)
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._stopping: dict[str, asyncio.Future[None]] = {}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self.refresh()
        if self.keys is not None:
            self.keys.refresh()
        self._runner = web.AppRunner(self.gateway.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._tasks = [asyncio.create_task(self._refresh_loop()), asyncio.create_task(self._control_loop())]

    def refresh(self) -> None:
        self.gateway.refresh_routing()
        with self.registry.store.db.connect() as conn:
            self.runtime.remote.update(routing_table.read_endpoints(conn))
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

    def _started(self, vid: str, task: asyncio.Future[Any]) -> None:
        self._pending.pop(vid, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("instance for %s failed to start: %s", vid[:12], task.exception())

    async def wait_ready(self, timeout: float = 120.0) -> None:
        """Until every version the routing tables name has a running instance."""
        async with asyncio.timeout(timeout):
            while True:
                self.refresh()
                wanted = {v for t in self.gateway.tables.values() for v in (t.champion, t.canary, t.shadow) if v}
                if all(self.runtime.instance(v) is not None for v in wanted):
                    return
                await asyncio.sleep(0.1)

    async def _refresh_loop(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                self.refresh()
                n += 1
                if self.keys is not None and n % 10 == 0:
                    self.keys.refresh()
            except Exception:
                log.exception("refresh failed")

    async def _control_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick_seconds)
            try:
                for event in await loop.run_in_executor(None, self.controller.tick):
                    log.warning("rollout %s: %s (%s)", event.rollout_id, event.kind, event.reason)
                self.refresh()
            except Exception:
                log.exception("controller tick failed")

    async def rollout_status(self, request: web.Request) -> web.Response:
        """The model's routing, its latest rollout and the live guardrail comparisons (role: viewer)."""
        if self.keys is not None:
            result = self.keys.check(request.headers.get("Authorization"), "read")
            if isinstance(result, tuple):
                return web.json_response({"error": result[1]}, status=result[0])
        model = request.match_info["name"]
        return web.json_response(status_of(self.controller, model, self.gateway.tables.get(model)))

    def _crashed(self, version_id: str) -> None:
        now = self.clock.now()
        for model, t in self.gateway.tables.items():
            for arm, vid in (("champion", t.champion), ("canary", t.canary), ("shadow", t.shadow)):
                if vid == version_id:
                    self.metrics.record_event(model, version_id, arm, now, "crash")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._runner is not None:
            await self._runner.cleanup()
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


def status_of(controller: Controller, model: str, table: object | None) -> dict[str, object]:
    """A JSON-ready view of a model's routing and latest rollout, with live comparisons when running."""
    ro = controller.latest(model)
    out: dict[str, object] = {"model": model, "routing": table.__dict__ if table is not None else None}
    if ro is None:
        return out
    out["rollout"] = {
        "id": ro.id,
        "state": ro.state,
        "candidate": ro.candidate_id,
        "champion": ro.champion_id,
        "step": ro.step_index,
        "weight_percent": ro.weight_bp / 100,
        "steps": ro.plan.steps,
        "step_started_at": ro.step_started_at.isoformat(),
        "forced": ro.forced,
    }
    if ro.state in ("running", "watching", "paused"):
        comps, new, old = controller.evaluate(ro)
        out["guardrails"] = {k: c.to_json() for k, c in comps.items()}
        out["candidate"], out["champion"] = new.to_json(), old.to_json()
    out["events"] = [
        {
            "at": e.at.isoformat(),
            "kind": e.kind,
            "from": e.from_bp / 100,
            "to": e.to_bp / 100,
            "reason": e.reason,
            "actor": e.actor,
        }
        for e in controller.events(ro.id)
    ]
    return out
