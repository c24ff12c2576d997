"""An LLM instance: the embedded engine behind an OpenAI-compatible HTTP server on 127.0.0.1.

    python -m tether.llm.worker --version VERSION_ID [--port 0]     # a registered local LLM version
    python -m tether.llm.worker --model-path DIR [--port 0]         # any Hugging Face folder (benchmarks)

Routes: ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions`` (plain and SSE). The messages are
rendered with the model's chat template; ``usage.prompt_tokens_details.cached_tokens`` counts the prompt tokens
whose keys and values came from the prefix cache. Like `tether.serving.worker` it prints
``TETHER_WORKER_READY <port>``, reports its service time in ``X-Tether-Service-Seconds``, stops on SIGTERM and
stops by itself when the serving process that started it is gone.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from tether.core import Settings, TetherError
from tether.core import loop as event_loop
from tether.llm import protocol
from tether.llm.engine import Engine, Generation
from tether.serving.worker import SERVICE_HEADER, run_until_stopped


def make_app(engine: Engine, name: str) -> web.Application:
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-engine")

    async def health(_request: web.Request) -> web.Response:
        stats = engine.prefix.stats() if engine.prefix is not None else None
        return web.json_response({"status": "ok", "model": name, "pid": os.getpid(), "prefix_cache": stats})

    async def models(_request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": name, "object": "model", "owned_by": "tether"}]})

    async def chat(request: web.Request) -> web.StreamResponse:
        try:
            req = protocol.parse_chat(orjson.loads(await request.read()))
        except orjson.JSONDecodeError as e:
            return _err(400, f"malformed JSON: {e}")
        except protocol.RequestError as e:
            return _err(e.status, e.message, e.param)
        started = time.perf_counter()
        try:
            ids = engine.encode(engine.render(req.messages, req.tools))
            pinned = _leading_system(req.messages)
            shared = _common_prefix(ids, engine.encode(engine.render(pinned, req.tools))) if pinned else 0
        except Exception as e:
            return _err(400, f"the messages could not be rendered with the model's chat template: {e}", "messages")
        kwargs: dict[str, Any] = {
            "max_tokens": req.max_tokens or 256,
            "temperature": req.temperature or 0.0,
            "top_p": req.top_p or 1.0,
            "seed": req.seed,
            "stop": req.stop,
            "reuse": request.headers.get("X-Tether-Prefix-Reuse", "on") != "off",
            # The gateway names the tenant's partition of the prefix cache (a digest, never the tenant):
            # the system prompt's blocks are shared, every block past them is the tenant's own.
            "salt": request.headers.get("X-Tether-Cache-Salt", "").encode()[:64],
            "shared_tokens": shared,
        }
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        gen = Generation(prompt_tokens=len(ids))
        loop = asyncio.get_running_loop()
        if not req.stream:
            try:
                await loop.run_in_executor(pool, lambda: engine.complete(ids, info=gen, **kwargs))
            except TetherError as e:
                return _err(400, str(e), "messages")
            usage = protocol.usage_of(gen.prompt_tokens, len(gen.output_ids), gen.cached_tokens)
            body = protocol.completion(cid, name, gen.text, gen.finish_reason, usage, created=created)
            return web.Response(
                body=orjson.dumps(body),
                content_type="application/json",
                headers={SERVICE_HEADER: f"{time.perf_counter() - started:.6f}"},
            )
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def produce() -> None:
            try:
                for step in engine.generate(ids, info=gen, **kwargs):
                    loop.call_soon_threadsafe(queue.put_nowait, step)
            except BaseException as e:  # handed to the stream: it ends with an error event
                loop.call_soon_threadsafe(queue.put_nowait, e)
            loop.call_soon_threadsafe(queue.put_nowait, None)

        producer = loop.run_in_executor(pool, produce)
        first = await queue.get()
        if isinstance(first, TetherError):
            await producer
            return _err(400, str(first), "messages")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        await resp.write(protocol.chunk(cid, name, created, delta={"role": "assistant", "content": ""}))
        item = first
        while item is not None:
            if isinstance(item, BaseException):
                await resp.write(
                    b"data: "
                    + orjson.dumps(protocol.error_body(f"generation failed: {item}", kind="server_error"))
                    + b"\n\n"
                )
                break
            if item.finish_reason is not None:
                await resp.write(protocol.chunk(cid, name, created, delta={}, finish=item.finish_reason))
            elif item.text:
                await resp.write(protocol.chunk(cid, name, created, delta={"content": item.text}))
            item = await queue.get()
        await producer
        if req.include_usage:
            usage = protocol.usage_of(gen.prompt_tokens, len(gen.output_ids), gen.cached_tokens)
            await resp.write(protocol.chunk(cid, name, created, usage=usage))
        await resp.write(protocol.DONE)
        await resp.write_eof()
        return resp

    async def shutdown(_app: web.Application) -> None:
        pool.shutdown(wait=False, cancel_futures=True)

    app = web.Application(client_max_size=64 << 20)
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    app.on_cleanup.append(shutdown)
    return app


def _err(status: int, message: str, param: str | None = None) -> web.Response:
    body = protocol.error_body(message, kind=protocol.ERROR_TYPES.get(status, "invalid_request_error"), param=param)
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def load_version(version: str, settings: Settings, scratch: Path) -> tuple[Engine, str]:
    from tether.llm.spec import LLMSpec
    from tether.registry import Registry

    with Registry.open(settings) as registry:
        mv = registry.get(version)
        if mv.flavor != "llm":
            raise TetherError(f"version {mv.ref} is a {mv.flavor} model, not an LLM")
        spec = LLMSpec.parse(mv.flavor_config["spec"])
        if spec.backend.kind != "local":
            raise TetherError(f"version {mv.ref} is served by {spec.backend.endpoints}, not by a local engine")
        weights = registry.materialize_weights(mv, scratch / "weights")  # every file verified on the way out
    engine = Engine(weights, block_tokens=spec.context.block_tokens, kv_cache_bytes=spec.backend.kv_cache_mb << 20)
    return engine, mv.name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="serve an LLM with tether's embedded engine on 127.0.0.1")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", help="a registered LLM version (id or name/number)")
    which.add_argument("--model-path", help="a Hugging Face model folder")
    parser.add_argument("--name", default="local", help="the model name to answer with (--model-path only)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--block-tokens", type=int, default=16)
    parser.add_argument("--kv-cache-mb", type=int, default=256, help="0 turns prefix reuse off")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="tether-llm-"))
    settings = Settings()
    try:
        if args.version:
            engine, name = load_version(args.version, settings, scratch)
        else:
            engine, name = (
                Engine(args.model_path, block_tokens=args.block_tokens, kv_cache_bytes=args.kv_cache_mb << 20),
                args.name,
            )
        event_loop.run(run_until_stopped(make_app(engine, name), args.port), settings.event_loop)
    except TetherError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _leading_system(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The system messages a conversation starts with: the version's pinned prefix."""
    out = []
    for m in messages:
        if m.get("role") != "system":
            break
        out.append(m)
    return out


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


if __name__ == "__main__":
    main()
