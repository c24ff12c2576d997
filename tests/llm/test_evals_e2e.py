"""The LLM evaluation loop through the real gateway: checks on every interaction, the embedded grader on a
sample, scores on the store and on the audit trail, bound to each interaction's trace id.

Real parts: `tether serve` on 127.0.0.1, an application model behind a real OpenAI-compatible HTTP server (its
answers scripted), the MiniLM grader, the audit log on disk, SQLite.
"""

import asyncio
import itertools
import json
import random
from datetime import timedelta

import openai
import pytest

from tests.llm.conftest import register_llm
from tests.openai_stub import scripted_openai
from tether.api.server import Server
from tether.audit.log import AuditLog
from tether.graders.scores import read
from tether.monitor.config import MonitorConfig
from tether.monitor.watch import Watch
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.serving.window import MetricStore

pytestmark = pytest.mark.slow

SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "reply",
        "schema": {
            "type": "object",
            "properties": {"answer": {"type": "string"}, "ticket": {"type": "integer"}},
            "required": ["answer", "ticket"],
            "additionalProperties": False,
        },
    },
}


def spec_for(url: str, model: str) -> dict:
    return {
        "backend": {"kind": "openai", "endpoints": [url], "model": model},
        "prompt": {"version": "1", "system": "Answer as JSON.", "response_format": SCHEMA},
        "decoding": {"temperature": 0, "max_tokens": 64},
        "cache": {"exact": False, "semantic": False},
        "guardrails": {"rules": [{"name": "no-email", "pattern": r"[\w.]+@[\w.]+", "must": "not_match"}]},
    }


