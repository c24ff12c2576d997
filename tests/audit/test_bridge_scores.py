"""Grader scores join the trail from a cursor: each once, a row committed behind a later id still copied, and
nothing re-read wholesale at every seal."""

from datetime import UTC, datetime

import pytest

from tether.audit import bridge as bridge_module
from tether.audit.bridge import GAP_SECONDS, Bridge
from tether.audit.log import AuditLog
from tether.core import SigningKey
from tether.graders.interaction import Interaction, Score
from tether.graders.registry import Graders
from tether.graders.scores import Graded, write
from tether.graders.spec import GraderSpec
from tether.registry import Registry

AT = datetime(2026, 3, 2, tzinfo=UTC)


def _pass(db, grader_id, trace, ids):
    """One grading pass of one interaction, its rows given these ids (as a sequence would have)."""
    it = Interaction(trace, (), "", model="helpdesk", version_id="")  # no triad to look up
    rows = Graded(it, [Score(grader_id, f"m{i}", 1.0) for i in range(len(ids))], AT).rows()
    write(db, [{**r, "id": i} for r, i in zip(rows, ids, strict=True)])


def test_scores_committed_out_of_id_order_are_copied_once_and_gaps_expire(settings, monkeypatch):
    SigningKey.generate().save(settings.resolved_signing_key)
    clock = [1000.0]
    monkeypatch.setattr(bridge_module.time, "monotonic", lambda: clock[0])
    with Registry.open(settings) as reg, AuditLog(settings) as log:
        db = reg.store.db
        grader = Graders(reg.store).register(GraderSpec.parse({"name": "tether-checks", "kind": "checks"}))[0]
        bridge = Bridge(reg, log)
        _pass(db, grader.id, "a", [1, 2])
        assert bridge.sync() == 1
        _pass(db, grader.id, "b", [5, 6])  # ids 3 and 4 handed out to a transaction not yet committed
        assert bridge.sync() == 1 and sorted(bridge._gaps) == [3, 4]
        _pass(db, grader.id, "c", [3, 4])  # it commits now, behind the cursor
        assert bridge.sync() == 1 and bridge._gaps == {}
        assert bridge.sync() == 0
        _pass(db, grader.id, "d", [9])  # 7 and 8 rolled back: they never fill
        assert bridge.sync() == 1 and sorted(bridge._gaps) == [7, 8]
        clock[0] += GAP_SECONDS + 1
        assert bridge.sync() == 0 and bridge._gaps == {}
        log.seal()
        _, rows = log.query("SELECT trace_id FROM records WHERE kind = 'score' ORDER BY seq")
        traces = [r[0].split(":")[1] for r in rows]
        assert traces == ["a", "b", "c", "d"]  # each pass once
        assert log.verify().ok


def test_a_new_bridge_copies_nothing_twice(settings):
    SigningKey.generate().save(settings.resolved_signing_key)
    with Registry.open(settings) as reg:
        grader = Graders(reg.store).register(GraderSpec.parse({"name": "tether-checks", "kind": "checks"}))[0]
        _pass(reg.store.db, grader.id, "a", [1, 2, 3])
        with AuditLog(settings) as log:
            assert Bridge(reg, log).sync() == 1
            log.seal()
        with AuditLog(settings) as log:
            assert Bridge(reg, log).sync() == 0


@pytest.mark.parametrize("jump", [bridge_module.MAX_GAPS + 10])
def test_a_sequence_that_jumps_is_not_a_hundred_thousand_gaps(settings, jump):
    SigningKey.generate().save(settings.resolved_signing_key)
    with Registry.open(settings) as reg, AuditLog(settings) as log:
        grader = Graders(reg.store).register(GraderSpec.parse({"name": "tether-checks", "kind": "checks"}))[0]
        bridge = Bridge(reg, log)
        _pass(reg.store.db, grader.id, "a", [1])
        _pass(reg.store.db, grader.id, "b", [jump])
        assert bridge.sync() == 2 and bridge._gaps == {}
