"""The OpenAI-compatible gateway end to end, driven by the official ``openai`` package.

Real parts: `tether serve`'s Server on 127.0.0.1, the tiny GPT-2 in its own instance process (the embedded
engine), the MiniLM embedder, the audit log on disk, SQLite.
"""

import asyncio
import json

import aiohttp
import openai
import pytest
from aiohttp import web
from sqlalchemy import select

from tests.conftest import instance_pids
from tests.llm.conftest import register_llm
from tether.api.server import Server
from tether.audit.log import AuditLog
from tether.audit.replay import replay
from tether.llm.ledger import Limits, write_limits
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.serving.auth import create_key
from tether.serving.window import MetricStore
from tether.store.tables import llm_ledger

pytestmark = pytest.mark.slow

SPEC = {
    "prompt": {"version": "1", "system": "You are the support assistant."},
    "decoding": {"temperature": 0, "max_tokens": 16},
    "context": {"max_input_tokens": 160, "keep_last_turns": 2, "block_tokens": 8},
    "prices": {"input_per_1k": 0.5, "output_per_1k": 1.5},
    "cache": {"calibration_rate": 0.0},
}


def deployed(settings, code, weights, spec=SPEC, name="helpdesk"):
    with Registry.open(settings) as reg:
        mv = register_llm(reg, name, code, weights, spec)
        Controller(reg, MetricStore()).deploy(name, mv.ref, reason="first", force=True)
    return mv


async def with_server(settings, body, **kw):
    server = Server(settings, port=0, tick_seconds=0.3, **kw)
    await server.start()
    try:
        await server.wait_ready()
        return await body(server)
    finally:
        await server.stop()


def client(server, key="unused"):
    return openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=60)


def user(text):
    return [{"role": "user", "content": text}]


def test_chat_completions_caches_trimming_and_the_trail(settings, llm_code, tiny_model):
    mv = deployed(settings, llm_code, tiny_model)

    async def body(server):
        c = client(server)
        models = await c.models.list()
        assert [m.id for m in models.data] == ["helpdesk"]

        raw = await c.chat.completions.with_raw_response.create(
            model="helpdesk", messages=user("How do I reset my password?")
        )
        first = raw.parse()
        assert raw.headers["X-Tether-Version"] == mv.id and raw.headers["X-Tether-Cache"] == "none"
        assert first.choices[0].message.content and first.usage.prompt_tokens > 0
        meta = first.model_extra["tether"]
        assert meta["cache"] == "none" and meta["ledger"]["cost"] > 0

        again = await c.chat.completions.create(model="helpdesk", messages=user("How do I reset my password?"))
        assert again.choices[0].message.content == first.choices[0].message.content
        assert again.model_extra["tether"]["cache"] == "exact" and again.usage.total_tokens == 0
        assert again.model_extra["tether"]["ledger"]["saved_tokens"] == first.usage.total_tokens

        para = await c.chat.completions.create(model="helpdesk", messages=user("What is the way to reset my password?"))
        assert para.model_extra["tether"]["cache"] == "semantic"
        assert para.model_extra["tether"]["similarity"] >= 0.92
        neg = await c.chat.completions.create(model="helpdesk", messages=user("Can't I reset my password?"))
        assert neg.model_extra["tether"]["cache"] == "none"
        other_tenant = await c.chat.completions.create(
            model="helpdesk", messages=user("How do I reset my password?"), extra_headers={"X-Tether-Tenant": "b"}
        )
        assert other_tenant.model_extra["tether"]["cache"] == "none"  # caches never cross tenants
        sampled = await c.chat.completions.create(
            model="helpdesk", messages=user("How do I reset my password?"), temperature=0.7
        )
        assert sampled.model_extra["tether"]["cache"] == "none"  # sampled answers are not served from cache

        stream = await c.chat.completions.create(
            model="helpdesk",
            messages=user("How do I cancel my order?"),
            stream=True,
            stream_options={"include_usage": True},
        )
        parts, usage, tail = [], None, None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
            if chunk.usage:
                usage, tail = chunk.usage, chunk.model_extra["tether"]
        assert usage.completion_tokens > 0 and tail["cache"] == "none"
        plain = await c.chat.completions.create(model="helpdesk", messages=user("How do I cancel my order?"))
        assert plain.model_extra["tether"]["cache"] == "exact"
        assert "".join(parts) == plain.choices[0].message.content  # the streamed answer is the cached one

        long = []
        for i in range(10):
            long.append({"role": "user", "content": f"question {i} about invoices and refunds and passwords"})
            long.append({"role": "assistant", "content": "an answer " * 8})
        long.append({"role": "user", "content": "How do I reset my password?"})
        trimmed = await c.chat.completions.create(model="helpdesk", messages=long)
        ctx = trimmed.model_extra["tether"]["context"]
        assert ctx["trimmed"] and ctx["tokens_after"] <= 160 < ctx["tokens_before"]
        assert 20 not in ctx["dropped_messages"] and 19 not in ctx["dropped_messages"]

        with pytest.raises(openai.BadRequestError, match=r"messages\[0\].role is 'bogus'"):
            await c.chat.completions.create(model="helpdesk", messages=[{"role": "bogus", "content": "x"}])
        with pytest.raises(openai.NotFoundError, match="unknown model 'nope'.*helpdesk"):
            await c.chat.completions.create(model="nope", messages=user("x"))
        with pytest.raises(openai.BadRequestError, match="needs at least .* tokens") as e:
            await c.chat.completions.create(model="helpdesk", messages=user("word " * 400))
        assert e.value.code == "context_length_exceeded"
        async with aiohttp.ClientSession() as s:
            async with s.post(server.url + "/v1/chat/completions", data=b"{not json") as r:
                assert r.status == 400 and "malformed JSON" in (await r.json())["error"]["message"]
            async with s.post(server.url + "/v1/models/helpdesk/predict", json={"records": [{"prompt": "x"}]}) as r:
                assert r.status == 400 and "chat/completions" in (await r.json())["error"]
            async with s.get(server.url + "/v1/llm/stats") as r:
                stats = await r.json()
        assert stats["exact_cache"]["hits"] >= 2 and stats["semantic_cache"]["hits"] == 1
        return [first.model_extra["tether"]["trace_id"], again.model_extra["tether"]["trace_id"], tail["trace_id"]]

    traces = asyncio.run(with_server(settings, body, auth=False))
    assert instance_pids(settings.home) == []
    with Registry.open(settings) as reg, reg.store.db.connect() as conn:
        rows = {r.trace_id: r for r in conn.execute(select(llm_ledger))}
    assert rows[traces[0]].cache == "none" and rows[traces[0]].input_tokens > 0
    assert rows[traces[1]].cache == "exact" and rows[traces[1]].cost == 0 and rows[traces[1]].saved_tokens > 0
    log = AuditLog(settings)
    cols, found = log.query("SELECT trace_id, payload FROM records WHERE kind = 'llm'")
    on_trail = {t: json.loads(p) for t, p in found}
    assert set(traces) <= set(on_trail)
    assert on_trail[traces[1]]["cache"] == "exact"
    assert log.verify().ok
    with Registry.open(settings) as reg:  # any historical answer can be rebuilt: the version reloaded, rerun
        for trace in (traces[0], traces[2]):  # a plain answer and a streamed one
            r = replay(reg, log, trace)
            assert r["matches"] and r["triad_matches"] and r["inclusion_proof_verifies"], r


