"""The LLM page: tokens, cost and savings per cache layer over time, trimming, the semantic cache's hits, false
hits and calibrated threshold, grader scores over time with each metric's rate and interval, decay, canary
against champion and prompt-drift alarms per version. Over the ledger, the gateway's counters and `LLMWatch`,
like ``tether llm`` and ``/v1/llm``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tether.core import tenancy
from tether.ui.app import Viewer, render
from tether.ui.charts import aligned, chart, line

router = APIRouter(include_in_schema=False)
LLM_TESTS = ("decay", "decay_vs_champion", "mmd", "judge_drift")


def ledger_charts(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    by_cache: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_cache.setdefault(r["cache"], []).append(r)
    out = {}
    for field, title, unit in (
        ("tokens", "Tokens per minute, by cache layer", "tokens"),
        ("cost", "Cost per minute, by cache layer", "cost"),
        ("saved_tokens", "Tokens saved per minute, by cache layer", "tokens"),
        ("trimmed_tokens", "Tokens trimmed from prompts per minute", "tokens"),
    ):
        xs, ys = aligned(by_cache, field)
        out[field] = chart(title, xs, [line(k, v) for k, v in ys.items()], ylabel=unit, empty="no LLM traffic yet")
    return out


def score_chart(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each metric's score per interaction over time (live origin), one series per metric."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["value"] is not None:
            by.setdefault(r["metric"], []).append({"t": r["at"].timestamp(), "v": r["value"]})
    xs, ys = aligned(by, "v")
    return chart(
        "Grader scores of live interactions",
        xs,
        [line(k, v) for k, v in ys.items()],
        ylabel="score",
        empty="no graded interactions yet",
    )


@router.get("/llm/{name}", response_class=HTMLResponse)
def llm_page(request: Request, caller: Viewer, name: str) -> HTMLResponse:
    from tether.graders.scores import read
    from tether.llm.ledger import series

    server = request.app.state.server
    db = server.registry.store.db
    now = server.clock.now()
    scope = caller.scope  # a tenant-bound reader: its tenant's rows, no other tenant's prompts
    rows = series(db, since=now - timedelta(hours=6), bucket_seconds=60, model=name, tenant=scope)
    deployed = name in server.gateway.tables
    llm = name in server.llm.llm_models
    status = tenancy.status(server.llm_evals.watch.evaluate(name).to_json(), scope) if deployed and llm else None
    stats = server.llm.stats()
    calibration = {k: v for k, v in stats["calibration"].items() if k.startswith(name + "/")}
    scores = read(db, name, since=now - timedelta(hours=6), tenant=scope, limit=5000)
    alarms = [a for a in server.watch.anomalies(name, limit=200, scope=scope) if a.test in LLM_TESTS]
    totals: dict[str, dict[str, float]] = {}
    for r in rows:
        t = totals.setdefault(
            r["cache"], {"requests": 0, "tokens": 0, "cost": 0.0, "saved_tokens": 0, "saved_cost": 0.0}
        )
        for k in t:
            t[k] += r[k]
    return render(
        request,
        "llm.html",
        caller,
        name=name,
        llm=llm,
        charts=ledger_charts(rows),
        scores=score_chart(scores),
        status=status,
        stats=stats,
        calibration=calibration,
        alarms=alarms,
        totals=totals,
    )
