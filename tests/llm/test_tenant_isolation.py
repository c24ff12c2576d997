"""No client can poison the LLM data plane or learn about another tenant through it.

* Prefix KV reuse shares the version's pinned prefix (the system prompt) between tenants, and salts every block
  past it by tenant: ``cached_tokens`` for a prompt another tenant sent equals that of a fresh prompt.
* A request the model refuses as invalid (a prompt plus ``max_tokens`` beyond its context) is a 400 for the
  client and a rejection, never an error of the version.
"""

import asyncio

import openai
import pytest

from tests.llm.test_gateway_e2e import client, deployed, user, with_server

pytestmark = pytest.mark.slow

SYSTEM = "You are the support assistant of the shop. Answer briefly, politely and only about orders. " * 3
SPEC = {
    "prompt": {"version": "1", "system": SYSTEM},
    "decoding": {"temperature": 0, "max_tokens": 4},
    "context": {"max_input_tokens": 600, "keep_last_turns": 2, "block_tokens": 8},
    "cache": {"exact": False, "semantic": False, "calibration_rate": 0.0},
}
QUESTION = "How do I reset the password of my account when the e-mail address I signed up with is gone? " * 2
FRESH = "How do I change the delivery address of my order when the parcel has already been dispatched? " * 2


def test_prefix_reuse_never_tells_one_tenant_about_anothers_prompt(settings, llm_code, tiny_model):
    mv = deployed(settings, llm_code, tiny_model, SPEC)

    async def body(server):
        c = client(server)

        async def cached(text, tenant):
            r = await c.chat.completions.create(
                model="helpdesk", messages=user(text), extra_headers={"X-Tether-Tenant": tenant}
            )
            return r.usage.prompt_tokens_details.cached_tokens, r.usage.prompt_tokens

        await cached(QUESTION, "a")
        a_again, prompt_tokens = await cached(QUESTION, "a")
        b_same, _ = await cached(QUESTION, "b")  # tenant b's first request: a prompt tenant a sent
        c_fresh, _ = await cached(FRESH, "c")  # tenant c's first request: a prompt nobody sent
        return a_again, prompt_tokens, b_same, c_fresh

    a_again, prompt_tokens, b_same, c_fresh = asyncio.run(with_server(settings, body, auth=False))
    assert a_again >= prompt_tokens - 8 - 1  # the tenant's own prompt: every full block but the last token's
    assert 0 < b_same < a_again  # another tenant: the shared system prompt's blocks only
    assert b_same == c_fresh, "cached_tokens must not reveal that tenant a sent this prompt"
    assert mv.id


def test_max_tokens_beyond_the_context_is_the_clients_error(settings, llm_code, tiny_model):
    mv = deployed(settings, llm_code, tiny_model, SPEC)

    async def body(server):
        c = client(server)
        with pytest.raises(openai.BadRequestError) as e:
            await c.chat.completions.create(model="helpdesk", messages=user("Hello?"), max_tokens=20_000)
        ok = await c.chat.completions.create(model="helpdesk", messages=user("Hello?"))
        tally = server.metrics.tally("helpdesk", mv.id, "champion", server.gateway.clock.now().replace(year=2000))
        warm = server.metrics.tally("helpdesk", mv.id, "champion:warmup", server.gateway.clock.now().replace(year=2000))
        return e.value, ok, tally, warm, dict(server.gateway.rejected)

    err, ok, tally, warm, rejected = asyncio.run(with_server(settings, body, auth=False))
    assert err.status_code == 400 and "context" in err.message
    assert ok.choices[0].message.content is not None
    assert tally.error_count == 0 and warm.error_count == 0, (tally.errors, warm.errors)
    assert rejected.get(("helpdesk", "client_error")) == 1, rejected
