"""End to end with real processes: instances, the gateway over HTTP on 127.0.0.1, the controller, a bounded load."""

import asyncio
import json
import os
import signal
import time

import aiohttp
import numpy as np
import pandas as pd
import pytest

from tests.conftest import git
from tether.api.server import Server
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.rollout.plan import Plan
from tether.serving.auth import create_key
from tether.serving.window import MetricStore

pytestmark = pytest.mark.slow

FAST_PLAN = Plan(
    steps=[10, 50, 100],
    bake_seconds=1,
    min_samples=40,
    max_step_seconds=120,
    watch_seconds=2,
    guardrails={
        "error_rate": {"margin": 0.2},
        "schema_violation_rate": {"margin": 0.2},
        "latency_p99": {"tolerance": 0.5, "margin": 0.3},
    },
)


@pytest.fixture
def served(settings, project):
    reg = Registry.open(settings)
    v1 = project.register(reg)
    project.train("--learning-rate", "0.3")
    v2 = project.register(reg)
    Controller(reg, MetricStore()).deploy("fraud", v1.ref, reason="first", force=True)
    records = pd.read_parquet(project.data).drop(columns=["is_fraud", "gender"]).head(200).to_dict("records")
    yield reg, v1, v2, records
    reg.close()


def _run(coro):
    return asyncio.run(coro)


async def _with_server(settings, body, **kw):
    server = Server(settings, port=0, tick_seconds=0.3, **kw)
    await server.start()
    try:
        await server.wait_ready()
        async with aiohttp.ClientSession() as session:
            return await body(server, session)
    finally:
        await server.stop()


async def _load(server, session, records, *, until, seconds=90, concurrency=8, headers=None):
    """A bounded load generator: at most ``seconds`` and a fixed concurrency, stopping when ``until()``."""
    deadline = time.monotonic() + seconds
    sent = [0]
    rng = np.random.default_rng(0)

    async def worker():
        while time.monotonic() < deadline and not until():
            rec = records[int(rng.integers(len(records)))]
            body = {"records": [rec], "entity_key": f"c{rng.integers(1_000_000)}"}
            async with session.post(f"{server.url}/v1/models/fraud/predict", json=body, headers=headers) as r:
                await r.read()
            sent[0] += 1

    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return sent[0]


def test_the_gateway_contract(settings, served):
    reg, v1, v2, records = served
    _, client_key = create_key(reg.store.db, "app", "client", reg.clock.now())
    _, viewer_key = create_key(reg.store.db, "ops", "viewer", reg.clock.now())
    client = {"Authorization": f"Bearer {client_key}"}

    async def body(server, s):
        url = f"{server.url}/v1/models/fraud/predict"
        async with s.post(url, json={"records": records[:3]}, headers=client) as r:
            assert r.status == 200
            data = await r.json()
            assert r.headers["X-Tether-Version"] == v1.id and r.headers["X-Tether-Trace"] == data["trace_id"]
            assert len(data["outputs"]) == 3 and "probability" in data["outputs"][0]
        async with s.post(url, json={"records": records[:1]}) as r:
            assert r.status == 401
        async with s.post(url, json={"records": records[:1]}, headers={"Authorization": f"Bearer {viewer_key}"}) as r:
            assert r.status == 403 and "may not predict" in (await r.json())["error"]
        async with s.post(url, data=b"{nope", headers=client) as r:
            assert r.status == 400 and "malformed JSON" in (await r.json())["error"]
        bad = [dict(records[0], amount="lots", hour=None)]
        async with s.post(url, json={"records": bad}, headers=client) as r:
            err = (await r.json())["error"]
            assert r.status == 422 and "record 0: field 'amount': expected a number" in err and "'hour'" in err
        async with s.post(f"{server.url}/v1/models/nope/predict", json={"records": records[:1]}, headers=client) as r:
            assert r.status == 404
        async with s.post(url, data=b"[" + b"1," * 3_000_000 + b"1]", headers=client) as r:
            assert r.status == 413
        async with s.post(
            f"{server.url}/v1/feedback", json={"trace_id": data["trace_id"], "labels": [0, 1, 0]}, headers=client
        ) as r:
            assert r.status == 200
        # The pooled worker serving it dies: the gateway keeps serving (the version moves to the other worker, or
        # the answer is a 503 that counts against no version), and the supervisor restarts the worker.
        os.kill(server.runtime.instance(v1.id).pid, signal.SIGKILL)
        await asyncio.sleep(0.3)
        async with s.post(url, json={"records": records[:1]}, headers=client) as r:
            assert r.status in (200, 503)
        await server.wait_ready()
        for _ in range(50):
            async with s.post(url, json={"records": records[:1]}, headers=client) as r:
                if r.status == 200:
                    break
            await asyncio.sleep(0.2)
        assert r.status == 200
        async with s.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {viewer_key}"}) as r:
            text = await r.text()
        assert 'tether_rejected_total{model="fraud",reason="malformed_json"} 1' in text
        assert 'reason="too_large"' in text and 'reason="unknown_model"' in text
        assert "tether_schema_violations_total" in text and 'reason="worker_down"' in text
        assert "tether_pool_worker_deaths_total 1" in text

    _run(_with_server(settings, body))


