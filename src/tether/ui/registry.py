"""Models, a model's versions and alias history, a version (triad, signature, metrics, gate reports, where it
runs, lineage), two versions side by side. Over `tether.registry.catalog`, like ``tether versions``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from tether.api.pages import Limit, Offset, page
from tether.registry import catalog
from tether.registry.version import ModelVersion
from tether.ui.app import Viewer, render

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
def models_page(request: Request, caller: Viewer) -> HTMLResponse:
    server = request.app.state.server
    found = catalog.models(server.registry)
    return render(request, "models.html", caller, found=found, tables=server.gateway.tables)


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
    left, right = reg.get(a), reg.get(b)
    metrics = sorted(set(left.metrics) | set(right.metrics))
    fields_l = {f["name"]: f for f in left.input_schema.get("fields", [])}
    fields_r = {f["name"]: f for f in right.input_schema.get("fields", [])}
    inputs = [(n, fields_l.get(n), fields_r.get(n)) for n in sorted(set(fields_l) | set(fields_r))]
    params = sorted(set(left.params) | set(right.params))
    return render(
        request, "compare.html", caller, left=left, right=right, metrics=metrics, inputs=inputs, params=params
    )


@router.get("/gate-reports/{report_id}", response_class=HTMLResponse)
def gate_report_page(request: Request, caller: Viewer, report_id: str) -> HTMLResponse:
    from tether.gate.reports import get_report, report_html

    reg = request.app.state.server.registry
    return HTMLResponse(report_html(reg, get_report(reg, report_id)))
