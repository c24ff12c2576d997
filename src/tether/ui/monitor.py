"""The drift page: per feature, the baseline against the live distribution, each test's effect over the checks
against its alarm line, the open and resolved anomalies and what the watch did about them (rollout holds and
rollbacks it recorded, the shadow routing). The same `Watch` as ``tether monitor`` and ``/v1/models/{name}/monitor``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tether.monitor.profile import CategoricalProfile, NumericProfile
from tether.monitor.report import categorical_pairs, numeric_pairs, version_json
from tether.ui.app import Viewer, render
from tether.ui.charts import aligned, chart, line

router = APIRouter(include_in_schema=False)
WATCHERS = ("drift-watch", "llm-watch")


def distribution(fs: Any) -> dict[str, Any] | None:
    if fs.profiles is None:
        return None
    bp, lp = fs.profiles
    if isinstance(bp, NumericProfile) and isinstance(lp, NumericProfile):
        pairs = numeric_pairs(bp, lp)
    elif isinstance(bp, CategoricalProfile) and isinstance(lp, CategoricalProfile):
        pairs = categorical_pairs(bp, lp)
    else:
        return None
    spec = chart(
        f"{fs.feature}: baseline against live (share per bin)",
        list(range(len(pairs))),
        [
            {**line("baseline", [b for _, b, _ in pairs], color="#9aa4ad"), "bars": True},
            {**line("live", [v for _, _, v in pairs], color="#2f6fde"), "bars": True},
        ],
        ylabel="share",
        time=False,
        height=180,
    )
    spec["labels"] = [label for label, _, _ in pairs]
    return spec


def statistic(key: str, tests: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """One feature's tests at every check, each effect over its minimum shift: a test alarms above 1 (when its
    family-adjusted p-value is also under the level)."""
    rows = {
        test: [
            {"t": p["t"], "ratio": p["effect"] / p["min_shift"] if p["effect"] is not None and p["min_shift"] else None}
            for p in pts
        ]
        for test, pts in tests.items()
    }
    xs, ys = aligned(rows, "ratio")
    return chart(
        f"{key}: effect / minimum shift at each check",
        xs,
        [line(test, v) for test, v in ys.items()]
        + [line("alarm line", [1.0] * len(xs), color="#b3261e", dash=True, ref=True)],
        ylabel="effect / minimum",
        height=180,
    )


@router.get("/drift/{name}", response_class=HTMLResponse)
def drift_page(request: Request, caller: Viewer, name: str) -> HTMLResponse:
    server = request.app.state.server
    watch = server.watch
    config = watch.config(name)
    versions = watch.evaluate(name, config=config)
    shown = []
    for vs in versions:
        body = version_json(vs, watch)
        body["charts"] = [(fs.feature, distribution(fs)) for fs in vs.features if not fs.segment]
        shown.append(body)
    history = watch.history.series(name)
    actions = [
        {"rollout": ro.id, **e.__dict__}
        for ro in server.controller.history(name)[:10]
        for e in server.controller.events(ro.id)
        if e.actor in WATCHERS
    ]
    return render(
        request,
        "drift.html",
        caller,
        name=name,
        config=config,
        versions=shown,
        statistics=[(k, statistic(k, tests)) for k, tests in sorted(history.items())],
        anomalies=watch.anomalies(name, limit=100, scope=caller.scope),
        actions=actions,
        table=server.gateway.tables.get(name),
    )
