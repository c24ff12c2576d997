from datetime import UTC, datetime

import pytest

from tether.core import InvalidInputError, ManualClock
from tether.registry import Registry


@pytest.fixture
def clocked(backend_settings):
    clock = ManualClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    with Registry.open(backend_settings, clock=clock) as reg:
        yield reg, clock


def test_alias_moves_are_kept_and_answer_which_version_at_time_t(clocked, project):
    reg, clock = clocked
    v1 = project.register(reg)
    project.train("--learning-rate", "0.3")
    v2 = project.register(reg)
    reg.set_alias("fraud", "champion", "fraud/1", reason="first model", actor="alice", force=True)
    t1 = clock.now()
    clock.advance(3600)
    ev = reg.set_alias("fraud", "champion", "fraud/2", reason="passed the gate", actor="bob", force=True)
    assert ev.forced and ev.gate_report_id is None
    assert ev.previous_version_id == v1.id
    t2 = clock.now()
    assert reg.get("fraud@champion").id == v2.id
    assert reg.alias_at("fraud", "champion", t1) == v1.id
    assert reg.alias_at("fraud", "champion", t1.replace(minute=30)) == v1.id
    assert reg.alias_at("fraud", "champion", t2) == v2.id
    assert reg.alias_at("fraud", "champion", datetime(2026, 1, 1, tzinfo=UTC)) is None
    history = reg.alias_history("fraud", "champion")
    assert [(e.actor, e.reason, e.version_id) for e in history] == [
        ("alice", "first model", v1.id),
        ("bob", "passed the gate", v2.id),
    ]
    assert reg.get("fraud/2").aliases == ["champion"]


def test_removal_is_recorded(clocked, project):
    reg, clock = clocked
    project.register(reg)
    reg.set_alias("fraud", "challenger", "fraud/1", reason="try it")
    clock.advance(60)
    reg.remove_alias("fraud", "challenger", reason="done")
    assert [e.version_id is None for e in reg.alias_history("fraud")] == [False, True]
    assert reg.alias_at("fraud", "challenger", clock.now()) is None


def test_bad_alias_moves_are_refused(registry, project):
    project.register(registry)
    with pytest.raises(InvalidInputError, match="needs a reason"):
        registry.set_alias("fraud", "champion", "fraud/1", reason="  ")
    with pytest.raises(InvalidInputError, match="computed by tether"):
        registry.set_alias("fraud", "latest", "fraud/1", reason="x")
    with pytest.raises(InvalidInputError, match="belongs to model 'fraud', not 'other'"):
        registry.set_alias("other", "champion", "fraud/1", reason="x")
    with pytest.raises(InvalidInputError, match="no alias 'ghost' to remove"):
        registry.remove_alias("fraud", "ghost", reason="x")
    with pytest.raises(InvalidInputError, match="timezone"):
        registry.alias_at("fraud", "champion", datetime(2026, 1, 1))
    assert registry.alias_history("fraud") == []


def test_champion_needs_a_pass_report_or_a_recorded_force(registry, project):
    from tether.core import ConflictError

    project.register(registry)
    with pytest.raises(ConflictError, match=r"fraud has no gate policy"):
        registry.set_alias("fraud", "champion", "fraud/1", reason="no gate")
    assert registry.alias_history("fraud") == []
    ev = registry.set_alias("fraud", "challenger", "fraud/1", reason="challengers are not gated")
    assert not ev.forced
