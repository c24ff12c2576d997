"""Tenants x shared structures of the LLM data plane, in one matrix, in process and through Redis.

Three client keys of three tenants call one gateway (keys on, real HTTP, the tiny GPT-2 in its instance). For
every structure a request can leave a trace in (the exact cache, the semantic cache, the prefix KV cache, the
budgets, the ledger, the audit log), an *owner* tenant writes, an *intruder* tenant probes, and the owner probes
again as the positive control: the structure is live, so the intruder's miss means isolation, not a cold cache.
The intruder also claims the owner's tenant with the ``X-Tether-Tenant`` header, which a keyed gateway ignores.

The same matrix runs with the caches and budgets in this process and with them shared through Redis (the
at-scale layout, where every replica reads the same keys).
"""

import asyncio

import aiohttp
import pytest
from sqlalchemy import select

from tests.conftest import REDIS_URL, needs_redis
from tests.llm.test_gateway_e2e import deployed, with_server
from tests.llm.test_tenant_isolation import FRESH
from tests.llm.test_tenant_isolation import SPEC as ISOLATION_SPEC
from tether.audit.log import AuditLog
from tether.core.settings import Settings
from tether.llm.ledger import Limits, write_limits
from tether.registry import Registry
from tether.serving.auth import create_key
from tether.store.tables import llm_ledger

pytestmark = pytest.mark.slow

# The isolation test's spec with both caches on (it turns them off to look at prefix reuse alone).
SPEC = {**ISOLATION_SPEC, "prices": {"input_per_1k": 0.5, "output_per_1k": 1.5}, "cache": {"calibration_rate": 0.0}}
TENANTS = {"owner": "acme", "intruder": "globex", "spender": "initech"}

ORDER = "How do I cancel my order?"
EXACT = "How do I reset my password?"
PARAPHRASE = "What is the way to reset my password?"
PREFIXED = "How do I cancel an order that I placed yesterday by mistake with the wrong card? " * 2


@pytest.fixture(params=["in-process", pytest.param("redis", marks=needs_redis)])
def plane(request, tmp_path):
    if request.param == "in-process":
        return Settings(home=tmp_path / "home")
    namespace = request.getfixturevalue("redis_namespace")
    return Settings(home=tmp_path / "home", redis_url=REDIS_URL, redis_namespace=namespace)


class Caller:
    def __init__(self, session, url, secret, tenant):
        self.session, self.url, self.secret, self.tenant = session, url, secret, tenant
        self.traces = []

    async def ask(self, text, claim=None, earlier=()):
        headers = {"Authorization": f"Bearer {self.secret}"}
        if claim:
            headers["X-Tether-Tenant"] = claim
        body = {"model": "helpdesk", "messages": [*earlier, {"role": "user", "content": text}]}
        async with self.session.post(self.url + "/v1/chat/completions", json=body, headers=headers) as r:
            out = await r.json()
        if r.status != 200:
            return r.status, out
        self.traces.append(out["tether"]["trace_id"])
        return r.status, out


def cache_of(reply):
    return reply[1]["tether"]["cache"]


def cached_tokens(reply):
    return reply[1]["usage"]["prompt_tokens_details"]["cached_tokens"]


