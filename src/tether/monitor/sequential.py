"""Always-valid comparison of a canary with the champion, safe to check after every request.

The mixture sequential probability ratio test (mSPRT) of R. Johari, P. Koomen, L. Pekelis, D. Walsh (2022),
"Always valid inference: continuous monitoring of A/B tests", Operations Research 70(3), for the difference
theta of two means (here proportions: errors, schema violations, slow requests, false positives) with a normal
mixture N(theta0, tau^2) over the alternative. With d the observed difference and v its variance,

    Lambda(theta0) = sqrt(v / (v + tau^2)) * exp(tau^2 (d - theta0)^2 / (2 v (v + tau^2)))

and {theta0 : Lambda(theta0) < 1/alpha} is a confidence sequence: it covers the true theta at *all* sample
sizes at once with probability at least 1 - alpha (Ville's inequality; asymptotically, with the plug-in
variance). So a guardrail may be evaluated every few seconds without inflating false alarms.

Decision for a guardrail "canary minus champion at most ``margin``" (higher is worse):
  harm shown  when the whole sequence lies above the margin  -> roll back;
  safe shown  when the whole sequence lies below the margin  -> may advance (after the bake time);
  otherwise undecided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Decision(StrEnum):
    HARM = "harm"
    SAFE = "safe"
    UNDECIDED = "undecided"


@dataclass(frozen=True)
class Comparison:
    """A guardrail's evidence at one moment."""

    canary_rate: float
    champion_rate: float
    canary_n: int
    champion_n: int
    difference: float
    lower: float
    upper: float
    margin: float
    alpha: float
    decision: Decision

    def to_json(self) -> dict[str, object]:
        """Plain JSON: an unbounded interval (no samples yet) is null, as JSON has no Infinity."""

        def plain(v: object) -> object:
            if isinstance(v, Decision):
                return v.value
            if isinstance(v, float) and not math.isfinite(v):
                return None
            return v

        return {k: plain(v) for k, v in self.__dict__.items()}


def confidence_sequence(d: float, v: float, *, alpha: float, tau: float) -> tuple[float, float]:
    """The mSPRT confidence sequence for a difference ``d`` with variance ``v`` (two-sided, level 1 - alpha)."""
    if v <= 0:
        return (d, d)
    t2 = tau * tau
    half = math.sqrt(2 * v * (v + t2) / t2 * (math.log(1 / alpha) + 0.5 * math.log((v + t2) / v)))
    return (d - half, d + half)


def compare_rates(
    canary_events: int,
    canary_n: int,
    champion_events: int,
    champion_n: int,
    *,
    margin: float,
    alpha: float,
    tau: float = 0.02,
    min_n: int = 30,
) -> Comparison:
    """Compare two event rates (higher is worse) against ``margin`` with an always-valid sequence."""
    pc = canary_events / canary_n if canary_n else 0.0
    pp = champion_events / champion_n if champion_n else 0.0
    if canary_n < min_n or champion_n < min_n:
        return Comparison(pc, pp, canary_n, champion_n, pc - pp, -math.inf, math.inf, margin, alpha, Decision.UNDECIDED)
    # Rates of exactly 0 or 1 would give zero variance; a half-event continuity floor keeps the test honest.
    vc = max(pc * (1 - pc), 0.5 / canary_n * (1 - 0.5 / canary_n)) / canary_n
    vp = max(pp * (1 - pp), 0.5 / champion_n * (1 - 0.5 / champion_n)) / champion_n
    d = pc - pp
    lo, hi = confidence_sequence(d, vc + vp, alpha=alpha, tau=tau)
    decision = Decision.HARM if lo > margin else Decision.SAFE if hi < margin else Decision.UNDECIDED
    return Comparison(pc, pp, canary_n, champion_n, d, lo, hi, margin, alpha, decision)


def bound_rate(events: int, n: int, *, limit: float, alpha: float, tau: float = 0.02, min_n: int = 30) -> Comparison:
    """One arm's event rate (higher is worse) against an absolute ``limit``, on the same always-valid sequence:
    harm when it is shown above the limit, safe when shown below."""
    p = events / n if n else 0.0
    if n < min_n:
        return Comparison(p, limit, n, 0, p - limit, -math.inf, math.inf, limit, alpha, Decision.UNDECIDED)
    v = max(p * (1 - p), 0.5 / n * (1 - 0.5 / n)) / n
    lo, hi = confidence_sequence(p, v, alpha=alpha, tau=tau)
    decision = Decision.HARM if lo > limit else Decision.SAFE if hi < limit else Decision.UNDECIDED
    return Comparison(p, limit, n, 0, p - limit, lo, hi, limit, alpha, decision)
