"""What the drift watch's alarms may do, and the loop that checks: the composition root's part of the watch.

Every second (on the leader) `tick` checks, in a worker thread, the deployed models that took traffic since their
last check and whose interval has passed (at most `MONITOR_BATCH` a tick); `act` carries out each model's actions
for the anomalies recorded: a webhook, holding or rolling back a running rollout, shadow traffic to a diagnostic
version. The LLM watch (`tether.api.llm_evals`) acts through the same `notify`, `steer_rollout` and `shadow_to`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from tether.core.errors import TetherError
from tether.monitor.config import ShadowAction
from tether.monitor.notify import post_json
from tether.monitor.watch import Anomaly

if TYPE_CHECKING:
    from tether.api.server import Server

log = logging.getLogger("tether.serve")
#: The most drift checks one monitor tick (a second) runs; models waiting their turn are checked at the next.
MONITOR_BATCH = 50


class DriftActions:
    def __init__(self, server: Server) -> None:
        self.server = server
        self._last_check: dict[str, float] = {}
        self._profiled: set[str] = set()  # models with live profile slices not checked yet
        self.notifications: set[asyncio.Task[bool]] = set()

    async def loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            if not self.server.replica.leads:
                continue
            try:
                found = await loop.run_in_executor(None, self.tick)
                for model, new in found.items():
                    self.act(model, new)
            except Exception:
                log.exception("drift check failed")

    def tick(self) -> dict[str, list[Anomaly]]:
        """Check the deployed models that took traffic since their last check and whose interval has passed, at
        most `MONITOR_BATCH` of them per tick (the rest at the next): with no traffic a tick is one query, whatever
        the number of models."""
        found: dict[str, list[Anomaly]] = {}
        self._profiled.update(self.server.watch.profiled_since())
        now = self.server.clock.now().timestamp()
        checked = 0
        for model in sorted(self._profiled):
            config = self.server.monitor_config(model)
            if model not in self.server.gateway.desired or not config.enabled:
                self._profiled.discard(model)
                continue
            if now - self._last_check.get(model, 0.0) < config.check_seconds:
                continue
            if checked >= MONITOR_BATCH:
                break
            checked += 1
            self._profiled.discard(model)
            self._last_check[model] = now
            if new := self.server.watch.check(model, config=config):
                found[model] = new
        return found

    def act(self, model: str, new: list[Anomaly]) -> list[str]:
        """Carry out the model's configured actions for newly recorded anomalies; returns what was done."""
        config = self.server.monitor_configs.get(model) or self.server.watch.config(
            model
        )  # rare: the stored settings if unread
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
            self.server.refresh()
        return done

    # -- what alarms may do (the drift watch's and the LLM watch's) ------------------------------------------
    def notify(self, webhook: str | None, event: str, anomalies: list[Anomaly]) -> list[str]:
        """POST each anomaly to ``webhook`` in the background (retried; never blocks serving)."""
        if not webhook:
            return []
        for a in anomalies:
            task = asyncio.ensure_future(
                post_json(self.server.gateway.session, webhook, {"event": event, **a.to_json()})
            )
            self.notifications.add(task)
            task.add_done_callback(self.notifications.discard)
        return [f"notified {webhook}"]

    def steer_rollout(self, model: str, mode: str, why: str, actor: str) -> list[str]:
        """Hold (``hold``) or roll back (``rollback``) the model's running rollout; nothing for ``none``."""
        ro = self.server.controller.latest(model)
        if ro is None or ro.state != "running" or mode == "none":
            return []
        if mode == "hold":
            self.server.controller.pause(model, reason=why, actor=actor)
            return [f"held rollout {ro.id}"]
        self.server.controller.abort(model, reason=why, actor=actor)
        return [f"rolled back rollout {ro.id}"]

    def shadow_to(self, model: str, shadow: ShadowAction | None) -> list[str]:
        """Send copies of the model's traffic to the diagnostic version, unless it already gets them."""
        table = self.server.gateway.tables.get(model)
        if shadow is None or table is None:
            return []
        target = self.server.registry.get(shadow.version)
        if table.shadow == target.id or table.champion == target.id:
            return []
        self.server.controller.shadow(model, target.ref, shadow.percent)
        return [f"shadow {shadow.percent:g}% -> {target.ref}"]
