"""A gateway whose Redis is unreachable at start, then back, then gone mid-run: it starts and serves, says so in
/healthz and /metrics (with the budget policy in force), counts what fell back, and recovers by itself.

Redis is reached through a TCP proxy the test cuts and restores, as a network partition (or a Redis restart)
would; the label join through the shared trace memory shows a part falling back and being counted.
"""

import asyncio

import aiohttp
import pandas as pd
import pytest

from tests.conftest import REDIS_URL, needs_redis
from tests.scale.test_fail_static import Partition, _until, probes
from tether.api.server import Server
from tether.core import Settings
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.serving.window import MetricStore

pytestmark = [pytest.mark.slow, needs_redis]


def test_a_gateway_starts_without_redis_says_so_and_recovers(tmp_path, project):
    settings = Settings(home=tmp_path / "home", database_url="", blob_url="")
    with Registry.open(settings) as reg:
        v1 = project.register(reg)
        Controller(reg, MetricStore()).deploy("fraud", v1.ref, reason="first", force=True)
    records = pd.read_parquet(project.data).drop(columns=["is_fraud", "gender"]).head(5).to_dict("records")
    host, _, rest = REDIS_URL.split("://", 1)[1].partition(":")
    partition = Partition((host, int(rest.split("/", 1)[0] or 6379)))
    partition.cut()  # unreachable from the start
    through = f"redis://127.0.0.1:{partition.port}/0"

    async def run() -> None:
        server = Server(
            Settings(home=settings.home, database_url="", blob_url="", redis_url=through, redis_namespace="tt-away"),
            port=0,
            auth=False,
            publish_seconds=0.2,
        )
        await server.start()
        try:
            await server.wait_ready()
            async with aiohttp.ClientSession() as s:

                async def predict() -> dict:
                    url = f"{server.url}/v1/models/fraud/predict"
                    async with s.post(url, json={"records": records[:1]}) as r:
                        assert r.status == 200  # predictions never wait on Redis
                        return await r.json()

                health, metric = probes(s, server.url)

                async def away() -> bool:
                    return (await health()).get("redis", {}).get("state") == "unreachable"

                assert await _until(away, 30)
                h = await health()
                assert "refused (503)" in h["redis"]["budgets"] and h["redis"]["error"], h
                assert await metric("tether_redis_reachable") == 0
                await predict()  # served; its trace is kept here (Redis away: counted as a failure)
                assert await _until(lambda: _gt(metric, 'tether_redis_errors_total{part="traces"}', 0), 30)

                partition.restore()
                assert await _until(lambda: _not(away), 30)
                assert await metric("tether_redis_reachable") == 1

                partition.cut()  # gone mid-run
                assert await _until(away, 30)
                await predict()
        finally:
            await server.stop()

    try:
        asyncio.run(run())
    finally:
        partition.close()


async def _gt(metric, name, value) -> bool:
    return await metric(name) > value


async def _not(cond) -> bool:
    return not await cond()
