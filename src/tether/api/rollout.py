"""``/v1/rollouts``: ``tether deploy`` and ``tether rollout`` over HTTP.

Status with its evidence and progress (the same `status_of` the CLI renders), the timeline the dashboard
charts, and the actions: start (a PASS gate report needed, or ``force`` with a reason), promote, pause,
resume, abort. Actions need a deployer or admin key; each is recorded with the key's name as its actor.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from tether.api.access import Caller, Srv, need
from tether.api.pages import Limit, Offset, Page, page
from tether.api.problems import RESPONSES
from tether.rollout.plan import load_plan
from tether.rollout.progress import status_of
from tether.rollout.record import Event, Rollout
from tether.rollout.timeline import timeline

router = APIRouter(prefix="/v1", tags=["rollout"], responses=RESPONSES)
Action = Literal["promote", "pause", "resume", "abort"]


class RolloutOut(BaseModel):
    id: int
    model: str
    state: str
    candidate: str
    champion: str
    step: int
    weight_percent: float
    steps: list[float]
    step_started_at: datetime
    forced: bool
    gate_report_id: str | None

    @classmethod
    def of(cls, ro: Rollout) -> RolloutOut:
        return cls(
            id=ro.id,
            model=ro.model,
            state=ro.state,
            candidate=ro.candidate_id,
            champion=ro.champion_id,
            step=ro.step_index,
            weight_percent=ro.weight_bp / 100,
            steps=list(ro.plan.steps),
            step_started_at=ro.step_started_at,
            forced=ro.forced,
            gate_report_id=ro.gate_report_id,
        )


class EventOut(BaseModel):
    rollout_id: int
    at: datetime
    kind: str
    from_percent: float
    to_percent: float
    reason: str
    actor: str
    evidence: dict[str, Any]

    @classmethod
    def of(cls, e: Event) -> EventOut:
        return cls(
            rollout_id=e.rollout_id,
            at=e.at,
            kind=e.kind,
            from_percent=e.from_bp / 100,
            to_percent=e.to_bp / 100,
            reason=e.reason,
            actor=e.actor,
            evidence=e.evidence,
        )


class Status(BaseModel):
    """Routing, the latest rollout, its events with evidence; with live traffic the guardrails, both versions'
    tallies and ``progress`` (bake time left, samples against the minimum, undecided guardrails and why)."""

    model: str
    live: bool
    routing: dict[str, Any] | None
    rollout: dict[str, Any] | None = None
    events: list[dict[str, Any]] = []
    guardrails: dict[str, Any] | None = None
    candidate: dict[str, Any] | None = None
    champion: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None


class StartIn(BaseModel):
    candidate: str = Field(description="The version to roll out (ref or id prefix).")
    plan: dict[str, Any] | None = Field(None, description="A rollout plan (docs/rollout.md); the default if absent.")
    force: bool = Field(False, description="Start without a PASS gate report (admin keys only; needs a reason).")
    reason: str | None = None


class DeployIn(BaseModel):
    version: str = Field(description="The version to serve as champion, with all of the traffic.")
    reason: str = "first deployment"
    force: bool = Field(False, description="Without a PASS gate report (admin keys only; recorded).")


class Reason(BaseModel):
    reason: str = Field(min_length=1, description="Why (recorded with the decision).")


@router.get("/rollouts/{name}", summary="Routing, latest rollout, guardrail evidence and progress")
def rollout_status(server: Srv, name: str, _: Caller = need("read")) -> Status:
    return Status(**status_of(server.controller, name, server.gateway.tables.get(name)))


@router.get("/rollouts/{name}/timeline", summary="Weights, per-slice metrics and confidence sequences")
def rollout_timeline(server: Srv, name: str, _: Caller = need("read")) -> dict[str, Any]:
    ro = server.controller.latest(name)
    if ro is None:
        from tether.core.errors import NotFoundError

        raise NotFoundError(f"{name} has no rollout", hint=f"start one: tether rollout start {name} --candidate V")
    return {"rollout": RolloutOut.of(ro).model_dump(mode="json"), **timeline(server.controller, ro)}


@router.get("/rollouts/{name}/history", summary="Every rollout of a model, newest first")
def rollout_history(
    server: Srv, name: str, limit: Limit = 50, offset: Offset = 0, _: Caller = need("read")
) -> Page[RolloutOut]:
    return page([RolloutOut.of(r) for r in server.controller.history(name)], limit, offset)


@router.get("/rollouts/{name}/events", summary="The decisions of a model's latest rollout, with evidence")
def rollout_events(
    server: Srv, name: str, limit: Limit = 100, offset: Offset = 0, _: Caller = need("read")
) -> Page[EventOut]:
    ro = server.controller.latest(name)
    events = server.controller.events(ro.id) if ro else []
    return page([EventOut.of(e) for e in events], limit, offset)


@router.post("/rollouts/{name}", status_code=201, summary="Start a progressive rollout")
def rollout_start(server: Srv, name: str, body: StartIn, caller: Caller = need("deploy")) -> RolloutOut:
    if body.force:
        _needs_admin(caller, "force a rollout")
    ro = server.controller.start(
        name, body.candidate, load_plan(body.plan), force=body.force, reason=body.reason, actor=caller.name
    )
    server.refresh_soon()
    return RolloutOut.of(ro)


@router.post("/rollouts/{name}/{action}", summary="Promote, pause, resume or abort the running rollout")
def rollout_action(server: Srv, name: str, action: Action, body: Reason, caller: Caller = need("deploy")) -> EventOut:
    event = act(server, name, action, body.reason, caller)
    return EventOut.of(event)


def act(server: Any, name: str, action: str, reason: str, caller: Caller) -> Event:
    """One manual decision (the API's and the dashboard's): the controller's, with the caller as actor."""
    event: Event = getattr(server.controller, action)(name, reason=reason, actor=caller.name)
    server.refresh_soon()
    return event


