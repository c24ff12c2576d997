"""The control plane over real HTTP: the OpenAPI document is true to the routes, roles hold, every bad input is a
4xx in one shape that names what was wrong, lists page, filters filter, and crafted input never reaches SQL or
a 500."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import aiohttp
import pytest
from fastapi.routing import APIRoute

from tether.api.control import ROUTERS
from tether.api.server import Server
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.serving.auth import create_key
from tether.serving.window import MetricStore

pytestmark = pytest.mark.slow
PLAN = {"steps": [5, 50, 100], "bake_seconds": 3600, "min_samples": 10, "max_step_seconds": 7200}


@pytest.fixture
def store(settings, project):
    with Registry.open(settings) as reg:
        v1 = project.register(reg)
        project.train("--learning-rate", "0.3")
        v2 = project.register(reg)
        Controller(reg, MetricStore()).deploy("fraud", v1.ref, reason="first", force=True)
        keys = {
            r: create_key(reg.store.db, f"{r}-key", r, reg.clock.now())[1]
            for r in ("client", "viewer", "deployer", "admin")
        }
    return settings, keys, v1, v2


def run(settings, body, auth=True):
    async def main():
        server = Server(settings, port=0, auth=auth, tick_seconds=3600)
        await server.start()
        try:
            async with aiohttp.ClientSession() as s:
                return await body(server, s)
        finally:
            await server.stop()

    return asyncio.run(main())


def test_the_openapi_document_is_true_to_the_routes(settings):
    with Registry.open(settings):
        pass
    server = Server(settings, port=0)
    try:
        doc = server.control.openapi()
        documented = {(p, m.upper()) for p, ms in doc["paths"].items() for m in ms}
        routes = {
            (r.path_format, m)
            for router in ROUTERS
            for r in router.routes
            if isinstance(r, APIRoute) and r.include_in_schema
            for m in r.methods
        }
        assert doc["openapi"].startswith("3.1") and documented == routes and len(routes) >= 40
        for path, methods in doc["paths"].items():
            for method, op in methods.items():
                assert op.get("summary"), (method, path)
                assert "422" in op["responses"] and "401" in op["responses"], (method, path)
                named = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
                assert named == set(path.replace("}", "{").split("{")[1::2]), (method, path)
        assert "Problem" in doc["components"]["schemas"] and "Page_VersionOut_" in doc["components"]["schemas"]
        # The data plane stays on aiohttp: none of its routes is in the control plane.
        assert not any(p.endswith("/predict") or p == "/v1/chat/completions" for p, _ in documented)
    finally:
        server.registry.close()


def test_roles_errors_pages_and_filters_over_http(store):
    settings, keys, v1, v2 = store

    async def body(server, s):
        def h(role):
            return {"Authorization": f"Bearer {keys[role]}"} if role else {}

        async def call(method, path, role=None, headers=None, **kw):
            async with s.request(method, server.url + path, headers={**h(role), **(headers or {})}, **kw) as r:
                ctype = r.headers.get("Content-Type", "")
                return r.status, (await r.json()) if "json" in ctype else await r.text()

        out = {}
        out["anonymous"] = await call("GET", "/v1/registry/models")
        out["client"] = await call("GET", "/v1/registry/models", "client")
        out["models"] = await call("GET", "/v1/registry/models", "viewer")
        out["page1"] = await call("GET", "/v1/registry/models/fraud/versions?limit=1", "viewer")
        out["page2"] = await call("GET", "/v1/registry/models/fraud/versions?limit=1&offset=1", "viewer")
        out["by_alias"] = await call("GET", "/v1/registry/models/fraud/versions?alias=champion", "viewer")
        out["by_metric"] = await call("GET", "/v1/registry/models/fraud/versions?metric=auc&metric_min=2", "viewer")
        out["bound_alone"] = await call("GET", "/v1/registry/models/fraud/versions?metric_min=2", "viewer")
        out["version"] = await call("GET", f"/v1/registry/versions/{v2.ref}", "viewer")
        out["reproduce"] = await call("GET", f"/v1/registry/versions/{v1.ref}/reproduce", "viewer")
        out["limit0"] = await call("GET", "/v1/registry/models?limit=0", "viewer")
        out["offset"] = await call("GET", "/v1/registry/models/fraud/versions?offset=-3", "viewer")
        out["unknown"] = await call("GET", "/v1/registry/versions/fraud/99", "viewer")
        out["viewer_start"] = await call("POST", "/v1/rollouts/fraud", "viewer", json={"candidate": v2.ref})
        out["ungated"] = await call("POST", "/v1/rollouts/fraud", "deployer", json={"candidate": v2.ref})
        out["deployer_force"] = await call(
            "POST", "/v1/rollouts/fraud", "deployer", json={"candidate": v2.ref, "force": True, "reason": "x"}
        )
        out["bad_plan"] = await call(
            "POST",
            "/v1/rollouts/fraud",
            "admin",
            json={"candidate": v2.ref, "plan": {"steps": [50, 5]}, "force": True, "reason": "x"},
        )
        out["malformed"] = await call(
            "POST", "/v1/rollouts/fraud", "admin", data=b"{", headers={"Content-Type": "application/json"}
        )
        out["start"] = await call(
            "POST",
            "/v1/rollouts/fraud",
            "admin",
            json={"candidate": v2.ref, "plan": PLAN, "force": True, "reason": "api test"},
        )
        out["no_reason"] = await call("POST", "/v1/rollouts/fraud/pause", "deployer", json={})
        out["bad_action"] = await call("POST", "/v1/rollouts/fraud/explode", "deployer", json={"reason": "x"})
        out["pause"] = await call("POST", "/v1/rollouts/fraud/pause", "deployer", json={"reason": "look"})
        out["pause_again"] = await call("POST", "/v1/rollouts/fraud/pause", "deployer", json={"reason": "look"})
        out["resume"] = await call("POST", "/v1/rollouts/fraud/resume", "deployer", json={"reason": "ok"})
        out["status"] = await call("GET", "/v1/rollouts/fraud", "viewer")
        out["abort"] = await call("POST", "/v1/rollouts/fraud/abort", "deployer", json={"reason": "done"})
        out["events"] = await call("GET", "/v1/rollouts/fraud/events", "viewer")
        out["keys_deployer"] = await call("GET", "/v1/keys", "deployer")
        out["keys_admin"] = await call("GET", "/v1/keys", "admin")
        out["audit_kind"] = await call("GET", "/v1/audit/records?kind=bogus", "viewer")
        out["audit_sql"] = await call("GET", "/v1/audit/records?model=" + quote("x' OR '1'='1"), "viewer")
        out["audit_range"] = await call(
            "GET", "/v1/audit/records?since=2026-12-03T10:00:00Z&until=2026-12-02T10:00:00Z", "viewer"
        )
        out["no_route"] = await call("GET", "/v1/nothing/here", "viewer")
        return out

    out = run(settings, body)
    problem = {"error", "code", "status"}
    assert (
        out["anonymous"][0] == 401 and problem <= set(out["anonymous"][1]) and "Bearer" in out["anonymous"][1]["error"]
    )
    assert out["client"][0] == 403 and "may not read" in out["client"][1]["error"]
    assert out["models"][0] == 200 and out["models"][1]["items"][0]["champion"] == v1.ref
    p1, p2 = out["page1"][1], out["page2"][1]
    assert (p1["total"], p1["next_offset"], p2["next_offset"]) == (2, 1, None)
    assert p1["items"][0]["ref"] == v2.ref and p2["items"][0]["ref"] == v1.ref, "newest first"
    assert [v["ref"] for v in out["by_alias"][1]["items"]] == [v1.ref] and out["by_metric"][1]["total"] == 0
    assert out["bound_alone"][0] == 422 and "metric" in out["bound_alone"][1]["error"]
    assert out["version"][1]["weights"]["digest"] == v2.weights.digest
    assert out["reproduce"][1]["command"] == f"tether reproduce {v1.ref} ./fraud-1"
    for k in ("limit0", "offset"):
        assert out[k][0] == 422 and ("limit" in out[k][1]["error"] or "offset" in out[k][1]["error"]), out[k]
    assert out["unknown"][0] == 404 and out["unknown"][1]["hint"]
    assert out["viewer_start"][0] == 403
    assert out["ungated"][0] == 409 and "gate" in out["ungated"][1]["error"]
    assert out["deployer_force"][0] == 403 and "admin" in out["deployer_force"][1]["error"]
    assert out["bad_plan"][0] == 422 and "plan" in out["bad_plan"][1]["error"]
    assert out["malformed"][0] == 400
    assert out["start"][0] == 201 and out["start"][1]["weight_percent"] == 5
    assert out["no_reason"][0] == 422 and "reason" in out["no_reason"][1]["error"]
    assert out["bad_action"][0] == 422 and "action" in out["bad_action"][1]["error"]
    assert out["pause"][0] == 200 and out["pause"][1]["actor"] == "deployer-key"
    assert out["pause_again"][0] == 409
    assert out["status"][1]["rollout"]["state"] == "running" and "progress" in out["status"][1]
    assert out["abort"][0] == 200
    kinds = [(e["kind"], e["actor"]) for e in out["events"][1]["items"]]
    assert kinds == [
        ("start", "admin-key"),
        ("pause", "deployer-key"),
        ("resume", "deployer-key"),
        ("abort", "deployer-key"),
    ]
    assert out["keys_deployer"][0] == 403 and out["keys_admin"][1]["total"] == 4
    assert "key_hash" not in str(out["keys_admin"][1]) and "tk_" not in str(out["keys_admin"][1])
    assert out["audit_kind"][0] == 422 and out["audit_range"][0] == 422
    assert out["audit_sql"][0] == 200 and out["audit_sql"][1]["total"] == 0, "a filter is a value, never SQL"
    assert out["no_route"][0] == 404 and out["no_route"][1]["code"] == "not_found"


NASTY = [
    "..%2F..%2Fetc%2Fpasswd",
    "%00",
    "x" * 3000,
    "%27%3B%20DROP%20TABLE%20model_versions%3B--",
    "%F0%9F%92%A5",
    "-1",
]


def test_no_crafted_request_gets_a_500(store):
    """Every documented route, with hostile path and query values and bodies, answers below 500."""
    settings, keys, v1, v2 = store

    async def body(server, s):
        doc = server.control.openapi()
        h = {"Authorization": f"Bearer {keys['admin']}"}
        seen = []
        for path, methods in doc["paths"].items():
            for method, op in methods.items():
                for value in NASTY:
                    url = path
                    for p in op.get("parameters", []):
                        if p["in"] == "path":
                            url = url.replace("{" + p["name"] + "}", value)
                    query = "&".join(f"{p['name']}={value}" for p in op.get("parameters", []) if p["in"] == "query")
                    for payload in ({"data": b"\xff\xfe not json"}, {"json": {"reason": value, "spec": value}}):
                        if method == "get" and "json" in payload:
                            continue
                        async with s.request(method, f"{server.url}{url}?{query}", headers=h, **payload) as r:
                            text = await r.text()
                            seen.append((r.status, method, url[:80]))
                            if "%2F" not in value:  # an encoded slash may fairly leave the route's pattern
                                assert "no route" not in text, (method, url, "a documented route did not answer")
        return seen

    seen = run(settings, body)
    assert len(seen) > 300
    assert not [x for x in seen if x[0] >= 500], [x for x in seen if x[0] >= 500][:5]