async def until(predicate, *, timeout: float = 60.0, what: str = "the condition"):
    """Bounded polling: the condition, checked every 50 ms, for at most ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_every_interaction_is_checked_a_sample_is_graded_and_scores_reach_the_trail(settings, llm_code, tmp_path):
    bad_answers = itertools.cycle(
        ['{"answer": "oops"}', "Sure! Here you go", '{"answer": "bob@example.com", "ticket": 1}']
    )

    def app(body, n):
        if body["model"] == "smoke" or "broken" not in body["messages"][-1]["content"]:
            return json.dumps({"answer": "Your ticket is open.", "ticket": n})
        return next(bad_answers)

    with scripted_openai() as backend:
        backend.script = app
        spec = spec_for(backend.url, "app")
        spec_file = tmp_path / "app.yaml"
        spec_file.write_text(json.dumps(spec))
        with Registry.open(settings) as reg:
            mv = register_llm(reg, "helpdesk", llm_code, spec_file, spec)
            Controller(reg, MetricStore()).deploy("helpdesk", mv.ref, reason="first", force=True)
            cfg = MonitorConfig.model_validate({"llm": {"sampling": {"rate": 0.5}}})
            Watch(reg).set_config("helpdesk", cfg)

        async def body(server):
            await until(lambda: "helpdesk" in server.monitor_configs, what="the monitor settings to be read")
            c = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=30)
            traces = []
            for i in range(40):
                text = f"question {i}" + (" broken" if i % 4 == 0 else "")
                raw = await c.chat.completions.with_raw_response.create(
                    model="helpdesk",
                    messages=[{"role": "user", "content": text}],
                    metadata={"context": "Tickets are opened for every question."},
                )
                traces.append(raw.headers["X-Tether-Trace"])
            db = server.registry.store.db
            rows = await until(
                lambda: (
                    (r := read(db, "helpdesk"))
                    and len({x["trace_id"] for x in r if x["metric"] == "complete"}) == 40
                    and r
                ),
                what="check rows for all 40 interactions",
            )
            # The routes beside the monitor's: status, scores (a bad limit is a 400 that says why), report.
            import aiohttp

            async with aiohttp.ClientSession() as s:
                async with s.get(server.url + "/v1/models/helpdesk/llm/scores?limit=5&metric=schema_valid") as r:
                    got = await r.json()
                    assert r.status == 200 and len(got["scores"]) == 5
                async with s.get(server.url + "/v1/models/helpdesk/llm/scores?limit=zero") as r:
                    assert r.status == 422 and "limit" in (await r.json())["error"]
                async with s.get(server.url + "/v1/models/nope/llm/status") as r:
                    assert r.status == 404
                async with s.get(server.url + "/v1/models/helpdesk/llm/status") as r:
                    status = await r.json()
                    assert r.status == 200 and status["champion"] == mv.id and "grading" in status
                async with s.get(server.url + "/v1/models/helpdesk/llm/report") as r:
                    assert r.status == 200 and "schema_valid" in await r.text()
                async with s.get(server.url + "/v1/llm/graders") as r:
                    assert {g["name"] for g in (await r.json())["graders"]} >= {"tether-checks", "tether-minilm"}
            # An application alarm's actions: the version's cache entries quarantined, on the trail.
            anomaly = await asyncio.to_thread(
                server.llm_evals.watch._record,
                "helpdesk",
                mv.id,
                "llm:schema_valid",
                "grader=t",
                "decay",
                server.clock.now(),
                statistic=-0.1,
                p_value=None,
                effect=0.1,
                min_shift=0.02,
                baseline_value=1.0,
                live_value=0.9,
                live_rows=40,
                evidence={},
            )
            done = await server.llm_evals.act("helpdesk", [anomaly])
            assert done == [f"quarantined 0 cache entries of {mv.id[:12]}"]
            judge_alarm = await asyncio.to_thread(
                server.llm_evals.watch._record,
                "helpdesk",
                mv.id,
                "judge:j:judge",
                "anchor=a",
                "anchor_paired",
                server.clock.now(),
                statistic=-0.5,
                p_value=0.0,
                effect=0.5,
                min_shift=0.02,
                baseline_value=None,
                live_value=None,
                live_rows=30,
                evidence={},
            )
            assert await server.llm_evals.act("helpdesk", [judge_alarm]) == []  # judge drift never acts
            # The window the rollout controller reads counts schema violations on every interaction.
            tally = server.metrics.tally("helpdesk", mv.id, "champion", server.clock.now() - timedelta(hours=1))
            return rows, traces, tally, server.llm.grading.stats()

        rows, traces, tally, stats = asyncio.run(_run(settings, body))
    schema = {r["trace_id"]: r["value"] for r in rows if r["metric"] == "schema_valid"}
    broken = {t for i, t in enumerate(traces) if i % 4 == 0}
    assert set(schema) == set(traces)
    assert all(schema[t] == 1.0 for t in set(traces) - broken)
    email = {r["trace_id"] for r in rows if r["metric"] == "rule:no-email" and r["value"] == 0.0}
    bad = {t for t, v in schema.items() if v == 0.0}
    assert len(email) == 3 and email <= broken  # 10 broken answers: 7 break the schema, 3 break the guard-rail
    assert len(bad) == 7 and bad <= broken and not bad & email
    assert tally.schema_violations == len(bad) and tally.requests == 40
    assert all(r["inclusion"] == 1.0 for r in rows if r["metric"] == "schema_valid")
    graded = {r["trace_id"] for r in rows if r["metric"] == "relevance"}
    assert 8 <= len(graded) <= 32  # sampled at 0.5
    assert all(r["inclusion"] == 0.5 for r in rows if r["metric"] == "relevance")
    grounding = [r for r in rows if r["metric"] == "grounding"]
    assert grounding and all(r["value"] is not None for r in grounding)  # the request's metadata context
    assert stats["errors"] == 0 and stats["graded"] == len(graded)
    # On the trail after the server sealed at shutdown: one score record per interaction and grader.
    _, recs = AuditLog(settings).query("SELECT trace_id, payload FROM records WHERE kind = 'score'")
    bound = {json.loads(p)["interaction"] for _, p in recs}
    assert bound == set(traces)
    assert len(recs) == 40 + len(graded)
    _, cache = AuditLog(settings).query("SELECT payload FROM records WHERE kind = 'cache'")
    assert any("quarantined" in json.loads(p)["reason"] for (p,) in cache)


async def _run(settings, body):
    server = Server(settings, port=0, tick_seconds=0.3, auth=False)
    await server.start()
    try:
        await server.wait_ready()
        return await body(server)
    finally:
        await server.stop()


BROKEN_SHARE = 0.05
#: From bench/llm_evals.py's seeded simulation of the default guard (margin 0.01, the plan's alpha split over
#: its tests and steps): a canary that breaks JSON in 5% of answers is rolled back within 755 canary requests
#: in 95% of runs, 1160 at most in 500 runs. The test allows 1500.
CANARY_BOUND = 1500


def test_a_wrapper_change_that_breaks_json_for_5_percent_is_rolled_back(settings, llm_code, tmp_path):
    from tether.rollout.plan import Plan

    rng = random.Random(11)

    def app(body, n):
        if body["model"] == "app-v2" and n > 2 and rng.random() < BROKEN_SHARE:
            return 'Sure, here is the JSON: {"answer": "ok", "ticket": 1}'  # the new wrapper's preamble
        return json.dumps({"answer": "Your ticket is open.", "ticket": n})

    with scripted_openai() as backend:
        backend.script = app
        with Registry.open(settings) as reg:
            versions = []
            for model in ("app-v1", "app-v2"):
                spec = spec_for(backend.url, model)
                spec_file = tmp_path / f"{model}.yaml"
                spec_file.write_text(json.dumps(spec))
                versions.append(register_llm(reg, "helpdesk", llm_code, spec_file, spec))
            v1, v2 = versions
            ctrl = Controller(reg, MetricStore())
            ctrl.deploy("helpdesk", v1.ref, reason="first", force=True)
            plan = Plan(steps=[50, 100], bake_seconds=1, min_samples=40, max_step_seconds=600, watch_seconds=1)
            ctrl.start("helpdesk", v2.ref, plan, force=True, reason="the new wrapper")

        async def body(server):
            c = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=30)
            canary = 0
            for i in range(6000):
                raw = await c.chat.completions.with_raw_response.create(
                    model="helpdesk", messages=[{"role": "user", "content": f"question {i}"}], user=f"u{i}"
                )
                canary += raw.headers["X-Tether-Version"] == v2.id
                if i % 20 == 0:
                    ro = await asyncio.to_thread(server.controller.latest, "helpdesk")
                    if ro.state not in ("running", "watching"):
                        return ro, canary
            return await asyncio.to_thread(server.controller.latest, "helpdesk"), canary

        ro, canary = asyncio.run(_run(settings, body))
    with Registry.open(settings) as reg:
        events = Controller(reg, MetricStore()).events(ro.id)
        assert ro.state == "rolled_back", [e.reason for e in events]
        assert "schema_violation_rate" in events[-1].reason
        assert reg.get("helpdesk@champion").id == v1.id
    assert canary <= CANARY_BOUND
