"""``tether demo --serve``: leave the dashboard up on the demo's data, with a viewer and an admin key to sign in."""

from __future__ import annotations

import asyncio
import signal

from tether.cli.output import console
from tether.core.settings import Settings
from tether.registry import Registry
from tether.serving.auth import create_key


def serve_dashboard(settings: Settings, *, port: int = 8080) -> None:
    from tether.api.server import Server

    with Registry.open(settings) as reg:
        now = reg.clock.now()
        _, admin = create_key(reg.store.db, "demo-admin", "admin", now)
        _, viewer = create_key(reg.store.db, "demo-viewer", "viewer", now, all_tenants=True)
    server = Server(settings, port=port, auth=True, tick_seconds=1.0)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        console.print(f"\n[bold]The dashboard: {server.url}/[/bold]  (API reference: {server.url}/reference)")
        console.print(f"  sign in as an admin (may promote, pause, resume, abort): {admin}")
        console.print(f"  or as a viewer (reads everything, no buttons):          {viewer}")
        console.print("  Ctrl-C stops the server (the store stays for 'tether serve').")
        try:
            await stop.wait()
        finally:
            await server.stop()

    asyncio.run(run())
