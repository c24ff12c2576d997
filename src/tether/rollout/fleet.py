"""The fleet at a glance: how many models serve, are healthy, are in a rollout, have an open anomaly, are over an
LLM budget, or serve a champion older than their policy allows.

Each count comes from one aggregate query (or, for what only the running server knows, from the sets it passes
in), so the summary costs the same at ten models and at ten thousand. Every number is also a filter of
`tether.registry.catalog.search` (``stage``/``health``), which the dashboard links each number to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from tether.registry import Registry
from tether.registry.catalog import Live, stale
from tether.rollout.record import ACTIVE
from tether.store.tables import anomalies, anomaly_resolutions, model_versions, rollouts, routing


@dataclass(frozen=True)
class FleetSummary:
    models: int
    serving: int
    healthy: int
    unready: int
    in_rollout: int
    open_anomaly: int
    over_budget: int
    stale_champion: int
    retired: int
    registered_only: int

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def links(self) -> dict[str, str]:
        """Each count's filtered list on the dashboard's Models page."""
        return {
            "models": "/",
            "serving": "/?stage=serving",
            "healthy": "/?health=healthy",
            "unready": "/?health=unready",
            "in_rollout": "/?stage=rollout",
            "open_anomaly": "/?health=anomaly",
            "over_budget": "/?health=over_budget",
            "stale_champion": "/?health=stale",
            "retired": "/?stage=retired",
            "registered_only": "/?stage=registered",
        }


def summary(registry: Registry, now: datetime, live: Live | None = None) -> FleetSummary:
    live = live or Live()
    a, r = anomalies.c, anomaly_resolutions.c
    with registry.store.db.connect() as conn:
        models = int(conn.execute(select(func.count(func.distinct(model_versions.c.name)))).scalar_one())
        served = {m for (m,) in conn.execute(select(routing.c.model_name).where(routing.c.retired.is_(False)))}
        retired = int(conn.execute(select(func.count()).where(routing.c.retired.is_(True))).scalar_one())
        rolling = {
            m for (m,) in conn.execute(select(rollouts.c.model_name).where(rollouts.c.state.in_(ACTIVE)).distinct())
        }
        q = (
            select(a.model_name)
            .outerjoin(anomaly_resolutions, r.anomaly_id == a.id)
            .where(r.anomaly_id.is_(None))
            .distinct()
        )
        anomalous = {m for (m,) in conn.execute(q)}
        old = stale(conn, now)
    unready = live.unready & served
    return FleetSummary(
        models=models,
        serving=len(served),
        healthy=len(served - unready - anomalous),
        unready=len(unready),
        in_rollout=len(rolling),
        open_anomaly=len(anomalous),
        over_budget=len(live.over_budget),
        stale_champion=len(old),
        retired=retired,
        registered_only=models - len(served) - retired,
    )