def test_budgets_hold_under_parallel_requests(settings, llm_code, tiny_model):
    deployed(settings, llm_code, tiny_model)
    with Registry.open(settings) as reg:
        # The key's holder is a service; its tenant (what the budget is on) is the team's.
        key, secret = create_key(reg.store.db, "checkout-svc", "client", reg.clock.now(), tenant="team-a")
        write_limits(reg.store.db, "tenant:team-a", Limits(tokens_per_day=400), reg.clock.now(), "test")

    async def body(server):
        c = client(server, secret)

        async def one(i):
            try:
                r = await c.chat.completions.create(model="helpdesk", messages=user(f"How do I renew order {i}?"))
                return r.usage.total_tokens
            except openai.RateLimitError as e:
                assert "tenant:team-a is over its tokens per day budget" in e.message
                assert "resets at" in e.message and int(e.response.headers["Retry-After"]) > 0
                return None

        return await asyncio.gather(*(one(i) for i in range(24)))

    results = asyncio.run(with_server(settings, body))
    served = [r for r in results if r is not None]
    assert served and len(served) < 24
    assert sum(served) <= 400
    with Registry.open(settings) as reg, reg.store.db.connect() as conn:
        spent = sum(r.input_tokens + r.output_tokens for r in conn.execute(select(llm_ledger)))
    assert spent == sum(served) <= 400


async def _bad_backend(state):
    """A misbehaving OpenAI-compatible server: slow once ``state["slow"]`` is set; its streams break half-way."""

    async def chat(request):
        body = await request.json()
        if state.get("slow"):
            await asyncio.sleep(5)
        if body.get("stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for word in ("Half", " an", " answer"):
                chunk = {
                    "id": "x",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": "m",
                    "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
                }
                await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            request.transport.close()  # the connection drops before [DONE]
            return resp
        return web.json_response(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/v1"


def test_backend_timeout_and_broken_stream(settings, llm_code, tmp_path):
    async def main():
        slow_state: dict = {}
        slow, slow_url = await _bad_backend(slow_state)
        broken, broken_url = await _bad_backend({})
        with Registry.open(settings) as reg:
            for name, url in (("slow", slow_url), ("broken", broken_url)):
                spec = {
                    "backend": {"kind": "openai", "endpoints": [url], "model": "m", "timeout_s": 1},
                    "cache": {"exact": False, "semantic": False},
                }
                spec_file = tmp_path / f"{name}.yaml"
                spec_file.write_text(json.dumps(spec))
                # For a remote backend the spec file is the weights: endpoint and model name are the identity.
                # Registration runs a smoke prediction against the endpoint (both answer well until now).
                mv = await asyncio.to_thread(register_llm, reg, name, llm_code, spec_file, spec)
                Controller(reg, MetricStore()).deploy(name, mv.ref, reason="test", force=True)
        slow_state["slow"] = True

        async def body(server):
            c = client(server)
            with pytest.raises(openai.APIStatusError, match="did not answer within 1") as e:
                await c.chat.completions.create(model="slow", messages=user("hi"))
            assert e.value.status_code == 504
            stream = await c.chat.completions.create(model="broken", messages=user("hi"), stream=True)
            got = []
            with pytest.raises(openai.APIError, match="the stream before it finished"):
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        got.append(chunk.choices[0].delta.content)
            assert "".join(got) == "Half an answer"

        try:
            await with_server(settings, body, auth=False)
        finally:
            await slow.cleanup()
            await broken.cleanup()

    asyncio.run(main())
    with Registry.open(settings) as reg, reg.store.db.connect() as conn:
        statuses = {r.model_name: r.status for r in conn.execute(select(llm_ledger))}
    assert statuses == {"slow": "error", "broken": "partial"}
    _, rows = AuditLog(settings).query("SELECT model, payload FROM records WHERE kind = 'llm'")
    partial = next(json.loads(p) for m, p in rows if m == "broken")
    assert partial["status"] == "partial" and partial["output"]["text"] == "Half an answer"
