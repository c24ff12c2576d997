"""What tether costs in front of an LLM backend: the same chat requests straight to the backend, through
`tether serve`, and through the LiteLLM proxy when it is installed (bench/.venv-llm), in one run.

The backend is an OpenAI-compatible server started by this script in its own process that answers at once with
a fixed completion (a real model's seconds would hide a millisecond of overhead; LiteLLM measures its proxy
the same way). tether serves a registered remote-backend LLM version (`backend.kind: openai`) with its caches
off, so every request goes through the whole path (auth off, validation, routing, trimming, budget
reservation, dispatch over pooled aiohttp, ledger, audit record awaited on disk) and on to the backend.

Printed, per path: p50 and p99 latency on one connection (requests alternate between the paths), and
throughput on 16 connections; then tether again with the evaluation loop off, and once more on asyncio's own
event loop instead of uvloop (`TETHER_EVENT_LOOP=asyncio`), each beside the direct path in the same run.

    make bench-llm        (or: python bench/llm_gateway.py [--requests 1000])
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

# Every path gets this bearer token: LiteLLM refuses to start without a master key; the others ignore it.
KEY = "sk-" + "5e" * 32
ANSWER = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 0,
    "model": "bench",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Open Settings, then Security."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 24, "completion_tokens": 6, "total_tokens": 30},
}


def serve_backend(port: int) -> None:
    from aiohttp import web

    body = json.dumps(ANSWER).encode()

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="application/json")

    async def models(_request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "bench", "object": "model"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_http(url: str, timeout: float = 120) -> None:
    async with aiohttp.ClientSession() as s:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                async with s.get(url) as r:
                    if r.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def body(i: int, model: str) -> bytes:
    return json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": f"How do I reset my password? #{i}"}],
            "max_tokens": 16,
        }
    ).encode()


async def alternate(paths: dict[str, tuple[str, str]], n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in paths}
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession() as s:
        for i in range(n):
            for name, (url, model) in paths.items():
                t = time.perf_counter()
                async with s.post(url, data=body(i, model), headers=headers) as r:
                    await r.read()
                    assert r.status == 200, (name, r.status, await r.text())
                out[name].append(time.perf_counter() - t)
    return out


async def throughput(url: str, model: str, seconds: float, connections: int = 16) -> float:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    done = 0
    stop = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as s:

        async def worker(w: int) -> None:
            nonlocal done
            i = 0
            while time.monotonic() < stop:
                async with s.post(url, data=body(w * 1_000_000 + i, model), headers=headers) as r:
                    await r.read()
                done += 1
                i += 1

        await asyncio.gather(*(worker(w) for w in range(connections)))
    return done / seconds


def setup_tether(
    tmp: Path, backend: str, cache: bool, evals: bool = True, loop: str = "uvloop"
) -> tuple[subprocess.Popen[bytes], str, str]:
    env = {
        **os.environ,
        "TETHER_EVENT_LOOP": loop,
        "TETHER_HOME": str(tmp / "home"),
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@b",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@b",
    }
    env.pop("TETHER_DATABASE_URL", None)
    project = tmp / "assistant"
    project.mkdir(exist_ok=True)
    spec = {
        "backend": {"kind": "openai", "endpoints": [backend], "model": "bench"},
        "cache": {"exact": cache, "semantic": False},
        "context": {"max_input_tokens": 4096},
    }
    (project / "llm.yaml").write_text(json.dumps(spec))
    import pandas as pd

    pd.DataFrame({"prompt": ["How do I reset my password?"]}).to_parquet(project / "prompts.parquet")
    run = lambda *a: subprocess.run(a, cwd=project, env=env, check=True, capture_output=True)  # noqa: E731
    if not (project / ".git").exists():
        run("git", "init", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "bench", "--allow-empty")
    tether = [sys.executable, "-m", "tether.cli"]
    run(*tether, "llm", "register", "assistant", "--spec", "llm.yaml", "--data", "prompts.parquet", "--code", ".")
    run(*tether, "deploy", "assistant", "assistant/1", "--force", "--reason", "bench")
    # The LLM evaluation loop (sampled interactions graded by the embedded MiniLM grader, in the serving
    # process) is on by default; the second tether run measures the gateway without it.
    (project / "monitor.yaml").write_text(f"llm:\n  enabled: {str(evals).lower()}\n")
    run(*tether, "monitor", "set", "assistant", "--config", "monitor.yaml")
    port = free_port()
    proc = subprocess.Popen(
        [*tether, "serve", "--no-auth", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}/v1/chat/completions", "assistant"


def setup_litellm(tmp: Path, backend: str) -> tuple[subprocess.Popen[bytes], str, str] | None:
    exe = shutil.which("litellm", path=str(Path(sys.executable).parent))
    if exe is None or importlib.util.find_spec("litellm") is None:
        return None
    cfg = tmp / "litellm.yaml"
    cfg.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": "bench",
                        "litellm_params": {"model": "openai/bench", "api_base": backend, "api_key": "bench"},
                    }
                ]
            }
        )
    )
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--config", str(cfg), "--port", str(port), "--num_workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_MASTER_KEY": KEY},
    )
    return proc, f"http://127.0.0.1:{port}/v1/chat/completions", "bench"


def ms(xs: list[float], q: float) -> float:
    return float(np.quantile(xs, q) * 1000)


async def main_async(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="tether-bench-llm-"))
    bport = free_port()
    backend_proc = subprocess.Popen([sys.executable, __file__, "--serve-backend", str(bport)])
    backend = f"http://127.0.0.1:{bport}/v1"
    procs: list[subprocess.Popen[bytes]] = [backend_proc]
    try:
        await wait_http(backend + "/models")
        paths: dict[str, tuple[str, str]] = {"direct": (backend + "/chat/completions", "bench")}
        proc, url, model = setup_tether(tmp, backend, cache=False)
        procs.append(proc)
        await wait_http(url.split("/v1/", 1)[0] + "/healthz")  # ready as a load balancer sees it: warmed up
        paths["tether"] = (url, model)
        lite = setup_litellm(tmp, backend)
        if lite is not None:
            procs.append(lite[0])
            await wait_http(lite[1].rsplit("/", 3)[0] + "/health/liveliness", timeout=180)
            paths["litellm"] = (lite[1], lite[2])
        else:
            print("LiteLLM is not installed in this environment: run 'make bench-llm' for the comparison")
        await alternate(paths, 50)  # warm up every path
        lat = await alternate(paths, args.requests)
        print(f"one connection, {args.requests} requests per path, alternating:")
        for name, xs in lat.items():
            added = (
                ""
                if name == "direct"
                else (
                    f"  adds {ms(xs, 0.5) - ms(lat['direct'], 0.5):.2f} ms p50, "
                    f"{ms(xs, 0.99) - ms(lat['direct'], 0.99):.2f} ms p99"
                )
            )
            print(f"  {name:8} p50 {ms(xs, 0.5):6.2f} ms  p99 {ms(xs, 0.99):6.2f} ms{added}")
        print(f"16 connections, {args.seconds:g} s each:")
        base = None
        for name, (url, model) in paths.items():
            rps = await throughput(url, model, args.seconds)
            base = base or rps
            print(f"  {name:8} {rps:8.0f} requests/s  ({rps / base:.2f} of direct)")
        # The same gateway restarted with the evaluation loop off: what grading in the serving process costs;
        # then on asyncio's own event loop instead of uvloop: what the loop costs.
        quiet_runs = (("the evaluation loop off", "uvloop"), ("the evaluation loop off, asyncio loop", "asyncio"))
        for label, loop in quiet_runs:
            procs[1].terminate()
            procs[1].wait(30)
            proc, url, model = setup_tether(tmp, backend, cache=False, evals=False, loop=loop)
            procs[1] = proc
            await wait_http(url.split("/v1/", 1)[0] + "/healthz")  # ready as a load balancer sees it: warmed up
            quiet = {"direct": paths["direct"], label: (url, model)}
            await alternate(quiet, 50)
            lat = await alternate(quiet, args.requests)
            d, q = lat["direct"], lat[label]
            rps = await throughput(url, model, args.seconds)
            print(
                f"tether with {label}: adds {ms(q, 0.5) - ms(d, 0.5):.2f} ms p50, "
                f"{ms(q, 0.99) - ms(d, 0.99):.2f} ms p99; {rps:.0f} requests/s on 16 connections "
                f"({rps / base:.2f} of direct)"
            )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--serve-backend", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_backend:
        serve_backend(args.serve_backend)
        return
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
