"""The LLM evaluation loop inside `tether serve`: its check loop, the actions its alarms take, its routes.

    GET  /v1/llm/graders                        grader versions
    GET  /v1/models/{name}/llm/status           decay, canary against champion, prompt drift, rates (role read)
    GET  /v1/models/{name}/llm/scores           score rows (filters: trace, version, metric, origin, limit)
    GET  /v1/models/{name}/llm/report           the HTML report

Actions (the model's ``llm.actions`` beside its monitor ``actions``): every new anomaly is POSTed to the
monitor webhook. Application alarms (decay, canary against champion, prompt drift) then hold or roll back a
running rollout; decay on a version also quarantines the cache entries it wrote (dropped, and the invalidation
recorded on the audit trail) and, with ``alias_rollback``, moves ``champion`` back to the version it replaced
when no rollout runs; with the monitor's ``actions.shadow``, copies of the traffic go to the diagnostic version.
Judge drift only notifies: a changed judge is never a reason to touch the application.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tether.core.errors import TetherError
from tether.graders.registry import Graders
from tether.graders.scores import read
from tether.monitor.llm_watch import LLMWatch
from tether.monitor.watch import Anomaly
from tether.registry import aliases as alias_ops

if TYPE_CHECKING:
    from tether.api.server import Server

log = logging.getLogger("tether.serve.llm")

APPLICATION_TESTS = frozenset({"decay", "decay_vs_champion", "mmd"})
MAX_SCORE_ROWS = 5000


class LLMEvals:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.watch = LLMWatch(server.registry, clock=server.clock, embedder=server.llm.embedder)
        self._last: dict[str, float] = {}
        app = server.gateway.app
        app.router.add_get("/v1/llm/graders", self.graders)
        app.router.add_get("/v1/models/{name}/llm/status", self.status)
        app.router.add_get("/v1/models/{name}/llm/scores", self.scores)
        app.router.add_get("/v1/models/{name}/llm/report", self.report)

    # -- the loop ---------------------------------------------------------------------------------------------
    async def loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            try:
                found = await loop.run_in_executor(None, self.tick)
                for model, new in found.items():
                    await self.act(model, new)
            except Exception:
                log.exception("LLM evaluation check failed")

    def tick(self) -> dict[str, list[Anomaly]]:
        found: dict[str, list[Anomaly]] = {}
        now = self.server.clock.now().timestamp()
        for model in sorted(self.server.llm.llm_models):
            cfg = self.server._llm_evals(model)
            if not cfg.enabled or now - self._last.get(model, 0.0) < cfg.check_seconds:
                continue
            self._last[model] = now
            if new := self.watch.check(model):
                found[model] = new
        return found

    async def act(self, model: str, new: list[Anomaly]) -> list[str]:
        server = self.server
        config = server.monitor_configs.get(model) or server.watch.config(model)
        actions = config.llm.actions
        done: list[str] = []
        for a in new:
            log.warning("LLM anomaly %s on %s: %s", a.id, model, a.describe())
        done += server.notify(config.actions.webhook, "llm_anomaly", new)
        acting = [a for a in new if a.test in APPLICATION_TESTS]
        if not acting:
            return done
        why = f"LLM anomaly {acting[0].id}: {acting[0].describe()}"
        loop = asyncio.get_running_loop()
        try:
            steered = await loop.run_in_executor(None, server.steer_rollout, model, actions.rollout, why, "llm-watch")
            done += steered
            running = (ro := server.controller.latest(model)) is not None and ro.state == "running"
            if not steered and not running and actions.alias_rollback and any(a.test == "decay" for a in acting):
                previous = await loop.run_in_executor(None, self._previous_champion, model)
                if previous is not None:
                    await loop.run_in_executor(
                        None,
                        functools.partial(
                            server.controller.deploy, model, previous, reason=why, force=True, actor="llm-watch"
                        ),
                    )
                    done.append(f"champion rolled back to {previous[:12]}")
            done += await loop.run_in_executor(None, server.shadow_to, model, config.actions.shadow)
            if actions.quarantine_cache:
                for vid in sorted({a.version_id for a in acting if a.test != "mmd"}):
                    n = server.llm.caches.invalidate(vid)
                    await server.llm.audit_invalidation([(vid, n)], f"quarantined: {why}")
                    done.append(f"quarantined {n} cache entries of {vid[:12]}")
        except TetherError as e:
            log.error("LLM action on %s failed: %s", model, e)
        if done:
            log.warning("LLM actions on %s: %s", model, "; ".join(done))
            server.refresh()
        return done

    def _previous_champion(self, model: str) -> str | None:
        with self.server.registry.store.db.connect() as conn:
            events = alias_ops.history(conn, model, "champion")
        current = events[-1].version_id if events else None
        for e in reversed(events):
            if e.version_id and e.version_id != current:
                return e.version_id
        return None

    # -- routes ---------------------------------------------------------------------------------------------
    async def graders(self, request: web.Request) -> web.Response:
        if (denied := self.server.gateway._deny(request, "read")) is not None:
            return denied
        rows = await asyncio.to_thread(Graders(self.server.registry.store).list)
        return web.json_response({"graders": [g.to_json() for g in rows]})

    async def status(self, request: web.Request) -> web.Response:
        if (denied := self.server.gateway._deny(request, "read")) is not None:
            return denied
        model = request.match_info["name"]
        if model not in self.server.gateway.tables:
            return _not_found(model)
        status = await asyncio.to_thread(self.watch.evaluate, model)
        return web.json_response({**status.to_json(), "grading": self.server.llm.grading.stats()})

    async def scores(self, request: web.Request) -> web.Response:
        if (denied := self.server.gateway._deny(request, "read")) is not None:
            return denied
        model = request.match_info["name"]
        q = request.query
        try:
            limit = min(MAX_SCORE_ROWS, int(q.get("limit", "500")))
            if limit < 1:
                raise ValueError
        except ValueError:
            return web.json_response({"error": f"limit must be a whole number from 1 to {MAX_SCORE_ROWS}"}, status=400)
        rows = await asyncio.to_thread(
            functools.partial(
                read,
                self.server.registry.store.db,
                model,
                trace_id=q.get("trace"),
                version_id=q.get("version"),
                metric=q.get("metric"),
                origin=q.get("origin", "live"),
                limit=limit,
            )
        )
        return web.json_response({"scores": [_plain(r) for r in rows], "limit": limit})

    async def report(self, request: web.Request) -> web.Response:
        from tether.monitor.llm_report import html

        if (denied := self.server.gateway._deny(request, "read")) is not None:
            return denied
        model = request.match_info["name"]
        if model not in self.server.gateway.tables:
            return _not_found(model)
        page = await asyncio.to_thread(html, self.watch, model)
        return web.Response(text=page, content_type="text/html")


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


def _not_found(model: str) -> web.Response:
    return web.json_response(
        {"error": f"no deployed model {model!r}", "hint": "GET /v1/models lists the deployed LLMs"}, status=404
    )
