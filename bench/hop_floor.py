"""The floor of an HTTP hop through aiohttp on this machine, on each event loop, side by side in one run.

    python bench/hop_floor.py [--requests 4000]

Starts an instant backend (an aiohttp app answering a fixed one-record prediction) and two bare aiohttp
proxies in front of it (the same code as `bench/gateway.py`'s floor: one pooled client session, the body
forwarded as it came), one on uvloop and one on asyncio's own loop, each in its own process. Requests from one
connection alternate between the three paths, so machine noise falls on all of them alike; printed: p50 and
p99 per path, and what each proxy adds at p50. A backend that answers at once, unlike a model instance whose
own jitter is milliseconds, shows differences of a tenth of a millisecond: this is the least any Python
gateway built on aiohttp can add here, and the anchor for tether's own hops (`bench/gateway.py`,
`bench/llm_gateway.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway import PROXY  # the floor proxy of bench/gateway.py, unchanged

BACKEND = """
import sys
from aiohttp import web


async def predict(request):
    await request.read()
    return web.Response(body=b'{"outputs": [{"prediction": 0, "probability": 0.01}]}', content_type="application/json")


app = web.Application()
app.router.add_post("/predict", predict)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=lambda *a: print("ready", flush=True))
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(argv: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", *argv], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()  # "ready"
    return proc


async def _alternate(urls: dict[str, str], n: int, warm: int = 200) -> dict[str, list[float]]:
    lat: dict[str, list[float]] = {k: [] for k in urls}
    body = b'{"records": [{"amount": 12.5, "country": "US"}]}'
    async with aiohttp.ClientSession() as s:
        for i in range(n + warm):
            for name, url in urls.items():
                t = time.perf_counter()
                async with s.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    assert r.status == 200, (name, r.status)
                if i >= warm:
                    lat[name].append(time.perf_counter() - t)
    return lat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    args = parser.parse_args()
    backend, uv, aio = _port(), _port(), _port()
    procs = [_start([BACKEND, str(backend)])]
    try:
        target = f"http://127.0.0.1:{backend}/predict"
        procs.append(_start([PROXY, target, str(uv), "uvloop"]))
        procs.append(_start([PROXY, target, str(aio), "asyncio"]))
        urls = {
            "direct": target,
            "proxy, uvloop": f"http://127.0.0.1:{uv}/predict",
            "proxy, asyncio": f"http://127.0.0.1:{aio}/predict",
        }
        lat = asyncio.run(_alternate(urls, args.requests))
        d50 = float(np.median(lat["direct"])) * 1000
        print(f"one connection, {args.requests} requests per path, alternating (milliseconds):")
        for name, xs in lat.items():
            p50, p99 = float(np.median(xs)) * 1000, float(np.quantile(xs, 0.99)) * 1000
            added = "" if name == "direct" else f"  adds {p50 - d50:.3f} at p50"
            print(f"  {name:15} p50 {p50:6.3f}  p99 {p99:6.3f}{added}")
        uv_add = float(np.median(lat["proxy, uvloop"])) * 1000 - d50
        aio_add = float(np.median(lat["proxy, asyncio"])) * 1000 - d50
        ratio = uv_add / aio_add
        print(f"the hop on uvloop against asyncio's loop: {uv_add:.3f} vs {aio_add:.3f} ms (ratio {ratio:.2f})")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


if __name__ == "__main__":
    main()
