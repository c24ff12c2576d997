"""The other tools' side of bench/drift.py, run in their own environment (bench/.venv-drift).

    bench/.venv-drift/bin/python bench/drift_others.py DATA_DIR

Reads baseline.parquet, live.parquet and records.json from DATA_DIR (written by bench/drift.py) and prints one
JSON line of timings and alarm counts. Kept apart so tether's own environment never installs whylogs or
Evidently (their pins conflict with ours: Evidently 0.7 needs pandas < 2.3).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd


def whylogs_side(base: pd.DataFrame, live: pd.DataFrame, records: list[dict], batch: int) -> dict:
    import whylogs as why
    from whylogs.core import DatasetProfile
    from whylogs.viz.drift.column_drift_algorithms import calculate_drift_scores

    out: dict = {"version": why.__version__}
    prof = DatasetProfile()
    t = time.perf_counter()
    for r in records:
        prof.track(row=r)
    out["per_row_rows_per_s"] = len(records) / (time.perf_counter() - t)
    frames = [pd.DataFrame.from_records(records[i : i + batch]) for i in range(0, len(records), batch)]
    prof = DatasetProfile()
    t = time.perf_counter()
    for f in frames:
        prof.track(pandas=f)
    out["batch_rows_per_s"] = len(records) / (time.perf_counter() - t)
    t = time.perf_counter()
    ref_view = why.log(pandas=base).view()
    cur_view = why.log(pandas=live).view()
    scores = calculate_drift_scores(target_view=cur_view, reference_view=ref_view, with_thresholds=True)
    out["compare_seconds"] = time.perf_counter() - t
    out["drift"] = sorted(c for c, s in scores.items() if s and s.get("drift_category") == "DRIFT")
    out["possible_drift"] = sorted(c for c, s in scores.items() if s and s.get("drift_category") == "POSSIBLE_DRIFT")
    return out


def evidently_side(base: pd.DataFrame, live: pd.DataFrame) -> dict:
    import evidently
    from evidently import Report
    from evidently.presets import DataDriftPreset

    t = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=live, reference_data=base)
    doc = snapshot.dict()
    seconds = time.perf_counter() - t
    drifted, count = [], None
    for m in doc.get("metrics", []):
        config, value = m.get("config", {}), m.get("value")
        if config.get("type", "").endswith("DriftedColumnsCount"):
            count = int(value["count"])
        elif config.get("type", "").endswith("ValueDrift") and isinstance(value, int | float):
            # p-value methods drift below the threshold; distances (Wasserstein, Jensen-Shannon) at or above it.
            is_p = "p_value" in config.get("method", "")
            if (value < config["threshold"]) if is_p else (value >= config["threshold"]):
                drifted.append(config["column"])
    return {"version": evidently.__version__, "compare_seconds": seconds, "drift": sorted(drifted), "count": count}


def main() -> None:
    data = Path(sys.argv[1])
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    base = pd.read_parquet(data / "baseline.parquet")
    live = pd.read_parquet(data / "live.parquet")
    records = json.loads((data / "records.json").read_text())
    result: dict = {}
    try:
        result["whylogs"] = whylogs_side(base, live, records, batch)
    except ImportError as e:
        result["whylogs"] = {"error": str(e)}
    try:
        result["evidently"] = evidently_side(base, live)
    except ImportError as e:
        result["evidently"] = {"error": str(e)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
