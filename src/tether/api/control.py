"""The control plane: a FastAPI app beside the aiohttp data plane, in the same process and port.

The data plane (predict, feedback, chat completions, ``/v1/models``, ``/metrics``, ``/healthz``) stays a handful
of aiohttp handlers on the hot path; every other route is here, typed, in the OpenAPI 3.1 document at
``/openapi.json`` and on the browsable page ``/reference`` (rendered here from that document: the Swagger and
ReDoc pages load their scripts from CDNs, and the machines that run tether are often offline). aiohttp hands a
request to this app only when no data-plane route matched it, so the hop of a prediction does not change.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from tether.api import audit, catalog, gate, keys, llm, monitor, problems, registry, rollout

if TYPE_CHECKING:
    from tether.api.server import Server

DESCRIPTION = """Lifecycle governance for machine-learning and LLM systems: the triad registry, the evaluation
gate, progressive rollouts, the drift watch, LLM operations and the audit trail.

Authenticate with `Authorization: Bearer <key>` (keys from `tether keys create NAME --role ROLE`): viewers read,
deployers also change rollouts, admins also set gate policies, budgets and keys. Every error has one shape,
`{"error", "code", "status", "hint"}`. Lists are pages: `?limit=&offset=`, and `next_offset` says what is next.
The data plane (`POST /v1/models/{name}/predict`, `POST /v1/feedback`, `POST /v1/chat/completions`,
`GET /v1/models`) is described in docs/api.md."""


#: The control plane's routes, one router per domain package (as the CLI has a module per command group).
ROUTERS = [m.router for m in (catalog, registry, gate, rollout, monitor, llm, audit, keys)]


def control_app(server: Server) -> FastAPI:
    from tether import __version__

    app = FastAPI(
        title="tether",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.server = server
    problems.install(app)
    for router in ROUTERS:
        app.include_router(router)

    @app.get("/reference", response_class=HTMLResponse, include_in_schema=False)
    def reference() -> HTMLResponse:
        return HTMLResponse(render_reference(app.openapi()))

    from tether.ui.app import install as install_ui

    install_ui(app, server)
    return app


def mounted(app: FastAPI) -> Any:
    """The app as aiohttp-asgi serves it. The scope says ASGI HTTP spec 2.4: a send after the client went away
    raises (aiohttp's writer does), so Starlette need not poll ``receive`` for a disconnect while it streams a
    file: aiohttp-asgi answers that poll with empty body chunks, never a disconnect, which spins forever."""

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, "asgi": {**scope.get("asgi", {}), "spec_version": "2.4"}}
        await app(scope, receive, send)

    return asgi


def render_reference(doc: dict[str, Any]) -> str:
    """A self-contained page of every route: method, path, summary, parameters, body and responses."""
    e = html.escape
    rows = []
    for path, methods in sorted(doc.get("paths", {}).items()):
        for method, op in methods.items():
            params = "".join(
                f"<li><code>{e(p['name'])}</code> <small>{e(p['in'])}{', required' if p.get('required') else ''}"
                f"</small> {e(p.get('description') or '')}</li>"
                for p in op.get("parameters", [])
            )
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            ref = body.get("$ref", "").rsplit("/", 1)[-1]
            codes = ", ".join(sorted(op.get("responses", {})))
            rows.append(
                f'<section id="{e(op.get("operationId", ""))}"><h3><span class="m {e(method)}">{e(method.upper())}'
                f"</span> <code>{e(path)}</code></h3><p>{e(op.get('summary', ''))}</p>"
                + (f"<ul>{params}</ul>" if params else "")
                + (f'<p>body: <a href="#schema-{e(ref)}">{e(ref)}</a></p>' if ref else "")
                + f"<p><small>responses: {e(codes)}</small></p></section>"
            )
    schemas = "".join(
        f'<section id="schema-{e(name)}"><h3>{e(name)}</h3><pre>{e(_fields(s))}</pre></section>'
        for name, s in sorted(doc.get("components", {}).get("schemas", {}).items())
    )
    info = doc.get("info", {})
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport "
        'content="width=device-width,initial-scale=1"><title>tether API reference</title>'
        '<link rel=stylesheet href="/static/tether.css"></head><body class=reference><main>'
        f"<h1>{e(info.get('title', ''))} API {e(info.get('version', ''))}</h1>"
        f"<p>{e(info.get('description', ''))}</p>"
        '<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI '
        f"{e(doc.get('openapi', ''))})</p><h2>Routes</h2>{''.join(rows)}<h2>Schemas</h2>{schemas}</main></body></html>"
    )


def _fields(schema: dict[str, Any]) -> str:
    props = schema.get("properties", {})
    if not props:
        return str(schema.get("description", "") or schema.get("type", ""))
    need = set(schema.get("required", []))
    lines = []
    for k, v in props.items():
        t = (
            v.get("type")
            or v.get("$ref", "").rsplit("/", 1)[-1]
            or " | ".join(x.get("type", x.get("$ref", "").rsplit("/", 1)[-1]) for x in v.get("anyOf", []))
        )
        lines.append(
            f"{k}{'' if k in need else '?'}: {t}" + (f"  # {v['description']}" if v.get("description") else "")
        )
    return "\n".join(lines)
