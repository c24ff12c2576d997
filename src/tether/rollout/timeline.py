"""A rollout over time, as the dashboard charts it: traffic weight, and per version and 10-second slice the
request count, error rate, latency percentiles in milliseconds and label coverage; for the current step, each
guardrail's confidence sequence (the interval as it stood at every slice, against its allowed margin).

Read from the serving process's metric windows (`MetricStore.series`); a process without the traffic (the CLI)
has only the weights from the stored events.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tether.rollout.controller import Controller
from tether.rollout.record import Event, Rollout
from tether.serving.window import SLICE_SECONDS, Tally

#: At most this many points per confidence sequence (an evenly spaced subset of the step's slices).
MAX_POINTS = 90


def weights(ro: Rollout, events: list[Event], now: datetime) -> list[dict[str, float]]:
    """The candidate's traffic share as a step function: a point before and after every change, up to now."""
    out: list[dict[str, float]] = []
    for e in events:
        t = e.at.timestamp()
        if out:
            out.append({"t": t, "percent": out[-1]["percent"]})
        out.append({"t": t, "percent": e.to_bp / 100})
    if out:
        out.append({"t": now.timestamp(), "percent": ro.weight_bp / 100})
    return out


def _point(at: datetime, t: Tally) -> dict[str, Any]:
    return {
        "t": at.timestamp(),
        "requests": t.requests,
        "error_rate": t.error_count / t.requests if t.requests else None,
        "p50_ms": t.latency.quantile(0.5) * 1000 if t.latency.count else None,
        "p99_ms": t.latency.quantile(0.99) * 1000 if t.latency.count else None,
        "label_coverage": t.label_coverage if t.records else None,
        "false_positive_rate": t.false_positives / t.labelled_negatives if t.labelled_negatives else None,
    }


def _series(controller: Controller, ro: Rollout, version: str, arms: tuple[str, ...], since: datetime) -> list[Any]:
    merged: dict[datetime, Tally] = {}
    for arm in arms:
        for at, t in controller.metrics.series(ro.model, version, arm, since):
            merged.setdefault(at, Tally()).merge(t)
    return [_point(at, merged[at]) for at in sorted(merged)]


def sequences(controller: Controller, ro: Rollout) -> dict[str, list[dict[str, Any]]]:
    """Each guardrail's interval at the end of every slice of the current step (live traffic only)."""
    if ro.state not in ("running", "watching", "paused"):
        return {}
    now = controller.clock.now()
    start = ro.step_started_at
    ends = []
    t = datetime.fromtimestamp((int(start.timestamp()) // SLICE_SECONDS + 1) * SLICE_SECONDS, tz=start.tzinfo)
    while t <= now:
        ends.append(t)
        t += timedelta(seconds=SLICE_SECONDS)
    ends.append(now)
    stride = max(1, len(ends) // MAX_POINTS)
    picked = ends[::stride] if ends[-1] in ends[::stride] else [*ends[::stride], ends[-1]]
    out: dict[str, list[dict[str, Any]]] = {}
    for end in picked:
        # A slice is counted whole once its start is in range: the sequence at `end` uses slices before it.
        comps, _, _ = controller.evaluate(ro, until=end - timedelta(microseconds=1))
        for name, c in comps.items():
            j = c.to_json()
            out.setdefault(name, []).append(
                {
                    "t": end.timestamp(),
                    "lower": j["lower"],
                    "upper": j["upper"],
                    "margin": c.margin,
                    "n": c.canary_n,
                    "decision": j["decision"],
                }
            )
    return out


def timeline(controller: Controller, ro: Rollout) -> dict[str, Any]:
    """Everything the rollout page charts, in one JSON document."""
    events = controller.events(ro.id)
    since = events[0].at if events else ro.step_started_at
    return {
        "weights": weights(ro, events, controller.clock.now()),
        "candidate": _series(controller, ro, ro.candidate_id, ("canary", "champion"), since),
        "champion": _series(controller, ro, ro.champion_id, ("champion", "shadow"), since),
        "sequences": sequences(controller, ro),
        "slice_seconds": SLICE_SECONDS,
    }
