"""Judge drift: the anchor set, re-scored by each grader version, compared pair by pair with its reference run.

The reference run of a grader name is its first run on the set, or the first one after the last judge-drift
anomaly of that grader was resolved (resolving it accepts the new judge). The newest run is compared with it
on the same anchor rows: the mean paired difference per metric, a paired t-test, and the smallest change that
matters (the decay watch's ``min_shift``). The level of one comparison is the false-alarm budget shared over
the runs of 30 days (``anchor_every_seconds``) and the metrics compared.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np
from scipy import stats

from tether.graders.scores import read
from tether.store.database import Database

SECONDS_PER_30_DAYS = 30 * 86_400


def paired(
    db: Database,
    model: str,
    reference: str,
    newest: str,
    *,
    min_shift: float,
    budget: float,
    every_seconds: float,
) -> list[dict[str, Any]]:
    """One comparison per metric between two runs (origins) of the anchor set."""
    ref = {(r["trace_id"], r["metric"]): r["value"] for r in read(db, model, origin=reference)}
    new = read(db, model, origin=newest)
    by: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    for r in new:
        key = (r["trace_id"], r["metric"])
        if r["value"] is None:
            errors[r["metric"]] = errors.get(r["metric"], 0) + 1
            continue
        if ref.get(key) is not None:
            by.setdefault(r["metric"], []).append(float(r["value"]) - float(ref[key]))
    runs = SECONDS_PER_30_DAYS / every_seconds
    alpha = min(0.5, budget / runs / max(1, len(by)))
    out = []
    for metric, diffs in sorted(by.items()):
        d = np.asarray(diffs)
        mean = float(d.mean())
        if d.size < 2 or float(d.std(ddof=1)) == 0.0:
            p = 0.0 if abs(mean) > 0 else 1.0
        else:
            p = float(stats.ttest_1samp(d, 0.0).pvalue)
        changed = p < alpha and abs(mean) >= min_shift
        out.append(
            {
                "metric": metric,
                "reference": reference,
                "newest": newest,
                "pairs": int(d.size),
                "mean_difference": round(mean, 6),
                "p_value": p if math.isfinite(p) else 1.0,
                "alpha": alpha,
                "min_shift": min_shift,
                "errors": errors.get(metric, 0),
                "decision": "judge drift" if changed else "stable",
            }
        )
    return out


def stamp(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%S")
