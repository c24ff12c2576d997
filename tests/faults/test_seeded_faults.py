"""Seeded fault injection under traffic: a canary from 5% to 100% on a gateway process and a controller process
(PostgreSQL and Redis of the test's own) while faults strike at random points of the request stream: a
PostgreSQL restart, a Redis restart (its keys lost), SIGKILL of the champion's model instance, of the
controller and of the gateway (each process restarted, as a supervisor would).

The seed picks the order and the points; a failing seed is printed and replays exactly the same plan. After
every run: nothing acknowledged is lost or duplicated (each answered trace id on the audit trail once), `tether
audit verify` passes over every log, the rollout resumes where it was and completes, and each decision is on
the record once.
"""

import asyncio
import os
import random
import signal
import subprocess
import sys
import time

import aiohttp
import numpy as np
import pandas as pd
import pytest

from tests.conftest import instance_pids
from tests.faults.services import PrivatePostgres, PrivateRedis, private_postgres_reason
from tests.scale.test_scale_e2e import Fleet, _healthy
from tests.trail import assert_trail_whole
from tether.core import Settings
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.rollout.plan import Plan
from tether.serving.routing import bucket
from tether.serving.window import MetricStore

_why = private_postgres_reason()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(_why is not None, reason=f"a private PostgreSQL cannot run here: {_why}"),
]

PLAN = Plan(
    steps=[5, 50, 100],
    bake_seconds=2,
    min_samples=60,
    max_step_seconds=600,
    watch_seconds=2,
    guardrails={"error_rate": {"margin": 0.2}, "schema_violation_rate": {"margin": 0.2}, "latency_p99": None},
)
FAULTS = ("postgres_restart", "redis_restart", "kill_instance", "kill_controller", "kill_gateway")
SEED = int(os.environ.get("TETHER_FAULT_SEED", "20261206"))


def fault_plan(seed: int) -> list[tuple[int, str]]:
    """(answered requests before it strikes, fault), in the order the seed draws: every fault once."""
    rng = random.Random(seed)
    order = rng.sample(FAULTS, len(FAULTS))
    points = sorted(rng.sample(range(60, 600, 20), len(order)))
    return list(zip(points, order, strict=True))


@pytest.fixture
def private_services():
    pg = PrivatePostgres()
    try:
        redis = PrivateRedis()
    except Exception:
        pg.stop()
        raise
    try:
        yield pg, redis
    finally:
        redis.stop()
        pg.stop()


