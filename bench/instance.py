"""The model instance alone, with dynamic batching and without it, side by side in one run.

    python bench/instance.py [--requests 3000] [--connections 32] [--rounds 2]

Registers the fraud model (as bench/gateway.py does), starts two instance processes of the same version
(`python -m tether.serving.worker`), one with `TETHER_WORKER_MAX_BATCH=1` (each request alone: the baseline) and
one with the default (64 records), and sends one-record predictions straight to each:
  - 1 connection, alternating between the two: p50 and p99 of each (batching must not slow a lone client);
  - 32 connections: throughput of each, in alternating rounds, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway import _one, _setup


def _start(env: dict[str, str], version: str, max_batch: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tether.serving.worker", "--version", version],
        env={**env, "TETHER_WORKER_MAX_BATCH": str(max_batch), "TETHER_WORKER_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("TETHER_WORKER_READY"):
            return proc, f"http://127.0.0.1:{line.split()[1]}/predict"
    raise SystemExit("the instance did not start")


async def _flood(s: aiohttp.ClientSession, url: str, records: list[dict[str, object]], n: int, c: int) -> float:
    left = [n]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            await _one(s, url, records[left[0] % len(records)])

    t = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(c)])
    return n / (time.perf_counter() - t)


async def _bench(urls: dict[str, str], records: list[dict[str, object]], n: int, c: int, rounds: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        for url in urls.values():
            for _ in range(100):
                await _one(s, url, records[0])
        lat: dict[str, list[float]] = {k: [] for k in urls}
        for i in range(n):
            for k, url in urls.items():
                lat[k].append(await _one(s, url, records[i % len(records)]))
        print(f"1 connection, {n} requests each (milliseconds):")
        p50 = {}
        for k, xs in lat.items():
            p50[k], p99 = np.percentile(xs, [50, 99]) * 1000
            print(f"  {k:9s} p50 {p50[k]:6.2f}  p99 {p99:6.2f}")
        print(f"  p50 ratio batched/alone {p50['batched'] / p50['alone']:.2f}")
        rates: dict[str, list[float]] = {k: [] for k in urls}
        for _ in range(rounds):
            for k, url in urls.items():
                rates[k].append(await _flood(s, url, records, n, c))
        alone, batched = np.median(rates["alone"]), np.median(rates["batched"])
        print(
            f"{c} connections, {n} requests, median of {rounds} alternating rounds: alone {alone:,.0f}/s, "
            f"batched {batched:,.0f}/s, ratio {batched / alone:.1f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env, records = _setup(Path(tmp))
        version = subprocess.run(
            [sys.executable, "-m", "tether.cli", "show", "fraud/1", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        import json

        vid = json.loads(version)["id"]
        procs = []
        try:
            urls = {}
            for label, batch in (("alone", 1), ("batched", 64)):
                proc, urls[label] = _start(env, vid, batch)
                procs.append(proc)
            asyncio.run(_bench(urls, records, args.requests, args.connections, args.rounds))
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)


if __name__ == "__main__":
    main()
