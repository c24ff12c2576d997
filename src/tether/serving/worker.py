"""A model instance: one verified version in its own process, answering on 127.0.0.1.

    python -m tether.serving.worker --version VERSION_ID [--port 0] [--home DIR]

Protocol: ``GET /health`` -> ``{"status": "ok", "version": ...}``; ``POST /predict`` with
``{"records": [{...}, ...]}`` -> ``{"outputs": [{...}, ...]}`` with the service time in seconds in the
``X-Tether-Service-Seconds`` header. When listening it prints
``TETHER_WORKER_READY <port>`` on stdout; SIGTERM stops it gracefully. The database and blob store come from
the usual settings (``TETHER_HOME``, ``TETHER_DATABASE_URL``, ...), which the runtime passes down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys

import orjson
from aiohttp import web

from tether.core import Settings, TetherError
from tether.core import loop as event_loop
from tether.registry import LoadedModel, Registry
from tether.serving.batcher import Batcher

SERVICE_HEADER = "X-Tether-Service-Seconds"


def make_app(model: LoadedModel, *, max_batch: int = 64) -> web.Application:
    """The instance's routes; concurrent predictions run in batches (`tether.serving.batcher`)."""
    batcher = Batcher(model, max_records=max_batch)

    async def health(_request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "version": model.version_id,
                "pid": os.getpid(),
                "batches": batcher.batches,
                "batched_requests": batcher.requests,
            }
        )

    async def predict(request: web.Request) -> web.Response:
        raw = await request.read()
        # Service time: the batch that served this request, from its start to the answer ready, without the
        # wait before it, which depends on the traffic share the gateway gives this instance rather than on the
        # model (see the rollout's latency guardrail).
        try:
            records = orjson.loads(raw)["records"]
            if not isinstance(records, list):
                raise TypeError(f"'records' must be a list, not {type(records).__name__}")
        except (orjson.JSONDecodeError, KeyError, TypeError) as e:
            return web.json_response({"error": f"bad request: {e}"}, status=400)
        status, payload, service = await batcher.predict(records)
        return web.Response(
            body=payload, status=status, content_type="application/json", headers={SERVICE_HEADER: f"{service:.6f}"}
        )

    app = web.Application(client_max_size=64 << 20)
    app.router.add_get("/health", health)
    app.router.add_post("/predict", predict)
    return app


async def serve(version: str, port: int, settings: Settings) -> None:
    registry = Registry.open(settings)
    model = registry.load(version)
    registry.close()
    try:
        await run_until_stopped(make_app(model, max_batch=settings.worker_max_batch), port)
    finally:
        model.close()


async def run_until_stopped(app: web.Application, port: int) -> None:
    """Serve ``app`` on 127.0.0.1, print ``TETHER_WORKER_READY <port>``, and return on SIGTERM/SIGINT or when
    the serving process that started this instance is gone. Every instance worker ends this way."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"TETHER_WORKER_READY {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    orphan_watch = asyncio.create_task(_stop_when_orphaned(stop))
    await stop.wait()
    orphan_watch.cancel()
    await runner.cleanup()


async def _stop_when_orphaned(stop: asyncio.Event, every: float = 1.0) -> None:
    """Stop once the serving process that started this instance is gone (it was killed without stopping us)."""
    parent = os.environ.get("TETHER_PARENT_PID")
    if not parent:
        return
    while not stop.is_set():
        await asyncio.sleep(every)
        if os.getppid() != int(parent):  # re-parented: the gateway process died
            stop.set()  # first: the message below can fail, its reader (the dead server) being gone
            with contextlib.suppress(OSError):
                print("tether: the serving process is gone; stopping", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="serve one tether model version on 127.0.0.1")
    parser.add_argument("--version", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--home", default=None)
    args = parser.parse_args(argv)
    settings = Settings(home=args.home) if args.home else Settings()
    try:
        event_loop.run(serve(args.version, args.port, settings), settings.event_loop)
    except TetherError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
