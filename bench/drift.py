"""Drift watch speed and false alarms: tether's profiles and tests beside whylogs and Evidently, one run.

    make bench-drift            # creates bench/.venv-drift with whylogs and Evidently, then runs this
    python bench/drift.py [--rows 1000000] [--features 20] [--others-python bench/.venv-drift/bin/python]

Data: ``--rows`` baseline rows and as many live rows from the *same* seeded distribution (15 numeric features:
normal, log-normal, exponential with 3% missing, integer ages; 5 categorical with 5, 10, 20, 50 and 200
values), so every alarm is a false alarm. Printed:

  1. profile updates in micro-batches of 1,000 records as the gateway sees them (lists of dicts), in rows x
     features per second: tether's `DatasetProfile.observe` against whylogs' row-at-a-time and batch tracking;
  2. the whole 1M + 1M comparison (profile both, test every feature): tether's default drift watch against
     whylogs (profiles + `calculate_drift_scores`) and Evidently (`DataDriftPreset`), with each tool's
     false alarms on the identical data and the time ratios.

whylogs and Evidently run in a subprocess with their own environment (their pins conflict with tether's);
the data reaches them as Parquet and each side times only its own work.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tether.monitor.config import MonitorConfig
from tether.monitor.profile import DatasetProfile
from tether.monitor.watch import assess

ROOT = Path(__file__).resolve().parent


def synthetic(rows: int, seed: int, features: int = 20) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    numeric = features - 5
    for i in range(numeric):
        kind = i % 4
        if kind == 0:
            cols[f"n{i}"] = rng.normal(10 * i, 1 + i, rows)
        elif kind == 1:
            cols[f"n{i}"] = np.round(rng.lognormal(3, 1, rows), 2)
        elif kind == 2:
            v = rng.exponential(300, rows)
            v[rng.random(rows) < 0.03] = np.nan
            cols[f"n{i}"] = v
        else:
            cols[f"n{i}"] = np.clip(np.round(rng.normal(42, 14, rows)), 18, 90)
    for j, k in enumerate((5, 10, 20, 50, 200)):
        p = rng.dirichlet(np.ones(k) * 2, 1)[0] if j else np.array([0.4, 0.3, 0.15, 0.1, 0.05])
        p = np.random.default_rng(100 + j).dirichlet(np.ones(k) * 2) if j else p  # same for both sides
        cols[f"c{j}"] = rng.choice([f"v{x}" for x in range(k)], rows, p=p)
    return pd.DataFrame(cols)


def kinds(frame: pd.DataFrame) -> dict[str, str]:
    return {c: "numeric" if c.startswith("n") else "categorical" for c in frame.columns}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--stream-rows", type=int, default=100_000, help="rows for the micro-batch throughput")
    parser.add_argument("--row-at-a-time", type=int, default=5_000, help="rows whylogs tracks one by one")
    parser.add_argument("--others-python", default=str(ROOT / ".venv-drift" / "bin" / "python"))
    args = parser.parse_args()

    base = synthetic(args.rows, 1, args.features)
    live = synthetic(args.rows, 2, args.features)
    nf = base.shape[1]
    records = live.head(args.stream_rows).to_dict("records")
    print(f"{args.rows:,} baseline + {args.rows:,} live rows x {nf} features, same distribution (every alarm is false)")

    # 1. micro-batches of records, as the gateway hands them to the profiler
    prof = DatasetProfile.for_kinds(kinds(base))
    t = time.perf_counter()
    for i in range(0, len(records), args.batch):
        prof.observe(pd.DataFrame.from_records(records[i : i + args.batch]))
    tether_stream = len(records) / (time.perf_counter() - t)

    # 2. the 1M + 1M comparison with tether's default watch (budget: 1 false alarm per feature per 30 days)
    t = time.perf_counter()
    pb = DatasetProfile.for_kinds(kinds(base))
    pb.observe(base)
    pl = DatasetProfile.for_kinds(kinds(live))
    pl.observe(live)
    statuses, alpha, m = assess([("", pb, pl, {})], MonitorConfig())
    tether_compare = time.perf_counter() - t
    tether_alarms = sorted({fs.feature for fs in statuses if fs.alarm})
    raw = sum(1 for fs in statuses if any(t.finding.p_value < 0.05 for t in fs.tests))

    others: dict = {}
    py = Path(args.others_python)
    if py.exists():
        with tempfile.TemporaryDirectory() as tmp:
            base.to_parquet(Path(tmp) / "baseline.parquet")
            live.to_parquet(Path(tmp) / "live.parquet")
            (Path(tmp) / "records.json").write_text(json.dumps(records[: args.row_at_a_time]))
            done = subprocess.run(
                [str(py), str(ROOT / "drift_others.py"), tmp, str(args.batch)],
                capture_output=True,
                text=True,
                check=False,
            )
        if done.returncode == 0:
            others = json.loads(done.stdout.strip().splitlines()[-1])
        else:
            print(f"(whylogs/Evidently side failed: {done.stderr.strip()[-400:]})")
    else:
        print(f"(no {py}: run 'make bench-drift' to compare with whylogs and Evidently)")

    rf = nf  # rows x features
    print("\nprofile updates, micro-batches of", args.batch, "records (rows x features per second)")
    print(f"  tether observe            {tether_stream * rf:>14,.0f}")
    wl = others.get("whylogs", {})
    if "per_row_rows_per_s" in wl:
        print(
            f"  whylogs {wl['version']} per row     {wl['per_row_rows_per_s'] * rf:>14,.0f}   "
            f"tether is {tether_stream / wl['per_row_rows_per_s']:,.0f}x"
        )
        print(
            f"  whylogs batch             {wl['batch_rows_per_s'] * rf:>14,.0f}   "
            f"tether is {tether_stream / wl['batch_rows_per_s']:,.1f}x"
        )
    print(f"\n{args.rows:,} + {args.rows:,} rows: profile both sides and test every feature")
    print(
        f"  tether (default watch)    {tether_compare:8.2f} s  false alarms {len(tether_alarms)}/{nf} {tether_alarms}"
        f"  (Holm at {alpha:.1g} over {m} tests; features with any raw p<0.05: {raw})"
    )
    if "compare_seconds" in wl:
        print(
            f"  whylogs                   {wl['compare_seconds']:8.2f} s  false alarms {len(wl['drift'])}/{nf} "
            f"{wl['drift']} (+{len(wl['possible_drift'])} possible)  tether is "
            f"{wl['compare_seconds'] / tether_compare:.1f}x faster"
        )
    ev = others.get("evidently", {})
    if "compare_seconds" in ev:
        print(
            f"  Evidently {ev['version']:<16}{ev['compare_seconds']:8.2f} s  false alarms {len(ev['drift'])}/{nf} "
            f"{ev['drift']}  tether is {ev['compare_seconds'] / tether_compare:.1f}x faster"
        )
    for name in ("whylogs", "evidently"):
        if "error" in others.get(name, {}):
            print(f"  {name}: {others[name]['error']}")


if __name__ == "__main__":
    sys.exit(main())