def test_shadow_traffic_never_changes_a_response(settings, served):
    reg, v1, v2, records = served
    Controller(reg, MetricStore()).shadow("fraud", v2.ref, 100)

    async def body(server, s):
        direct = []
        for rec in records[:20]:
            async with s.post(f"{server.url}/v1/models/fraud/predict", json={"records": [rec]}) as r:
                assert r.headers["X-Tether-Version"] == v1.id
                direct.append((await r.json())["outputs"][0])
        for _ in range(300):  # shadow copies are fire-and-forget: wait (bounded) for the last ones to land
            if not server.gateway.shadow_tasks:
                break
            await asyncio.sleep(0.1)
        return direct, server.metrics.tally("fraud", v2.id, "shadow", reg.clock.now().replace(year=2000))

    outputs, shadow = _run(_with_server(settings, body, auth=False))
    model = reg.load(v1.ref)
    expected = model.predict(pd.DataFrame(records[:20]))
    np.testing.assert_allclose([o["probability"] for o in outputs], expected["probability"], rtol=1e-6)
    assert shadow.requests == 20 and shadow.error_count == 0


def _slow_version(reg, project, delay):
    (project.root / "slow.py").write_text(
        "import json, pathlib, time\n"
        "import pandas as pd\n"
        "class Slow:\n"
        "    def __init__(self, d): self.d = d\n"
        "    def predict(self, frame):\n"
        "        time.sleep(self.d)\n"
        "        return pd.DataFrame({'prediction': [0] * len(frame), 'probability': [0.01] * len(frame)})\n"
        "def load(path):\n"
        "    return Slow(json.loads(pathlib.Path(path).read_text())['delay'])\n"
    )
    git(project.root, "add", "slow.py")
    git(project.root, "commit", "-qm", "slow")
    weights = project.root / "model" / "slow.json"
    weights.write_text(json.dumps({"delay": delay}))
    return project.register(reg, weights=weights, flavor="python", flavor_options={"entry_point": "slow:load"})


def _rollout(settings, reg, candidate, records, *, kill_canary=False):
    ctrl = Controller(reg, MetricStore())
    ctrl.start("fraud", candidate.ref, FAST_PLAN, force=True, reason="e2e test")

    async def body(server, s):
        def done():
            ro = server.controller.latest("fraud")
            if kill_canary and ro.state == "running" and not done.killed:
                inst = server.runtime.instance(candidate.id)
                n = server.metrics.tally("fraud", candidate.id, "canary", ro.step_started_at).requests
                if inst is not None and n > 5:
                    os.kill(inst.pid, signal.SIGKILL)
                    done.killed = True
            return ro.state not in ("running", "watching")

        done.killed = False
        sent = await _load(server, s, records, until=done)
        return sent, server.controller.latest("fraud")

    return _run(_with_server(settings, body, auth=False))


def test_a_good_candidate_goes_from_10_to_100_percent(settings, served):
    reg, v1, v2, records = served
    sent, ro = _rollout(settings, reg, v2, records)
    events = Controller(reg, MetricStore()).events(ro.id)
    assert ro.state == "completed", [e.reason for e in events]
    assert [e.kind for e in events] == ["start", "advance", "promote", "complete"]
    assert reg.get("fraud@champion").id == v2.id


def test_a_slow_candidate_is_rolled_back(settings, served, project):
    reg, v1, v2, records = served
    slow = _slow_version(reg, project, 0.6)
    sent, ro = _rollout(settings, reg, slow, records)
    last = Controller(reg, MetricStore()).events(ro.id)[-1]
    assert ro.state == "rolled_back" and "latency_p99" in last.reason, last.reason
    assert reg.get("fraud@champion").id == v1.id


def test_a_crashing_canary_is_rolled_back(settings, served):
    reg, v1, v2, records = served
    sent, ro = _rollout(settings, reg, v2, records, kill_canary=True)
    last = Controller(reg, MetricStore()).events(ro.id)[-1]
    assert ro.state == "rolled_back" and "crashed" in last.reason, last.reason
