"""The dashboard on the control plane's app: pages at ``/``, assets at ``/static``, sign-in at ``/login``.

Server-rendered (Jinja) with htmx for the live parts: a page's live section re-renders itself every few
seconds (polling: it survives proxies and restarts, and costs one request per open page). Charts are uPlot,
drawn by ``static/tether.js`` from JSON the page carries. Both libraries ship in the package (see
``static/LICENSES.txt``): no CDN, the dashboard works offline.

Pages mirror the domain packages (and the CLI's and the API's modules): `tether.ui.registry` (Models,
Version, side by side), `tether.ui.rollout`, `tether.ui.monitor` (Drift), `tether.ui.llm`, `tether.ui.audit`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from tether.api.access import Caller
from tether.api.problems import Refused
from tether.ui.session import Sessions, SignIn

if TYPE_CHECKING:
    from tether.api.server import Server

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["short"] = lambda v, n=12: str(v)[:n] if v else "-"


def sessions(request: Request) -> Sessions:
    s: Sessions = request.app.state.sessions
    return s


def ui_caller(request: Request) -> Caller:
    """A dashboard page's caller (signed in, or everyone with authentication off); marks the request as a page so
    errors render as a page, not as JSON."""
    request.scope["tether.ui"] = True
    return sessions(request).caller(request)


Viewer = Annotated[Caller, Depends(ui_caller)]


#: Dashboard pages run only their own scripts (inline JSON blocks are data, never run) and are framed only here.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'self'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def render(request: Request, template: str, caller: Caller, status_code: int = 200, **context: Any) -> HTMLResponse:
    server = request.app.state.server
    return templates.TemplateResponse(
        request,
        template,
        {
            "caller": caller,
            "may_deploy": caller.may("deploy"),
            "csrf": sessions(request).csrf(request),
            "open": sessions(request).open,
            "now": server.clock.now(),
            "models": sorted(server.gateway.tables),
            **context,
        },
        status_code=status_code,
        headers=HEADERS,
    )


async def checked_form(request: Request, action: str) -> tuple[Caller, dict[str, str]]:
    """A dashboard POST: a signed-in caller who may do ``action``, and a form with the session's CSRF token."""
    request.scope["tether.ui"] = True
    caller = sessions(request).caller(request)
    form = {k: str(v) for k, v in (await request.form()).items()}
    if not sessions(request).csrf_ok(request, form.get("csrf")):
        raise Refused(403, "the form's CSRF token is missing or wrong", hint="reload the page and try again")
    if not caller.may(action):
        raise Refused(403, f"role {caller.role!r} may not {action} (a deployer or admin key may)")
    return caller, form


router = APIRouter(include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    request.scope["tether.ui"] = True
    return templates.TemplateResponse(
        request, "login.html", {"next": _local(next), "error": None, "caller": None}, headers=HEADERS
    )


@router.post("/login")
def login(request: Request, key: Annotated[str, Form()], next: Annotated[str, Form()] = "/") -> Response:
    request.scope["tether.ui"] = True
    response = RedirectResponse(_local(next), status_code=303)
    try:
        sessions(request).sign_in(response, key, secure=request.url.scheme == "https")
    except Refused as e:
        return templates.TemplateResponse(
            request, "login.html", {"next": _local(next), "error": e.message, "caller": None}, status_code=e.status
        )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    await checked_form(request, "read")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie("tether_session", path="/")
    return response


def _local(path: str) -> str:
    """Only paths on this server (no open redirect)."""
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/"


def install(app: FastAPI, server: Server) -> None:
    from tether.ui import audit, llm, monitor, registry, rollout

    app.state.sessions = Sessions(server)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(router)
    for module in (registry, rollout, monitor, llm, audit):
        app.include_router(module.router)

    @app.exception_handler(SignIn)
    async def _sign_in(request: Request, _: SignIn) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)


def error_page(request: Request, status: int, message: str, hint: str | None) -> HTMLResponse:
    """How a dashboard page shows a `Problem` (the API's handlers call this for requests marked as pages)."""
    return templates.TemplateResponse(
        request,
        "error.html",
        {"status": status, "message": message, "hint": hint, "caller": None},
        status_code=status,
        headers=HEADERS,
    )
