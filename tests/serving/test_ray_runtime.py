"""Model instances on Ray Serve, on a local Ray cluster the test starts (and stops, session folder included)."""

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import aiohttp
import pandas as pd
import pytest

from tether.core import ExternalCommandError, Settings
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.serving.window import MetricStore

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'tether[ray]' (make test installs it)")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster owned by this test process (``ray stop`` would kill every Ray driver on the machine,
    this process and other test workers included); its session folder is removed afterwards."""
    temp = Path(tempfile.gettempdir()) / f"tray-{uuid.uuid4().hex[:6]}"  # short: Ray's socket paths are bounded
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Serve kills an HTTP proxy not ready within 5 s (and one slow to answer its health check within 10 s): on
    # two cores shared with other test workers it is not, and every deployment then fails (seen under load).
    # The cluster's processes inherit these from this one; a loaded production cluster needs the same.
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "120")
    os.environ.setdefault("RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S", "60")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(temp), namespace="tether", log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        from ray import serve

        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


async def _until(cond, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await asyncio.to_thread(cond):
            return True
        await asyncio.sleep(0.5)
    return bool(await asyncio.to_thread(cond))


def _records(project, n=5):
    return pd.read_parquet(project.data).drop(columns=["is_fraud", "gender"]).head(n).to_dict("records")


def test_a_routed_version_is_a_ray_serve_application_reconciled_with_the_routing_tables(ray_cluster, tmp_path, project):
    settings = Settings(
        home=tmp_path / "home",
        database_url="",
        blob_url="",
        ray_address=ray_cluster,
        ray_http_port=_port(),
        ray_deploy={"default": {"replicas": 1, "num_cpus": 0.25}, "fraud": {"replicas": 2}},
    )
    reg = Registry.open(settings)
    v1 = project.register(reg)
    project.train("--learning-rate", "0.3")
    v2 = project.register(reg)
    ctrl = Controller(reg, MetricStore())
    ctrl.deploy("fraud", v1.ref, reason="first", force=True)
    records = _records(project)
    expected = reg.load(v1.id).predict(pd.DataFrame(records)).to_dict("records")

    async def run():
        from ray import serve

        from tether.api.server import Server

        server = Server(settings, port=0, auth=False, refresh_seconds=0.2)
        await server.start()
        try:
            await server.wait_ready(timeout=240)
            inst = server.runtime.instance(v1.id)
            assert inst is not None and "/tether/" in inst.url  # on Ray, not a child process
            url = f"{server.url}/v1/models/fraud/predict"
            async with aiohttp.ClientSession() as s, s.post(url, json={"records": records}) as r:
                assert r.status == 200, await r.text()
                assert r.headers["X-Tether-Version"] == v1.id
                got = (await r.json())["outputs"]
            assert [o["prediction"] for o in got] == [o["prediction"] for o in expected]
            assert [o["probability"] for o in got] == pytest.approx([o["probability"] for o in expected], rel=1e-6)
            status = serve.status().applications
            app = status[f"tether-{v1.id[:16]}"]
            assert str(app.status).endswith("RUNNING")
            replicas = app.deployments["replica"].replica_states
            assert replicas.get("RUNNING") == 2  # the model's deploy config
            # A replica's process dies (SIGKILL): Serve replaces it, and tether reports the crash as it does a
            # local instance's, while the other replica goes on answering.
            from ray.serve.context import _get_global_client

            await _until(lambda: len(server.runtime.ray._replicas.get(v1.id, (set(), 0))[0]) == 2, 60)
            details = _get_global_client().get_serve_details()["applications"][f"tether-{v1.id[:16]}"]
            pid = next(iter(details["deployments"]["replica"]["replicas"]))["pid"]
            os.kill(int(pid), signal.SIGKILL)
            since = server.clock.now()
            async with aiohttp.ClientSession() as s, s.post(url, json={"records": records}) as r:
                assert r.status == 200, await r.text()

            def crashed() -> bool:
                t = server.metrics.tally("fraud", v1.id, "champion", since - timedelta(seconds=30))
                return t.errors.get("crash", 0) >= 1

            assert await _until(crashed, 90), "the dead replica was never reported"
            assert server.runtime.ray.replica_deaths == 1
            # A new champion: its application starts and the old one is deleted, as the tables say.
            await asyncio.to_thread(ctrl.deploy, "fraud", v2.ref, reason="second", force=True)
            await server.wait_ready(timeout=240)
            deadline = time.monotonic() + 120
            while f"tether-{v1.id[:16]}" in serve.status().applications:
                assert time.monotonic() < deadline, "the old version's application was never deleted"
                await asyncio.sleep(0.5)
            async with aiohttp.ClientSession() as s, s.post(url, json={"records": records}) as r:
                assert r.status == 200 and r.headers["X-Tether-Version"] == v2.id
            assert server.runtime.ray.replica_deaths == 1  # deleting an application is not a death
        finally:
            await server.stop()
        assert not [a for a in serve.status().applications if a.startswith("tether-")]  # stopped with the server

    asyncio.run(run())
    reg.close()


def test_a_replica_verifies_the_digests_before_it_serves(ray_cluster, tmp_path, project):
    from tether.serving.ray_runtime import RayRuntime

    settings = Settings(home=tmp_path / "home", database_url="", blob_url="", ray_address=ray_cluster)
    settings = settings.model_copy(update={"ray_http_port": _port()})
    reg = Registry.open(settings)
    v1 = project.register(reg)
    blob = Path(reg.store.blobs.path(v1.weights.digest))
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes() + b"tampered")
    rt = RayRuntime(settings, startup_timeout=150)

    async def run():
        with pytest.raises(ExternalCommandError, match="did not start"):
            await asyncio.wait_for(rt.ensure(v1.id), timeout=240)
        from ray import serve

        assert f"tether-{v1.id[:16]}" not in serve.status().applications  # nothing half-deployed is left
        await rt.close()

    asyncio.run(run())
    reg.close()


def test_a_ray_cluster_that_is_not_there_is_a_clear_error(tmp_path):
    from tether.serving.ray_runtime import RayRuntime

    settings = Settings(home=tmp_path / "home", database_url="", blob_url="", ray_address=f"127.0.0.1:{_port()}")
    with pytest.raises(ExternalCommandError, match="cannot reach the Ray cluster"):
        RayRuntime(settings)._connect()
