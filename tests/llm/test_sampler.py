"""The sampler and the grading loop: bounded memory (shed and counted, never waited for), inclusion
probabilities by stratum, and rows kept across a store that fails, written once."""

import asyncio
from datetime import UTC, datetime

import pytest

from tether.core.clock import ManualClock
from tether.graders.interaction import Interaction, Score
from tether.graders.scores import read
from tether.llm import grading as grading_mod
from tether.llm.grading import GradingLoop
from tether.llm.sampler import Sampler
from tether.monitor.llm_config import LLMEvalConfig

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


def it(i: int, **kw) -> Interaction:
    return Interaction(f"t{i}", ({"role": "user", "content": f"q{i}"},), "answer", model="m", version_id="v" * 64, **kw)


def test_a_full_queue_sheds_and_counts_and_strata_set_the_inclusion():
    cfg = LLMEvalConfig.model_validate({"queue_size": 10, "sampling": {"rate": 0.1}})
    s = Sampler(lambda m: cfg, seed=1)
    check = [Score("g", "complete", 1.0)]
    for i in range(200):
        s.offer(it(i, arm="canary", cache="none"), check, NOW)  # canary: 0.1 x 5 = 0.5
    assert len(s.queue) == 10 and sum(s.shed.values()) > 50 and sum(s.sampled.values()) == 10
    assert len(s.pending) == 200  # the checks' rows: every interaction
    assert {x.inclusion for x in s.queue} == {0.5}
    _, p_exact = s.inclusion(it(0, cache="exact"), cfg)
    _, p_sem = s.inclusion(it(0, cache="semantic"), cfg)
    assert abs(p_exact - 0.02) < 1e-12 and abs(p_sem - 0.5) < 1e-12
    s.budget_left["m"] = 0.1
    assert abs(s.inclusion(it(0), cfg)[1] - 0.01) < 1e-12  # the budget's pacing lowers every probability
    off = LLMEvalConfig.model_validate({"enabled": False})
    quiet = Sampler(lambda m: off)
    quiet.offer(it(1), check, NOW)
    assert not quiet.pending and not quiet.queue


def test_rows_survive_a_store_that_fails_and_are_written_once(registry, monkeypatch):
    cfg = LLMEvalConfig.model_validate({"graders": [], "sampling": {"rate": 1.0}})
    sampler = Sampler(lambda m: cfg, seed=0)
    loop = GradingLoop(registry.store, sampler, lambda m: cfg, ManualClock(NOW), embedder=lambda: None)
    loop.start()
    for i in range(5):
        interaction = it(i)
        sampler.offer(interaction, sampler.checks.one(interaction), NOW)
    real = grading_mod.write
    calls = {"n": 0}

    def flaky(db, rows, *a):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk full")
        return real(db, rows, *a)

    monkeypatch.setattr(grading_mod, "write", flaky)

    async def run():
        with pytest.raises(OSError, match="disk full"):
            await loop.step()
        assert read(registry.store.db, "m") == []
        await loop.step()

    asyncio.run(run())
    rows = read(registry.store.db, "m")
    assert len({r["trace_id"] for r in rows}) == 5 and len(rows) == len({(r["trace_id"], r["metric"]) for r in rows})


def test_the_judge_grades_its_share_within_its_token_budget(registry):
    import orjson

    from tests.openai_stub import scripted_openai
    from tether.graders.registry import Graders
    from tether.graders.spec import GraderSpec

    with scripted_openai() as judge_server:
        judge_server.script = lambda body, n: (
            "not json" if n % 5 == 0 else orjson.dumps({"score": 4, "reason": "ok"}).decode()
        )
        Graders(registry.store).register(
            GraderSpec.parse(
                {
                    "name": "j",
                    "kind": "judge",
                    "config": {"endpoint": judge_server.url, "model": "judge", "repeats": 1, "retries": 0},
                }
            )
        )
        cfg = LLMEvalConfig.model_validate(
            {
                "graders": [],
                "judge": "j",
                "sampling": {"rate": 1.0},
                "budget": {"judge_share": 1.0, "judge_tokens_per_day": 600},
            }
        )
        sampler = Sampler(lambda m: cfg, seed=0)
        loop = GradingLoop(registry.store, sampler, lambda m: cfg, ManualClock(NOW), embedder=lambda: None)
        loop.start()
        for i in range(20):
            sampler.offer(it(i), [], NOW)

        async def run():
            import aiohttp

            loop.session = aiohttp.ClientSession()
            try:
                await loop.step()
            finally:
                await loop.session.close()

        asyncio.run(run())
    rows = [r for r in read(registry.store.db, "m") if r["metric"] == "judge"]
    # 60 tokens a call, 600 a day: 10 judged, the other 10 skipped and counted; every 5th answer malformed.
    assert len(rows) == 10 and loop.counts["judge_skipped_budget"] == 10
    errors = [r for r in rows if r["error"]]
    assert errors and all(r["value"] is None and r["error"].startswith("malformed") for r in errors)
    assert all(r["value"] == 0.75 for r in rows if not r["error"])
    assert {r["inclusion"] for r in rows} == {1.0}  # rate 1 x judge_share 1
