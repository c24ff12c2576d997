"""The audit-trail reconciliation the end-to-end fault and scale tests share: what was answered is on the trail
exactly once, every log verifies, and each rollout decision is recorded once."""

from __future__ import annotations

from tether.audit.logset import AuditSet
from tether.core import Settings


def assert_trail_whole(settings: Settings, answered: dict[str, str], decisions: int) -> set[str]:
    """Seal and verify every log of ``settings``' store; each answered trace id is one prediction record, and
    there are ``decisions`` rollout records, each once. Returns the names of the logs verified."""
    with AuditSet(settings) as trail:
        trail.seal()
        report = trail.verify()
        _, rows = trail.query("SELECT trace_id, count(*) FROM records WHERE kind = 'prediction' GROUP BY trace_id")
        _, kept = trail.query("SELECT trace_id, count(*) FROM records WHERE kind = 'rollout' GROUP BY trace_id")
    assert report.ok, (report.problems, {k: r.problems for k, r in report.logs.items()})
    logged = dict(rows)
    assert all(n == 1 for n in logged.values()), "a prediction is on the trail twice"
    missing = set(answered) - set(logged)
    assert not missing, f"{len(missing)} of {len(answered)} answered requests are not on the trail"
    assert len(kept) == decisions and all(n == 1 for _, n in kept), kept
    return set(report.logs)
