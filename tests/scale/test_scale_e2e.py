"""Scaled out with real processes: two gateways and two controllers on PostgreSQL, Redis and an S3-compatible
blob store (moto's server on 127.0.0.1) run a canary from 1% to 100% while the leading controller and then a
gateway are killed with SIGKILL (the gateway is restarted).

Afterwards every answered request is on the audit trail exactly once, `tether audit verify` passes over every
log, on this disk and from the blob store alone (`--shipped`), and the decision log holds each step once. The
budgets of the same fleet shape (two gateway processes on PostgreSQL and Redis) are held by
tests/scale/test_llm_scale_e2e.py, beside it: an LLM engine per gateway would double this test's processes.
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import aiohttp
import numpy as np
import pandas as pd
import pytest

from tests.conftest import REDIS_URL, needs_redis
from tests.store.test_blobs import s3_endpoint  # noqa: F401  (fixture)
from tests.trail import assert_trail_whole
from tether.core import Settings
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.rollout.leader import Lease
from tether.rollout.plan import Plan
from tether.serving.routing import bucket
from tether.serving.window import MetricStore

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PLAN = Plan(
    steps=[1, 25, 100],
    bake_seconds=1,
    min_samples=40,
    max_step_seconds=240,
    watch_seconds=2,
    guardrails={"error_rate": {"margin": 0.2}, "schema_violation_rate": {"margin": 0.2}, "latency_p99": None},
)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Fleet:
    """The tether serve processes of one deployment, each stopped by the finalizer whatever happens."""

    def __init__(self, settings: Settings, logs) -> None:
        wanted = settings.to_env()  # exactly the test's settings (None: unset)
        self.env = {k: v for k, v in {**os.environ, **wanted}.items() if v is not None}
        self.logs = logs
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}

    def start(self, name: str, role: str) -> None:
        port = self.ports.setdefault(name, _port())
        out = open(self.logs / f"{name}.log", "ab")
        args = ["serve", "--no-auth", "--port", str(port), "--role", role, "--replica", name, "--tick", "0.5"]
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "tether.cli", *args, "--lease-ttl", "3"],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(timeout=30)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


async def _healthy(session, url, seconds=120.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{url}/healthz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"{url} never became healthy")


@needs_redis
@pytest.mark.s3
def test_a_canary_survives_a_killed_leader_and_a_killed_gateway(
    pg_schema_url,
    tmp_path,
    project,
    s3_endpoint,  # noqa: F811
    redis_namespace,
):
    opts = {"endpoint_url": s3_endpoint, "key": "k", "secret": "s", "client_kwargs": {"region_name": "us-east-1"}}
    settings = Settings(
        home=tmp_path / "home",
        database_url=pg_schema_url,
        blob_url=f"s3://models/{uuid.uuid4().hex[:8]}",
        blob_options=opts,
        redis_url=REDIS_URL,
        redis_namespace=redis_namespace,
        gateway_replicas=2,
    )
    reg = Registry.open(settings)
    v1 = project.register(reg)
    project.train("--learning-rate", "0.3")
    v2 = project.register(reg)
    ctrl = Controller(reg, MetricStore())
    ctrl.deploy("fraud", v1.ref, reason="first", force=True)
    records = pd.read_parquet(project.data).drop(columns=["is_fraud", "gender"]).head(200).to_dict("records")
    fleet = Fleet(settings, tmp_path)
    for name, role in (("gw-a", "gateway"), ("gw-b", "gateway"), ("ctl-1", "controller"), ("ctl-2", "controller")):
        fleet.start(name, role)
    answered: dict[str, str] = {}  # trace -> version
    killed: list[str] = []
    try:
        asyncio.run(_drive(fleet, reg, ctrl, v2, records, answered, killed))
    finally:
        fleet.stop()
    ro = ctrl.latest("fraud")
    kinds = [e.kind for e in ctrl.events(ro.id)]
    assert ro.state == "completed", (kinds, [e.reason for e in ctrl.events(ro.id)])
    assert kinds == ["start", "advance", "promote", "complete"]  # each decision once, though its leader died
    assert Lease(reg.store.db).current()["epoch"] >= 2  # the standby took over
    assert {v for v in answered.values()} == {v1.id, v2.id}

    assert {"main", "gw-a", "gw-b"} <= assert_trail_whole(settings, answered, decisions=len(kinds))
    for shipped in ([], ["--shipped"]):  # the logs on this disk; then the blob store's copies alone
        verify = subprocess.run(
            [sys.executable, "-m", "tether.cli", "audit", "verify", *shipped],
            env=fleet.env,
            capture_output=True,
            text=True,
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
    reg.close()


async def _drive(fleet, reg, ctrl, v2, records, answered, killed):
    gateways = ["gw-a", "gw-b"]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        for g in gateways:
            await _healthy(session, fleet.url(g))
        ro = ctrl.start("fraud", v2.ref, PLAN, force=True, reason="scale-out test")
        salt = f"fraud/rollout-{ro.id}"
        rng = np.random.default_rng(4)
        # Half the traffic from entities in the 1% cohort, so the canary's evidence comes in minutes, not hours.
        cohort = [k for k in (f"c{i}" for i in range(20_000)) if bucket(k, salt) < 100][:50]
        state = {"n": 0, "done": False}

        async def one(worker: int) -> None:
            while not state["done"]:
                state["n"] += 1
                rec = records[int(rng.integers(len(records)))]
                key = cohort[int(rng.integers(len(cohort)))] if rng.random() < 0.5 else f"e{rng.integers(1 << 30)}"
                order = gateways[state["n"] % 2 :] + gateways[: state["n"] % 2]
                for g in order:  # the balancer: round robin, the next gateway when one does not answer
                    try:
                        async with session.post(
                            f"{fleet.url(g)}/v1/models/fraud/predict", json={"records": [rec], "entity_key": key}
                        ) as r:
                            await r.read()
                            if r.status == 200:
                                answered[r.headers["X-Tether-Trace"]] = r.headers["X-Tether-Version"]
                            break
                    except (TimeoutError, aiohttp.ClientError):
                        continue

        async def director() -> None:
            deadline = time.monotonic() + 420
            while time.monotonic() < deadline:
                await asyncio.sleep(0.25)
                now = await asyncio.to_thread(ctrl.latest, "fraud")
                if now.state in ("completed", "rolled_back", "paused", "aborted", "reverted"):
                    break
                if "leader" not in killed and len(answered) >= 150 and now.step_index == 0:
                    lease = Lease(reg.store.db)
                    holder = (await asyncio.to_thread(lease.current))["holder"]
                    fleet.kill(holder.split(":")[0])  # the leading controller dies mid-step
                    killed.append("leader")
                    t0 = time.monotonic()
                    while (await asyncio.to_thread(lease.current))["holder"] == holder:
                        assert time.monotonic() - t0 < 30, "no standby took over"
                        await asyncio.sleep(0.1)
                    print(f"failover: the standby leads {time.monotonic() - t0:.1f} s after the leader's SIGKILL")
                if "gw-a" not in killed and now.step_index >= 1:
                    fleet.kill("gw-a")  # a gateway dies mid-rollout; the balancer sends its share to gw-b
                    killed.append("gw-a")
                    await asyncio.sleep(1.0)
                    fleet.start("gw-a", "gateway")
                    await _healthy(session, fleet.url("gw-a"))
            state["done"] = True

        await asyncio.gather(director(), *(one(i) for i in range(6)))
    assert killed == ["leader", "gw-a"], killed
    print(f"{len(answered)} requests answered over the rollout")
