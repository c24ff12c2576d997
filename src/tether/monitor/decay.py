"""Alignment decay: has a version's graded behaviour moved away from its own baseline, or a canary's from the
champion's?

For each watched metric (schema compliance, refusal rate, guard-rail violations, completeness, grader scores)
the live window's weighted mean is compared with the baseline's by the mixture sequential probability ratio
test's confidence sequence (``tether.monitor.sequential``), so the watch may look every few seconds without
inflating its error. The live window is an *epoch* of ``window_seconds``: each epoch starts a fresh sequence,
and the level of one (metric, epoch) is the false-alarm budget shared out by a union bound over the epochs of 30
days and the metrics watched (Bonferroni):

    alpha = false_alarms_per_metric_per_30_days / (30 days / window_seconds)

so the expected false alarms per metric in 30 days are at most the budget, however often the watch checks.
A metric alarms when the whole sequence lies beyond ``min_shift`` on one side: *decayed* (or improved; both are
changes of behaviour). Scores are compared only within one grader version: a new judge never looks like an
application that changed (the anchor check reports it, ``tether.graders.anchors``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tether.monitor.rates import Sums, sums_mean_and_variance
from tether.monitor.sequential import confidence_sequence

SECONDS_PER_30_DAYS = 30 * 86_400


@dataclass(frozen=True)
class DecayTest:
    metric: str
    grader_id: str
    baseline_mean: float | None
    live_mean: float | None
    baseline_n: int
    live_n: int
    difference: float | None
    lower: float | None
    upper: float | None
    min_shift: float
    alpha: float
    decision: str  # "no data" | "too few" | "undecided" | "stable" | "changed"
    errors: int = 0  # grader errors in the window: never in the means

    @property
    def alarm(self) -> bool:
        return self.decision == "changed"

    def to_json(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else round(v, 6)

        return {
            "metric": self.metric,
            "grader_id": self.grader_id,
            "baseline": r(self.baseline_mean),
            "live": r(self.live_mean),
            "baseline_n": self.baseline_n,
            "live_n": self.live_n,
            "difference": r(self.difference),
            "lower": r(self.lower),
            "upper": r(self.upper),
            "min_shift": self.min_shift,
            "alpha": self.alpha,
            "decision": self.decision,
            "errors": self.errors,
        }


def epoch_alpha(budget_per_30_days: float, window_seconds: float, metrics: int) -> float:
    epochs = SECONDS_PER_30_DAYS / window_seconds
    return min(0.5, budget_per_30_days / epochs / max(1, metrics))


def compare(
    metric: str,
    grader_id: str,
    baseline: Sums | tuple[list[float], list[float]],
    live: Sums | tuple[list[float], list[float]],
    *,
    min_shift: float,
    alpha: float,
    min_samples: int,
    errors: int = 0,
) -> DecayTest:
    """``baseline`` and ``live`` are `Sums` of the scores, or (values, inclusion probabilities)."""
    b = baseline if isinstance(baseline, Sums) else Sums.of(*baseline)
    lv = live if isinstance(live, Sums) else Sums.of(*live)
    if not b.n or not lv.n:
        nothing = (None, None, None)
        return DecayTest(metric, grader_id, None, None, b.n, lv.n, *nothing, min_shift, alpha, "no data", errors)
    mb, vb, nb = sums_mean_and_variance(b)
    ml, vl, nl = sums_mean_and_variance(lv)
    if nb < min_samples or nl < min_samples:
        return DecayTest(metric, grader_id, mb, ml, nb, nl, ml - mb, None, None, min_shift, alpha, "too few", errors)
    d = ml - mb
    lo, hi = confidence_sequence(d, vb + vl, alpha=alpha, tau=max(min_shift, 0.01))
    if lo > min_shift or hi < -min_shift:
        decision = "changed"
    elif lo > -min_shift and hi < min_shift:
        decision = "stable"
    else:
        decision = "undecided"
    return DecayTest(metric, grader_id, mb, ml, nb, nl, d, lo, hi, min_shift, alpha, decision, errors)
