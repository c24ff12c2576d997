"""Scale-out figures on this machine, each beside its baseline in the same run.

    python bench/scale.py [--requests 3000] [--connections 32]

Needs PostgreSQL (TETHER_TEST_POSTGRES_URL or postgresql://postgres@127.0.0.1:5432/test; a fresh schema is made
and dropped) and Redis on 127.0.0.1:6379 (keys under a fresh prefix, deleted afterwards).

- Throughput of one-record predictions at N connections through 1 gateway process and through 2 (the client
  round-robins), the fraud model deployed; the ratio 2/1. On 2 cores both gateways and their instances share
  the same cores, so this measures coordination cost more than added capacity.
- Budget reservations per second: reserve + settle against Redis (the atomic scripts of
  tether.llm.shared_budgets), from 1 and 8 threads, beside the in-process budgets.
- Shared LLM caches: replica B's exact and semantic hit rates on entries replica A wrote (B's index follows
  the Redis stream), beside A's own on the same lookups, and how long B took to hold all of A's writes.
- Leader failover: two controllers, the leader SIGKILLed, seconds until the standby holds the lease (3 times).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway import _setup, _wait

PG = os.environ.get("TETHER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = "redis://127.0.0.1:6379/0"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(env: dict[str, str], role: str, name: str, port: int, *extra: str) -> subprocess.Popen:
    args = ["serve", "--no-auth", "--port", str(port), "--role", role, "--replica", name, *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "tether.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _flood(urls: list[str], records: list[dict[str, object]], n: int, connections: int) -> float:
    left = [n]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:

        async def worker(w: int) -> None:
            while left[0] > 0:
                left[0] -= 1
                url = urls[left[0] % len(urls)]
                body = json.dumps({"records": [records[left[0] % len(records)]]})
                async with s.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    if r.status != 200:
                        raise SystemExit(f"{url} answered {r.status}")

        for u in urls:  # warm up
            for _ in range(50):
                async with s.post(u, json={"records": [records[0]]}) as r:
                    await r.read()
        t = time.perf_counter()
        await asyncio.gather(*[worker(i) for i in range(connections)])
        return n / (time.perf_counter() - t)


def throughput(env: dict[str, str], records: list[dict[str, object]], n: int, connections: int) -> None:
    ports = [_port(), _port()]
    procs = [_serve(env, "gateway", f"gw-{i}", p) for i, p in enumerate(ports)]
    try:
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        for u in urls:
            asyncio.run(_wait(u, records[0]))
        predict = [f"{u}/v1/models/fraud/predict" for u in urls]
        one = asyncio.run(_flood(predict[:1], records, n, connections))
        two = asyncio.run(_flood(predict, records, n, connections))
        print(
            f"throughput, {connections} connections, {n} requests: 1 gateway {one:,.0f}/s, "
            f"2 gateways {two:,.0f}/s, ratio {two / one:.2f}"
        )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)


def budgets(seconds: float = 2.0) -> None:
    from tether.llm.ledger import Budgets, Limits
    from tether.llm.shared_budgets import RedisBudgets, connect

    prefix = f"tether-bench:{uuid.uuid4().hex[:8]}:"
    now = datetime.now(UTC)
    limits = {"tenant:acme": Limits(tokens_per_day=10**12, requests_per_minute=10**9)}

    def rate(make, threads: int) -> float:
        done = [0] * threads

        def run(i: int) -> None:
            b = make()
            b.set_limits(limits)
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                b.settle(b.reserve(["tenant:acme", "key:k1"], 500, 0.001, now), 300, 0.0006)
                done[i] += 1

        ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return sum(done) / seconds

    local = rate(Budgets, 1)
    shared1 = rate(lambda: RedisBudgets(REDIS, prefix=prefix), 1)
    shared8 = rate(lambda: RedisBudgets(REDIS, prefix=prefix), 8)
    print(
        f"budget reserve+settle per second: in-process {local:,.0f}; Redis 1 thread {shared1:,.0f} "
        f"(ratio {shared1 / local:.3f}), 8 threads {shared8:,.0f}"
    )
    r = connect(REDIS)
    for k in r.scan_iter(prefix + "*"):
        r.delete(k)


def failover(env: dict[str, str], ttl: float = 3.0, rounds: int = 3) -> None:
    from tether.core import Settings
    from tether.rollout.leader import Lease
    from tether.store.database import Database

    db = Database(
        Settings(home=Path(env["TETHER_HOME"]), database_url=env["TETHER_DATABASE_URL"]).resolved_database_url
    )
    lease = Lease(db)
    procs = {n: _serve(env, "controller", n, _port(), "--lease-ttl", str(ttl)) for n in ("ctl-1", "ctl-2")}
    times = []
    try:
        for _ in range(rounds):
            while (cur := lease.current()) is None or cur["seconds_left"] <= 0:
                time.sleep(0.05)
            holder = cur["holder"]
            name = holder.split(":")[0]
            procs[name].send_signal(signal.SIGKILL)
            t0 = time.monotonic()
            procs[name].wait()
            while (lease.current() or {}).get("holder") == holder:
                time.sleep(0.02)
            times.append(time.monotonic() - t0)
            procs[name] = _serve(env, "controller", name, _port(), "--lease-ttl", str(ttl))
            time.sleep(2.0)
        print(f"leader failover (lease ttl {ttl:g} s): " + ", ".join(f"{t:.1f} s" for t in times))
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait(timeout=60)


def caches(n: int = 300) -> None:
    """Replica B's hit rate on entries replica A wrote, beside A's own on the same lookups (same run)."""
    from tether.graders.embed import shared
    from tether.llm.cache import Cached, canonical_key
    from tether.llm.shared_cache import SharedExactCache
    from tether.llm.shared_semantic import SharedSemanticCache
    from tether.store.redis import connect

    ns = f"tether-bench-{uuid.uuid4().hex[:8]}"
    verbs = ["reset", "change", "recover", "update", "delete", "export", "verify", "renew", "cancel", "transfer"]
    nouns = ["password", "email", "invoice", "order", "account", "address", "subscription", "card", "plan", "profile"]
    pairs = [(v, o) for v in verbs for o in nouns][:n]
    asked = [f"How do I {v} my {o}?" for v, o in pairs]
    rephrased = [f"What is the way to {v} my {o}?" for v, o in pairs]
    emb = shared()
    va, vb = emb.encode(asked), emb.encode(rephrased)
    part = ("acme", "v1", "sys", "tools")
    exact = {r: SharedExactCache(connect(REDIS), prefix=f"{ns}:exact:") for r in "ab"}
    sem = {r: SharedSemanticCache(connect(REDIS), stream=f"{ns}:semantic", block_ms=50) for r in "ab"}
    for c in sem.values():
        c.start()
    try:
        t0 = time.perf_counter()
        for q, v in zip(asked, va, strict=True):
            e = Cached("An answer.", "stop", 20, 8, 0.0001, time.time(), "v1", query=q)
            exact["a"].put(canonical_key(tenant="acme", version="v1", messages=q), e)
            sem["a"].put(part, v, e)
        while len(sem["b"]) < len(asked):  # replica B's index follows the stream
            time.sleep(0.005)
        lag = time.perf_counter() - t0

        def rates(r: str) -> tuple[float, float]:
            ex = sum(
                exact[r].get(canonical_key(tenant="acme", version="v1", messages=q), 60) is not None for q in asked
            )
            se = sum(
                sem[r].lookup_near(part, q, v, 0.92, 60).hit is not None for q, v in zip(rephrased, vb, strict=True)
            )
            return ex / len(asked), se / len(asked)

        (ea, sa), (eb, sb) = rates("a"), rates("b")
        print(
            f"cache hits on replica B for {len(asked)} entries written by replica A: exact {eb:.0%} (A itself "
            f"{ea:.0%}), semantic on rephrased prompts {sb:.0%} (A itself {sa:.0%}, ratio B/A "
            f"{sb / sa if sa else float('nan'):.2f}); B held all of A's writes {lag:.2f} s after A began them"
        )
    finally:
        for c in sem.values():
            c.close()
        r = connect(REDIS)
        for k in r.scan_iter(ns + ":*"):
            r.delete(k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{PG}{'&' if '?' in PG else '?'}options=-csearch_path%3D{schema}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env, records = _setup(Path(tmp), database_url=url)
            throughput(env, records, args.requests, args.connections)
            budgets()
            failover(env)
            caches()
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    _ = np  # numpy is imported by the gateway bench helpers as well
    main()
