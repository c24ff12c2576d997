"""Seeded streams of user prompts by topic: what the demo, the simulations and ``bench/llm_evals.py`` send.

Each topic has phrasings with slots filled from small vocabularies, so a stream has many distinct prompts
whose embeddings spread the way real users' do within a topic. A *stable* stream draws topics from fixed
weights; a *shifted* one moves weight to topics the baseline never saw.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

TOPICS: dict[str, tuple[list[str], dict[str, list[str]]]] = {
    "password": (
        [
            "How do I reset my {thing}?",
            "I forgot my {thing}, what should I do?",
            "Can you help me change my {thing}?",
            "My {thing} stopped working after the update",
            "Where do I set a new {thing} on {device}?",
        ],
        {
            "thing": ["password", "PIN", "passcode", "login password", "two-factor code"],
            "device": ["my phone", "the web app", "my laptop", "the tablet app"],
        },
    ),
    "shipping": (
        [
            "Where is my {item}?",
            "My {item} has not arrived yet, it was due {when}",
            "Can I change the delivery address for my {item}?",
            "How long does shipping to {place} take?",
            "The tracking page for my {item} has not moved since {when}",
        ],
        {
            "item": ["order", "parcel", "package", "delivery", "shipment"],
            "when": ["Monday", "last week", "yesterday", "two days ago"],
            "place": ["Canada", "Spain", "Japan", "Brazil"],
        },
    ),
    "billing": (
        [
            "Why was I charged {amount} twice?",
            "How do I update the card on my {plan}?",
            "Can I get an invoice for my {plan}?",
            "I want to cancel my {plan} before the next charge",
            "What does the {amount} fee on my statement mean?",
        ],
        {
            "amount": ["$12", "$49", "$5.99", "$120"],
            "plan": ["subscription", "annual plan", "family plan", "business account"],
        },
    ),
    "refunds": (
        [
            "How do I get a refund for my {item}?",
            "I returned the {item} {when}, when will I see the money?",
            "Is my {item} eligible for a refund?",
            "The refund for my {item} was less than I paid",
        ],
        {
            "item": ["order", "headphones", "jacket", "coffee machine"],
            "when": ["last Friday", "two weeks ago", "a month ago"],
        },
    ),
    # Topics the baseline never sees: where a shifted stream moves.
    "crypto": (
        [
            "Can I pay with {coin}?",
            "How do I connect my {coin} wallet to my account?",
            "Do you accept {coin} for the {plan}?",
            "My {coin} payment is stuck as pending",
        ],
        {"coin": ["bitcoin", "ethereum", "USDC", "a crypto wallet"], "plan": ["subscription", "annual plan"]},
    ),
    "outage": (
        [
            "Is the {service} down right now?",
            "The {service} shows an error {code} since this morning",
            "Nothing loads in the {service}, is there an outage?",
        ],
        {"service": ["app", "website", "API", "dashboard"], "code": ["500", "503", "timeout", "blank page"]},
    ),
}

STABLE = {"password": 0.3, "shipping": 0.3, "billing": 0.2, "refunds": 0.2}
SHIFTED = {"password": 0.15, "shipping": 0.15, "billing": 0.1, "refunds": 0.1, "crypto": 0.3, "outage": 0.2}


def prompt(rng: random.Random, topic: str) -> str:
    templates, slots = TOPICS[topic]
    text = rng.choice(templates)
    for name, values in slots.items():
        text = text.replace("{" + name + "}", rng.choice(values))
    return text


def stream(seed: int, weights: dict[str, float] | None = None) -> Iterator[tuple[str, str]]:
    """(topic, prompt) forever, topics drawn with ``weights`` (the stable mix by default)."""
    rng = random.Random(seed)
    w = weights or STABLE
    names, probs = list(w), list(w.values())
    while True:
        topic = rng.choices(names, probs)[0]
        yield topic, prompt(rng, topic)


def prompts(seed: int, n: int, weights: dict[str, float] | None = None) -> list[str]:
    s = stream(seed, weights)
    return [next(s)[1] for _ in range(n)]


class SupportAssistant:
    """A stand-in for a hosted support model behind an OpenAI-compatible API, for the demo and the bench: a real
    HTTP server on 127.0.0.1 whose answers are JSON built from the question, and refusals for unsafe requests.
    Model ``support-v2`` is the same model behind a new wrapper that prefixes a ``broken_share`` of its answers
    with chatter, which breaks the JSON its callers parse. It is labelled as a simulation wherever it is used.
    """

    def __init__(self, *, broken_share: float = 0.05, seed: int = 0) -> None:
        self.broken_share = broken_share
        self._rng = random.Random(seed)
        self.url = ""
        self._runner: Any = None

    async def _chat(self, request: Any) -> Any:
        import json

        from aiohttp import web

        body = await request.json()
        question = str(body["messages"][-1].get("content") or "")
        if any(w in question.lower() for w in ("malware", "weapon", "steal")):
            text = json.dumps({"answer": "I'm sorry, but I can't help with that.", "ticket": 0})
        else:
            text = json.dumps(
                {"answer": f"Here is how: {question.rstrip('?')}, step by step.", "ticket": len(question)}
            )
            if body.get("model") == "support-v2" and self._rng.random() < self.broken_share:
                text = "Sure! " + text
        answer = {
            "id": "chatcmpl-sim",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 12, "total_tokens": 32},
        }
        return web.json_response(answer)

    async def start(self) -> str:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def start_in_thread(self) -> str:
        """Serve from a thread of its own (registration's smoke test calls it synchronously)."""
        import asyncio
        import threading

        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.start())
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="support-assistant", daemon=True)
        self._loop = loop
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the simulated support assistant did not start")
        return self.url

    def stop_thread(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
