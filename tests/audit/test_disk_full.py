"""The store's disk fills up under traffic: predictions are refused with a 503 that says why (never answered
without their record), nothing is corrupted, and once space returns the gateway answers again by itself; every
answered request is on the trail and the log verifies.

The store lives on a small tmpfs the test mounts (and unmounts) itself; it needs the right to mount (root, as on
CI), and is skipped with that reason elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import aiohttp
import pandas as pd
import pytest

from tether.api.server import Server
from tether.audit.logset import AuditSet
from tether.core import Settings
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.serving.window import MetricStore

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48M", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not permitted'}): the test needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(path: Path) -> None:
    """Write until the disk is full (unbuffered, so nothing is left to fail at close)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def test_a_full_disk_refuses_predictions_with_a_503_and_recovers(small_disk, project):
    settings = Settings(home=small_disk / "home", database_url="", blob_url="")
    with Registry.open(settings) as reg:
        v1 = project.register(reg)
        Controller(reg, MetricStore()).deploy("fraud", v1.ref, reason="first", force=True)
    records = pd.read_parquet(project.data).drop(columns=["is_fraud", "gender"]).head(20).to_dict("records")
    filler = small_disk / "filler"

    async def run():
        server = Server(settings, port=0, auth=False, tick_seconds=3600)
        await server.start()
        answered, refused = [], []
        try:
            await server.wait_ready(timeout=120)
            url = f"{server.url}/v1/models/fraud/predict"
            async with aiohttp.ClientSession() as s:

                async def predict(i: int) -> None:
                    async with s.post(url, json={"records": [records[i % len(records)]]}) as r:
                        body = await r.json()
                        if r.status == 200:
                            answered.append(r.headers["X-Tether-Trace"])
                        else:
                            assert r.status == 503, body  # never a 500, never an answer without its record
                            assert "audit log could not record" in body["error"], body
                            refused.append(body["error"])

                for i in range(20):
                    await predict(i)
                await asyncio.to_thread(_fill, filler)
                for i in range(200):  # until the log's buffers are gone too
                    await predict(i)
                    if len(refused) >= 5:
                        break
                assert refused, "a full disk never refused a prediction"
                filler.unlink()  # space returns
                before = len(answered)
                for i in range(50):
                    await predict(i)
                    if len(answered) - before >= 10:
                        break
                assert len(answered) - before >= 10, "the gateway did not answer again once space returned"
        finally:
            await server.stop()
        return answered, refused

    answered, refused = asyncio.run(run())
    with AuditSet(settings) as trail:
        trail.seal()
        report = trail.verify()
        _, rows = trail.query("SELECT trace_id FROM records WHERE kind = 'prediction'")
    assert report.ok, (report.problems, {k: r.problems for k, r in report.logs.items()})
    on_trail = [r[0] for r in rows]
    assert set(answered) <= set(on_trail), f"{len(set(answered) - set(on_trail))} answered requests lost"
    assert len(on_trail) == len(set(on_trail))  # nothing twice
    shutil.rmtree(settings.home, ignore_errors=True)