@router.post("/deployments/{name}", status_code=201, summary="Make a version the champion with all traffic")
def deploy(server: Srv, name: str, body: DeployIn, caller: Caller = need("deploy")) -> dict[str, str]:
    if body.force:
        _needs_admin(caller, "deploy without a PASS gate report")
    vid = server.controller.deploy(name, body.version, reason=body.reason, force=body.force, actor=caller.name)
    server.refresh_soon()
    return {"model": name, "champion": vid}


class PlacementIn(BaseModel):
    placement: Literal["alone", "pooled", "default"] = Field(
        description="alone: an instance of its own whatever its role; pooled: in the pool even as a canary or a "
        "shadow; default: canaries and shadows alone, champions pooled."
    )
    reason: str = Field(min_length=1, description="Why (recorded on the audit trail).")


class DeploymentEventOut(BaseModel):
    id: int
    model: str
    kind: str
    version: str | None
    actor: str
    reason: str
    at: datetime
    detail: dict[str, Any]


@router.delete("/deployments/{name}", summary="Retire a model: stop serving it (its history stays)")
def retire(server: Srv, name: str, body: Reason, caller: Caller = need("deploy")) -> dict[str, Any]:
    table = server.controller.deployments.retire(name, reason=body.reason, actor=caller.name)
    server.refresh_soon()
    return {"model": name, "retired": True, "champion": table.champion}


@router.put("/deployments/versions/{ref:path}/placement", summary="Run a version alone, pooled, or by default")
def placement(server: Srv, ref: str, body: PlacementIn, caller: Caller = need("deploy")) -> dict[str, Any]:
    alone = {"alone": True, "pooled": False, "default": None}[body.placement]
    vid = server.controller.deployments.isolate(ref, alone, reason=body.reason, actor=caller.name)
    server.refresh_soon()
    return {"version": vid, "placement": body.placement}


@router.get("/deployments/{name}/events", summary="A model's deployment events, newest first")
def deployment_events(
    server: Srv, name: str, limit: Limit = 50, offset: Offset = 0, _: Caller = need("read")
) -> Page[DeploymentEventOut]:
    events = server.controller.deployments.events(name, limit=offset + limit)
    out = [
        DeploymentEventOut(
            id=e.id,
            model=e.model,
            kind=e.kind,
            version=e.version_id,
            actor=e.actor,
            reason=e.reason,
            at=e.at,
            detail=e.detail,
        )
        for e in events
    ]
    return page(out, limit, offset)


def _needs_admin(caller: Caller, what: str) -> None:
    from tether.api.problems import Refused

    if not caller.may("govern"):
        raise Refused(403, f"role {caller.role!r} may not {what}; it needs an admin key")
