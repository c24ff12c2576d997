"""The rollout page: traffic weights over time, per-version error rate, latency percentiles (ms) and label
coverage, each guardrail's confidence sequence against its margin, progress toward the next step, every decision
with its evidence; promote, pause, resume and abort for deployer and admin sessions (with a confirmation).

The same `status_of`, `timeline` and controller actions as ``tether rollout`` and ``/v1/rollouts``."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tether.api.rollout import act
from tether.rollout.progress import status_of
from tether.rollout.timeline import timeline
from tether.ui.app import Viewer, checked_form, render
from tether.ui.charts import aligned, chart, line

router = APIRouter(include_in_schema=False)
LIVE = ("running", "watching", "paused")
ACTIONS = {"running": ("promote", "pause", "abort"), "paused": ("resume", "promote", "abort"), "watching": ()}


def charts(tl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The rollout page's charts from `timeline`."""
    w = tl["weights"]
    out = {
        "weights": chart(
            "Candidate's traffic share (%)",
            [p["t"] for p in w],
            [line("candidate %", [p["percent"] for p in w], steps=True)],
            ylabel="%",
            empty="no rollout events yet",
        )
    }
    arms = {"candidate": tl["candidate"], "champion": tl["champion"]}
    xs, err = aligned(arms, "error_rate")
    out["errors"] = chart(
        "Error rate per 10 s",
        xs,
        [line(k, v) for k, v in err.items()],
        ylabel="errors / request",
        empty="no traffic in this process's windows yet",
    )
    series = []
    for field, dash in (("p50_ms", False), ("p99_ms", True)):
        xs, lat = aligned(arms, field)
        series += [
            line(f"{k} {field[:3]}", v, dash=dash, color="#2f6fde" if k == "candidate" else "#9aa4ad")
            for k, v in lat.items()
        ]
    out["latency"] = chart("Latency (ms)", xs, series, ylabel="ms", empty="no traffic yet")
    xs, cov = aligned(arms, "label_coverage")
    _, fpr = aligned(arms, "false_positive_rate")
    out["labels"] = chart(
        "Label coverage and false-positive rate",
        xs,
        [line(f"{k} coverage", v) for k, v in cov.items()] + [line(f"{k} FPR", v, dash=True) for k, v in fpr.items()],
        ylabel="share",
        empty="no labelled feedback yet",
    )
    for name, pts in tl["sequences"].items():
        out[f"seq-{name}"] = chart(
            f"{name}: candidate minus champion, always-valid interval",
            [p["t"] for p in pts],
            [
                line("lower", [p["lower"] for p in pts], color="#2f6fde"),
                line("upper", [p["upper"] for p in pts], color="#2f6fde"),
                line("allowed margin", [p["margin"] for p in pts], color="#b3261e", dash=True, ref=True),
            ],
            ylabel="difference",
            empty="no comparisons yet",
            height=180,
        )
    return out


def _context(request: Request, name: str) -> dict[str, Any]:
    server = request.app.state.server
    data = status_of(server.controller, name, server.gateway.tables.get(name))
    ro = server.controller.latest(name)
    tl = timeline(server.controller, ro) if ro is not None else None
    drawn = charts(tl) if tl else {}
    return {
        "name": name,
        "data": data,
        "charts": drawn,
        "sequence_charts": [(k, v) for k, v in drawn.items() if k.startswith("seq-")],
        "polling": bool(ro and ro.state in LIVE),
    }


@router.get("/rollouts/{name}", response_class=HTMLResponse)
def rollout_page(request: Request, caller: Viewer, name: str) -> HTMLResponse:
    ctx = _context(request, name)
    ro = ctx["data"].get("rollout")
    actions = ACTIONS.get(ro["state"], ()) if ro and caller.may("deploy") else ()
    history = request.app.state.server.controller.history(name)[:20]
    return render(request, "rollout.html", caller, actions=actions, history=history, **ctx)


@router.get("/rollouts/{name}/live", response_class=HTMLResponse)
def rollout_live(request: Request, caller: Viewer, name: str) -> HTMLResponse:
    return render(request, "_rollout_live.html", caller, **_context(request, name))


@router.post("/rollouts/{name}/{action}")
async def rollout_action(
    request: Request, name: str, action: Literal["promote", "pause", "resume", "abort"]
) -> Response:
    import asyncio

    caller, form = await checked_form(request, "deploy")
    reason = form.get("reason", "").strip() or f"{action} from the dashboard"
    server = request.app.state.server
    await asyncio.to_thread(act, server, name, action, f"{reason} (dashboard)", caller)
    return RedirectResponse(f"/rollouts/{name}", status_code=303)
