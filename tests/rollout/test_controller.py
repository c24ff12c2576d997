"""The rollout controller on a manual clock with simulated traffic (the serving path is tested elsewhere)."""

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pytest

from tether.core import ConflictError, ManualClock, NotFoundError
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.rollout.plan import Plan
from tether.serving import table as routing_table
from tether.serving.window import MetricStore

PLAN = Plan(
    steps=[1, 5, 25, 100],
    bake_seconds=120,
    min_samples=1000,
    max_step_seconds=3600,
    watch_seconds=300,
    guardrails={
        "error_rate": {"margin": 0.01},
        "schema_violation_rate": {"margin": 0.01},
        "latency_p99": {"tolerance": 0.25, "margin": 0.02},
        "false_positive_rate": {"margin": 0.02, "min_coverage": 0.2},
    },
)


@dataclass
class Behaviour:
    error: float = 0.01
    latency: float = 0.02  # median seconds
    fpr: float = 0.03
    schema: float = 0.0
    #: Seconds of queueing per unit of traffic share, on top of the service time (0: no service times reported).
    queue: float = 0.0


def _traffic(metrics, model, version, arm, at, n, b, rng, share=0.0):
    if n == 0:
        return
    service = rng.lognormal(np.log(b.latency), 0.3, n)
    metrics.record_batch(
        model,
        version,
        arm,
        at,
        latencies=service + b.queue * share * rng.exponential(1.0, n) if b.queue else service,
        services=service if b.queue else None,
        records=n,
        errors={"5xx": int(rng.binomial(n, b.error))},
        schema_violations=int(rng.binomial(n, b.schema)),
    )
    labelled = n // 3
    labels = (rng.random(labelled) < 0.05).astype(int)
    predicted = np.where(labels == 1, rng.random(labelled) < 0.7, rng.random(labelled) < b.fpr).astype(int)
    metrics.record_labels(model, version, arm, at, predicted.tolist(), labels.tolist())


