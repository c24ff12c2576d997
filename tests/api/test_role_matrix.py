"""Every control-plane route against every role, over real HTTP: without a key a 401, with a role the route's
action does not allow a 403, with one it allows neither (it gets past the check: 2xx, or a 4xx about the
input), and never a 5xx. The action of each route is read from its own dependency, so a new route is in the
matrix the day it is added; a route with no role check at all fails the test."""

from __future__ import annotations

import re

import aiohttp
from fastapi.routing import APIRoute

from tests.api.test_control import run, store  # noqa: F401  (fixture)
from tether.api.control import ROUTERS
from tether.serving.auth import ALLOWED, ROLES

#: Routes anyone may call (the reference page and the document itself, and the login form).
OPEN = {("GET", "/openapi.json"), ("GET", "/reference")}
FILL = {"name": "fraud", "ref": "fraud/1", "key_id": "nokey", "rollout_id": "999", "anomaly_id": "999"}


def _action(route: APIRoute) -> str | None:
    stack = list(route.dependant.dependencies)
    while stack:
        d = stack.pop()
        if d.call is not None and hasattr(d.call, "tether_action"):
            return str(d.call.tether_action)
        stack.extend(d.dependencies)
    return None


def _routes() -> list[tuple[str, str, str | None]]:
    out = []
    for router in ROUTERS:
        for r in router.routes:
            if isinstance(r, APIRoute):
                path = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: FILL.get(m.group(1), "1"), r.path)
                for method in sorted(r.methods):
                    out.append((method, path, _action(r)))
    return out


def test_every_route_against_every_role(store):  # noqa: F811
    settings, keys, _, _ = store
    routes = _routes()
    assert len(routes) >= 40
    unguarded = [(m, p) for m, p, a in routes if a is None and (m, p) not in OPEN]
    assert not unguarded, f"routes with no role check: {unguarded}"

    async def body(server, s: aiohttp.ClientSession):
        seen = []
        for method, path, action in routes:
            if action is None:
                continue
            for role in (None, *ROLES):
                headers = {"Authorization": f"Bearer {keys[role]}"} if role else {}
                kw = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
                async with s.request(method, server.url + path, headers=headers, **kw) as r:
                    text = await r.text()
                    seen.append((method, path, action, role, r.status, text[:200]))
        return seen

    problems = []
    for method, path, action, role, status, text in run(settings, body):
        where = f"{method} {path} ({action}) as {role or 'nobody'}: {status} {text}"
        if status >= 500:
            problems.append("5xx: " + where)
        elif role is None and status != 401:
            problems.append("not 401 without a key: " + where)
        elif role is not None and role not in ALLOWED[action] and status != 403:
            problems.append("not 403 for a role the action does not allow: " + where)
        elif role is not None and role in ALLOWED[action] and status in (401, 403):
            problems.append("refused a role the action allows: " + where)
    assert not problems, "\n".join(problems[:30])
