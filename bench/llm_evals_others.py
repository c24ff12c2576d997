"""Evidently's embedding drift (its default method) on pairs of embedding sets: run in bench/.venv-drift.

    python bench/llm_evals_others.py PAIRS.parquet    # columns: pair, side (reference|current), e0..e383

Prints one JSON line per pair: {"pair", "drift_detected", "drift_score", "seconds"}.
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import pandas as pd

warnings.filterwarnings("ignore")


def main() -> None:
    from evidently.legacy.metrics import EmbeddingsDriftMetric
    from evidently.legacy.pipeline.column_mapping import ColumnMapping
    from evidently.legacy.report import Report

    frame = pd.read_parquet(sys.argv[1])
    cols = [c for c in frame.columns if c.startswith("e")]
    mapping = ColumnMapping(embeddings={"prompt": cols})
    for pair, group in frame.groupby("pair", sort=True):
        ref = group[group.side == "reference"][cols].reset_index(drop=True)
        cur = group[group.side == "current"][cols].reset_index(drop=True)
        started = time.perf_counter()
        report = Report(metrics=[EmbeddingsDriftMetric("prompt")])  # default method: a classifier (ROC AUC)
        report.run(reference_data=ref, current_data=cur, column_mapping=mapping)
        result = report.as_dict()["metrics"][0]["result"]
        print(
            json.dumps(
                {
                    "pair": int(pair),
                    "drift_detected": bool(result["drift_detected"]),
                    "drift_score": float(result["drift_score"]),
                    "method": result["method_name"],
                    "seconds": time.perf_counter() - started,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
