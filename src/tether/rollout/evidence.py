"""The evidence of a rollout step: each guardrail's always-valid comparison of candidate and champion.

Error rates: each guardrail's test runs at alpha / (guardrails x steps), so the chance of any false rollback
over the whole rollout is at most the plan's alpha (union bound; see docs/rollout.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tether.monitor.sequential import Comparison, bound_rate, compare_rates
from tether.rollout.record import Rollout
from tether.serving.window import MetricStore, Tally


def evaluate(
    metrics: MetricStore, ro: Rollout, until: datetime | None = None
) -> tuple[dict[str, Comparison], Tally, Tally]:
    """The guardrail comparisons of a rollout's current window (warm instances only: see the gateway's
    warm-up), with the champion's own success floor under ``champion_success_rate`` (it never rolls back;
    it keeps a step from advancing on degraded evidence). ``until``: the window as it stood then (the
    confidence sequence over time, as the dashboard draws it)."""
    since = ro.step_started_at
    if ro.state == "watching":
        new = metrics.tally(ro.model, ro.candidate_id, "champion", since, until, warmup=False)
        old = metrics.tally(ro.model, ro.champion_id, "shadow", since, until, warmup=False)
        mirrored = None
    else:
        new = metrics.tally(ro.model, ro.candidate_id, "canary", since, until, warmup=False)
        old = metrics.tally(ro.model, ro.champion_id, "champion", since, until, warmup=False)
        mirrored = metrics.tally(ro.model, ro.candidate_id, "mirror", since, until, warmup=False)
    g = ro.plan.guardrails
    alpha = ro.plan.alpha / (g.tests() * len(ro.plan.steps))
    out: dict[str, Comparison] = {}
    if g.error_rate:
        out["error_rate"] = compare_rates(
            new.error_count, new.requests, old.error_count, old.requests, margin=g.error_rate.margin, alpha=alpha
        )
    if g.success_rate:
        limit = 1 - g.success_rate.min
        out["success_rate"] = bound_rate(new.error_count, new.requests, limit=limit, alpha=alpha)
        out["champion_success_rate"] = bound_rate(old.error_count, old.requests, limit=limit, alpha=alpha)
    if g.schema_violation_rate:
        out["schema_violation_rate"] = compare_rates(
            new.schema_violations,
            new.requests,
            old.schema_violations,
            old.requests,
            margin=g.schema_violation_rate.margin,
            alpha=alpha,
        )
    if g.latency_p99:
        # The instances' own service times when both report them: end-to-end latency includes the wait in
        # an instance's queue, which grows with the traffic share. With the mirror on, the canary's instance
        # also serves copies of the champion's requests, so both run at the same rate and both are judged
        # on everything they served (an instance at a 1% share idles and is slower for it).
        service = new.service
        if mirrored is not None and mirrored.service.count:
            service = Tally().merge(new).merge(mirrored).service
        both = service.count and old.service.count
        a, b = (service, old.service) if both else (new.latency, old.latency)
        threshold = b.quantile(0.99) * (1 + g.latency_p99.tolerance) if b.count else 0.0
        ok = b.count >= 100
        out["latency_p99"] = compare_rates(
            a.count_above(threshold) if ok else 0,
            a.count if ok else 0,
            b.count_above(threshold) if ok else 0,
            b.count if ok else 0,
            margin=g.latency_p99.margin,
            alpha=alpha,
        )
        if g.latency_p99.ceiling_ms is not None:
            # p99 under the ceiling <=> under 1% of requests above it.
            ceiling = g.latency_p99.ceiling_ms / 1000
            out["latency_ceiling"] = bound_rate(a.count_above(ceiling), a.count, limit=0.01, alpha=alpha)
    if g.false_positive_rate:
        covered = min(new.label_coverage, old.label_coverage) >= g.false_positive_rate.min_coverage
        out["false_positive_rate"] = compare_rates(
            new.false_positives if covered else 0,
            new.labelled_negatives if covered else 0,
            old.false_positives if covered else 0,
            old.labelled_negatives if covered else 0,
            margin=g.false_positive_rate.margin,
            alpha=alpha,
        )
    return out, new, old


def describe(name: str, c: Comparison) -> str:
    return (
        f"{name}: candidate {c.canary_rate:.4f} vs champion {c.champion_rate:.4f} "
        f"(difference in [{c.lower:+.4f}, {c.upper:+.4f}], allowed {c.margin:+.4f}; "
        f"n={c.canary_n}/{c.champion_n})"
    )


def snapshot(ro: Rollout, comps: dict[str, Comparison], new: Tally, old: Tally, now: datetime) -> dict[str, Any]:
    """What a decision records as its evidence: every guardrail's comparison, both arms' tallies, the window."""
    return {
        "guardrails": {k: c.to_json() for k, c in comps.items()},
        "candidate": new.to_json(),
        "champion": old.to_json(),
        "window_seconds": (now - ro.step_started_at).total_seconds(),
        "policy": ro.plan.model_dump(mode="json"),
    }
