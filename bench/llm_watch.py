"""The LLM watch's check on a busy epoch: an epoch's scores summed in the database against the same sums built
from every row read back into Python (what the watch did before), side by side in one run.

    python bench/llm_watch.py [--interactions 40000] [--postgres postgresql://postgres@127.0.0.1:5432/test]

Writes one epoch of scores for one version (the deterministic checks score every interaction: five metrics
each, 1% of them also graded by the embedded grader) into a fresh store (SQLite by default), then times both
ways of getting every (metric, grader) sum the decay tests and rates need, three times each, and checks that
they agree. The old way ran three times per check (watched metrics, decay, rates) and held the serving
process's interpreter while it decoded rows.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from tether.core import Settings
from tether.graders.interaction import Interaction, Score
from tether.graders.registry import Graders
from tether.graders.scores import Graded, read, write
from tether.graders.spec import GraderSpec
from tether.monitor.rates import Sums
from tether.monitor.score_sums import epoch_sums
from tether.registry import Registry

START = datetime(2026, 3, 2, tzinfo=UTC)
CHECKS = ("schema_valid", "tool_calls_valid", "refused", "complete", "rule:no-pii")


def _fill(reg: Registry, interactions: int) -> None:
    graders = Graders(reg.store)
    checks = graders.register(GraderSpec.parse({"name": "tether-checks", "kind": "checks"}))[0]
    rng = np.random.default_rng(0)
    rows: list[dict[str, object]] = []
    for i in range(interactions):
        it = Interaction(f"t{i}", (), "", model="helpdesk", version_id="v1")
        at = START + timedelta(seconds=3600 * i / interactions)
        scores = [Score(checks.id, m, float(rng.random() < 0.97)) for m in CHECKS]
        rows.extend(Graded(it, scores, at, "live", "champion", 1.0).rows())
        if i % 100 == 0:
            rows.extend(Graded(it, [Score(checks.id, "relevance", float(rng.random()))], at, "live", "s", 0.05).rows())
        if len(rows) >= 20_000:
            write(reg.store.db, rows)
            rows = []
    write(reg.store.db, rows)


def _by_rows(reg: Registry, since: datetime, until: datetime) -> dict[tuple[str, str], Sums]:
    groups: dict[tuple[str, str], tuple[list[float], list[float], int]] = {}
    for r in read(reg.store.db, "helpdesk", version_id="v1", since=since, until=until):
        v, p, e = groups.setdefault((r["metric"], r["grader_id"]), ([], [], 0))
        if r["value"] is None:
            groups[(r["metric"], r["grader_id"])] = (v, p, e + (1 if r["error"] else 0))
            continue
        v.append(float(r["value"]))
        p.append(float(r["inclusion"]))
    return {k: Sums.of(v, p, errors=e) for k, (v, p, e) in groups.items()}


@contextlib.contextmanager
def _database(postgres: str) -> Iterator[str]:
    """No URL (SQLite under the temp home), or a fresh schema on ``postgres``, dropped afterwards."""
    if not postgres:
        yield ""
        return
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    plain = postgres.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{postgres}{'&' if '?' in postgres else '?'}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=40_000)
    parser.add_argument("--postgres", default="", help="run on this PostgreSQL, in a schema of its own dropped after")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tether-bench-watch-") as tmp, _database(args.postgres) as url:
        settings = Settings(home=Path(tmp) / "home", database_url=url, blob_url="")
        with Registry.open(settings) as reg:
            _fill(reg, args.interactions)
            since, until = START, START + timedelta(hours=1)
            timings: dict[str, list[float]] = {"rows": [], "sums": []}
            results = {}
            for _ in range(3):
                for name, fn in (
                    ("rows", _by_rows),
                    ("sums", lambda r, a, b: epoch_sums(r.store.db, "helpdesk", "v1", a, b)),
                ):
                    t = time.perf_counter()
                    results[name] = fn(reg, since, until)
                    timings[name].append(time.perf_counter() - t)
            rows_s, sums_s = min(timings["rows"]), min(timings["sums"])
            n_rows = sum(s.n + s.errors for s in results["rows"].values())
            agree = results["rows"].keys() == results["sums"].keys() and all(
                abs(results["rows"][k].wy - results["sums"][k].wy) <= 1e-6 * max(1.0, abs(results["rows"][k].wy))
                for k in results["rows"]
            )
            print(
                f"one epoch: {args.interactions:,} interactions, {n_rows:,} score rows, "
                f"{len(results['sums'])} (metric, grader) sums"
            )
            print(f"  rows read back and summed in Python  {rows_s * 1000:9.1f} ms")
            print(f"  summed in the database               {sums_s * 1000:9.1f} ms   ratio {sums_s / rows_s:.3f}")
            print(f"  the same sums: {agree}")


if __name__ == "__main__":
    main()
