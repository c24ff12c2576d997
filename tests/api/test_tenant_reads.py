"""Tenants' data over the control plane: a key bound to one tenant reads its own tenant's and the platform's, never
another tenant's, on every route that holds tenants' data (the data plane's caches and budgets are partitioned by
tenant in tests/llm/test_tenant_isolation.py, test_gateway_e2e.py and test_shared_cache.py).

A matrix of reader (tenant-bound viewer, tenant-bound deployer, all-tenants viewer, admin) x route (ledger, ledger
series, budgets, audit records, audit trace), over real HTTP against `tether serve`'s server, with rows of two
tenants in the store and on the audit trail: a tenant-bound reader gets exactly its tenant's rows, a 403 naming
its tenant for a filter on another, and a 404 for another tenant's trace; the others see both tenants.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from sqlalchemy import insert

from tether.api.server import Server
from tether.audit.log import AuditLog, AuditRecord
from tether.core.clock import ManualClock
from tether.core.errors import InvalidInputError
from tether.llm.ledger import Limits, write_limits
from tether.registry import Registry
from tether.serving.auth import create_key
from tether.store.tables import llm_ledger

pytestmark = pytest.mark.slow
T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
VID = "ab" * 32


def _ledger_row(i: int, tenant: str, key_id: str) -> dict[str, object]:
    return {
        "trace_id": f"{tenant}-{i}",
        "at": T0 - timedelta(minutes=i),
        "tenant": tenant,
        "key_id": key_id,
        "model_name": "helpdesk",
        "version_id": VID,
        "status": "ok",
        "cache": "none",
        "input_tokens": 10,
        "cached_tokens": 0,
        "output_tokens": 5,
        "cost": 0.01,
        "currency": "USD",
        "saved_tokens": 0,
        "saved_cost": 0.0,
        "trimmed_tokens": 0,
        "latency_s": 0.01,
    }


def _record(kind: str, trace: str, tenant: str = "") -> AuditRecord:
    return AuditRecord(kind=kind, trace_id=trace, at=T0, model="helpdesk", version_id=VID, payload={}, tenant=tenant)


def test_a_tenant_bound_key_reads_only_its_tenant(settings):
    clock = ManualClock(T0)
    with Registry.open(settings, clock=clock) as reg:
        db = reg.store.db
        ka, _ = create_key(db, "svc-a", "client", T0, tenant="a")
        kb, _ = create_key(db, "svc-b", "client", T0, tenant="b")
        readers = {
            "viewer-a": create_key(db, "dash-a", "viewer", T0, tenant="a")[1],
            "deployer-b": create_key(db, "ops-b", "deployer", T0, tenant="b")[1],
            "viewer-all": create_key(db, "grafana", "viewer", T0, all_tenants=True)[1],
            "admin": create_key(db, "root", "admin", T0)[1],
        }
        with db.begin() as conn:
            conn.execute(insert(llm_ledger), [_ledger_row(i, "a", ka.id) for i in range(3)])
            conn.execute(insert(llm_ledger), [_ledger_row(i, "b", kb.id) for i in range(2)])
        for scope in ("tenant:a", "tenant:b", f"key:{ka.id}", f"key:{kb.id}"):
            write_limits(db, scope, Limits(requests_per_minute=100), T0, "test")
    with AuditLog(settings) as log:
        log.append_many(
            [
                _record("llm", "llm-a", "a"),
                _record("llm", "llm-b", "b"),
                _record("prediction", "pred-b", "b"),
                _record("prediction", "pred-old"),  # before tenants were kept: nobody's, so only all-tenant readers
                _record("rollout", "rollout-1"),  # the platform's: every reader
            ]
        )
        log.seal()

    everything = ["llm-a", "llm-b", "pred-b", "pred-old", "rollout-1"]

    async def main():
        server = Server(settings, port=0, auth=True, tick_seconds=3600, clock=clock)
        await server.start()
        out: dict[str, dict[str, object]] = {}
        try:
            async with aiohttp.ClientSession() as s:

                async def get(path, key):
                    async with s.get(server.url + path, headers={"Authorization": f"Bearer {key}"}) as r:
                        return r.status, await r.json()

                for who, key in readers.items():
                    o = out[who] = {}
                    _, ledger = await get("/v1/llm/ledger", key)
                    o["ledger"] = sorted({r["tenant"] for r in ledger["items"]})
                    _, series = await get("/v1/llm/ledger/series?bucket_seconds=3600", key)
                    o["series_requests"] = sum(r["requests"] for r in series["rows"])
                    _, budgets = await get("/v1/llm/budgets", key)
                    o["budgets"] = sorted(budgets)
                    _, stats = await get("/v1/llm/stats", key)
                    o["stats_budgets"] = sorted(stats["budgets"])
                    _, records = await get("/v1/audit/records?limit=50", key)
                    o["records"] = sorted(r["trace_id"] for r in records["items"])
                    o["total"] = records["total"]
                    o["trace_b"] = (await get("/v1/audit/trace/llm-b", key))[0]
                    o["ledger_b"] = await get("/v1/llm/ledger?tenant=b", key)
                    o["records_b"] = await get("/v1/audit/records?tenant=b", key)
                # The dashboard's audit pages, signed in with the key, read within the same reach.
                for who, key in readers.items():
                    jar = aiohttp.CookieJar(unsafe=True)  # 127.0.0.1 is an IP: keep its cookies
                    async with aiohttp.ClientSession(cookie_jar=jar) as ui:
                        async with ui.post(server.url + "/login", data={"key": key, "next": "/audit"}) as r:
                            page = await r.text()
                        async with ui.get(server.url + "/audit/trace/llm-b") as r:
                            out[who]["ui_trace_b"] = r.status
                    out[who]["ui_audit"] = sorted(t for t in everything if f">{t}<" in page or f'/{t}"' in page)
        finally:
            await server.stop()
        return out, ka, kb

    out, ka, kb = asyncio.run(main())
    every_budget = sorted(["tenant:a", "tenant:b", f"key:{ka.id}", f"key:{kb.id}"])
    for who in ("viewer-all", "admin"):
        o = out[who]
        assert o["ledger"] == ["a", "b"] and o["series_requests"] == 5, (who, o)
        assert o["budgets"] == every_budget and o["records"] == everything and o["total"] == 5, (who, o)
        assert o["trace_b"] == 200 and o["ledger_b"][0] == 200 and o["records_b"][0] == 200, (who, o)
        assert [r["trace_id"] for r in o["records_b"][1]["items"]] == ["pred-b", "llm-b"]
    for who, own, other, n in (("viewer-a", "a", "b", 3), ("deployer-b", "b", "a", 2)):
        o = out[who]
        key = ka if own == "a" else kb
        assert o["ledger"] == [own] and o["series_requests"] == n, (who, o)
        assert o["budgets"] == o["stats_budgets"] == sorted([f"tenant:{own}", f"key:{key.id}"]), (who, o)
        mine = [*sorted(t for t in everything if t.endswith(f"-{own}")), "rollout-1"]
        assert o["records"] == sorted(mine) and o["total"] == len(mine), (who, o)
        assert o["ui_audit"] == sorted(mine), (who, o)
    assert out["viewer-a"]["trace_b"] == 404 and out["deployer-b"]["trace_b"] == 200
    assert out["viewer-a"]["ui_trace_b"] == 404 and out["deployer-b"]["ui_trace_b"] == 200
    assert out["admin"]["ui_audit"] == everything and out["viewer-all"]["ui_trace_b"] == 200
    status, body = out["viewer-a"]["ledger_b"]
    assert status == 403 and "reads tenant 'a' only" in str(body), body
    assert out["viewer-a"]["records_b"][0] == 403 and out["deployer-b"]["records_b"][0] == 200


def test_only_reading_keys_may_reach_every_tenant(settings):
    with Registry.open(settings) as reg:
        with pytest.raises(InvalidInputError, match="client key calls as one tenant"):
            create_key(reg.store.db, "svc", "client", T0, all_tenants=True)
        admin, _ = create_key(reg.store.db, "root", "admin", T0)
        viewer, _ = create_key(reg.store.db, "dash", "viewer", T0, tenant="shop")
    assert admin.all_tenants and admin.scope is None
    assert not viewer.all_tenants and viewer.scope == "shop"
