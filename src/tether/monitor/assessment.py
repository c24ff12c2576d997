"""One drift check's statistics, apart from where its profiles come from: every feature of each (segment,
baseline, live) pair tested (missing ratio, mean, distribution or category frequencies), then Holm's step-down
across all of them at the family level the false-alarm budget allows; a test alarms only when Holm rejects it
and its effect is at least the feature's minimum shift. `tether.monitor.watch` reads the profiles, calls
`assess`, and records the alarms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tether.monitor.config import MonitorConfig
from tether.monitor.detectors import Finding, categorical_test, ks_sketch_test, mean_shift_test, missing_test, psi
from tether.monitor.profile import CategoricalProfile, DatasetProfile, NumericProfile

#: Which minimum shift applies to which test.
SHIFT_OF = {"welch_z": "mean", "ks": "ks", "chi_square": "categories", "two_proportion": "missing"}
SPARK_SLICES = 30


@dataclass
class Test:
    feature: str
    segment: str
    finding: Finding
    min_shift: float
    adjusted_p: float = 1.0
    alarm: bool = False


@dataclass
class FeatureStatus:
    feature: str
    segment: str
    kind: str
    live_rows: int
    baseline: dict[str, Any]
    live: dict[str, Any]
    tests: list[Test]
    spark: list[float]
    psi: float | None = None
    new_categories: list[str] = field(default_factory=list)
    #: The CUSUM's calibration when it alarmed (threshold, in-control run length, expected delays).
    sequential: dict[str, Any] | None = None
    #: The baseline and live profiles compared (for plots).
    profiles: tuple[Any, Any] | None = field(default=None, repr=False)

    @property
    def alarm(self) -> bool:
        return any(t.alarm for t in self.tests)


def holm(p_values: list[float], alpha: float) -> tuple[list[bool], list[float]]:
    """Holm's step-down: which hypotheses are rejected at family-wise level ``alpha``, and adjusted p-values."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    rejected = [False] * m
    adjusted = [1.0] * m
    running = 0.0
    still = True
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
        if still and p_values[i] <= alpha / (m - rank):
            rejected[i] = True
        else:
            still = False
    return rejected, adjusted


def feature_status(
    name: str,
    seg: str,
    bp: NumericProfile | CategoricalProfile,
    lp: NumericProfile | CategoricalProfile,
    config: MonitorConfig,
    spark: list[float],
) -> FeatureStatus:
    shifts = config.min_shift_for(name)
    n_live = lp.count + lp.missing
    tests: list[Test] = []
    enough = n_live >= config.min_rows
    if isinstance(bp, NumericProfile) and isinstance(lp, NumericProfile):
        if enough:
            for f in (missing_test(bp, lp), mean_shift_test(bp, lp), ks_sketch_test(bp, lp)):
                tests.append(Test(name, seg, f, getattr(shifts, SHIFT_OF[f.test])))
        return FeatureStatus(
            name,
            seg,
            "numeric",
            n_live,
            {
                "mean": bp.mean,
                "sd": math.sqrt(bp.variance) if bp.count > 1 else None,
                "missing": bp.missing_ratio,
                "p50": bp.quantile(0.5),
            },
            {
                "mean": lp.mean if lp.count else None,
                "sd": math.sqrt(lp.variance) if lp.count > 1 else None,
                "missing": lp.missing_ratio,
                "p50": lp.quantile(0.5) if lp.count else None,
            },
            tests,
            spark,
            psi(bp, lp) if bp.count and lp.count else None,
        )
    if isinstance(bp, CategoricalProfile) and isinstance(lp, CategoricalProfile):
        if enough:
            for f in (missing_test(bp, lp), categorical_test(bp, lp)):
                tests.append(Test(name, seg, f, getattr(shifts, SHIFT_OF[f.test])))
        top = bp.counts.most_common(1)[0][0] if bp.counts else None
        return FeatureStatus(
            name,
            seg,
            "categorical",
            n_live,
            {
                "top": top,
                "top_share": bp.counts[top] / bp.count if top and bp.count else None,
                "missing": bp.missing_ratio,
                "categories": len(bp.counts),
            },
            {
                "top_share": lp.counts.get(top, 0) / lp.count if top and lp.count else None,
                "missing": lp.missing_ratio,
                "categories": len(lp.counts),
            },
            tests,
            spark,
            new_categories=sorted(set(lp.counts) - set(bp.counts))[:20],
        )
    # The baseline and the live profile disagree on the kind: the feature's type changed.
    return FeatureStatus(name, seg, "changed type", n_live, {}, {}, [], spark)


def spark_lines(per_slice: dict[datetime, DatasetProfile]) -> dict[str, list[float]]:
    """Per feature, the live mean (numeric) or the top category's share, slice by slice."""
    out: dict[str, list[float]] = {}
    for start in sorted(per_slice)[-SPARK_SLICES:]:
        for name, p in per_slice[start].features.items():
            if isinstance(p, NumericProfile):
                out.setdefault(name, []).append(p.mean if p.count else math.nan)
            else:
                top = p.counts.most_common(1)
                out.setdefault(name, []).append(top[0][1] / p.count if top and p.count else math.nan)
    return out


Pair = tuple[str, DatasetProfile, DatasetProfile, dict[str, list[float]]]


def assess(pairs: list[Pair], config: MonitorConfig) -> tuple[list[FeatureStatus], float, int]:
    """Test every feature of each (segment, baseline, live, sparklines); Holm across all at the budgeted level.

    Returns the feature statuses (tests marked ``alarm``), the family level used and the number of tests.
    """
    statuses: list[FeatureStatus] = []
    for seg, ref, live, sparks in pairs:
        for name, lp in live.features.items():
            bp = ref.features.get(name)
            if bp is None or (seg and seg.split("=", 1)[0] == name):  # a segment's own column is constant
                continue
            fs = feature_status(name, seg, bp, lp, config, sparks.get(name, []))
            fs.profiles = (bp, lp)
            statuses.append(fs)
    tests = [t for fs in statuses for t in fs.tests]
    units = len({(fs.feature, fs.segment) for fs in statuses})
    alpha = config.family_alpha(max(1, units))
    rejected, adjusted = holm([t.finding.p_value for t in tests], alpha)
    for t, rej, adj in zip(tests, rejected, adjusted, strict=True):
        t.adjusted_p = adj
        t.alarm = rej and t.finding.effect >= t.min_shift
    return statuses, alpha, len(tests)


def finite(v: float | None) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def json_safe(v: Any) -> Any:
    """JSON-safe: non-finite floats become null (the database takes strict JSON only)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [json_safe(x) for x in v]
    return v
