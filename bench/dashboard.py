"""Page loads of the dashboard and the control-plane API on a large store, beside the floor of the same server.

    python bench/dashboard.py [--versions 1000] [--records 1000000] [--runs 5] [--store DIR]

Builds (or reuses, with --store) a store with ``--versions`` registered versions of one model (the same code,
data and weights under different parameters: every version a distinct triad id, checked on every read) and an
audit log of ``--records`` sealed prediction records, ``--per-segment`` to a segment, each segment with its
signed checkpoint (a server seals every 2 s: many small segments). Then starts
``tether serve`` in this process and times each page (the median of ``--runs`` loads over real HTTP) beside
``GET /healthz`` of the same server in the same run (the floor: what any request costs here), and prints the
slowest page.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import Project, make_project

from tether.api.server import Server
from tether.audit.log import AuditLog, AuditRecord
from tether.core.settings import Settings
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.serving.window import MetricStore

PAGES = [
    "/",
    "/models/fraud",
    "/models/fraud?offset=900",
    "/versions/fraud/500",
    "/compare?a=fraud/1&b=fraud/999",
    "/rollouts/fraud",
    "/drift/fraud",
    "/audit",
    "/audit?model=fraud&version=VID",
    "/audit/trace/TRACE",
    "/v1/registry/models",
    "/v1/registry/models/fraud/versions?limit=50&metric=auc&metric_min=0",
    "/v1/audit/records?model=fraud&limit=50",
    "/v1/audit/trace/TRACE",
]


def build(root: Path, versions: int, records: int, per_segment: int) -> Settings:
    """The store under ``root`` (each part built only when missing, so --store reuses what exists)."""
    settings = Settings(home=root / "home", database_url="", blob_url="")
    if not (root / "home" / "tether.db").exists():
        project: Project = make_project(root / "fraud")
        started = time.perf_counter()
        with Registry.open(settings) as reg:
            first = project.register(reg, params={"variant": 0})
            for i in range(1, versions):
                project.register(reg, params={"variant": i})
            Controller(reg, MetricStore()).deploy("fraud", first.ref, reason="bench", force=True)
        print(f"registered {versions} versions in {time.perf_counter() - started:.0f} s")
    if not list((root / "home" / "audit" / "segments").glob("*.parquet")):
        with Registry.open(settings) as reg:
            vid = reg.get("fraud/1").id
        started = time.perf_counter()
        at = datetime.now(UTC) - timedelta(days=1)
        with AuditLog(settings) as log:
            for start in range(0, records, per_segment):
                log.append_many(
                    [
                        AuditRecord(
                            kind="prediction",
                            trace_id=f"{i:032x}",
                            at=at + timedelta(milliseconds=i),
                            model="fraud",
                            version_id=vid,
                            input_digest=f"{i:064x}",
                            output_digest=f"{i + 1:064x}",
                            payload={"records": 1},
                        )
                        for i in range(start, min(start + per_segment, records))
                    ]
                )
                log.seal()  # one segment and one signed checkpoint per seal, as a server sealing every 2 s
        print(
            f"appended and sealed {records:,} audit records in {records // per_segment:,} segments "
            f"in {time.perf_counter() - started:.0f} s"
        )
    return settings


async def measure(settings: Settings, runs: int) -> None:
    server = Server(settings, port=0, auth=False, tick_seconds=3600)
    await server.start()
    try:
        vid = server.registry.get("fraud/1").id[:16]
        async with aiohttp.ClientSession() as s:

            async def timed(path: str) -> tuple[float, int]:
                times, status = [], 0
                for _ in range(runs):
                    t = time.perf_counter()
                    async with s.get(server.url + path) as r:
                        await r.read()
                        status = r.status
                    times.append(time.perf_counter() - t)
                return statistics.median(times), status

            floor, _ = await timed("/healthz")
            rows = []
            for page in PAGES:
                path = page.replace("VID", vid).replace("TRACE", f"{123_456:032x}")
                took, status = await timed(path)
                rows.append((path, status, took))
        print(f"\nfloor: GET /healthz {floor * 1000:.1f} ms (median of {runs})")
        print(f"{'page':<70} {'status':>6} {'ms':>8} {'x floor':>8}")
        for path, status, took in rows:
            print(f"{path[:70]:<70} {status:>6} {took * 1000:>8.1f} {took / floor:>8.0f}")
        worst = max(rows, key=lambda r: r[2])
        print(f"\nslowest: {worst[0]} at {worst[2] * 1000:.0f} ms")
    finally:
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--per-segment", type=int, default=1000, help="Records per sealed segment.")
    parser.add_argument("--store", type=Path, help="Build the store here once, and reuse it on later runs.")
    args = parser.parse_args()
    root = args.store or Path(tempfile.mkdtemp(prefix="tether-bench-dashboard-"))
    root.mkdir(parents=True, exist_ok=True)
    settings = build(root, args.versions, args.records, args.per_segment)
    asyncio.run(measure(settings, args.runs))
    if args.store is None:
        subprocess.run(["rm", "-rf", str(root)], check=False)


if __name__ == "__main__":
    main()