def test_no_tenant_reads_or_spends_through_another_tenants_entries(plane, llm_code, tiny_model):
    deployed(plane, llm_code, tiny_model, SPEC)
    with Registry.open(plane) as reg:
        now = reg.clock.now()
        # Key names are not tenants: each key belongs to a service, its tenant is the team it bills to.
        secrets = {
            role: create_key(reg.store.db, f"{role}-svc", "client", now, tenant=tenant)[1]
            for role, tenant in TENANTS.items()
        }
        write_limits(reg.store.db, "tenant:initech", Limits(requests_per_minute=1), now, "test")

    async def body(server):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
            owner, intruder, spender = (Caller(s, server.url, secrets[r], TENANTS[r]) for r in TENANTS)
            seen: dict[tuple[str, str], str] = {}

            # Exact cache. The intruder first claims the owner's tenant by header: a keyed gateway files the
            # request under the key's tenant, so it misses, and the intruder's plain ask then hits its own entry.
            assert cache_of(await owner.ask(ORDER)) == "none"
            seen["exact", "intruder claiming the owner"] = cache_of(await intruder.ask(ORDER, claim="acme"))
            seen["exact", "intruder"] = cache_of(await intruder.ask(ORDER))
            seen["exact", "owner"] = cache_of(await owner.ask(ORDER))

            # Semantic cache: the owner's entry for EXACT is what a paraphrase would be served from.
            assert cache_of(await owner.ask(EXACT)) == "none"
            seen["semantic", "intruder claiming the owner"] = cache_of(await intruder.ask(PARAPHRASE, claim="acme"))
            seen["semantic", "intruder"] = cache_of(await intruder.ask(PARAPHRASE))
            seen["semantic", "owner"] = cache_of(await owner.ask(PARAPHRASE))

            # Prefix KV cache: blocks past the shared system prompt are salted by tenant. The intruder's first
            # look at the owner's prompt must reuse no more tokens than a prompt nobody ever sent.
            first = await owner.ask(PREFIXED)
            on_owners_prompt = cached_tokens(await intruder.ask(PREFIXED))
            on_fresh_prompt = cached_tokens(await intruder.ask(FRESH))
            # The owner's follow-up turn starts with its earlier prompt: those blocks are its own to reuse.
            turn = [{"role": "user", "content": PREFIXED}, {"role": "assistant", "content": "Yes."}]
            owner_prefix = cached_tokens(await owner.ask("And what about a refund?", earlier=turn))

            # Budgets: the spender's tenant is over its budget after one answer; the others are not touched.
            spent = await spender.ask("How do I renew order 1?")
            refused = await spender.ask("How do I renew order 2?")
            after = await intruder.ask("How do I renew order 3?")
            return {
                "seen": seen,
                "prefix": (first[1]["usage"]["prompt_tokens"], on_owners_prompt, on_fresh_prompt, owner_prefix),
                "budget": (spent[0], refused, after[0]),
                "traces": {c.tenant: list(c.traces) for c in (owner, intruder, spender)},
            }

    out = asyncio.run(with_server(plane, body))

    assert out["seen"] == {
        ("exact", "intruder claiming the owner"): "none",
        ("exact", "intruder"): "exact",  # its own entry from the line above: the claim was filed under its key
        ("exact", "owner"): "exact",  # the positive control: the owner's entry was there all along
        ("semantic", "intruder claiming the owner"): "none",
        ("semantic", "intruder"): "exact",
        ("semantic", "owner"): "semantic",
    }, out["seen"]
    prompt_tokens, on_owners, on_fresh, owner_prefix = out["prefix"]
    assert 0 < on_owners == on_fresh, "cached_tokens must not tell the intruder what the owner sent"
    assert owner_prefix > on_owners, "the owner's own prefix blocks are reused (the cache is live)"
    status, refused, after = out["budget"]
    assert status == 200 and after == 200
    assert refused[0] == 429
    assert "tenant:initech is over its requests per minute budget" in refused[1]["error"]["message"]

    # Every ledger row and every audit record carries the tenant of the key that called, whatever it claimed.
    expected = {trace: tenant for tenant, traces in out["traces"].items() for trace in traces}
    with Registry.open(plane) as reg, reg.store.db.connect() as conn:
        ledger = {r.trace_id: r.tenant for r in conn.execute(select(llm_ledger))}
    assert ledger == expected
    log = AuditLog(plane)
    _, rows = log.query("SELECT trace_id, tenant FROM records WHERE kind = 'llm'")
    assert dict(rows) == expected
    assert log.verify().ok
