"""Gateway overhead: the same requests straight to a model instance and through the gateway, in one run.

    python bench/gateway.py [--requests 2000] [--connections 32]

Starts `tether serve` (its own process, auth off) with the fraud model deployed, finds the instance's own
address, and sends one-record prediction requests from this process:
  - 1 connection, alternating direct and gateway requests: p50 and p99 of each, and what the gateway adds;
  - 32 connections: throughput direct and through the gateway, and their ratio;
four times: with the drift watch and the audit log (the defaults), without the drift watch (`tether
monitor set fraud` with `enabled: false`), without the audit log too (`TETHER_AUDIT=false`), and that bare
gateway again on asyncio's own event loop (`TETHER_EVENT_LOOP=asyncio`; uvloop is the default), and what each
costs. The last two runs also measure the floor: a bare aiohttp proxy (its own process, one pooled client
session, the body forwarded as it came, on the same event loop) in front of the same instance, so the
gateway's hop is shown beside what the framework alone costs on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fraud"


def _setup(tmp: Path, database_url: str | None = None) -> tuple[dict[str, str], list[dict[str, object]]]:
    env = {
        **os.environ,
        "TETHER_HOME": str(tmp / "home"),
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b",
    }
    env.pop("TETHER_DATABASE_URL", None)
    if database_url:
        env["TETHER_DATABASE_URL"] = database_url
    project = tmp / "project"
    project.mkdir()
    for name in ("generate.py", "train.py", ".gitignore"):
        (project / name).write_bytes((EXAMPLE / name).read_bytes())
    run = lambda *a: subprocess.run(a, cwd=project, env=env, check=True, capture_output=True)  # noqa: E731
    run("git", "init", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "bench")
    run(sys.executable, "generate.py", "--rows", "20000", "--out", "data/t.parquet")
    run(sys.executable, "train.py", "--data", "data/t.parquet", "--weights", "model/m.pkl", "--metrics", "metrics.json")
    tether = [sys.executable, "-m", "tether.cli"]
    run(
        *tether,
        "register",
        "fraud",
        "--code",
        ".",
        "--data",
        "data/t.parquet",
        "--weights",
        "model/m.pkl",
        "--flavor",
        "sklearn",
        "--target",
        "is_fraud",
        "--exclude",
        "gender",
    )
    run(*tether, "deploy", "fraud", "fraud/1", "--force", "--reason", "bench")
    spec = importlib.util.spec_from_file_location("gen", EXAMPLE / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    records = gen.generate(500, 3).drop(columns=["is_fraud", "gender"]).to_dict("records")
    return env, records


async def _one(session: aiohttp.ClientSession, url: str, record: dict[str, object]) -> float:
    t = time.perf_counter()
    async with session.post(
        url, data=json.dumps({"records": [record]}), headers={"Content-Type": "application/json"}
    ) as r:
        await r.read()
        if r.status != 200:
            raise SystemExit(f"{url} answered {r.status}")
    return time.perf_counter() - t


async def _bench(
    gateway: str, direct: str, records: list[dict[str, object]], n: int, connections: int
) -> dict[str, float]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        for _ in range(100):  # warm up both paths
            await _one(s, direct, records[0])
            await _one(s, gateway, records[0])
        lat_d, lat_g = [], []
        for i in range(n):
            rec = records[i % len(records)]
            lat_d.append(await _one(s, direct, rec))
            lat_g.append(await _one(s, gateway, rec))
        d50, d99 = np.percentile(lat_d, [50, 99]) * 1000
        g50, g99 = np.percentile(lat_g, [50, 99]) * 1000
        print(f"1 connection, {n} requests each (milliseconds):")
        print(f"  direct   p50 {d50:6.2f}  p99 {d99:6.2f}")
        print(f"  gateway  p50 {g50:6.2f}  p99 {g99:6.2f}")
        print(f"  added    p50 {g50 - d50:6.2f}  p99 {g99 - d99:6.2f}")

        async def flood(url: str) -> float:
            left = [n]

            async def worker() -> None:
                while left[0] > 0:
                    left[0] -= 1
                    await _one(s, url, records[left[0] % len(records)])

            t = time.perf_counter()
            await asyncio.gather(*[worker() for _ in range(connections)])
            return n / (time.perf_counter() - t)

        rd = await flood(direct)
        rg = await flood(gateway)
        print(
            f"{connections} connections, {n} requests each: direct {rd:,.0f}/s, gateway {rg:,.0f}/s, "
            f"ratio {rg / rd:.2f}"
        )
        return {"added_p50": g50 - d50, "added_p99": g99 - d99, "ratio": rg / rd}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tether-bench-gw-") as tmp:
        env, records = _setup(Path(tmp))
        results = {}
        # The same gateway with everything on (drift watch, audit log), then without the drift watch, then
        # without the audit log's wait for the disk either, then that on asyncio's own loop instead of uvloop.
        for label, enabled, audit, loop in (
            ("drift watch on, audit on", True, True, "uvloop"),
            ("drift watch off", False, True, "uvloop"),
            ("drift watch off, audit off", False, False, "uvloop"),
            ("drift watch off, audit off, asyncio loop", False, False, "asyncio"),
        ):
            config = Path(tmp) / "monitor.yaml"
            config.write_text(f"enabled: {str(enabled).lower()}\n")
            subprocess.run(
                [sys.executable, "-m", "tether.cli", "monitor", "set", "fraud", "--config", str(config)],
                env=env,
                check=True,
                capture_output=True,
            )
            print(f"-- {label}")
            run_env = {**env, "TETHER_AUDIT": "true" if audit else "false", "TETHER_EVENT_LOOP": loop}
            results[label] = _serve_and_bench(run_env, records, args.requests, args.connections, floor=not audit)
        labels = list(results)
        for label, loop in ((labels[2], "uvloop"), (labels[3], "asyncio")):
            bare, floor = results[label], results[label]["floor"]
            print(
                f"the gateway's bare hop against a bare aiohttp proxy, {loop} loop: p50 {bare['added_p50']:+.2f} "
                f"vs {floor['added_p50']:+.2f} ms, p99 {bare['added_p99']:+.2f} vs {floor['added_p99']:+.2f} ms, "
                f"throughput ratio {bare['ratio']:.2f} vs {floor['ratio']:.2f}"
            )
        for name, a, b in (
            ("drift watch", labels[0], labels[1]),
            ("audit log", labels[1], labels[2]),
            ("asyncio's loop instead of uvloop", labels[3], labels[2]),
        ):
            on, off = results[a], results[b]
            print(
                f"{name} cost: p50 {on['added_p50'] - off['added_p50']:+.2f} ms, "
                f"p99 {on['added_p99'] - off['added_p99']:+.2f} ms, "
                f"throughput ratio {on['ratio']:.2f} vs {off['ratio']:.2f}"
            )


PROXY = """
import sys
import aiohttp
from aiohttp import web