def simulate(
    ctrl,
    metrics,
    clock,
    model,
    *,
    candidate,
    champion,
    rng,
    rps=1500,
    tick=10,
    max_seconds=20000,
    after_promotion=None,
    stop=("rolled_back", "completed", "reverted", "paused", "aborted"),
):
    requests_to_canary = 0
    for _ in range(max_seconds // tick):
        with ctrl.db.connect() as conn:
            table, _ = routing_table.read(conn, model)
        n = rps * tick
        n_c = int(rng.binomial(n, table.canary_bp / 10_000)) if table.canary else 0
        now = clock.now()
        cand_b = after_promotion if (after_promotion and table.champion == candidate[0]) else candidate[1]
        for version, b, arm, count in (
            (table.canary, candidate[1], "canary", n_c),
            (table.champion, cand_b if table.champion == candidate[0] else champion, "champion", n - n_c),
        ):
            if version:
                _traffic(metrics, model, version, arm, now, count, b, rng, share=count / n)
        if table.shadow:
            n_s = int(rng.binomial(n, table.shadow_bp / 10_000))
            _traffic(
                metrics,
                model,
                table.shadow,
                "shadow",
                now,
                n_s,
                champion if table.shadow != candidate[0] else candidate[1],
                rng,
            )
        requests_to_canary += n_c
        clock.advance(tick)
        ctrl.tick()
        ro = ctrl.latest(model)
        if ro.state in stop:
            return ro, requests_to_canary
    return ctrl.latest(model), requests_to_canary


@pytest.fixture
def setup(settings, project):
    clock = ManualClock(datetime(2026, 6, 1, tzinfo=UTC))
    reg = Registry.open(settings, clock=clock)
    v1 = project.register(reg)
    project.train("--learning-rate", "0.3")
    v2 = project.register(reg)
    metrics = MetricStore()
    ctrl = Controller(reg, metrics, clock=clock)
    ctrl.deploy("fraud", v1.ref, reason="first", force=True)
    yield reg, ctrl, metrics, clock, v1, v2
    reg.close()


def _start(ctrl, v2, plan=PLAN):
    return ctrl.start("fraud", v2.ref, plan, force=True, reason="test without a gate")


def test_a_good_canary_reaches_100_and_completes(setup):
    reg, ctrl, metrics, clock, v1, v2 = setup
    _start(ctrl, v2)
    ro, _ = simulate(
        ctrl,
        metrics,
        clock,
        "fraud",
        candidate=(v2.id, Behaviour()),
        champion=Behaviour(),
        rng=np.random.default_rng(1),
    )
    assert ro.state == "completed", [e.reason for e in ctrl.events(ro.id)]
    kinds = [e.kind for e in ctrl.events(ro.id)]
    assert kinds == ["start", "advance", "advance", "promote", "complete"]
    assert [e.to_bp for e in ctrl.events(ro.id)][:4] == [100, 500, 2500, 10_000]
    assert reg.get("fraud@champion").id == v2.id
    advance = ctrl.events(ro.id)[1]
    assert advance.evidence["guardrails"]["error_rate"]["decision"] == "safe"
    assert advance.evidence["candidate"]["requests"] >= PLAN.min_samples


@pytest.mark.parametrize(
    ("bad", "guardrail"),
    [
        (Behaviour(latency=0.04), "latency_p99"),
        (Behaviour(error=0.06), "error_rate"),
        (Behaviour(fpr=0.12), "false_positive_rate"),
        (Behaviour(schema=0.05), "schema_violation_rate"),
    ],
)
def test_a_bad_canary_is_rolled_back_within_a_bounded_number_of_requests(setup, bad, guardrail):
    reg, ctrl, metrics, clock, v1, v2 = setup
    _start(ctrl, v2)
    ro, seen = simulate(
        ctrl, metrics, clock, "fraud", candidate=(v2.id, bad), champion=Behaviour(), rng=np.random.default_rng(2)
    )
    assert ro.state == "rolled_back"
    last = ctrl.events(ro.id)[-1]
    assert last.kind == "rollback" and guardrail in last.reason
    assert last.evidence["guardrails"][guardrail]["decision"] == "harm"
    assert seen < 5000, f"the canary saw {seen} requests before the rollback"
    with ctrl.db.connect() as conn:
        table, _ = routing_table.read(conn, "fraud")
    assert table.canary is None and table.champion == v1.id and table.shadow == v2.id  # kept for diagnosis
    assert reg.get("fraud@champion").id == v1.id


@pytest.mark.parametrize(("service", "outcome"), [(0.02, "completed"), (0.04, "rolled_back")])
def test_latency_is_judged_on_service_time_not_on_queueing_that_follows_the_traffic_share(setup, service, outcome):
    # One instance per version: the arm with more traffic queues longer. End-to-end, a 1% canary looks fast
    # and a new champion at 100% looks slow next to the old one on shadow copies, whatever the models.
    reg, ctrl, metrics, clock, v1, v2 = setup
    _start(ctrl, v2)
    ro, _ = simulate(
        ctrl,
        metrics,
        clock,
        "fraud",
        candidate=(v2.id, Behaviour(latency=service, queue=0.2)),
        champion=Behaviour(queue=0.2),
        rng=np.random.default_rng(5),
    )
    assert ro.state == outcome, [e.reason for e in ctrl.events(ro.id)]
    if outcome == "rolled_back":
        assert "latency_p99" in ctrl.events(ro.id)[-1].reason


def test_a_crashed_canary_instance_rolls_back_at_once(setup):
    reg, ctrl, metrics, clock, v1, v2 = setup
    ro = _start(ctrl, v2)
    metrics.record_event("fraud", v2.id, "canary", clock.now(), "crash")
    clock.advance(1)
    events = ctrl.tick()
    assert [e.kind for e in events] == ["rollback"] and "crashed" in events[0].reason
    assert ctrl.get(ro.id).state == "rolled_back"


def test_a_killed_controller_resumes_where_it_was(setup):
    reg, ctrl, metrics, clock, v1, v2 = setup
    _start(ctrl, v2)
    rng = np.random.default_rng(3)
    ro, _ = simulate(
        ctrl,
        metrics,
        clock,
        "fraud",
        candidate=(v2.id, Behaviour()),
        champion=Behaviour(),
        rng=rng,
        stop=("running",),
        max_seconds=10,
    )  # one tick
    ro, _ = simulate(
        ctrl,
        metrics,
        clock,
        "fraud",
        candidate=(v2.id, Behaviour()),
        champion=Behaviour(),
        rng=rng,
        stop=("rolled_back", "completed", "paused"),
        max_seconds=400,
    )
    step = ctrl.latest("fraud").step_index
    assert ctrl.latest("fraud").state == "running" and step >= 1
    del ctrl  # killed: a new controller over the same database (and the gateway's metrics) carries on
    fresh = Controller(reg, metrics, clock=clock)
    assert fresh.latest("fraud").step_index == step
    ro, _ = simulate(fresh, metrics, clock, "fraud", candidate=(v2.id, Behaviour()), champion=Behaviour(), rng=rng)
    assert ro.state == "completed"


def test_a_breach_in_the_watch_window_reverts_to_the_old_champion(setup):
    reg, ctrl, metrics, clock, v1, v2 = setup
    _start(ctrl, v2)
    ro, _ = simulate(
        ctrl,
        metrics,
        clock,
        "fraud",
        candidate=(v2.id, Behaviour()),
        champion=Behaviour(),
        rng=np.random.default_rng(4),
        after_promotion=Behaviour(error=0.08),
    )
    assert ro.state == "reverted", [e.reason for e in ctrl.events(ro.id)]
    assert reg.get("fraud@champion").id == v1.id
    history = reg.alias_history("fraud", "champion")
    assert history[-1].forced and "automatic revert" in history[-1].reason


def test_undecided_for_too_long_pauses_for_a_human(setup):
    reg, ctrl, metrics, clock, v1, v2 = setup
    plan = PLAN.model_copy(update={"max_step_seconds": 60.0})
    _start(ctrl, v2, plan)
    ro, _ = simulate(
        ctrl,
        metrics,
        clock,
        "fraud",
        candidate=(v2.id, Behaviour()),
        champion=Behaviour(),
        rng=np.random.default_rng(5),
        rps=20,
    )
    assert ro.state == "paused" and "undecided" in ctrl.events(ro.id)[-1].reason
    ctrl.resume("fraud", reason="looked at it")
    ctrl.promote("fraud", reason="we accept the risk")
    assert ctrl.latest("fraud").step_index == 1
    ctrl.abort("fraud", reason="changed our mind")
    assert ctrl.latest("fraud").state == "aborted"
    assert [e.actor for e in ctrl.events(ro.id)][-1] != "controller"


def test_starting_needs_a_deployment_a_gate_pass_and_no_other_rollout(setup, project):
    reg, ctrl, metrics, clock, v1, v2 = setup
    with pytest.raises(ConflictError, match="cannot start: fraud has no gate policy"):
        ctrl.start("fraud", v2.ref, PLAN)
    with pytest.raises(Exception, match="--force needs a --reason"):
        ctrl.start("fraud", v2.ref, PLAN, force=True)
    _start(ctrl, v2)
    with pytest.raises(ConflictError, match="already has rollout"):
        _start(ctrl, v2)
    other = project.register(reg, name="other")
    with pytest.raises(NotFoundError, match="is not deployed"):
        ctrl.start("other", other.ref, PLAN, force=True, reason="x")


def test_rollout_events_are_immutable(setup):
    from sqlalchemy import text

    reg, ctrl, metrics, clock, v1, v2 = setup
    _start(ctrl, v2)
    with pytest.raises(Exception, match="rows are immutable"), ctrl.db.begin() as conn:
        conn.execute(text("UPDATE rollout_events SET reason = 'x'"))


@pytest.mark.slow
def test_with_no_real_difference_false_rollbacks_stay_under_alpha(setup):
    from scipy.stats import binomtest

    reg, ctrl, metrics, clock, v1, v2 = setup
    plan = PLAN.model_copy(update={"bake_seconds": 60.0, "watch_seconds": 120.0})
    runs, bad = 60, 0
    versions = [v1, v2]
    for r in range(runs):
        candidate = versions[(r + 1) % 2]
        champion = versions[r % 2]
        assert reg.get("fraud@champion").id == champion.id
        _start(ctrl, candidate, plan)
        ro, _ = simulate(
            ctrl,
            metrics,
            clock,
            "fraud",
            candidate=(candidate.id, Behaviour()),
            champion=Behaviour(),
            rng=np.random.default_rng([6, r]),
            tick=30,
        )
        if ro.state != "completed":
            bad += 1
            ctrl.deploy("fraud", candidate.ref, reason="keep alternating", force=True)
        clock.advance(3600)
    assert binomtest(bad, runs, PLAN.alpha, alternative="greater").pvalue > 0.01, f"{bad}/{runs} false rollbacks"


def test_all_failed_evidence_never_advances_and_bake_time_is_observed(setup):
    reg, ctrl, metrics, clock, v1, v2 = setup
    rng = np.random.default_rng(4)
    # Both arms failing every request: relatively "equal", absolutely broken. Never an advance.
    broken = Behaviour(error=1.0)
    _start(ctrl, v2)
    ro, _ = simulate(ctrl, metrics, clock, "fraud", candidate=(v2.id, broken), champion=broken, rng=rng)
    events = ctrl.events(ro.id)
    assert "advance" not in [e.kind for e in events] and ro.state == "rolled_back", [e.reason for e in events]
    assert "success_rate" in events[-1].reason

    # A healthy canary beside a failing champion: degraded evidence, the step waits (and pauses).
    with ctrl.db.begin() as conn:
        routing_table.write(conn, routing_table.RoutingTable("fraud", champion=v1.id), clock.now())
    _start(ctrl, v2)
    ro, _ = simulate(ctrl, metrics, clock, "fraud", candidate=(v2.id, Behaviour()), champion=broken, rng=rng)
    assert ro.state == "paused" and "degraded evidence" in ctrl.events(ro.id)[-1].reason
    ctrl.abort("fraud", reason="done")

    # Bake time is time observed: a step whose clock ran with no traffic (downtime) has baked nothing.
    ro = _start(ctrl, v2)
    clock.advance(PLAN.bake_seconds * 10)
    _traffic(metrics, "fraud", v2.id, "canary", clock.now(), 30000, Behaviour(error=0.0), rng)
    _traffic(metrics, "fraud", v1.id, "champion", clock.now(), 300000, Behaviour(error=0.0), rng)
    assert ctrl.tick() == []  # everything safe, enough samples, but nothing observed yet
    clock.advance(PLAN.bake_seconds + 1)
    _traffic(metrics, "fraud", v2.id, "canary", clock.now(), 100, Behaviour(error=0.0), rng)
    _traffic(metrics, "fraud", v1.id, "champion", clock.now(), 1000, Behaviour(error=0.0), rng)
    assert [e.kind for e in ctrl.tick()] == ["advance"]


def test_a_broken_canary_is_rolled_back_by_the_failure_limit(setup):
    reg, ctrl, metrics, clock, v1, v2 = setup
    ro = _start(ctrl, v2)
    for _ in range(PLAN.failure_limit - 1):
        metrics.record_request("fraud", v2.id, "canary:warmup", clock.now(), error="backend_status")
    assert ctrl.tick() == []
    metrics.record_request("fraud", v2.id, "canary", clock.now(), error="backend_status")
    events = ctrl.tick()
    assert [e.kind for e in events] == ["rollback"] and "in a row" in events[0].reason
    assert ctrl.get(ro.id).state == "rolled_back"


def test_each_rollout_salts_its_own_cohort(setup):
    reg, ctrl, metrics, clock, v1, v2 = setup
    first = _start(ctrl, v2)
    with ctrl.db.connect() as conn:
        t1, _ = routing_table.read(conn, "fraud")
    assert t1.salt == f"fraud/rollout-{first.id}" and t1.mirror_bp > 0
    ctrl.promote("fraud", reason="next step by hand")
    with ctrl.db.connect() as conn:
        t2, _ = routing_table.read(conn, "fraud")
    assert t2.salt == t1.salt and t2.canary_bp > t1.canary_bp  # the 1% cohort stays inside the 5% one
    inside = [k for k in (f"u{i}" for i in range(20000)) if t1.route(k).arm == "canary"]
    assert inside and all(t2.route(k).arm == "canary" for k in inside)
    ctrl.abort("fraud", reason="again")
    second = _start(ctrl, v2)
    with ctrl.db.connect() as conn:
        t3, _ = routing_table.read(conn, "fraud")
    assert t3.salt == f"fraud/rollout-{second.id}" != t1.salt
    again = {k for k in (f"u{i}" for i in range(20000)) if t3.route(k).arm == "canary"}
    assert len(again & set(inside)) < len(inside) / 2  # a new cohort, not the same users again


def test_a_wall_clock_that_jumps_bakes_nothing_and_decides_nothing_twice(setup):
    """Bake and watch time are time observed on the monotonic clock: a wall clock stepped an hour forwards (NTP,
    an operator) does not finish a bake, one stepped backwards decides nothing on traffic it cannot place, and
    the step goes on where it was once the clock is right again."""
    reg, ctrl, metrics, clock, v1, v2 = setup
    rng = np.random.default_rng(8)
    ro = _start(ctrl, v2)

    def traffic():
        _traffic(metrics, "fraud", v2.id, "canary", clock.now(), 30000, Behaviour(error=0.0), rng)
        _traffic(metrics, "fraud", v1.id, "champion", clock.now(), 300000, Behaviour(error=0.0), rng)

    traffic()
    assert ctrl.tick() == []  # the step's first observed tick
    clock.jump(3600)
    traffic()
    assert ctrl.tick() == [] and ctrl.latest("fraud").step_index == 0  # an hour on the wall, nothing baked
    clock.jump(-7200)
    traffic()
    assert ctrl.tick() == [] and ctrl.latest("fraud").step_index == 0  # before the step started: no decision
    clock.jump(3600)
    clock.advance(PLAN.bake_seconds + 1)
    traffic()
    assert [e.kind for e in ctrl.tick()] == ["advance"]
    assert [e.kind for e in ctrl.events(ro.id)].count("advance") == 1
