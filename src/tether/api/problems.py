"""One error shape for the control plane: what was wrong and what to do, with a 4xx for every bad input.

    {"error": "limit: must be at most 500 (got 9000)", "code": "invalid_input", "hint": "...", "status": 422}

``error`` is the sentence a person reads (the data plane's errors have the same key); ``code`` is stable for
programs; ``hint`` says what to do. Validation errors name the field and the rule. An unexpected exception is
logged and answered with a 500 that says so, without internals: the tests hold that no bad input reaches it.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from tether.core.errors import ConflictError, IntegrityError, InvalidInputError, NotFoundError, TetherError

log = logging.getLogger("tether.api")


class Problem(BaseModel):
    """Every error the control plane answers."""

    error: str
    code: str
    status: int
    hint: str | None = None
    fields: list[dict[str, Any]] | None = None


class Refused(Exception):
    """Raised by routes and access checks: answered as a `Problem` with this status."""

    def __init__(self, status: int, message: str, *, code: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.hint = status, message, hint
        self.code = code or CODES.get(status, "error")


CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "invalid_input",
    500: "internal",
}
KINDS: dict[type[TetherError], str] = {
    InvalidInputError: "invalid_input",
    NotFoundError: "not_found",
    ConflictError: "conflict",
    IntegrityError: "integrity",
}

#: What the OpenAPI document lists for every route, beside its success response.
RESPONSES: dict[int | str, dict[str, Any]] = {
    s: {"model": Problem, "description": d}
    for s, d in (
        (401, "No API key, or an unknown one"),
        (403, "The key's role may not do this"),
        (404, "No such model, version, rollout or record"),
        (409, "The request contradicts the stored state"),
        (422, "A parameter or body field is invalid: the error names it and the rule"),
    )
}


def problem(
    status: int,
    message: str,
    *,
    code: str | None = None,
    hint: str | None = None,
    request: Request | None = None,
    **extra: Any,
) -> Response:
    if request is not None and request.scope.get("tether.ui"):  # a dashboard page: the same, as a page
        from tether.ui.app import error_page

        return error_page(request, status, message, hint)
    body = Problem(error=message, code=code or CODES.get(status, "error"), status=status, hint=hint, **extra)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status)


def _field(err: dict[str, Any]) -> str:
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header", "cookie")]
    where = err.get("loc", ("",))[0]
    name = ".".join(loc) or str(where)
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {str(got)[:60]!r})"
    return (
        f"{where} parameter {name!r}: {err.get('msg', 'invalid')}{shown}"
        if where != "body"
        else (f"body field {name!r}: {err.get('msg', 'invalid')}{shown}")
    )


def install(app: FastAPI) -> None:
    """Translate every error the routes can raise into a `Problem`."""

    @app.exception_handler(Refused)
    async def _refused(request: Request, e: Refused) -> Response:
        return problem(e.status, e.message, code=e.code, hint=e.hint, request=request)

    @app.exception_handler(TetherError)
    async def _tether(request: Request, e: TetherError) -> Response:
        status = e.http_status
        code = next((c for t, c in KINDS.items() if isinstance(e, t)), "error")
        return problem(status, e.message, code=code, hint=e.hint, request=request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> Response:
        errors = list(e.errors())
        fields = [{"field": ".".join(str(p) for p in x.get("loc", ())), "rule": x.get("msg", "")} for x in errors]
        whole_body = [
            x for x in errors if tuple(x.get("loc", ())) == ("body",) and isinstance(x.get("input"), bytes | str)
        ]
        if whole_body or any(x.get("type") == "json_invalid" for x in errors):
            return problem(400, "malformed JSON in the body", code="bad_request", hint="send a JSON object")
        message = "; ".join(_field(x) for x in errors[:5]) or "the request is invalid"
        hint = "see GET /openapi.json or /reference for this route"
        return problem(422, message, hint=hint, fields=fields, request=request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> Response:
        if e.status_code == 404:
            return problem(404, f"no route {request.url.path}", hint="the routes are listed at /reference")
        if e.status_code == 405:
            return problem(405, f"{request.method} is not allowed on {request.url.path}", hint="see /reference")
        return problem(e.status_code, str(e.detail), request=request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem(500, "an unexpected error; it is logged", hint="report it with the server log", request=request)
