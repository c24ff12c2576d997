"""``/v1/audit``: ``tether audit`` over HTTP, for auditors.

Records are found by model, version (id or prefix), trace id, kind and time range, a page at a time; every
filter is a bound parameter (no SQL crosses HTTP). A trace comes with its inclusion proof against the latest
signed checkpoint, recomputed from the record's content; checkpoints are listed; verify re-checks the whole log
and keeps its signed result, which ``GET /v1/audit/verify`` returns.

A tenant-bound key reads its own tenant's prediction, LLM and score records and the platform's records
(versions, aliases, gates, rollouts, ...), never another tenant's: a trace of another tenant is answered 404, as
one that does not exist (`tether.api.access`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from tether.api.access import Caller, Srv, need, tenant_filter
from tether.api.pages import Limit, Offset, Page, page
from tether.api.problems import RESPONSES
from tether.audit.log import AuditLog
from tether.audit.record import TENANT_KINDS
from tether.audit.search import Filters, last_verify, record_verify, search
from tether.core.errors import NotFoundError

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=RESPONSES)


def trail(server: Any) -> AuditLog:
    if server.audit is None:
        raise NotFoundError("the audit trail is off on this server", hint="unset TETHER_AUDIT (it is on by default)")
    log: AuditLog = server.audit.log
    return log


@router.get("/records", summary="Sealed records, newest first, by model, version, trace, kind and time")
def records(
    server: Srv,
    model: str | None = None,
    version: Annotated[str | None, Query(description="A version id or id prefix.")] = None,
    trace: str | None = None,
    kind: Annotated[str | None, Query(description="prediction, llm, version, alias, gate, rollout, ...")] = None,
    since: Annotated[datetime | None, Query(description="At or after (ISO 8601 with a zone).")] = None,
    until: Annotated[datetime | None, Query(description="At or before (ISO 8601 with a zone).")] = None,
    tenant: Annotated[str | None, Query(description="Records of this tenant only.")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
    caller: Caller = need("read"),
) -> Page[dict[str, Any]]:
    if tenant is not None:
        tenant_filter(caller, tenant)  # another tenant's: refused
    f = Filters(
        model=model,
        version=version,
        trace=trace,
        kind=kind,
        since=since,
        until=until,
        tenant=tenant,
        scope=caller.scope,
    )
    rows, total = search(trail(server), f, limit=limit, offset=offset)
    return page(rows, limit, offset, total=total)


@router.get("/trace/{trace_id}", summary="A record with its inclusion proof against the latest checkpoint")
def trace(server: Srv, trace_id: str, caller: Caller = need("read")) -> dict[str, Any]:
    return visible(trail(server).trace(trace_id), caller, trace_id)


def visible(found: dict[str, Any], caller: Caller, trace_id: str) -> dict[str, Any]:
    """``found`` (a trace with its proof) if the caller may read its record, else the 404 of no such record."""
    rec = found["record"]
    if rec.get("kind") in TENANT_KINDS and not caller.reads(rec.get("tenant") or None):
        raise NotFoundError(
            f"no sealed audit record with trace id {trace_id}",
            hint="records are sealed every few seconds; 'tether audit seal' seals now",
        )
    return found


@router.get("/checkpoints", summary="The signed checkpoints, newest first")
def checkpoints(server: Srv, limit: Limit = 50, offset: Offset = 0, _: Caller = need("read")) -> Page[dict[str, Any]]:
    return page(trail(server).checkpoints()[::-1], limit, offset)


@router.get("/verify", summary="The last verify's result (signed), or 404 before the first")
def get_verify(server: Srv, _: Caller = need("read")) -> dict[str, Any]:
    found = last_verify(trail(server))
    if found is None:
        raise NotFoundError("the audit log has not been verified yet", hint="POST /v1/audit/verify")
    return found


@router.post("/verify", summary="Verify the whole log now: every leaf, root, signature and segment digest")
def run_verify(server: Srv, caller: Caller = need("read")) -> dict[str, Any]:
    log = trail(server)
    return record_verify(log, log.verify(), at=server.clock.now(), actor=caller.name)
