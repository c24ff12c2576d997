"""How many canary requests each guardrail needs to catch a given regression, at each traffic share.

Seeded simulation of the controller's own tests (the error-rate comparison, the success floor, the failure
limit) at the default plan's level: alpha 0.05 split over 5 tests x 4 steps. Traffic arrives one request at a
time; a share ``c`` of it goes to the canary; the guardrails are checked every 20 requests (the controller
checks every few seconds; the always-valid sequences make the frequency irrelevant to the error rate).
Prints the median and 90th percentile of canary requests until rollback, and the rate of false rollbacks for an
identical candidate. The numbers are quoted in docs/rollout.md.

    python bench/rollout_power.py
"""

from __future__ import annotations

import numpy as np

from tether.monitor.sequential import Decision, bound_rate, compare_rates
from tether.rollout.plan import Plan

PLAN = Plan()
ALPHA = PLAN.alpha / (PLAN.guardrails.tests() * len(PLAN.steps))
MARGIN = PLAN.guardrails.error_rate.margin if PLAN.guardrails.error_rate else 0.01
FLOOR = 1 - (PLAN.guardrails.success_rate.min if PLAN.guardrails.success_rate else 0.9)
LIMIT = PLAN.failure_limit or 10


def detect(
    share: float, p_champion: float, p_canary: float, rng: np.random.Generator, cap: int = 40_000
) -> tuple[int, str]:
    n_c = e_c = n_p = e_p = streak = 0
    for i in range(1, 10**7):
        if rng.random() < share:
            n_c += 1
            failed = rng.random() < p_canary
            e_c += failed
            streak = streak + 1 if failed else 0
            if streak >= LIMIT:
                return n_c, "failure_limit"
        else:
            n_p += 1
            e_p += rng.random() < p_champion
        if i % 20 == 0:
            if compare_rates(e_c, n_c, e_p, n_p, margin=MARGIN, alpha=ALPHA).decision is Decision.HARM:
                return n_c, "error_rate"
            if bound_rate(e_c, n_c, limit=FLOOR, alpha=ALPHA).decision is Decision.HARM:
                return n_c, "success_rate"
        if n_c >= cap:
            return n_c, "none"
    return n_c, "none"


def main() -> None:
    print(f"alpha per test {ALPHA:.2g}, error-rate margin {MARGIN}, success floor {1 - FLOOR}, failure limit {LIMIT}")
    print("champion errors | canary errors | share | canary requests to rollback: median, p90 | caught by")
    for p0, p1 in ((0.005, 0.02), (0.005, 0.05), (0.01, 0.2), (0.01, 1.0)):
        for share in (0.01, 0.05, 0.25):
            runs = [
                detect(share, p0, p1, np.random.default_rng([7, int(share * 100), int(p1 * 1000), r]))
                for r in range(40)
            ]
            ns = np.array([n for n, _ in runs])
            by = sorted({w for _, w in runs})
            print(
                f"{p0:>15.1%} | {p1:>13.0%} | {share:>5.0%} | "
                f"{np.median(ns):>8.0f}, {np.quantile(ns, 0.9):>6.0f} | {', '.join(by)}"
            )
    false = sum(detect(0.05, 0.01, 0.01, np.random.default_rng([9, r]), cap=5_000)[1] != "none" for r in range(200))
    print(f"identical candidate (1% errors both), 5,000 canary requests at 5%: {false}/200 false rollbacks")


if __name__ == "__main__":
    main()
