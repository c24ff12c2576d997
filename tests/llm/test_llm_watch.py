"""The LLM watch on the real store, time driven by a ManualClock: decay is found and recorded once, a new grader
version never reads as decay, prompt drift names the new topics, a changed judge is judge drift."""

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest

from tests.llm.conftest import register_llm
from tests.openai_stub import scripted_openai
from tether.core.clock import ManualClock
from tether.graders import anchors
from tether.graders.embed import shared
from tether.graders.interaction import Interaction, Score
from tether.graders.registry import Graders
from tether.graders.scores import Graded, prompt_row, write, write_prompts
from tether.graders.spec import GraderSpec
from tether.llm.scenarios import SHIFTED, prompts
from tether.monitor.config import MonitorConfig
from tether.monitor.llm_watch import LLMWatch
from tether.monitor.watch import Watch
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.serving.window import MetricStore

START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


@pytest.fixture
def served(settings, llm_code, tmp_path):
    with scripted_openai() as backend:
        backend.script = lambda body, n: "fine"
        spec = {"backend": {"kind": "openai", "endpoints": [backend.url], "model": "app"}}
        f = tmp_path / "app.yaml"
        f.write_text(json.dumps(spec))
        reg = Registry.open(settings)
        v1 = register_llm(reg, "helpdesk", llm_code, f, spec)
        Controller(reg, MetricStore()).deploy("helpdesk", v1.ref, reason="first", force=True)
        yield reg, v1, backend
        reg.close()


def scores(reg, version, grader_id, metric, values, at, *, seed_trace, inclusion=1.0):
    rows = []
    for i, v in enumerate(values):
        it = Interaction(f"{seed_trace}-{i}", (), "", model="helpdesk", version_id=version)
        rows.extend(
            Graded(it, [Score(grader_id, metric, float(v))], at + timedelta(seconds=i), "live", "s", inclusion).rows()
        )
    write(reg.store.db, rows)


def configure(reg, **llm):
    Watch(reg).set_config("helpdesk", MonitorConfig.model_validate({"llm": llm}))


def test_decay_is_an_anomaly_once_with_its_evidence_and_stable_metrics_stay_quiet(served):
    reg, v1, _ = served
    checks = Graders(reg.store).register(GraderSpec.parse({"name": "tether-checks", "kind": "checks"}))[0]
    rng = np.random.default_rng(1)
    scores(reg, v1.id, checks.id, "schema_valid", [1] * 300, START, seed_trace="b")
    scores(reg, v1.id, checks.id, "refused", (rng.random(300) < 0.02).astype(int), START, seed_trace="br")
    clock = ManualClock(START + timedelta(hours=1, minutes=1))
    live = datetime(2026, 3, 2, 1, 0, 30, tzinfo=UTC)
    # 1,500 interactions in the epoch, 6% of them breaking the schema: the checks run on every one.
    scores(reg, v1.id, checks.id, "schema_valid", (rng.random(1500) >= 0.06).astype(int), live, seed_trace="l")
    scores(reg, v1.id, checks.id, "refused", (rng.random(1500) < 0.02).astype(int), live, seed_trace="lr")
    clock.advance(1800)
    watch = LLMWatch(reg, clock=clock)
    status = watch.evaluate("helpdesk")
    by = {t.metric: t for t in status.decay[v1.id]}
    assert by["schema_valid"].decision == "changed" and by["refused"].decision != "changed"
    found = watch.check("helpdesk")
    assert [(a.feature, a.test, a.version_id) for a in found] == [("llm:schema_valid", "decay", v1.id)]
    sample = found[0].evidence["sample"]
    assert sample and all(s["value"] == 0.0 for s in sample) and all(s["trace_id"].startswith("l-") for s in sample)
    assert watch.check("helpdesk") == []  # one open anomaly, not one per check


def test_an_empty_window_is_no_data_and_a_new_grader_version_is_never_decay(served):
    reg, v1, _ = served
    clock = ManualClock(START)
    watch = LLMWatch(reg, clock=clock)
    assert watch.evaluate("helpdesk").notes == [f"{v1.id[:12]}: no graded traffic yet"]
    g = Graders(reg.store)
    old = g.register(GraderSpec.parse({"name": "quality", "kind": "embedded", "config": {"metrics": ["relevance"]}}))[0]
    new = g.register(GraderSpec.parse({"name": "quality", "kind": "embedded"}))[0]
    rng = np.random.default_rng(2)
    scores(reg, v1.id, old.id, "relevance", rng.normal(0.6, 0.05, 300).clip(0, 1), START, seed_trace="o")
    later = START + timedelta(hours=1, minutes=5)
    scores(reg, v1.id, new.id, "relevance", rng.normal(0.3, 0.05, 300).clip(0, 1), later, seed_trace="n")
    clock.advance(3600 + 900)
    tests = {t.grader_id: t for t in watch.evaluate("helpdesk").decay[v1.id]}
    assert tests[old.id].decision == "no data"  # the old grader scored nothing live
    assert tests[new.id].decision == "no data"  # the new one has no baseline of its own yet
    assert watch.check("helpdesk") == []


