"""``/v1/models/{name}/gate-reports`` and ``/v1/models/{name}/gate-policy``: ``tether gate`` over HTTP.

Reports are read (running a gate needs the gold data and the models' code on the machine: ``tether gate run``).
The policy is read by viewers and set only by admin keys, never with authentication off.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from tether.api.access import Caller, Srv, need
from tether.api.pages import Limit, Offset, Page, page
from tether.api.problems import RESPONSES
from tether.core.errors import InvalidInputError, NotFoundError

router = APIRouter(tags=["gate"], responses=RESPONSES)


class ReportSummary(BaseModel):
    id: str
    candidate_id: str
    champion_id: str | None
    verdict: str
    created_at: datetime
    created_by: str
    #: The gate policy the report ran under; null for an ad-hoc spec (which never moves ``champion``).
    policy_digest: str | None


class PolicyIn(BaseModel):
    spec: dict[str, Any] = Field(description="A gate spec (docs/gate.md), gold sets named by snapshot digest.")
    reason: str = Field("", description="Why (recorded).")


@router.get("/v1/models/{name}/gate-reports", summary="A model's gate reports, newest first")
def reports(
    server: Srv, name: str, limit: Limit = 50, offset: Offset = 0, _: Caller = need("read")
) -> Page[ReportSummary]:
    from tether.gate.reports import list_reports

    rows = list_reports(server.registry, name)[::-1]
    return page([ReportSummary(**r) for r in rows], limit, offset)


@router.get("/v1/gate-reports/{report_id}", summary="A gate report (id or 6+ character prefix): tests, verdict")
def report(server: Srv, report_id: str, _: Caller = need("read")) -> dict[str, Any]:
    from tether.gate.reports import get_report

    return get_report(server.registry, report_id).to_json()


@router.get("/v1/gate-reports/{report_id}/html", response_class=HTMLResponse, summary="A gate report's page")
def report_page(server: Srv, report_id: str, _: Caller = need("read")) -> HTMLResponse:
    from tether.gate.reports import get_report, report_html

    reg = server.registry
    return HTMLResponse(report_html(reg, get_report(reg, report_id)))


@router.get("/v1/models/{name}/gate-policy", summary="The model's gate policy in force, with its spec")
def gate_policy(server: Srv, name: str, _: Caller = need("read")) -> dict[str, Any]:
    pol = server.registry.gate_policy(name)
    if pol is None:
        raise NotFoundError(f"{name} has no gate policy", hint="an admin sets one: tether gate policy set")
    return {**pol.to_json(), "spec": server.registry.gate_policy_spec(pol)}


@router.put("/v1/models/{name}/gate-policy", status_code=201, summary="Set the gate policy (admin keys only)")
def set_gate_policy(
    server: Srv, name: str, body: PolicyIn, caller: Caller = need("govern", held=True)
) -> dict[str, Any]:
    from tether.gate import load_spec, set_policy

    spec = load_spec(body.spec)
    if spec.model != name:
        raise InvalidInputError(f"the spec is for model {spec.model!r}, not {name!r}")
    pol = set_policy(server.registry, spec, reason=body.reason, role=caller.role, actor=caller.name)
    return dict(pol.to_json())
