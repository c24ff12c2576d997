"""The audit page: search records by trace id, model, version, kind and time; a record with its inclusion proof,
verified in the page (the browser recomputes the path to the signed root); the last verify and the signed
checkpoints; verify now. The same `search`, `AuditLog.trace` and verify as ``tether audit`` and ``/v1/audit``."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tether.api.audit import trail, visible
from tether.api.pages import Limit, Offset, page
from tether.audit.log import KINDS
from tether.audit.search import Filters, last_verify, record_verify, search
from tether.ui.app import Viewer, checked_form, render

router = APIRouter(include_in_schema=False)


def _blank(v: str | None) -> str | None:
    return v.strip() or None if v is not None else None


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    caller: Viewer,
    trace: str | None = None,
    model: str | None = None,
    version: str | None = None,
    kind: str | None = None,
    since: Annotated[str | None, Query()] = None,
    until: Annotated[str | None, Query()] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> HTMLResponse:
    from tether.core.errors import InvalidInputError

    log = trail(request.app.state.server)
    times = {}
    for key, raw in (("since", since), ("until", until)):
        if _blank(raw):
            try:
                t = datetime.fromisoformat(str(raw).strip())
            except ValueError:
                raise InvalidInputError(
                    f"{key} is not a time: {raw!r}", hint="e.g. 2026-12-03T10:00:00+00:00"
                ) from None
            times[key] = t if t.tzinfo else t.astimezone()
    f = Filters(
        model=_blank(model),
        version=_blank(version),
        trace=_blank(trace),
        kind=_blank(kind),
        scope=caller.scope,  # a tenant-bound reader: its tenant's records and the platform's
        **times,
    )
    rows, total = search(log, f, limit=limit, offset=offset)
    form = {
        "trace": trace or "",
        "model": model or "",
        "version": version or "",
        "kind": kind or "",
        "since": since or "",
        "until": until or "",
    }
    query = "&".join(f"{k}={v}" for k, v in form.items() if v)
    cps = log.checkpoints()
    return render(
        request,
        "audit.html",
        caller,
        results=page(rows, limit, offset, total=total),
        form=form,
        kinds=KINDS,
        base=f"/audit?{query + '&' if query else ''}",
        verify=last_verify(log),
        checkpoints=cps[::-1][:10],
        checkpoint_count=len(cps),
    )


@router.get("/audit/trace/{trace_id}", response_class=HTMLResponse)
def trace_page(request: Request, caller: Viewer, trace_id: str) -> HTMLResponse:
    found = visible(trail(request.app.state.server).trace(trace_id), caller, trace_id)
    proof = {
        "index": found["record"]["seq"],
        "size": found["checkpoint"]["tree_size"],
        "leaf": found["leaf"],
        "proof": found["proof"],
        "root": found["checkpoint"]["root"],
    }
    raw = found["record"].get("payload") or ""
    try:
        payload = json.dumps(json.loads(raw), indent=2, sort_keys=True)
    except ValueError:
        payload = raw
    return render(request, "trace.html", caller, found=found, proof=proof, payload=payload)


@router.post("/audit/verify")
async def verify_now(request: Request) -> Response:
    caller, _ = await checked_form(request, "read")
    log = trail(request.app.state.server)
    report = await asyncio.to_thread(log.verify)
    record_verify(log, report, at=request.app.state.server.clock.now(), actor=caller.name)
    return RedirectResponse("/audit#verify", status_code=303)
