"""A scripted OpenAI-compatible server (a judge, or an application model behind the gateway): a real HTTP
server on 127.0.0.1 whose answers a test chooses. ``script(body, n)`` returns the answer's content (a string),
an HTTP status to fail with (an int), or a whole message (a dict with ``content`` and/or ``tool_calls``)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from aiohttp import web

Script = Callable[[dict[str, Any], int], str | int | dict[str, Any]]


class ScriptedOpenAI:
    """Answers /v1/chat/completions with ``script(request_body, n)`` (a content string, or an int HTTP status)."""

    def __init__(self) -> None:
        self.script: Script = lambda body, n: '{"score": 5, "reason": "ok"}'
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        out = self.script(body, len(self.requests))
        if isinstance(out, int):
            return web.json_response({"error": {"message": "scripted failure"}}, status=out)
        message = {"role": "assistant", **out} if isinstance(out, dict) else {"role": "assistant", "content": out}
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        answer = {
            "id": "x",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60},
        }
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app)
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            assert self._runner is not None
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}/v1"
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(10), "the scripted judge did not start"

    def stop(self) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@contextlib.contextmanager
def scripted_openai() -> Iterator[ScriptedOpenAI]:
    s = ScriptedOpenAI()
    s.start()
    try:
        yield s
    finally:
        s.stop()
