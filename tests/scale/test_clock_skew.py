"""A gateway whose clock runs an hour ahead of PostgreSQL's keeps serving, but its evidence (metric slices
stamped by that clock, which would count the same requests in every rollout step for an hour) is withheld
from the controller, and it says so in /healthz, /metrics and its log; the lease is never expired by it."""

import asyncio
from datetime import datetime, timedelta

import aiohttp
import pandas as pd
import pytest

from tether.api.server import Server
from tether.core import Settings
from tether.core.clock import SystemClock
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.rollout.leader import Lease
from tether.serving.aggregates import MergedMetrics, clock_skew
from tether.serving.window import MetricStore

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


class Ahead(SystemClock):
    """A wall clock an hour fast, as on a host whose NTP failed."""

    def now(self) -> datetime:
        return super().now() + timedelta(hours=1)


def test_a_gateway_whose_clock_is_ahead_serves_but_its_evidence_is_withheld(
    pg_schema_url, tmp_path, project, caplog, monkeypatch
):
    settings = Settings(home=tmp_path / "home", database_url=pg_schema_url, blob_url="")
    with Registry.open(settings) as reg:
        v1 = project.register(reg)
        Controller(reg, MetricStore()).deploy("fraud", v1.ref, reason="first", force=True)
        db = reg.store.db
        assert abs(clock_skew(db, SystemClock())) < 1.0  # this host and its database agree
        assert 3599 < clock_skew(db, Ahead()) < 3601
    records = pd.read_parquet(project.data).drop(columns=["is_fraud", "gender"]).head(5).to_dict("records")

    async def run() -> tuple[dict, str, int]:
        server = Server(settings, port=0, auth=False, role="gateway", replica="gw-ahead", clock=Ahead())
        await server.start()
        try:
            await server.wait_ready()
            async with aiohttp.ClientSession() as s:
                for _ in range(5):
                    async with s.post(f"{server.url}/v1/models/fraud/predict", json={"records": records[:1]}) as r:
                        assert r.status == 200  # it serves
                await server.replica.publish()
                async with s.get(f"{server.url}/healthz") as r:
                    health = await r.json()
                async with s.get(f"{server.url}/metrics") as r:
                    metrics = await r.text()
            return health, metrics, server.replica.publisher.withheld
        finally:
            await server.stop()

    health, metrics, withheld = asyncio.run(run())
    assert health["clock"]["state"] == "skewed" and health["clock"]["skew_seconds"] > 3500, health
    assert "tether_evidence_withheld 1" in metrics and "tether_clock_skew_seconds 3" in metrics
    assert withheld >= 1
    assert any("withheld from the rollout evidence" in r.getMessage() for r in caplog.records)
    with Registry.open(settings) as reg:
        merged = MergedMetrics(reg.store.db)
        merged.sync(force=True)
        assert merged.keys() == []  # nothing of the skewed replica reached the evidence
        # The lease is the database's time alone: a standby an hour ahead cannot take a live lease.
        leader = Lease(reg.store.db, holder="ctl-1:1", ttl=30)
        assert leader.hold()
        import time

        wall = time.time
        monkeypatch.setattr(time, "time", lambda: wall() + 3600)  # this process's wall clock, an hour ahead
        assert not Lease(reg.store.db, holder="ctl-ahead:2", ttl=30).hold()
