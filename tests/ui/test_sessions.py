"""Dashboard sessions over real HTTP (no browser): cookie flags, CSRF, roles, revocation, tampering, redirects."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import pytest

from tether.api.server import Server
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.rollout.plan import Plan
from tether.serving.auth import create_key, revoke_key
from tether.serving.window import MetricStore

pytestmark = pytest.mark.slow


@pytest.fixture
def store(settings, project):
    with Registry.open(settings) as reg:
        v1 = project.register(reg)
        project.train("--learning-rate", "0.3")
        v2 = project.register(reg)
        c = Controller(reg, MetricStore())
        c.deploy("fraud", v1.ref, reason="first", force=True)
        c.start("fraud", v2.ref, Plan(steps=[5, 50, 100], bake_seconds=3600), force=True, reason="test")
        keys = {}
        for role in ("client", "viewer", "deployer"):
            key, secret = create_key(reg.store.db, f"{role}-key", role, reg.clock.now())
            keys[role] = (key.id, secret)
    return settings, keys


def run(settings, body):
    async def main():
        server = Server(settings, port=0, tick_seconds=3600)
        await server.start()
        try:
            return await body(server)
        finally:
            await server.stop()

    return asyncio.run(main())


async def sign_in(server, secret, next_="/rollouts/fraud"):
    jar = aiohttp.CookieJar(unsafe=True)  # 127.0.0.1 is an IP: keep its cookies
    s = aiohttp.ClientSession(cookie_jar=jar)
    async with s.post(server.url + "/login", data={"key": secret, "next": next_}, allow_redirects=False) as r:
        return s, r.status, r.headers.get("Set-Cookie", ""), r.headers.get("Location")


async def csrf_of(s, server, path="/rollouts/fraud"):
    async with s.get(server.url + path) as r:
        page = await r.text()
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1), page


def test_cookie_flags_csrf_roles_revocation_and_tampering(store):
    settings, keys = store

    async def body(server):
        out = {}
        s, status, cookie, where = await sign_in(server, keys["deployer"][1])
        out["login"] = (status, cookie, where)
        token, page = await csrf_of(s, server)
        out["deployer_page"] = page
        async with s.post(server.url + "/rollouts/fraud/pause", data={"reason": "x"}, allow_redirects=False) as r:
            out["no_csrf"] = r.status
        async with s.post(
            server.url + "/rollouts/fraud/pause", data={"reason": "x", "csrf": "0" * 64}, allow_redirects=False
        ) as r:
            out["wrong_csrf"] = r.status
        async with s.post(
            server.url + "/rollouts/fraud/pause", data={"reason": "a look", "csrf": token}, allow_redirects=False
        ) as r:
            out["pause"] = r.status
        out["actor"] = server.controller.events(server.controller.latest("fraud").id)[-1].actor

        v, _, _, _ = await sign_in(server, keys["viewer"][1])
        vtoken, vpage = await csrf_of(v, server)
        out["viewer_page"] = vpage
        async with v.post(
            server.url + "/rollouts/fraud/resume", data={"reason": "x", "csrf": vtoken}, allow_redirects=False
        ) as r:
            out["viewer_post"] = (r.status, await r.text())
        async with v.post(  # the deployer's token in the viewer's session
            server.url + "/rollouts/fraud/resume", data={"reason": "x", "csrf": token}, allow_redirects=False
        ) as r:
            out["stolen_token"] = r.status

        anon = aiohttp.ClientSession()
        async with anon.get(server.url + "/audit", allow_redirects=False) as r:
            out["anonymous"] = (r.status, r.headers.get("Location"))
        async with anon.post(server.url + "/rollouts/fraud/resume", data={"reason": "x"}, allow_redirects=False) as r:
            out["anonymous_post"] = r.status
        jar_value = next(iter(v.cookie_jar)).value
        forged = jar_value[:-4] + ("AAAA" if not jar_value.endswith("AAAA") else "BBBB")
        async with anon.get(
            server.url + "/", headers={"Cookie": f"tether_session={forged}"}, allow_redirects=False
        ) as r:
            out["tampered"] = r.status
        _, status, _, _ = await sign_in(server, "tk_not-a-key")
        out["bad_key"] = status
        c, status, _, _ = await sign_in(server, keys["client"][1])
        out["client_key"] = status
        _, _, _, where = await sign_in(server, keys["viewer"][1], next_="//evil.example/x")
        out["open_redirect"] = where
        async with v.get(server.url + "/") as r:
            out["headers"] = dict(r.headers)

        with server.registry.store.db.begin():
            pass
        revoke_key(server.registry.store.db, keys["viewer"][0], server.clock.now())
        server.keys.refresh()
        async with v.get(server.url + "/", allow_redirects=False) as r:
            out["revoked"] = r.status
        for session in (s, v, anon, c):
            await session.close()
        return out

    out = run(settings, body)
    status, cookie, where = out["login"]
    assert status == 303 and where == "/rollouts/fraud"
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/" in cookie
    assert keys["deployer"][1] not in cookie and keys["deployer"][1][3:20] not in cookie, "the key never in the cookie"
    assert 'data-action="pause"' in out["deployer_page"]
    assert out["no_csrf"] == 403 and out["wrong_csrf"] == 403 and out["stolen_token"] == 403
    assert out["pause"] == 303 and out["actor"] == "deployer-key"
    assert "data-action" not in out["viewer_page"] and 'id="actions"' not in out["viewer_page"]
    assert out["viewer_post"][0] == 403 and "may not deploy" in out["viewer_post"][1]
    assert out["anonymous"] == (303, "/login?next=/audit") and out["anonymous_post"] == 303
    assert out["tampered"] == 303 and out["bad_key"] == 401 and out["client_key"] == 403
    assert out["open_redirect"] == "/"
    assert "frame-ancestors 'self'" in out["headers"]["Content-Security-Policy"]
    assert out["revoked"] == 303, "a revoked key's session ends"


def test_an_edited_last_verify_shows_as_unsigned(store):
    settings, keys = store

    async def body(server):
        h = {"Authorization": f"Bearer {keys['viewer'][1]}"}
        async with aiohttp.ClientSession() as s:
            async with s.post(server.url + "/v1/audit/verify", headers=h) as r:
                first = await r.json()
            path = server.audit.log.root / "last-verify.json"
            doc = json.loads(path.read_text())
            doc["problems"], doc["ok"] = [], True
            doc["records"] = 10**9
            path.write_text(json.dumps(doc))
            async with s.get(server.url + "/v1/audit/verify", headers=h) as r:
                edited = await r.json()
        return first, edited

    first, edited = run(settings, body)
    assert first["signature_ok"] and first["actor"] == "viewer-key"
    assert edited["signature_ok"] is False
