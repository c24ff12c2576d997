"""Audit records name their tenant, bound by the leaf; records and segments from before tenants were kept still
hash, verify and search as they did."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tether.audit import record as record_mod
from tether.audit.log import AuditLog, AuditRecord
from tether.audit.search import Filters, search
from tether.core import tenancy

T0 = datetime(2026, 12, 6, tzinfo=UTC)


def _rec(trace: str, tenant: str = "", kind: str = "llm") -> AuditRecord:
    return AuditRecord(kind=kind, trace_id=trace, at=T0, model="m", payload={"x": 1}, tenant=tenant)


def test_a_record_without_a_tenant_hashes_as_before():
    assert b'"tenant"' not in _rec("t").canonical_json()
    body = orjson.loads(_rec("t", "shop").canonical_json())
    assert body["tenant"] == "shop"
    assert AuditRecord.from_json(_rec("t", "shop").to_json()) == _rec("t", "shop")


def test_old_segments_verify_and_search_beside_new_ones(settings, monkeypatch):
    old_schema = pa.schema([f for f in record_mod.SCHEMA if f.name != "tenant"])
    with AuditLog(settings) as log:
        with monkeypatch.context() as m:  # a segment sealed by a tether that kept no tenants
            m.setattr(record_mod, "SCHEMA", old_schema)
            m.setattr(record_mod, "FIELDS", tuple(f for f in record_mod.FIELDS if f != "tenant"))
            log.append_many([_rec("old-1"), _rec("old-2", kind="rollout")])
            log.seal()
        log.append_many([_rec("new-a", "a"), _rec("new-b", "b"), _rec("new-r", kind="rollout")])
        log.seal()
        assert "tenant" not in pq.read_schema(log.segments()[0]).names
        assert log.verify().ok
        every, n = search(log, Filters())
        assert n == 5 and {r["trace_id"]: r["tenant"] for r in every}["new-a"] == "a"
        scoped, n = search(log, Filters(scope="a"))
        assert sorted(r["trace_id"] for r in scoped) == ["new-a", "new-r", "old-2"] and n == 3
        assert [r["trace_id"] for r in search(log, Filters(tenant="b"))[0]] == ["new-b"]
        assert log.trace("new-b")["proof_verifies"] and log.trace("old-1")["proof_verifies"]
        _, rows = log.query("SELECT count(*) FROM records WHERE tenant = 'a'")
        assert rows == [(1,)]


def test_a_changed_tenant_breaks_the_leaf(settings):
    with AuditLog(settings) as log:
        log.append_many([_rec("x", "a")])
        log.seal()
        seg = log.segments()[0]
        t = pq.read_table(seg)
        t = t.set_column(t.schema.get_field_index("tenant"), "tenant", pa.array(["b"]))
        pq.write_table(t, seg)
        report = log.verify()
    assert not report.ok and any("was changed" in p for p in report.problems), report.problems


@pytest.mark.parametrize("scope", [None, "a", "c"])
def test_prompt_drift_quotes_no_other_tenants_prompts(scope):
    pd = {
        "decision": "drifted",
        "statistic": 0.03,
        "examples": [{"prompt": "b's secret question", "witness": 0.1}],
        "topics": [{"name": "b's topic", "prompts": 4}],
        "traces": ["t1"],
        "tenants": {
            "a": {"decision": "stable", "examples": [{"prompt": "a's question"}]},
            "b": {"decision": "drifted"},
        },
    }
    seen = tenancy.prompt_drift(pd, scope)
    if scope is None:
        assert seen == pd
        return
    assert seen["decision"] == "drifted" and seen["statistic"] == 0.03
    assert "secret" not in str(seen) and "b's topic" not in str(seen) and "t1" not in str(seen)
    assert seen.get("tenants") == ({"a": pd["tenants"]["a"]} if scope == "a" else None)