upstream = sys.argv[1]


async def session(app):
    app["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    yield
    await app["s"].close()


async def forward(request):
    body = await request.read()
    async with request.app["s"].post(upstream, data=body, headers={"Content-Type": "application/json"}) as r:
        return web.Response(body=await r.read(), status=r.status, content_type="application/json")


app = web.Application()
app.cleanup_ctx.append(session)
app.router.add_post("/predict", forward)
loop = None
if sys.argv[3] == "uvloop":
    import uvloop

    loop = uvloop.new_event_loop()
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), loop=loop, print=lambda *a: print("ready", flush=True))
"""


def _floor(direct: str, records: list[dict[str, object]], n: int, connections: int, loop: str) -> dict:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proxy = subprocess.Popen([sys.executable, "-c", PROXY, direct, str(port), loop], stdout=subprocess.PIPE, text=True)
    try:
        proxy.stdout.readline()
        print(f"-- the floor: a bare aiohttp proxy on the {loop} loop in front of the same instance")
        return asyncio.run(_bench(f"http://127.0.0.1:{port}/predict", direct, records, n, connections))
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)


def _serve_and_bench(
    env: dict[str, str], records: list[dict[str, object]], n: int, connections: int, floor: bool = False
) -> dict:
    server = subprocess.Popen(
        [sys.executable, "-m", "tether.cli", "serve", "--no-auth", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = server.stdout.readline()
        gateway = line.split("serving on ")[1].split()[0]
        asyncio.run(_wait(gateway, records[0]))
        instance = _instance_url(server.pid)
        predict = f"{gateway}/v1/models/fraud/predict"
        result = asyncio.run(_bench(predict, f"{instance}/predict", records, n, connections))
        if floor:
            result["floor"] = _floor(f"{instance}/predict", records, n, connections, env["TETHER_EVENT_LOOP"])
        return result
    finally:
        server.terminate()
        server.wait(timeout=30)


async def _wait(gateway: str, record: dict[str, object]) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(600):
            try:
                async with s.post(f"{gateway}/v1/models/fraud/predict", json={"records": [record]}) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)


def _instance_url(server_pid: int) -> str:
    """The worker's port, read from the listening sockets of the server's child process."""
    children = subprocess.run(["pgrep", "-P", str(server_pid)], capture_output=True, text=True).stdout.split()
    for pid in children:
        out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if f"pid={pid}," in line:
                return "http://" + line.split()[3]
    raise SystemExit("could not find the instance's port")


if __name__ == "__main__":
    main()
