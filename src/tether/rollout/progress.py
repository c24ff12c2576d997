"""A rollout as people read it: its routing, state, guardrail evidence and progress toward the next step.

One function for every face: ``tether rollout status``, ``GET /v1/rollouts/{name}`` and the dashboard's
rollout page all render `status_of`, so the terminal and the browser cannot disagree.
"""

from __future__ import annotations

from typing import Any

from tether.monitor.sequential import Decision
from tether.rollout.controller import Controller
from tether.rollout.record import Rollout
from tether.serving.routing import RoutingTable


def status_of(controller: Controller, model: str, table: RoutingTable | None, *, live: bool = True) -> dict[str, Any]:
    """A JSON-ready view of a model's routing and latest rollout. With ``live`` (a serving process whose metric
    windows hold the traffic) the current guardrail comparisons and the progress toward the next step are in it;
    without, only what the database holds (the last decision's evidence)."""
    ro = controller.latest(model)
    out: dict[str, Any] = {"model": model, "routing": table.__dict__ if table is not None else None, "live": live}
    if ro is None:
        return out
    out["rollout"] = {
        "id": ro.id,
        "state": ro.state,
        "candidate": ro.candidate_id,
        "champion": ro.champion_id,
        "step": ro.step_index,
        "weight_percent": ro.weight_bp / 100,
        "steps": ro.plan.steps,
        "step_started_at": ro.step_started_at.isoformat(),
        "forced": ro.forced,
        "plan": ro.plan.model_dump(mode="json"),
    }
    events = controller.events(ro.id)
    out["events"] = [
        {
            "at": e.at.isoformat(),
            "kind": e.kind,
            "from": e.from_bp / 100,
            "to": e.to_bp / 100,
            "reason": e.reason,
            "actor": e.actor,
            "evidence": e.evidence,
        }
        for e in events
    ]
    if live and ro.state in ("running", "watching", "paused"):
        comps, new, old = controller.evaluate(ro)
        out["guardrails"] = {k: c.to_json() for k, c in comps.items()}
        out["candidate"], out["champion"] = new.to_json(), old.to_json()
        out["progress"] = progress(controller, ro, comps, new.requests)
    return out


def progress(controller: Controller, ro: Rollout, comps: dict[str, Any], canary_requests: int) -> dict[str, Any]:
    """What the next step still waits for: bake time left, samples against the minimum, and each guardrail not
    yet shown safe with the reason (no data, or an interval still straddling the margin)."""
    elapsed = (controller.clock.now() - ro.step_started_at).total_seconds()
    observed = controller.observed(ro)
    need = ro.plan.watch_seconds if ro.state == "watching" else ro.plan.bake_seconds
    undecided = {}
    for name, c in comps.items():
        if c.decision is Decision.SAFE:
            continue
        if c.decision is Decision.HARM:
            undecided[name] = "harm shown: the rollout rolls back at the next tick"
        elif not c.canary_n:
            undecided[name] = "no data yet"
        else:
            undecided[name] = (
                f"interval [{c.lower:+.4f}, {c.upper:+.4f}] still includes the allowed {c.margin:+.4f}"
                if c.lower is not None and c.upper is not None and abs(c.lower) != float("inf")
                else "too few samples for an interval"
            )
    waiting = []
    if observed < need:
        waiting.append(f"{need - observed:.0f} s of {'watch' if ro.state == 'watching' else 'bake'} time left")
    if ro.state == "running" and canary_requests < ro.plan.min_samples:
        waiting.append(f"{canary_requests} of {ro.plan.min_samples} canary requests")
    waiting += [f"{k}: {why}" for k, why in undecided.items()]
    if ro.state == "paused":
        waiting.insert(0, "paused: a human decides (resume, promote or abort)")
    last = ro.step_index + 1 >= len(ro.plan.steps)
    return {
        "next_weight_percent": None if ro.state != "running" or last else ro.plan.steps[ro.step_index + 1],
        "elapsed_seconds": elapsed,
        "observed_seconds": observed,
        "bake_seconds": need,
        "bake_left_seconds": max(0.0, need - observed),
        "samples": canary_requests,
        "min_samples": ro.plan.min_samples,
        "max_step_seconds": ro.plan.max_step_seconds,
        "undecided": undecided,
        "waiting_for": waiting,
    }
