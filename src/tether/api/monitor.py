"""``/v1/models/{name}/monitor`` and ``/anomalies``: ``tether monitor`` over HTTP.

Status is the drift watch's view now (per version and feature, baseline against live, each test with its
family-adjusted p-value); anomalies are what it recorded, resolved by a deployer or admin with a reason.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from tether.api.access import Caller, Srv, need
from tether.api.pages import Limit, Offset, Page, RowId, page
from tether.api.problems import RESPONSES
from tether.core.durations import MAX_SECONDS
from tether.monitor.config import MonitorConfig

#: Anomalies are few (one per drifted feature and window): the newest this many are paged through.
MAX_ANOMALIES = 10_000
router = APIRouter(prefix="/v1", tags=["monitor"], responses=RESPONSES)


class Resolve(BaseModel):
    reason: str = Field(min_length=1, description="Why it is resolved (recorded).")


class AnomalyPage(Page[dict[str, Any]]):
    model: str
    #: Kept under its old name too, for clients written against the first version of this route.
    anomalies: list[dict[str, Any]]


@router.get("/models/{name}/monitor", summary="The drift watch's view: per version and feature, baseline vs live")
def monitor_status(
    server: Srv,
    name: str,
    window: Annotated[float | None, Query(gt=0, le=MAX_SECONDS, description="Look back this many seconds.")] = None,
    caller: Caller = need("read"),
) -> dict[str, Any]:
    from tether.monitor.report import status_json

    return status_json(server.watch, name, window, scope=caller.scope)


@router.get("/models/{name}/monitor/report", response_class=HTMLResponse, summary="The drift report page")
def monitor_report(server: Srv, name: str, caller: Caller = need("read")) -> HTMLResponse:
    from tether.monitor.report import html_report

    return HTMLResponse(html_report(server.watch, name, scope=caller.scope))


@router.get("/models/{name}/anomalies", summary="Recorded anomalies, newest first")
def anomalies(
    server: Srv,
    name: str,
    open: Annotated[bool, Query(description="Only those not resolved.")] = False,
    limit: Limit = 50,
    offset: Offset = 0,
    caller: Caller = need("read"),
) -> AnomalyPage:
    anomalies = server.watch.anomalies(name, open_only=open, limit=MAX_ANOMALIES, scope=caller.scope)
    found = [a.to_json() for a in anomalies]
    p = page(found, limit, offset)
    return AnomalyPage(**p.model_dump(), model=name, anomalies=p.items)


@router.post("/anomalies/{anomaly_id}/resolve", summary="Close an anomaly with a reason")
def resolve(server: Srv, anomaly_id: RowId, body: Resolve, caller: Caller = need("deploy")) -> dict[str, Any]:
    return server.watch.resolve(anomaly_id, reason=body.reason, actor=caller.name).to_json()


@router.get("/models/{name}/monitor/config", summary="The model's monitor settings (defaults unless set)")
def get_config(server: Srv, name: str, _: Caller = need("read")) -> MonitorConfig:
    return server.watch.config(name)


@router.put("/models/{name}/monitor/config", summary="Set what the drift watch checks and does")
def set_config(server: Srv, name: str, body: MonitorConfig, caller: Caller = need("deploy")) -> MonitorConfig:
    return server.watch.set_config(name, body, actor=caller.name)
