"""The LLM evaluation loop inside `tether serve`: its check loop and the actions its alarms take (its routes
are in `tether.api.llm`).

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
from typing import TYPE_CHECKING

from tether.core.errors import TetherError
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

    # -- the loop ---------------------------------------------------------------------------------------------
    async def loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            if not self.server.replica.leads:
                continue
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
        done += server.drift.notify(config.actions.webhook, "llm_anomaly", new)
        acting = [a for a in new if a.test in APPLICATION_TESTS]
        if not acting:
            return done
        why = f"LLM anomaly {acting[0].id}: {acting[0].describe()}"
        loop = asyncio.get_running_loop()
        try:
            steered = await loop.run_in_executor(
                None, server.drift.steer_rollout, model, actions.rollout, why, "llm-watch"
            )
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
            done += await loop.run_in_executor(None, server.drift.shadow_to, model, config.actions.shadow)
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
