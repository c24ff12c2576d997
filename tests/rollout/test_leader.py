"""One leader at a time, fenced: a deposed leader writes no decision, and no decision on a state lands twice."""

import time
from datetime import UTC, datetime

import pytest

from tether.core import ManualClock
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.rollout.leader import DeposedError, Lease
from tether.rollout.plan import Plan
from tether.rollout.record import StaleRolloutError
from tether.serving.window import MetricStore
from tether.store.database import Database


def _wait(cond, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_one_leader_a_standby_and_a_takeover_with_a_new_epoch(backend_settings):
    db = Database(backend_settings.resolved_database_url)
    a, b = Lease(db, holder="a", ttl=30), Lease(db, holder="b", ttl=30)
    assert a.hold() and a.leader and a.epoch == 1
    assert not b.hold() and not b.leader
    assert a.hold() and a.epoch == 1  # renewal keeps the epoch
    with db.begin() as conn:
        a.fence(conn)
    a.release()
    assert b.hold() and b.epoch == 2
    with pytest.raises(DeposedError), db.begin() as conn:
        a.epoch = 1  # a process that still believes it leads (paused, then woken)
        a.fence(conn)
    assert not a.hold()  # and it cannot take the lease back while b holds it
    assert b.current()["holder"] == "b"


def test_an_expired_lease_is_taken_over_and_the_old_leader_is_fenced_out(backend_settings):
    db = Database(backend_settings.resolved_database_url)
    a, b = Lease(db, holder="a", ttl=0.5), Lease(db, holder="b", ttl=0.5)
    assert a.hold()
    # a stops renewing (SIGSTOP, a long GC pause, a cut cable): b takes over once the lease expires.
    assert _wait(b.hold)
    assert b.epoch == a.epoch + 1
    with pytest.raises(DeposedError), db.begin() as conn:
        a.fence(conn)
    assert a.epoch is None


def test_two_standbys_racing_for_an_expired_lease_one_wins(backend_settings):
    db = Database(backend_settings.resolved_database_url)
    leases = [Lease(db, holder=f"s{i}", ttl=30) for i in range(4)]
    won = [lease.hold() for lease in leases]
    assert won.count(True) == 1


@pytest.fixture
def two_controllers(settings, project):
    clock = ManualClock(datetime(2026, 6, 1, tzinfo=UTC))
    reg = Registry.open(settings, clock=clock)
    v1 = project.register(reg)
    project.train("--learning-rate", "0.3")
    v2 = project.register(reg)
    db = reg.store.db
    la, lb = Lease(db, holder="a", ttl=30), Lease(db, holder="b", ttl=30)
    a = Controller(reg, MetricStore(), clock=clock, fence=la.fence)
    b = Controller(reg, MetricStore(), clock=clock, fence=lb.fence)
    a.deploy("fraud", v1.ref, reason="first", force=True)
    plan = Plan(steps=[1, 100], bake_seconds=1, min_samples=1, max_step_seconds=10)
    a.start("fraud", v2.ref, plan, force=True, reason="test")
    yield reg, clock, (a, la), (b, lb)
    reg.close()


def test_a_deposed_leader_records_no_decision(two_controllers):
    reg, clock, (a, la), (b, lb) = two_controllers
    assert la.hold()
    la.release()
    assert lb.hold()
    la.epoch = 1  # a still thinks it leads
    clock.advance(60)  # past max_step_seconds: a pause is due
    ro = a.latest("fraud")
    before = len(a.events(ro.id))
    assert a.tick() == []  # fenced: nothing written
    assert len(a.events(ro.id)) == before and a.latest("fraud").state == "running"
    events = b.tick()  # the leader decides, once
    assert [e.kind for e in events] == ["pause"]
    assert [e.kind for e in b.events(ro.id)].count("pause") == 1


def test_no_two_decisions_on_the_same_state(two_controllers):
    reg, clock, (a, la), (b, lb) = two_controllers
    stale = a.latest("fraud")
    a.pause("fraud", reason="a person pressed pause")
    with pytest.raises(StaleRolloutError):
        a._set_state(stale, "paused", "pause", "a second decision on the old state", {}, "controller")
    kinds = [e.kind for e in a.events(stale.id)]
    assert kinds == ["start", "pause"]
