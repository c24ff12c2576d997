"""Models, a model's versions and alias history, a version (triad, signature, metrics, gate reports, where it
runs, lineage), two versions side by side. Over `tether.registry.catalog`, like ``tether versions``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tether.api.pages import Limit, Offset, page
from tether.registry import catalog
from tether.registry.version import ModelVersion
from tether.ui.app import Viewer, checked_form, render

router = APIRouter(include_in_schema=False)


def where_it_runs(server: Any, mv: ModelVersion) -> list[dict[str, Any]]:
    """The arms of the routing tables that name this version, with their share and the instance serving it."""
    out = []
    t = server.gateway.tables.get(mv.name)
    if t is not None:
        for arm, vid, share in (
            ("champion", t.champion, 100 - t.canary_bp / 100),
            ("canary", t.canary, t.canary_bp / 100),
            ("shadow", t.shadow, t.shadow_bp / 100),
        ):
            if vid == mv.id:
                inst = server.runtime.instance(mv.id)
                out.append(
                    {
                        "arm": arm,
                        "percent": share,
                        "instance": None
                        if inst is None
                        else {"url": inst.url, "pid": inst.pid, "restarts": inst.restarts},
                    }
                )
    return out


@router.get("/", response_class=HTMLResponse)
def models_page(
    request: Request,
    caller: Viewer,
    q: Annotated[str | None, Query()] = None,
    tag: Annotated[str | None, Query()] = None,
    owner: Annotated[str | None, Query()] = None,
    stage: Annotated[str | None, Query()] = None,
    health: Annotated[str | None, Query()] = None,
    after: Annotated[str | None, Query()] = None,
) -> HTMLResponse:
    """The fleet at a glance (each number a link to its filtered list), then a page of models: searchable by name,
    tag, owner, stage and health, keyset-paged (50 a page whatever the fleet's size)."""
    from tether.rollout.fleet import summary

    server = request.app.state.server
    live = server.live()
    query = catalog.ModelQuery(q or None, tag or None, owner or None, stage or None, health or None, after or None, 50)
    found = catalog.search(server.registry, query, live)
    fleet = summary(server.registry, server.clock.now(), live)
    filters = {"q": q or "", "tag": tag or "", "owner": owner or "", "stage": stage or "", "health": health or ""}
    kept = "&".join(f"{k}={quote(v)}" for k, v in filters.items() if v)
    return render(
        request,
        "models.html",
        caller,
        found=found.items,
        total=found.total,
        next_url=f"/?{kept + '&' if kept else ''}after={quote(found.next)}" if found.next else None,
        filters=filters,
        stages=catalog.STAGES,
        healths=catalog.HEALTH,
        fleet=fleet,
        links=fleet.links(),
        tables=server.gateway.tables,
    )


@router.get("/models/{name}", response_class=HTMLResponse)
def model_page(
    request: Request,
    caller: Viewer,
    name: str,
    alias: Annotated[str | None, Query()] = None,
    metric: Annotated[str | None, Query()] = None,
    metric_min: Annotated[float | None, Query()] = None,
    metric_max: Annotated[float | None, Query()] = None,
    since: Annotated[datetime | None, Query()] = None,
    limit: Limit = 25,
    offset: Offset = 0,
) -> HTMLResponse:
    from tether.gate.reports import list_reports

    server = request.app.state.server
    reg = server.registry
    found = catalog.find_versions(
        reg, name, alias=alias or None, metric=metric or None, metric_min=metric_min, metric_max=metric_max, since=since
    )
    shown = page(found, limit, offset)
    metric_names = sorted({k for mv in found for k, v in mv.metrics.items() if isinstance(v, int | float)})
    filters = {"alias": alias or "", "metric": metric or "", "metric_min": metric_min, "metric_max": metric_max}
    query = "&".join(f"{k}={v}" for k, v in filters.items() if v not in (None, ""))
    return render(
        request,
        "model.html",
        caller,
        name=name,
        versions=shown,
        base=f"/models/{name}?{query + '&' if query else ''}",
        filters=filters,
        metric_names=metric_names,
        history=reg.alias_history(name)[::-1][:50],
        reports=list_reports(reg, name)[::-1][:20],
        reproduce={mv.id: catalog.reproduce_instructions(mv) for mv in shown.items},
        table=server.gateway.tables.get(name),
        deployments=server.controller.deployments.events(name, limit=20),
        can_retire=caller.may("deploy") and name in server.gateway.desired,
    )


@router.get("/versions/{ref:path}", response_class=HTMLResponse)
def version_page(request: Request, caller: Viewer, ref: str) -> HTMLResponse:
    from tether.gate.reports import list_reports

    server = request.app.state.server
    reg = server.registry
    mv = reg.get(ref)
    reports = [r for r in list_reports(reg, mv.name) if r["candidate_id"] == mv.id][::-1]
    champion = reg.get(f"{mv.name}@champion") if "champion" not in mv.aliases and _has_champion(reg, mv.name) else None
    return render(
        request,
        "version.html",
        caller,
        mv=mv,
        reproduce=catalog.reproduce_instructions(mv),
        reports=reports,
        runs=where_it_runs(server, mv),
        champion=champion,
        history=[e for e in reg.alias_history(mv.name) if mv.id in (e.version_id, e.previous_version_id)][::-1],
    )


def _has_champion(reg: Any, name: str) -> bool:
    from tether.registry import aliases

    with reg.store.db.connect() as conn:
        return aliases.current(conn, name, "champion") is not None


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request, caller: Viewer, a: str, b: str) -> HTMLResponse:
    reg = request.app.state.server.registry
    return render(request, "compare.html", caller, c=catalog.compare(reg, a, b))


@router.post("/models/{name}/retire")
async def retire_model(request: Request, name: str) -> Response:
    """Stop serving a model (a deployer's button, confirmed, with a reason; on the audit trail)."""
    import asyncio

    caller, form = await checked_form(request, "deploy")
    reason = form.get("reason", "").strip() or "retired from the dashboard"
    server = request.app.state.server
    await asyncio.to_thread(
        server.controller.deployments.retire, name, reason=f"{reason} (dashboard)", actor=caller.name
    )
    server.refresh_soon()
    return RedirectResponse(f"/models/{name}", status_code=303)


@router.get("/gate-reports/{report_id}", response_class=HTMLResponse)
def gate_report_page(request: Request, caller: Viewer, report_id: str) -> HTMLResponse:
    from tether.gate.reports import get_report, report_html

    reg = request.app.state.server.registry
    return HTMLResponse(report_html(reg, get_report(reg, report_id)))
