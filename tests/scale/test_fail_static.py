"""A gateway cut off from PostgreSQL keeps serving on its last routing tables, says so, and recovers.

The database is reached through a TCP proxy the test can cut (every connection dropped, the port closed) and
restore, as a network partition would.
"""

import asyncio
import contextlib
import socket
import threading
import time

import aiohttp
import pandas as pd
import pytest

from tests.conftest import PG_URL
from tether.api.server import Server
from tether.core import Settings
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.serving.window import MetricStore

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


class Partition:
    """127.0.0.1:port -> PostgreSQL, until `cut`; `restore` listens again on the same port."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.restore()

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    async def _pipe(self, reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _client(self, reader, writer):
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_w}
        await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer))

    def restore(self) -> None:
        async def listen():
            self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port, reuse_address=True)

        self._call(listen())

    def cut(self) -> None:
        async def close():
            self.server.close()
            for w in list(self.writers):
                w.transport.abort()
            self.writers.clear()

        self._call(close())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def probes(session, url):
    """(health(), metric(name)): a server's /healthz body and one /metrics sample."""

    async def health() -> dict:
        async with session.get(f"{url}/healthz") as r:
            return await r.json()

    async def metric(name: str) -> float:
        async with session.get(f"{url}/metrics") as r:
            for line in (await r.text()).splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return float("nan")

    return health, metric


async def _until(cond, seconds=60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await cond():
            return True
        await asyncio.sleep(0.1)
    return False


def test_a_gateway_cut_off_from_the_database_serves_on_its_last_tables(pg_schema_url, tmp_path, project):
    settings = Settings(home=tmp_path / "home", database_url=pg_schema_url, blob_url="")
    with Registry.open(settings) as reg:
        v1 = project.register(reg)
        Controller(reg, MetricStore()).deploy("fraud", v1.ref, reason="first", force=True)
    records = pd.read_parquet(project.data).drop(columns=["is_fraud", "gender"]).head(5).to_dict("records")
    host_port = PG_URL.split("@", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    partition = Partition((host, int(port or 5432)))
    through = pg_schema_url.replace(host_port, f"127.0.0.1:{partition.port}")

    async def run() -> None:
        server = Server(
            Settings(home=settings.home, database_url=through, blob_url=""),
            port=0,
            auth=False,
            refresh_seconds=0.2,
            role="gateway",
            replica="gw-cut",
        )
        await server.start()
        try:
            await server.wait_ready()
            async with aiohttp.ClientSession() as s:

                async def predict() -> int:
                    url = f"{server.url}/v1/models/fraud/predict"
                    async with s.post(url, json={"records": records[:1]}) as r:
                        await r.read()
                        return r.status

                health, metric = probes(s, server.url)

                assert await predict() == 200
                assert "routing" not in await health()
                partition.cut()

                async def stale() -> bool:
                    return (await health()).get("routing", {}).get("state") == "stale"

                assert await _until(stale), await health()
                assert [await predict() for _ in range(10)] == [200] * 10  # served on the last tables
                assert await metric("tether_routing_stale") == 1
                assert await metric("tether_routing_refresh_failures_total") >= 1
                body = await health()
                assert "last routing tables" in body["routing"]["serving"] and body["routing"]["error"]
                partition.restore()

                async def recovered() -> bool:
                    return "routing" not in await health()

                assert await _until(recovered), await health()
                assert await metric("tether_routing_stale") == 0
                assert await predict() == 200
        finally:
            await server.stop()

    try:
        asyncio.run(run())
    finally:
        partition.close()
