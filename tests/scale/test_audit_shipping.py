"""Replica logs shipped to an S3-compatible store and verified from there, as an auditor without the replicas'
disks would: a changed byte, a removed segment and a replica with no log are each reported."""

import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert

from tests.store.test_blobs import s3_endpoint  # noqa: F401  (fixture)
from tether.audit.log import AuditLog, AuditRecord
from tether.audit.logset import AuditSet
from tether.audit.ship import Shipper
from tether.core import Settings
from tether.store.blobs import BlobStore
from tether.store.database import Database
from tether.store.tables import replicas

pytestmark = pytest.mark.s3


def _settings(tmp_path, endpoint, home="home"):
    opts = {"endpoint_url": endpoint, "key": "k", "secret": "s", "client_kwargs": {"region_name": "us-east-1"}}
    # A prefix of its own: moto's buckets outlive one test's server.
    prefix = f"s3://models/{uuid.uuid4().hex[:8]}"
    return Settings(home=tmp_path / home, database_url="", blob_url=prefix, blob_options=opts)


def _write(settings, name, n):
    root = settings.home / "audit" / "replicas" / name
    with AuditLog(settings, root=root) as log:
        log.append_many(
            [AuditRecord(kind="prediction", trace_id=f"{name}-{i}", at=datetime.now(UTC), model="m") for i in range(n)]
        )
        log.seal()
        log.append_many([AuditRecord(kind="prediction", trace_id=f"{name}-x", at=datetime.now(UTC), model="m")])
        log.seal()
    return root


def test_shipped_logs_verify_from_the_blob_store_and_edits_are_caught(tmp_path, s3_endpoint):  # noqa: F811
    settings = _settings(tmp_path, s3_endpoint)
    blobs = BlobStore(settings.resolved_blob_url, options=settings.blob_options)
    for name, n in (("gw-a", 30), ("gw-b", 20)):
        root = _write(settings, name, n)
        ship = Shipper(blobs, root, name)
        assert ship.ship() == 4  # two segments, then the two checkpoints that name them
        assert ship.ship() == 0  # sealed files are never sent again
    # An auditor's machine: the same key and database, none of the replicas' disks.
    shutil.rmtree(settings.home / "audit" / "replicas")
    with AuditSet(settings, shipped_only=True) as trail:
        assert trail.sources == {"gw-a": "blob store", "gw-b": "blob store"}
        report = trail.verify()
        _, rows = trail.query("SELECT log, count(*) FROM records GROUP BY log ORDER BY log")
        assert trail.trace("gw-b-3")["log"] == "gw-b"
    assert report.ok, report.problems
    assert rows == [("gw-a", 31), ("gw-b", 21)]
    out = subprocess.run(
        [sys.executable, "-m", "tether.cli", "audit", "verify", "--shipped"],
        env=_env(settings),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "all 2 audit logs verify" in out.stdout, out.stdout + out.stderr

    # A byte changed in a shipped segment, behind tether's back.
    seg = sorted(blobs.fs.ls(f"{blobs.root}/audit/gw-a/segments", detail=False))[0]
    data = bytearray(blobs.fs.cat_file(seg))
    data[len(data) // 2] ^= 1
    blobs.fs.pipe_file(seg, bytes(data))
    # The newest segment of gw-b removed.
    blobs.fs.rm(sorted(blobs.fs.ls(f"{blobs.root}/audit/gw-b/segments", detail=False))[-1])
    # A replica the database saw serving that shipped nothing.
    db = Database(settings.resolved_database_url)
    with db.begin() as conn:
        conn.execute(insert(replicas).values(name="gw-c", role="gateway", started=0.0, seen=1.0, info={}))
    with AuditSet(settings, shipped_only=True) as trail:
        report = trail.verify()
    assert not report.ok
    assert not report.logs["gw-a"].ok and not report.logs["gw-b"].ok
    assert any("gw-c" in p and "missing" in p for p in report.problems)
    out = subprocess.run(
        [sys.executable, "-m", "tether.cli", "audit", "verify", "--shipped"],
        env=_env(settings),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and "gw-c" in out.stdout, out.stdout + out.stderr


def _env(settings):
    import json
    import os

    return {
        **os.environ,
        "TETHER_HOME": str(settings.home),
        "TETHER_DATABASE_URL": "",
        "TETHER_BLOB_URL": settings.blob_url,
        "TETHER_BLOB_OPTIONS": json.dumps(settings.blob_options),
    }


@pytest.mark.slow
def test_a_gateway_replica_ships_what_it_served(tmp_path, s3_endpoint, project):  # noqa: F811
    import asyncio
    import time

    import aiohttp
    import pandas as pd

    from tether.api.server import Server
    from tether.registry import Registry
    from tether.rollout.controller import Controller
    from tether.serving.window import MetricStore

    settings = _settings(tmp_path, s3_endpoint)
    with Registry.open(settings) as reg:
        v1 = project.register(reg)
        Controller(reg, MetricStore()).deploy("fraud", v1.ref, reason="first", force=True)
    records = pd.read_parquet(project.data).drop(columns=["is_fraud", "gender"]).head(5).to_dict("records")
    blobs = BlobStore(settings.resolved_blob_url, options=settings.blob_options)
    traces = []

    async def run():
        server = Server(settings, port=0, auth=False, role="gateway", replica="gw-s3", publish_seconds=0.3)
        await server.start()
        try:
            await server.wait_ready()
            async with aiohttp.ClientSession() as s:
                for rec in records:
                    async with s.post(f"{server.url}/v1/models/fraud/predict", json={"records": [rec]}) as r:
                        assert r.status == 200
                        traces.append(r.headers["X-Tether-Trace"])
            deadline = time.monotonic() + 60
            while not blobs.fs.exists(f"{blobs.root}/audit/gw-s3/checkpoints"):
                assert time.monotonic() < deadline, "nothing was shipped"
                await asyncio.sleep(0.2)
        finally:
            await server.stop()

    asyncio.run(run())
    shutil.rmtree(settings.home / "audit" / "replicas")
    with AuditSet(settings, shipped_only=True) as trail:
        report = trail.verify()
        _, rows = trail.query("SELECT trace_id FROM records WHERE kind = 'prediction'")
    assert report.ok, report.problems
    assert set(traces) <= {r[0] for r in rows}
