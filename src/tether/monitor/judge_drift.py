"""Judge drift: the anchor set, re-scored by each grader version, compared pair by pair with its reference run.

The reference run of a grader name is its first run on the set, or the first one after the last judge-drift
anomaly of that grader was resolved (resolving it accepts the new judge). The newest run is compared with it
on the same anchor rows: the mean paired difference per metric, a paired t-test, and the smallest change that
matters (the decay watch's ``min_shift``). The level of one comparison is the false-alarm budget shared over
the runs of 30 days (``anchor_every_seconds``) and the metrics compared.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
from scipy import stats
from sqlalchemy import select

from tether.core.errors import TetherError
from tether.graders import anchors as anchors_mod
from tether.graders.registry import DEFAULT_CHECKS, Graders, GraderVersion, resolve
from tether.graders.scores import read
from tether.monitor.llm_config import LLMEvalConfig
from tether.store.database import Database
from tether.store.store import Store
from tether.store.tables import anomalies, anomaly_resolutions

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


class JudgeGovernance:
    """The anchor runs of a model's graders and their comparison (see the module's docstring)."""

    def __init__(self, store: Store, graders: Graders, embedder: Callable[[], Any] | None) -> None:
        self.store = store
        self.graders = graders
        self._embedder = embedder

    def check(self, model: str, cfg: LLMEvalConfig, now: datetime) -> list[dict[str, Any]]:
        """Re-score the model's anchor set with every grader version that has not scored it (a new version) or
        not for ``anchor_every_seconds``; compare each grader's newest run with its reference run."""
        if cfg.anchors is None:
            return []
        anchor = anchors_mod.get(self.store, cfg.anchors)
        refs = [DEFAULT_CHECKS, *cfg.graders, *([cfg.judge] if cfg.judge else [])]
        out: list[dict[str, Any]] = []
        for ref in refs:
            gv = self._grader(ref)
            if gv is None:
                continue
            runs = anchors_mod.runs(self.store, anchor, model)
            mine = [r for r in runs if r[1] == gv.id]
            if not mine or (now - mine[-1][2]).total_seconds() >= cfg.anchor_every_seconds:
                grader = self.graders.load(gv, embedder=self._embedder() if self._embedder else None)
                anchors_mod.run(self.store, anchor, gv, grader, model=model, stamp=stamp(now), now=now)
                runs = anchors_mod.runs(self.store, anchor, model)
            same_name = [r for r in runs if self.name_of(r[1]) == gv.name]
            if len(same_name) < 2:
                out.append({"grader": gv.ref, "anchor": anchor.name, "runs": len(same_name), "decision": "no data"})
                continue
            reference = self.reference_run(model, gv.name, same_name)
            for c in paired(
                self.store.db,
                model,
                reference,
                same_name[-1][0],
                min_shift=cfg.decay.min_shift,
                budget=cfg.false_alarms_per_metric_per_30_days,
                every_seconds=cfg.anchor_every_seconds,
            ):
                out.append({"grader": gv.ref, "grader_name": gv.name, "anchor": anchor.name, **c})
        return out

    def _grader(self, ref: str) -> GraderVersion | None:
        try:
            return resolve(self.graders, ref)
        except TetherError:
            return None  # named in the settings but gone: check_graders refuses such settings when they are set

    def name_of(self, grader_id: str) -> str:
        try:
            return self.graders.get(grader_id).name
        except TetherError:
            return ""

    def reference_run(self, model: str, name: str, runs: list[tuple[str, str, datetime]]) -> str:
        with self.store.db.connect() as conn:
            resolved = conn.execute(
                select(anomaly_resolutions.c.at)
                .join(anomalies, anomalies.c.id == anomaly_resolutions.c.anomaly_id)
                .where(anomalies.c.model_name == model, anomalies.c.feature.startswith(f"judge:{name}:"))
                .order_by(anomaly_resolutions.c.at.desc())
                .limit(1)
            ).scalar()
        if resolved is not None:
            after = [r for r in runs if r[2] >= resolved]
            if after:
                return after[0][0]
        return runs[0][0]
