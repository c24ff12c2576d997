"""kill -9 of `tether serve` under load: every answered prediction is on the trail exactly once, and it verifies."""

import asyncio
import os
import signal
import subprocess
import sys
import time

import aiohttp
import pandas as pd
import pytest

from tests.conftest import instance_pids
from tether.audit.log import AuditLog
from tether.audit.replay import replay
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.serving.window import MetricStore

pytestmark = pytest.mark.slow


def test_kill_9_of_the_server_under_load_loses_no_answered_prediction(settings, project):
    with Registry.open(settings) as reg:
        v1 = project.register(reg)
        Controller(reg, MetricStore()).deploy("fraud", v1.ref, reason="first", force=True)
    records = pd.read_parquet(project.data).drop(columns=["is_fraud", "gender"]).head(100).to_dict("records")
    env = {**os.environ, "TETHER_HOME": str(settings.home), "TETHER_DATABASE_URL": "", "TETHER_BLOB_URL": ""}
    server = subprocess.Popen(
        [sys.executable, "-m", "tether.cli", "serve", "--no-auth", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    url = server.stdout.readline().split("serving on ")[1].split()[0]
    answered: list[str] = []

    async def load():
        async with aiohttp.ClientSession() as s:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # wait for the instance
                try:
                    async with s.post(f"{url}/v1/models/fraud/predict", json={"records": records[:1]}) as r:
                        if r.status == 200:
                            answered.append(r.headers["X-Tether-Trace"])
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)

            async def worker(k):
                i = k
                while len(answered) < 1500:
                    async with s.post(f"{url}/v1/models/fraud/predict", json={"records": [records[i % 100]]}) as r:
                        assert r.status == 200
                        answered.append(r.headers["X-Tether-Trace"])
                    i += 8

            await asyncio.gather(*[worker(k) for k in range(8)])

    try:
        asyncio.run(load())
        server.send_signal(signal.SIGKILL)  # mid-stream: some records sealed, some only in the write-ahead log
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    deadline = time.monotonic() + 15
    while instance_pids(settings.home) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert instance_pids(settings.home) == [], "the instance outlived its killed server"
    with AuditLog(settings) as log, Registry.open(settings) as reg:  # recovery seals the write-ahead files
        report = log.verify()
        _, rows = log.query("SELECT trace_id, count(*) FROM records GROUP BY trace_id")
        assert report.ok, report.problems
        counts = dict(rows)
        assert all(counts.get(t) == 1 for t in answered), "an answered prediction is missing or duplicated"
        assert replay(reg, log, answered[-1])["matches"]
