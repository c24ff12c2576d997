"""``/v1/llm`` and ``/v1/models/{name}/llm``: ``tether llm`` and ``tether llm evals`` over HTTP.

The token ledger (a summary per tenant, model and cache layer, and a time series), budgets, the gateway's
cache and calibration counters, and the evaluation loop's view: grader versions, score rows, per-version
decay, canary against champion and prompt drift with their alarms, and the HTML report.

A tenant-bound key reads its own tenant's ledger rows, budgets and score rows, and prompt drift without other
tenants' prompts (`tether.api.tenancy`); asking for another tenant's is refused (403).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from tether.api.access import Caller, Srv, need, tenant_filter
from tether.api.pages import Limit, Offset, Page, page
from tether.api.problems import RESPONSES
from tether.core import tenancy
from tether.core.errors import NotFoundError

router = APIRouter(prefix="/v1", tags=["llm"], responses=RESPONSES)
Hours = Annotated[float, Query(gt=0, le=24 * 400, description="How far back, in hours.")]
MAX_SCORE_ROWS = 5000


class BudgetIn(BaseModel):
    requests_per_minute: int | None = Field(None, ge=0)
    tokens_per_day: int | None = Field(None, ge=0)
    cost_per_month: float | None = Field(None, ge=0)


@router.get("/llm/ledger", summary="Tokens, cost and savings per tenant, model and cache layer")
def ledger(
    server: Srv,
    hours: Hours = 24.0,
    tenant: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
    caller: Caller = need("read"),
) -> Page[dict[str, Any]]:
    from tether.llm.ledger import summary

    since = server.clock.now() - timedelta(hours=hours)
    rows = summary(server.registry.store.db, since=since, tenant=tenant_filter(caller, tenant))
    return page(rows, limit, offset)


@router.get("/llm/ledger/series", summary="The ledger per time bucket and cache layer")
def ledger_series(
    server: Srv,
    hours: Hours = 6.0,
    bucket_seconds: Annotated[int, Query(ge=1, le=86400)] = 60,
    model: str | None = None,
    tenant: str | None = None,
    caller: Caller = need("read"),
) -> dict[str, Any]:
    from tether.llm.ledger import series

    since = server.clock.now() - timedelta(hours=hours)
    rows = series(
        server.registry.store.db,
        since=since,
        bucket_seconds=bucket_seconds,
        model=model,
        tenant=tenant_filter(caller, tenant),
    )
    return {"bucket_seconds": bucket_seconds, "rows": rows}


@router.get("/llm/budgets", summary="Every budget with what is used today and this month")
def budgets(server: Srv, caller: Caller = need("read")) -> dict[str, Any]:
    from tether.llm.ledger import Budgets, read_limits, seed_from_ledger
    from tether.serving.auth import key_tenants

    db = server.registry.store.db
    limits = read_limits(db)
    used = Budgets()
    used.set_limits(limits)
    now = server.clock.now()
    seed_from_ledger(db, used, now)
    every = {scope: used.usage(scope, now) for scope in sorted(limits)}
    return tenancy.budgets(every, caller.scope, key_tenants(db) if caller.scope is not None else {})


@router.put("/llm/budgets/{scope}", summary="Set (all limits null: remove) a tenant's or key's budgets")
def set_budget(server: Srv, scope: str, body: BudgetIn, caller: Caller = need("govern", held=True)) -> dict[str, Any]:
    from tether.llm.ledger import Limits, write_limits

    limits = Limits(body.requests_per_minute, body.tokens_per_day, body.cost_per_month)
    write_limits(server.registry.store.db, scope, limits, server.clock.now(), caller.name)
    return {"scope": scope, "limits": limits.to_json()}


@router.get("/llm/stats", summary="The gateway's caches, calibrated thresholds, prefix routing and budgets")
async def stats(server: Srv, caller: Caller = need("read")) -> dict[str, Any]:
    body: dict[str, Any] = server.llm.stats()  # in-memory counters: read on the event loop, where they change
    if caller.scope is not None:  # the caches' counters are the platform's; the budgets are tenants'
        from tether.serving.auth import key_tenants

        body["budgets"] = tenancy.budgets(body["budgets"], caller.scope, key_tenants(server.registry.store.db))
    return body


@router.get("/llm/graders", summary="The registered grader versions")
def graders(server: Srv, _: Caller = need("read")) -> dict[str, Any]:
    from tether.graders.registry import Graders

    return {"graders": [g.to_json() for g in Graders(server.registry.store).list()]}


def _deployed(server: Any, name: str) -> None:
    if name not in server.gateway.tables:
        raise NotFoundError(f"no deployed model {name!r}", hint="GET /v1/models lists the deployed LLMs")


@router.get("/models/{name}/llm/status", summary="Decay, canary against champion, prompt drift and graded rates")
def llm_status(server: Srv, name: str, caller: Caller = need("read")) -> dict[str, Any]:
    _deployed(server, name)
    status = server.llm_evals.watch.evaluate(name)
    return {**tenancy.status(status.to_json(), caller.scope), "grading": server.llm.grading.stats()}


@router.get("/models/{name}/llm/scores", summary="Score rows of graded interactions")
def llm_scores(
    server: Srv,
    name: str,
    trace: str | None = None,
    version: str | None = None,
    metric: str | None = None,
    origin: str = "live",
    tenant: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_SCORE_ROWS)] = 500,
    caller: Caller = need("read"),
) -> dict[str, Any]:
    from tether.graders.scores import read

    rows = read(
        server.registry.store.db,
        name,
        trace_id=trace,
        version_id=version,
        metric=metric,
        origin=origin,
        tenant=tenant_filter(caller, tenant),
        limit=limit,
    )
    return {"scores": [_plain(r) for r in rows], "limit": limit}


@router.get("/models/{name}/llm/report", response_class=HTMLResponse, summary="The LLM evaluation report page")
def llm_report(server: Srv, name: str, caller: Caller = need("read")) -> HTMLResponse:
    from tether.monitor.llm_report import html

    _deployed(server, name)
    return HTMLResponse(html(server.llm_evals.watch, name, scope=caller.scope))


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
