"""Deployments outside a rollout: retire a model, flag a version to run alone, and a rolled-back candidate's
diagnostic shadow that ends by itself; each recorded as a deployment event and copied onto the audit trail."""

from datetime import UTC, datetime

import pytest

from tether.audit.bridge import Bridge
from tether.audit.log import AuditLog
from tether.core import ConflictError, InvalidInputError, ManualClock, NotFoundError
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.rollout.plan import Plan
from tether.serving import table as routing_table
from tether.serving.window import MetricStore


@pytest.fixture
def two(settings, project):
    clock = ManualClock(datetime(2026, 6, 1, tzinfo=UTC))
    reg = Registry.open(settings, clock=clock)
    v1 = project.register(reg)
    project.train("--learning-rate", "0.3")
    v2 = project.register(reg)
    ctrl = Controller(reg, MetricStore(), clock=clock)
    ctrl.deploy("fraud", v1.ref, reason="first", force=True)
    yield reg, ctrl, clock, v1, v2
    reg.close()


def _table(ctrl):
    with ctrl.db.connect() as conn:
        return routing_table.read(conn, "fraud")


def test_a_retired_model_is_served_no_more_and_can_be_deployed_again(two):
    reg, ctrl, _, v1, v2 = two
    with pytest.raises(InvalidInputError, match="reason is required"):
        ctrl.deployments.retire("fraud", reason=" ")
    ctrl.deployments.retire("fraud", reason="replaced by fraud-v2", actor="ops")
    assert _table(ctrl) is None
    with ctrl.db.connect() as conn:
        assert "fraud" not in routing_table.read_all(conn)
        _, retired, _ = routing_table.read_since(conn, 0)
    assert retired == {"fraud"}  # a reader of what changed learns that it is gone
    with pytest.raises(NotFoundError, match="not deployed"):
        ctrl.deployments.retire("fraud", reason="twice")
    assert reg.get("fraud@champion").id == v1.id  # the registry keeps it all
    ctrl.deploy("fraud", v1.ref, reason="back", force=True)
    assert _table(ctrl)[0].champion == v1.id
    kinds = [e.kind for e in ctrl.deployments.events("fraud")]
    assert kinds == ["deploy", "retire", "deploy"]


def test_a_model_in_a_rollout_cannot_be_retired(two):
    _, ctrl, _, _, v2 = two
    ctrl.start("fraud", v2.ref, force=True, reason="test")
    with pytest.raises(ConflictError, match="abort the rollout first"):
        ctrl.deployments.retire("fraud", reason="now")


def test_a_version_flagged_alone_or_pooled_is_recorded(two):
    _, ctrl, _, v1, _ = two
    ctrl.deployments.isolate(v1.ref, True, reason="2 GiB of embeddings")
    assert ctrl.deployments.placement(v1.id) is True
    ctrl.deployments.isolate(v1.ref, False, reason="pool it")
    assert ctrl.deployments.placement(v1.id) is False
    ctrl.deployments.isolate(v1.ref, None, reason="back to the default")
    assert ctrl.deployments.placement(v1.id) is None
    assert [e.kind for e in ctrl.deployments.events("fraud")][:3] == ["placement", "pooled", "alone"]


@pytest.mark.parametrize("copies", [None, 50])
def test_a_rolled_back_candidates_diagnostic_shadow_ends_by_itself(two, copies):
    _, ctrl, clock, v1, v2 = two
    plan = Plan(diagnosis_shadow=10, diagnosis_seconds=600, diagnosis_copies=copies)
    ctrl.start("fraud", v2.ref, plan, force=True, reason="test")
    ctrl.abort("fraud", reason="bad")
    table, _ = _table(ctrl)
    assert table.shadow == v2.id and table.shadow_bp == 1000
    clock.advance(300)
    if copies:  # the shadow served its copies before its time was up
        ctrl.metrics.record_batch("fraud", v2.id, "shadow", clock.now(), latencies=[0.01] * copies, records=copies)
    events = ctrl.tick()
    if not copies:
        assert events == [] and _table(ctrl)[0].shadow == v2.id
        clock.advance(301)
        events = ctrl.tick()
    assert [e.kind for e in events] == ["diagnosis_end"]
    assert _table(ctrl)[0].shadow is None and _table(ctrl)[0].champion == v1.id
    assert ctrl.tick() == []  # once
    assert ctrl.deployments.events("fraud")[0].kind == "diagnosis_end"


def test_deployment_events_reach_the_audit_trail(two, settings):
    reg, ctrl, _, v1, _ = two
    ctrl.deployments.retire("fraud", reason="done with it")
    log = AuditLog(settings)
    bridge = Bridge(reg, log)
    assert bridge.sync() > 0
    assert bridge.sync() == 0  # copied once
    log.seal()
    _, rows = log.query("SELECT trace_id FROM records WHERE kind = 'deployment'")
    assert len(rows) == 2  # the first deploy and the retirement
