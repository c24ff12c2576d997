"""API keys expire and rotate, and their tenant is their own: over real HTTP, on the server's clock.

* a key past its expiry is refused on the very next request (not at the next key-ring refresh), with a 401
  that says it expired and how to get a replacement;
* rotation gives a new key for the same holder, tenant and role; the old one keeps working through the grace
  period, then stops; a revoked or expired key cannot be rotated;
* a key's tenant is its name unless given (that an LLM request is budgeted under the tenant, not the name, is
  held by tests/llm/test_gateway_e2e.py::test_budgets_hold_under_parallel_requests).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from tether.api.server import Server
from tether.core.clock import ManualClock
from tether.core.errors import ConflictError, InvalidInputError
from tether.registry import Registry
from tether.serving.auth import ApiKey, create_key, parse_duration, rotate_key

pytestmark = pytest.mark.slow
T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def test_expiry_rotation_and_tenants_over_http(settings):
    clock = ManualClock(T0)
    with Registry.open(settings, clock=clock) as reg:
        _, admin = create_key(reg.store.db, "ops", "admin", T0)

    async def main():
        server = Server(settings, port=0, auth=True, tick_seconds=3600, clock=clock)
        await server.start()
        out = {}
        try:
            async with aiohttp.ClientSession() as s:
                h = {"Authorization": f"Bearer {admin}"}

                async def call(method, path, key=None, **kw):
                    headers = {"Authorization": f"Bearer {key}"} if key else h
                    async with s.request(method, server.url + path, headers=headers, **kw) as r:
                        return r.status, await r.json() if r.content_type == "application/json" else None

                status, made = await call(
                    "POST",
                    "/v1/keys",
                    json={"name": "checkout", "role": "viewer", "tenant": "shop", "expires_in_seconds": 3600},
                )
                assert status == 201 and made["tenant"] == "shop" and made["expires_at"], made
                old = made["secret"]
                server.refresh()
                assert (await call("GET", "/v1/registry/models", old))[0] == 200
                clock.advance(1800)
                status, rotated = await call(
                    "POST", f"/v1/keys/{made['id']}/rotate", json={"grace_seconds": 600, "expires_in_seconds": 86400}
                )
                assert status == 201, rotated
                assert (rotated["name"], rotated["tenant"], rotated["role"]) == ("checkout", "shop", "viewer")
                server.refresh()
                new = rotated["secret"]
                assert (await call("GET", "/v1/registry/models", old))[0] == 200  # in its grace period
                assert (await call("GET", "/v1/registry/models", new))[0] == 200
                clock.advance(601)  # the grace is over; no refresh of the key ring in between
                status, body = await call("GET", "/v1/registry/models", old)
                out["expired"] = (status, body)
                assert (await call("GET", "/v1/registry/models", new))[0] == 200
                out["rotate_expired"] = await call("POST", f"/v1/keys/{made['id']}/rotate", json={})
                out["bad_expiry"] = await call(
                    "POST", "/v1/keys", json={"name": "x", "role": "client", "expires_in_seconds": -5}
                )
                out["list"] = await call("GET", "/v1/keys")
        finally:
            await server.stop()
        return out

    out = asyncio.run(main())
    status, body = out["expired"]
    assert status == 401 and "expired at" in str(body) and "tether keys rotate" in str(body), body
    assert out["rotate_expired"][0] == 422 and "nothing to rotate" in str(out["rotate_expired"][1])
    assert out["bad_expiry"][0] == 422
    rows = {k["name"]: k for k in out["list"][1]["items"] if k["name"] == "checkout" and k["rotated_from"]}
    assert rows["checkout"]["tenant"] == "shop"


def test_rotation_never_extends_a_key_and_durations_are_read_strictly(settings):
    with Registry.open(settings) as reg:
        key, _ = create_key(reg.store.db, "svc", "client", T0, expires_at=T0 + timedelta(minutes=5))
        assert key.tenant == "svc"  # a key's tenant is its name unless given
        new, _ = rotate_key(reg.store.db, key.id, T0, grace=timedelta(days=7))
        with pytest.raises(ConflictError, match=f"already rotated: {new.id} replaces it"):
            rotate_key(reg.store.db, key.id, T0, grace=timedelta(days=7))  # never two live successors
        rows = {r["id"]: r for r in __import__("tether.serving.auth", fromlist=["x"]).list_keys(reg.store.db)}
        assert rows[key.id]["expires_at"] == T0 + timedelta(minutes=5)  # the grace cannot outlive the old expiry
        assert rows[new.id]["rotated_from"] == key.id and rows[new.id]["tenant"] == "svc"
    assert parse_duration("90d") == timedelta(days=90) and parse_duration("2w") == timedelta(weeks=2)
    for bad in ("", "d", "1.5h", "-1d", "10y", "10 d"):
        with pytest.raises(InvalidInputError, match="duration"):
            parse_duration(bad)
    assert ApiKey("k", "team-a", "client").tenant == "team-a"
