"""Dispatch: the stage that sends a chat request to a backend replica, plain or streamed, and shadow copies.

A version's replicas are its own instance (the embedded engine, started by the runtime) or the endpoints of a
remote OpenAI-compatible backend; the replica is chosen by prefix affinity (``ReplicaPicker``). Every backend
failure becomes an ``Upstream`` with a kind the record stage counts: a backend's 4xx for an invalid request is
the client's error, never the version's.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from tether.llm import protocol
from tether.llm.cache import short_hash
from tether.llm.call import NOT_THE_VERSIONS, Call, Outcome, Upstream, VersionInfo, upstream_error, write_quietly
from tether.serving.gateway import Gateway
from tether.serving.protocols import service_seconds as _seconds
from tether.serving.worker import SERVICE_HEADER


class ReplicaPicker:
    """Prefix affinity over a version's replicas: rendezvous hashing of the static prefix, so every request with
    the same system prompt and tools lands where that prefix is already cached; a replica busier than the least
    busy one by more than ``slack`` requests in flight is passed over (the load-imbalance fallback)."""

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}
        self.affine = self.fallback = 0

    def pick(self, urls: list[str], prefix_hash: str, slack: int) -> str:
        if len(urls) == 1:
            return urls[0]
        ranked = sorted(urls, key=lambda u: hashlib.sha256(f"{prefix_hash}|{u}".encode()).digest(), reverse=True)
        least = min(self.in_flight.get(u, 0) for u in urls)
        first = ranked[0]
        if self.in_flight.get(first, 0) <= least + slack:
            self.affine += 1
            return first
        self.fallback += 1
        return min(ranked, key=lambda u: self.in_flight.get(u, 0))


class Dispatcher:
    """Backend calls for the gateway's requests; ``load`` gives a version's spec and tokenizer (off the loop)."""

    def __init__(self, gw: Gateway, load: Callable[[str], Awaitable[VersionInfo]]) -> None:
        self.gw = gw
        self.load = load
        self.picker = ReplicaPicker()

    def urls(self, info: VersionInfo) -> list[str]:
        if info.spec.backend.kind == "openai":
            return [u.rstrip("/") for u in info.spec.backend.endpoints]
        inst = self.gw.runtime.instance(info.version_id)
        if inst is None:
            raise Upstream(
                503, f"no running instance for version {info.version_id[:12]}… (starting or crashed)", "unavailable"
            )
        return [inst.url + "/v1"]

    def body(self, call: Call, sent: list[dict[str, Any]]) -> dict[str, Any]:
        d = call.decoding
        body: dict[str, Any] = {
            "model": call.info.spec.backend.model or call.info.name,
            "messages": sent,
            "max_tokens": d["max_tokens"],
            "temperature": d["temperature"],
            "top_p": d["top_p"],
            "stream": call.req.stream,
        }
        for k in ("seed", "stop"):
            if d[k]:
                body[k] = d[k]
        if call.tools:
            body["tools"] = call.tools
            if call.req.tool_choice is not None:
                body["tool_choice"] = call.req.tool_choice
        if call.response_format:
            body["response_format"] = call.response_format
        if call.req.stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def headers(self, info: VersionInfo, tenant: str | None = None) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if tenant is not None:  # the tenant's partition of the engine's prefix cache (see tether.llm.kvcache)
            h["X-Tether-Cache-Salt"] = hashlib.sha256(b"tether-tenant:" + tenant.encode()).hexdigest()[:32]
        env = info.spec.backend.api_key_env
        if env and os.environ.get(env):
            h["Authorization"] = f"Bearer {os.environ[env]}"
        return h

    async def call(
        self, info: VersionInfo, body: dict[str, Any], prefix_hash: str, outcome: Outcome, tenant: str | None = None
    ) -> None:
        url = self.picker.pick(self.urls(info), prefix_hash, info.spec.backend.affinity_slack)
        self.picker.in_flight[url] = self.picker.in_flight.get(url, 0) + 1
        timeout = aiohttp.ClientTimeout(total=info.spec.backend.timeout_s)
        try:
            async with self.gw.session.post(
                url + "/chat/completions", data=orjson.dumps(body), headers=self.headers(info, tenant), timeout=timeout
            ) as r:
                raw = await r.read()
                outcome.service = _seconds(r.headers.get(SERVICE_HEADER))
                if r.status != 200:
                    raise upstream_error(url, r.status, raw)
            answer = orjson.loads(raw)
            choice = answer["choices"][0]
            msg = choice.get("message") or {}
        except TimeoutError:
            raise Upstream(504, f"the backend {url} did not answer within {timeout.total} s", "timeout") from None
        except aiohttp.ClientError as e:
            raise Upstream(502, f"the backend {url} is unreachable: {type(e).__name__}", "backend_down") from None
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as e:
            raise Upstream(
                502, f"the backend {url} sent an answer that is not a chat completion: {e}", "backend_protocol"
            ) from None
        finally:
            self.picker.in_flight[url] -= 1
        outcome.text = msg.get("content") or ""
        outcome.tool_calls = msg.get("tool_calls")
        outcome.finish_reason = choice.get("finish_reason") or "stop"
        usage = answer.get("usage") or {}
        outcome.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        outcome.completion_tokens = int(usage.get("completion_tokens") or 0)
        outcome.cached_tokens = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)

    async def relay(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        info: VersionInfo,
        url: str,
        body: dict[str, Any],
        cid: str,
        created: int,
        outcome: Outcome,
        tenant: str | None = None,
    ) -> None:
        timeout = aiohttp.ClientTimeout(total=info.spec.backend.timeout_s)
        model = body["model"]
        parts: list[str] = []
        try:
            async with self.gw.session.post(
                url + "/chat/completions", data=orjson.dumps(body), headers=self.headers(info, tenant), timeout=timeout
            ) as r:
                if r.status != 200:
                    raise upstream_error(url, r.status, await r.read())
                await resp.prepare(request)
                done = False
                async for line in r.content:
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        done = True
                        break
                    event = orjson.loads(data)
                    if "error" in event:
                        raise Upstream(502, f"the backend {url} failed mid-stream: {event['error']}", "broken_stream")
                    if event.get("usage"):
                        u = event["usage"]
                        outcome.prompt_tokens = int(u.get("prompt_tokens") or 0)
                        outcome.completion_tokens = int(u.get("completion_tokens") or 0)
                        outcome.cached_tokens = int((u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
                    for ch in event.get("choices") or []:
                        delta = ch.get("delta") or {}
                        if delta.get("content"):
                            parts.append(delta["content"])
                        if ch.get("finish_reason"):
                            outcome.finish_reason = ch["finish_reason"]
                        await resp.write(
                            protocol.chunk(cid, model, created, delta=delta, finish=ch.get("finish_reason"))
                        )
                if not done:
                    raise Upstream(502, f"the backend {url} closed the stream before it finished", "broken_stream")
        except (Upstream, TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError, ConnectionResetError) as e:
            kind = (
                e.kind if isinstance(e, Upstream) else ("timeout" if isinstance(e, TimeoutError) else "broken_stream")
            )
            message = (
                e.message
                if isinstance(e, Upstream)
                else f"the backend {url} broke the stream before it finished ({type(e).__name__})"
            )
            outcome.status, outcome.error, outcome.finish_reason = ("partial" if parts else "error"), kind, "error"
            outcome.text = "".join(parts)
            if not resp.prepared:
                await resp.prepare(request)
            err = protocol.error_body(message, kind="server_error", code=kind)
            await write_quietly(resp, b"data: " + orjson.dumps(err) + b"\n\n")
            return
        outcome.text = "".join(parts)

    async def shadow(self, call: Call, version_id: str, sent: list[dict[str, Any]]) -> None:
        """A copy for the shadow version (fire and forget: it never changes the answer), measured on its arm."""
        started = time.perf_counter()
        outcome = Outcome()
        try:
            info = await self.load(version_id)
            body = self.body(call, sent)
            body["model"] = info.spec.backend.model or info.name
            body["stream"] = False
            body.pop("stream_options", None)
            await self.call(
                info, body, short_hash([info.system_hash, call.tools, call.response_format]), outcome, call.tenant
            )
        except Upstream as e:
            outcome.error = None if e.kind in NOT_THE_VERSIONS else e.kind
        except Exception:  # a shadow can never affect the live path
            outcome.error = "shadow_failure"
        self.gw.metrics.record_request(
            call.req.model,
            version_id,
            "shadow",
            call.now,
            latency=time.perf_counter() - started,
            service=outcome.service,
            records=0,
            error=outcome.error,
        )