def test_prompt_drift_flags_new_topics_and_a_stable_stream_stays_quiet(served):
    reg, v1, _ = served
    configure(reg, prompt_drift={"min_prompts": 100, "window_seconds": 3600, "baseline_seconds": 3600})
    db = reg.store.db

    def sample(texts, at, tag):
        rows = [
            prompt_row(
                Interaction(f"{tag}-{i}", ({"role": "user", "content": p},), "", model="helpdesk", version_id=v1.id),
                at + timedelta(seconds=5 * i),
                0.1,
            )
            for i, p in enumerate(texts)
        ]
        write_prompts(db, rows)

    sample(prompts(1, 200), START, "base")
    sample(prompts(2, 200), START + timedelta(hours=2), "same")
    clock = ManualClock(START + timedelta(hours=2, minutes=20))
    watch = LLMWatch(reg, clock=clock)
    assert watch.evaluate("helpdesk").prompt_drift["decision"] == "stable"
    sample(prompts(3, 250, SHIFTED), START + timedelta(hours=3, minutes=5), "moved")
    clock.advance(3600 + 600)
    pd = watch.evaluate("helpdesk").prompt_drift
    assert pd["decision"] == "drifted" and pd["p_value"] < pd["alpha"] and pd["statistic"] >= pd["min_shift"]
    named = " ".join(t["name"] for t in pd["topics"]).lower()
    assert any(w in named for w in ("bitcoin", "ethereum", "usdc", "crypto", "down", "outage", "error", "loads"))
    found = watch.check("helpdesk")
    assert [(a.feature, a.test) for a in found] == [("prompts", "mmd")]
    assert found[0].evidence["examples"]


def test_prompt_drift_per_tenant_names_the_tenant_that_moved(served):
    reg, v1, _ = served
    configure(reg, prompt_drift={"min_prompts": 80, "window_seconds": 3600, "per_tenant": True})
    rows = []
    for tenant, texts in (("steady", prompts(8, 150)), ("moving", prompts(9, 150, SHIFTED))):
        for i, p in enumerate(texts):
            it = Interaction(
                f"{tenant}-{i}",
                ({"role": "user", "content": p},),
                "",
                model="helpdesk",
                version_id=v1.id,
                tenant=tenant,
            )
            rows.append(prompt_row(it, START + timedelta(hours=2, seconds=10 * i), 0.1))
    write_prompts(reg.store.db, rows)
    base = [
        prompt_row(
            Interaction(f"b-{i}", ({"role": "user", "content": p},), "", model="helpdesk", version_id=v1.id),
            START + timedelta(seconds=10 * i),
            0.1,
        )
        for i, p in enumerate(prompts(10, 200))
    ]
    write_prompts(reg.store.db, base)
    watch = LLMWatch(reg, clock=ManualClock(START + timedelta(hours=2, minutes=30)))
    pd = watch.evaluate("helpdesk").prompt_drift
    assert pd["tenants"]["moving"]["decision"] == "drifted" and pd["tenants"]["steady"]["decision"] == "stable"
    segments = {a.segment for a in watch.check("helpdesk") if a.feature == "prompts"}
    assert "tenant=moving" in segments and "tenant=steady" not in segments


def test_a_changed_judge_is_judge_drift_not_application_drift(served, tmp_path):
    reg, v1, _ = served
    with scripted_openai() as judge_server:
        verdict = {"score": 5}
        judge_server.script = lambda body, n: orjson.dumps({**verdict, "reason": "r"}).decode()
        g = Graders(reg.store)
        g.register(
            GraderSpec.parse(
                {
                    "name": "quality-judge",
                    "kind": "judge",
                    "config": {"endpoint": judge_server.url, "model": "j", "repeats": 1},
                }
            )
        )[0]
        rows = [{"prompt": f"question {i}", "answer": f"answer {i}"} for i in range(30)]
        anchors.add(reg.store, "support", b"\n".join(orjson.dumps(r) for r in rows), actor="t", now=START)
        configure(reg, judge="quality-judge", anchors="support", anchor_every_seconds=86400)
        clock = ManualClock(START)
        watch = LLMWatch(reg, clock=clock, embedder=shared)
        first = watch.anchors("helpdesk")
        assert {r["decision"] for r in first} == {"no data"}  # one run each: nothing to compare yet
        verdict["score"] = 3  # the hosted judge changed behind the same name
        clock.advance(86400 + 60)
        found = watch.check("helpdesk")
        judged = [a for a in found if a.feature == "judge:quality-judge:judge"]
        assert len(judged) == 1 and judged[0].test == "anchor_paired" and judged[0].statistic == pytest.approx(-0.5)
        assert not [a for a in found if a.feature.startswith("llm:")]  # never reported as the application's
        # A new judge version (another rubric) is run on the anchors at once and compared with the reference.
        g.register(
            GraderSpec.parse(
                {
                    "name": "quality-judge",
                    "kind": "judge",
                    "config": {"endpoint": judge_server.url, "model": "j", "repeats": 1, "rubric": "Be strict."},
                }
            )
        )
        clock.advance(60)
        runs = anchors.runs(reg.store, anchors.get(reg.store, "support"), "helpdesk")
        assert len({r[1] for r in runs if "quality" in watch._name_of(r[1])}) == 1  # not yet run
        watch.anchors("helpdesk")
        runs = anchors.runs(reg.store, anchors.get(reg.store, "support"), "helpdesk")
        assert len({r[1] for r in runs if watch._name_of(r[1]) == "quality-judge"}) == 2


