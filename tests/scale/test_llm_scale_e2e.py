"""Two real gateway processes on PostgreSQL and Redis, each with its own embedded engine for the tiny GPT-2:

* an answer cached by gateway A is served by gateway B, from the exact cache and from the semantic cache
  (B's index follows A's writes through the Redis stream), to the same tenant only;
* parallel requests of one tenant spread over both gateways never spend more than the tenant's budget: the
  answers' usage and the ledger agree, and the requests past the budget are refused (429), not served.
"""

import asyncio
import time

import aiohttp
import pytest
from sqlalchemy import select

from tests.conftest import REDIS_URL, needs_redis
from tests.llm.conftest import llm_code, register_llm  # noqa: F401  (fixture)
from tests.scale.test_scale_e2e import Fleet, _healthy
from tether.core import Settings
from tether.llm.ledger import Limits, write_limits
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.serving.window import MetricStore
from tether.store.tables import llm_ledger

pytest.importorskip("torch", reason="the llm extra (torch, transformers) is not installed")
pytestmark = [pytest.mark.slow, pytest.mark.postgres, needs_redis]

SPEC = {
    "prompt": {"version": "1", "system": "You are the support assistant."},
    "decoding": {"temperature": 0, "max_tokens": 16},
    "prices": {"input_per_1k": 0.5, "output_per_1k": 1.5},
    "cache": {"calibration_rate": 0.0},
}
BUDGET = 400  # tokens per day of tenant team-a: a handful of the 30 requests fit


def _register(settings, tmp_path, code):
    from tether.llm.tiny import build_tiny_gpt2

    with Registry.open(settings) as reg:
        mv = register_llm(reg, "helpdesk", code, build_tiny_gpt2(tmp_path / "gpt2"), SPEC)
        Controller(reg, MetricStore()).deploy("helpdesk", mv.ref, reason="first", force=True)
        write_limits(reg.store.db, "tenant:team-a", Limits(tokens_per_day=BUDGET), reg.clock.now(), "test")
    return mv


async def _chat(session, url, text, tenant):
    body = {"model": "helpdesk", "messages": [{"role": "user", "content": text}]}
    async with session.post(f"{url}/v1/chat/completions", json=body, headers={"X-Tether-Tenant": tenant}) as r:
        return r.status, r.headers.get("X-Tether-Cache"), await r.json()


async def _serving(session, url, seconds=180.0):
    """Until the gateway answers a chat completion (its engine process is up)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, _, body = await _chat(session, url, "Are you there?", "warm-up")
        if status == 200:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"{url} never answered a chat completion: {body}")


def test_two_gateways_share_one_budget_and_their_caches(pg_schema_url, tmp_path, redis_namespace, llm_code):  # noqa: F811
    settings = Settings(
        home=tmp_path / "home",
        database_url=pg_schema_url,
        blob_url="",
        redis_url=REDIS_URL,
        redis_namespace=redis_namespace,
        gateway_replicas=2,
    )
    _register(settings, tmp_path, llm_code)
    fleet = Fleet(settings, tmp_path)
    for name in ("gw-a", "gw-b"):
        fleet.start(name, "gateway")
    try:
        served, refused, caches = asyncio.run(_drive(fleet))
    finally:
        fleet.stop()  # each gateway flushes its ledger rows as it stops

    assert caches == {"a": "none", "b_exact": "exact", "b_semantic": "semantic", "b_other_tenant": "none"}
    assert refused, "the budget never bit: the test proves nothing"
    assert served and sum(served) <= BUDGET
    with Registry.open(settings) as reg, reg.store.db.connect() as conn:
        rows = conn.execute(select(llm_ledger).where(llm_ledger.c.tenant == "team-a")).all()
    spent = sum(r.input_tokens + r.output_tokens for r in rows)
    assert spent == sum(served) <= BUDGET, (spent, served)


async def _drive(fleet):
    a, b = fleet.url("gw-a"), fleet.url("gw-b")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        for url in (a, b):
            await _healthy(s, url)
            await _serving(s, url)
        caches = {}
        _, caches["a"], first = await _chat(s, a, "How do I reset my password?", "team-b")
        _, caches["b_exact"], again = await _chat(s, b, "How do I reset my password?", "team-b")
        assert again["choices"][0]["message"]["content"] == first["choices"][0]["message"]["content"]
        _, caches["b_semantic"], para = await _chat(s, b, "What is the way to reset my password?", "team-b")
        assert para["choices"][0]["message"]["content"] == first["choices"][0]["message"]["content"]
        _, caches["b_other_tenant"], _ = await _chat(s, b, "How do I reset my password?", "team-c")

        async def one(i):
            status, _, body = await _chat(s, (a, b)[i % 2], f"How do I renew order {i}?", "team-a")
            if status == 429:
                assert "tenant:team-a is over its tokens per day budget" in body["error"]["message"], body
                return None
            assert status == 200, body
            return int(body["usage"]["total_tokens"])

        results = await asyncio.gather(*(one(i) for i in range(30)))
    served = [r for r in results if r is not None]
    return served, len(results) - len(served), caches
