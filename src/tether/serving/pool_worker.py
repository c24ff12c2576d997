"""A pooled worker: many verified versions in one process, answering on 127.0.0.1.

    python -m tether.serving.pool_worker --slot N --budget BYTES [--port 0] [--idle-seconds 600]

Routes (the pool in the serving process, `tether.serving.pool`, is the only client):

- ``POST /v/{version}/predict`` with ``{"records": [...]}``: the version's outputs, loading it first if it is not
  resident (from the verified store, every digest checked, as a one-model instance does). The service time header
  (``X-Tether-Service-Seconds``) never includes the load; a request that waited for one says how long in
  ``X-Tether-Load-Seconds``, so the gateway records cold loads apart from service.
- ``POST /v/{version}/load[?pin=1]``: load (and pin) a version now; answers once it can serve.
- ``POST /v/{version}/pin``, ``/unpin``, ``/evict``: pins say which versions the routing tables name; evicting
  unloads at once.
- ``GET /health``: ``{"status": "ok", "slot": N, "pid": ...}``; ``GET /stats``: the budget, the bytes each resident
  version was measured at, loads, evictions, the resident set.

It imports what serving a model needs (the registry, the flavors, aiohttp, pandas) and nothing of the gateway,
the drift watch or the control plane, so a worker starts in about a second. Native thread pools (OpenMP, BLAS,
onnxruntime) are held to one thread per model by the environment the pool starts it with.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from typing import Any

import orjson
from aiohttp import web

from tether.core import Settings, TetherError
from tether.core import loop as event_loop
from tether.registry import LoadedModel, Registry
from tether.serving.model_cache import ModelCache
from tether.serving.worker import SERVICE_HEADER, run_until_stopped

LOAD_HEADER = "X-Tether-Load-Seconds"
SWEEP_SECONDS = 10.0


def _error(status: int, message: str) -> web.Response:
    return web.Response(body=orjson.dumps({"error": message}), status=status, content_type="application/json")


def make_app(cache: ModelCache, slot: int) -> web.Application:
    async def predict(request: web.Request) -> web.Response:
        vid = request.match_info["version"]
        raw = await request.read()
        try:
            records = orjson.loads(raw)["records"]
            if not isinstance(records, list):
                raise TypeError(f"'records' must be a list, not {type(records).__name__}")
        except (orjson.JSONDecodeError, KeyError, TypeError) as e:
            return _error(400, f"bad request: {e}")
        try:
            res, waited = await cache.get(vid)
        except TetherError as e:
            return _error(e.http_status if e.http_status >= 400 else 500, f"cannot load version {vid[:12]}…: {e}")
        status, payload, service = await res.batcher.predict(records)
        headers = {SERVICE_HEADER: f"{service:.6f}"}
        if waited:
            headers[LOAD_HEADER] = f"{waited:.6f}"
        return web.Response(body=payload, status=status, content_type="application/json", headers=headers)

    async def load(request: web.Request) -> web.Response:
        vid = request.match_info["version"]
        if request.query.get("pin") == "1":
            cache.pin(vid)
        try:
            res, _ = await cache.get(vid)
        except TetherError as e:
            return _error(e.http_status if e.http_status >= 400 else 500, f"cannot load version {vid[:12]}…: {e}")
        return web.json_response({"version": vid, "bytes": res.bytes, "load_seconds": res.load_seconds})

    async def pin(request: web.Request) -> web.Response:
        cache.pin(request.match_info["version"])
        return web.json_response({"pinned": True})

    async def unpin(request: web.Request) -> web.Response:
        cache.unpin(request.match_info["version"])
        return web.json_response({"pinned": False})

    async def evict(request: web.Request) -> web.Response:
        vid = request.match_info["version"]
        cache.unpin(vid)
        return web.json_response({"evicted": await cache.evict(vid)})

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "slot": slot, "pid": os.getpid()})

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response({"slot": slot, "pid": os.getpid(), **cache.stats()})

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/v/{version}/predict", predict)
    app.router.add_post("/v/{version}/load", load)
    app.router.add_post("/v/{version}/pin", pin)
    app.router.add_post("/v/{version}/unpin", unpin)
    app.router.add_post("/v/{version}/evict", evict)
    app.router.add_get("/health", health)
    app.router.add_get("/stats", stats)
    return app


def loader(registry: Registry) -> Any:
    def load(version_id: str) -> tuple[LoadedModel, int]:
        model = registry.load(version_id)
        return model, model.weights_bytes

    return load


async def serve(slot: int, port: int, budget: int, idle_seconds: float, settings: Settings) -> None:
    registry = Registry.open(settings)
    cache = ModelCache(loader(registry), budget, max_batch=settings.worker_max_batch, idle_seconds=idle_seconds)

    async def sweep() -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            with contextlib.suppress(Exception):
                await cache.sweep()

    sweeper = asyncio.create_task(sweep())
    try:
        await run_until_stopped(make_app(cache, slot), port)
    finally:
        sweeper.cancel()
        await cache.close()
        registry.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="serve many tether model versions from one process on 127.0.0.1")
    parser.add_argument("--slot", type=int, required=True)
    parser.add_argument("--budget", type=int, required=True, help="bytes of models to hold before evicting")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--idle-seconds", type=float, default=600.0)
    args = parser.parse_args(argv)
    settings = Settings()
    try:
        event_loop.run(serve(args.slot, args.port, args.budget, args.idle_seconds, settings), settings.event_loop)
    except TetherError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