def test_a_canary_completes_through_seeded_faults_and_the_trail_is_whole(private_services, tmp_path, project):
    pg, redis = private_services
    plan = fault_plan(SEED)
    print(f"fault plan (TETHER_FAULT_SEED={SEED}): {plan}")
    settings = Settings(home=tmp_path / "home", database_url=pg.url, blob_url="", redis_url=redis.url)
    reg = Registry.open(settings)
    v1 = project.register(reg)
    project.train("--learning-rate", "0.3")
    v2 = project.register(reg)
    ctrl = Controller(reg, MetricStore())
    ctrl.deploy("fraud", v1.ref, reason="first", force=True)
    # The whole training population: a few hundred rows drawn again and again drift from it, and the drift watch
    # rightly holds the rollout (seen: merchant_category on 200 rows).
    records = pd.read_parquet(project.data).drop(columns=["is_fraud", "gender"]).to_dict("records")
    fleet = Fleet(settings, tmp_path)
    fleet.start("gw", "gateway")
    fleet.start("ctl", "controller")
    answered: dict[str, str] = {}
    struck: list[tuple[str, int, int]] = []  # (fault, answered before, the rollout's step then)
    try:
        asyncio.run(_drive(fleet, reg, ctrl, v2, records, plan, pg, redis, answered, struck))
    finally:
        fleet.stop()
    assert [f for f, _, _ in struck] == [f for _, f in plan], struck

    # The rollout resumed after every fault and completed; each decision once.
    ro = ctrl.latest("fraud")
    events = ctrl.events(ro.id)
    kinds = [e.kind for e in events]
    assert ro.state == "completed", (struck, [(e.kind, e.reason) for e in events])
    assert kinds == ["start", "advance", "promote", "complete"], kinds

    # Nothing acknowledged lost or duplicated; every log verifies.
    assert_trail_whole(settings, answered, decisions=len(kinds))
    verify = subprocess.run(
        [sys.executable, "-m", "tether.cli", "audit", "verify"], env=fleet.env, capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    reg.close()


async def _drive(fleet, reg, ctrl, v2, records, plan, pg, redis, answered, struck):
    home = reg.settings.home
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        await _healthy(session, fleet.url("gw"))
        ro = ctrl.start("fraud", v2.ref, PLAN, force=True, reason="fault injection test")
        salt = f"fraud/rollout-{ro.id}"
        rng = np.random.default_rng(SEED % 2**32)
        # Half the traffic from entities in the 5% cohort, so the canary's evidence comes in seconds.
        cohort = [k for k in (f"c{i}" for i in range(20_000)) if bucket(k, salt) < 500][:50]
        state = {"done": False}
        pending = list(plan)

        async def one() -> None:
            while not state["done"]:
                rec = records[int(rng.integers(len(records)))]
                key = cohort[int(rng.integers(len(cohort)))] if rng.random() < 0.5 else f"e{rng.integers(1 << 30)}"
                try:
                    async with session.post(
                        f"{fleet.url('gw')}/v1/models/fraud/predict", json={"records": [rec], "entity_key": key}
                    ) as r:
                        await r.read()
                        if r.status == 200:
                            trace = r.headers["X-Tether-Trace"]
                            assert trace not in answered, f"trace {trace} answered twice"
                            answered[trace] = r.headers["X-Tether-Version"]
                        else:
                            await asyncio.sleep(0.05)  # a refusal during a fault: the client retries later
                except (TimeoutError, aiohttp.ClientError):
                    await asyncio.sleep(0.1)  # the gateway is down: the client retries later

        async def strike(fault: str) -> None:
            if fault == "postgres_restart":
                await asyncio.to_thread(pg.restart)
            elif fault == "redis_restart":
                await asyncio.to_thread(redis.restart)
            elif fault == "kill_instance":
                champion = (await asyncio.to_thread(reg.get, "fraud@champion")).id
                running = instance_pids(home)
                pids = [p for p in running if _serves(p, champion, running)]
                assert pids, "no instance of the champion to kill"
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
            else:
                name = "ctl" if fault == "kill_controller" else "gw"
                fleet.kill(name)
                await asyncio.sleep(0.5)
                fleet.start(name, "controller" if name == "ctl" else "gateway")
                if name == "gw":
                    await _healthy(session, fleet.url("gw"))

        async def director() -> None:
            deadline = time.monotonic() + 480
            while time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                now = await asyncio.to_thread(_latest, ctrl)
                if now is None:
                    continue  # the database is restarting: read again
                if pending and len(answered) >= pending[0][0]:
                    _, fault = pending.pop(0)
                    struck.append((fault, len(answered), now.step_index))
                    await strike(fault)
                    continue
                if not pending and now.state in ("completed", "rolled_back", "paused", "aborted", "reverted"):
                    break
                if now.state in ("rolled_back", "paused", "aborted", "reverted"):
                    break  # the faults broke the rollout: the assertions say how
            state["done"] = True

        await asyncio.gather(director(), *(one() for _ in range(6)))
    print(f"{len(answered)} requests answered; faults struck at {struck}")


def _latest(ctrl):
    try:
        return ctrl.latest("fraud")
    except Exception:  # PostgreSQL restarting under the test's own reads
        return None


def _serves(pid: int, version_id: str, running: list[int]) -> bool:
    """Whether process ``pid`` serves the version: an instance of its own names it; a pooled worker holds it when
    placement puts it on that worker's slot."""
    from tether.serving.placement import place

    def cmdline(p: int) -> list[bytes]:
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                return f.read().split(b"\0")
        except OSError:
            return []

    args = cmdline(pid)
    if b"tether.serving.pool_worker" not in args:
        return version_id.encode() in args
    slots = [int(a[a.index(b"--slot") + 1]) for p in running if b"--slot" in (a := cmdline(p))]
    return place(version_id, sorted(set(slots))) == int(args[args.index(b"--slot") + 1])