def test_bad_llm_settings_name_the_field(served):
    reg, v1, _ = served
    from tether.core.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=r"llm\.graders\[0\]: no grader 'nope'"):
        configure(reg, graders=["nope"])
    Graders(reg.store).register(GraderSpec.parse({"name": "c2", "kind": "checks"}))
    with pytest.raises(InvalidInputError, match="llm.judge: c2/1 is a checks grader"):
        configure(reg, judge="c2")
    with pytest.raises(Exception, match="sampling.rate"):
        MonitorConfig.model_validate({"llm": {"sampling": {"rate": 2}}})
    with pytest.raises(Exception, match="Extra inputs"):
        MonitorConfig.model_validate({"llm": {"sampler": {}}})
    with pytest.raises(Exception, match="no anchor set"):
        anchors.get(reg.store, "missing")
    from tether.core.errors import InvalidInputError as IIE

    with pytest.raises(IIE, match="no rows"):
        anchors.add(reg.store, "empty", b"\n\n", actor="t", now=START)
    with pytest.raises(IIE, match="anchor row 1"):
        anchors.add(reg.store, "bad", b"{not json", actor="t", now=START)


def test_rates_carry_intervals_and_a_judge_share_gets_a_prediction_powered_estimate(served):
    reg, v1, backend = served
    g = Graders(reg.store)
    cheap = g.register(GraderSpec.parse({"name": "tether-minilm", "kind": "embedded"}))[0]
    judge = g.register(
        GraderSpec.parse({"name": "qj", "kind": "judge", "config": {"endpoint": backend.url, "model": "j"}})
    )[0]
    configure(reg, judge="qj")
    rng = np.random.default_rng(4)
    quality = rng.beta(4, 2, 600)
    at = START + timedelta(minutes=1)
    rows = []
    for i, q in enumerate(quality):
        it = Interaction(f"r{i}", (), "", model="helpdesk", version_id=v1.id)
        scores_ = [Score(cheap.id, "relevance", float(np.clip(q + 0.2 + rng.normal(0, 0.05), 0, 1)))]
        if i % 10 == 0:
            scores_.append(Score(judge.id, "judge", float(q)))
        rows.extend(Graded(it, scores_, at + timedelta(seconds=i), "live", "s", 0.5).rows())
    write(reg.store.db, rows)
    status = LLMWatch(reg, clock=ManualClock(START + timedelta(minutes=30))).evaluate("helpdesk")
    rates = status.rates[v1.id]
    judge_only = rates[f"judge@{judge.id[:12]}"]
    ppi = rates[f"judge (PPI with relevance@{cheap.id[:12]})"]
    assert judge_only["n"] == 60 and judge_only["low"] < judge_only["estimate"] < judge_only["high"]
    assert ppi["low"] <= 4 / 6 <= ppi["high"]  # the cheap grader is biased by +0.2; PPI corrects it
    assert (ppi["high"] - ppi["low"]) < (judge_only["high"] - judge_only["low"])


def test_a_medium_decay_that_grows_is_escalated_once_to_high(served):
    reg, v1, _ = served
    configure(reg, decay={"min_shift": 0.05})
    checks = Graders(reg.store).register(GraderSpec.parse({"name": "tether-checks", "kind": "checks"}))[0]
    rng = np.random.default_rng(3)
    scores(reg, v1.id, checks.id, "schema_valid", [1] * 300, START, seed_trace="b")
    live = datetime(2026, 3, 2, 1, 0, 30, tzinfo=UTC)
    # 8% of answers break the schema: beyond the 0.05 that matters, under twice it: medium.
    scores(reg, v1.id, checks.id, "schema_valid", (rng.random(3000) >= 0.08).astype(int), live, seed_trace="m")
    clock = ManualClock(START + timedelta(hours=1, minutes=55))
    watch = LLMWatch(reg, clock=clock)
    first = watch.check("helpdesk")
    assert [(a.test, a.priority) for a in first] == [("decay", "medium")], [a.describe() for a in first]
    assert watch.check("helpdesk") == []
    # It gets worse within the epoch: a high-priority anomaly naming the medium one, once.
    later = live + timedelta(minutes=50)
    scores(reg, v1.id, checks.id, "schema_valid", (rng.random(3000) >= 0.30).astype(int), later, seed_trace="h")
    clock.advance(240)
    grown = watch.check("helpdesk")
    assert [(a.test, a.priority) for a in grown] == [("decay", "high")]
    assert grown[0].evidence["escalates"] == first[0].id
    assert watch.check("helpdesk") == []
