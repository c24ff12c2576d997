"""LLM versions under the serving machinery: replicas with prefix affinity, rollouts, cache invalidation."""

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from tests.llm.conftest import register_llm
from tests.llm.test_gateway_e2e import client, deployed, user, with_server
from tether.audit.log import AuditLog
from tether.llm.gateway import ReplicaPicker
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.rollout.plan import Plan
from tether.serving.window import MetricStore

pytestmark = pytest.mark.slow

LONG_SYSTEM = "You are the support assistant. Answer in one short sentence and be polite to the customer. " * 3


def start_replica(weights):
    proc = subprocess.Popen(
        [sys.executable, "-m", "tether.llm.worker", "--model-path", str(weights), "--name", "tiny"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "TETHER_PARENT_PID": str(os.getpid())},  # it stops by itself if this process dies
    )
    for line in proc.stdout:
        if line.startswith("TETHER_WORKER_READY"):
            return proc, f"http://127.0.0.1:{line.split()[1]}/v1"
    raise RuntimeError("replica did not start")


def test_picker_prefers_affinity_until_the_load_is_uneven():
    p = ReplicaPicker()
    urls = ["http://a", "http://b", "http://c"]
    first = p.pick(urls, "prefix-1", slack=2)
    assert all(p.pick(urls, "prefix-1", slack=2) == first for _ in range(20))
    chosen = {p.pick(urls, f"prefix-{i}", slack=2) for i in range(30)}
    assert chosen == set(urls)  # different prefixes spread over the replicas
    p.in_flight = {first: 5}
    assert p.pick(urls, "prefix-1", slack=2) != first and p.fallback == 1


def test_replicas_get_requests_by_prefix_affinity(settings, llm_code, tiny_model, tmp_path):
    procs = [start_replica(tiny_model) for _ in range(2)]
    try:
        spec = {
            "backend": {"kind": "openai", "endpoints": [url for _, url in procs], "model": "tiny"},
            "prompt": {"system": LONG_SYSTEM},
            "decoding": {"max_tokens": 4},
            "cache": {"exact": False, "semantic": False},
        }
        spec_file = tmp_path / "replicas.yaml"
        spec_file.write_text(json.dumps(spec))
        with Registry.open(settings) as reg:
            mv = register_llm(reg, "helpdesk", llm_code, spec_file, spec)
            Controller(reg, MetricStore()).deploy("helpdesk", mv.ref, reason="first", force=True)

        async def body(server):
            c = client(server)
            cached = []
            for i, tool in enumerate(["lookup_order", "lookup_invoice"] * 4):
                tools = [{"type": "function", "function": {"name": tool, "parameters": {"type": "object"}}}]
                r = await c.chat.completions.create(model="helpdesk", messages=user(f"question {i}"), tools=tools)
                cached.append(r.usage.prompt_tokens_details.cached_tokens)
            return cached, server.llm.picker.affine

        cached, affine = asyncio.run(with_server(settings, body, auth=False))
        # Each static prefix went to one replica, whose prefix cache then served the system prompt's blocks.
        assert min(cached[2:]) >= 16 and affine == 8  # (replica 0 also saw the registration smoke test)
    finally:
        for proc, _ in procs:
            proc.terminate()
            proc.wait(10)


def test_rollouts_and_cache_invalidation_apply_to_llm_versions(settings, llm_code, tiny_model):
    spec = {
        "prompt": {"system": "You are the support assistant."},
        "decoding": {"max_tokens": 8},
        "cache": {"calibration_rate": 0.0},
    }
    v1 = deployed(settings, llm_code, tiny_model, spec)
    with Registry.open(settings) as reg:
        v2 = register_llm(reg, "helpdesk", llm_code, tiny_model, {**spec, "decoding": {"max_tokens": 6}})

    async def body(server):
        c = client(server)
        first = await c.chat.completions.create(model="helpdesk", messages=user("How do I reset my password?"))
        assert first.model_extra["tether"]["version"] == v1.id
        assert len(server.llm.exact) == 1
        with Registry.open(settings) as reg:
            ctl = Controller(reg, MetricStore())
            ctl.start(
                "helpdesk",
                v2.ref,
                Plan(steps=[50, 100], bake_seconds=600, min_samples=10_000, watch_seconds=0),
                force=True,
                reason="test",
            )
        await server.wait_ready()  # the canary's instance is up (meanwhile its share went to the champion)
        versions = []
        for i in range(30):
            r = await c.chat.completions.create(model="helpdesk", messages=user(f"order {i}?"), user=f"customer-{i}")
            versions.append(r.model_extra["tether"]["version"])
        assert 3 <= versions.count(v2.id) <= 27  # the canary takes a share; the user field keeps a customer's arm
        epoch = datetime.fromtimestamp(0, UTC)
        assert server.metrics.tally("helpdesk", v2.id, "canary", epoch).requests == versions.count(v2.id)
        with Registry.open(settings) as reg:
            Controller(reg, MetricStore()).promote("helpdesk", reason="done", actor="test")
        for _ in range(50):  # the server's controller ends the (zero-second) watch and retires v1
            await asyncio.sleep(0.2)
            if v1.id not in server.llm._served_versions:
                break
        again = await c.chat.completions.create(model="helpdesk", messages=user("How do I reset my password?"))
        assert again.model_extra["tether"]["version"] == v2.id and again.model_extra["tether"]["cache"] == "none"
        assert all(e.version_id != v1.id for e in server.llm.exact._d.values())

    asyncio.run(with_server(settings, body, auth=False))
    _, rows = AuditLog(settings).query("SELECT version_id, payload FROM records WHERE kind = 'cache'")
    assert [(vid, json.loads(p)["event"]) for vid, p in rows] == [(v1.id, "invalidated")]
