"""Seeded simulations: the gate's stated error rates hold.

Claims (docs/gate.md):
* With a candidate exactly as good as the champion, the gate claims a regression (FAIL) in at most ``alpha``
  of runs: Holm's procedure over every harm test, here with every margin at 0, the strictest case.
* With a candidate worse by exactly the margin, the gate PASSes in at most ``alpha`` of runs.
* With a candidate worse by three margins, it FAILs in most runs (power).
"""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from tether.gate import Outputs, Verdict, decide, evaluate, load_spec

ALPHA = 0.05
RUNS = 1000


def _spec(**over):
    base = {
        "model": "m",
        "task": "binary",
        "label": "y",
        "gold": ["x"],
        "alpha": ALPHA,
        "bootstrap": {"resamples": 400, "seed": 0},
        "min_rows": 100,
        "mcnemar": True,
        "metrics": [
            {"name": "auc", "margin": 0.0},
            {"name": "false_positive_rate", "margin": 0.0},
            {"name": "recall", "margin": 0.0},
        ],
        "slices": [{"column": "region", "min_rows": 100, "metrics": [{"name": "false_positive_rate"}]}],
    }
    base.update(over)
    return load_spec(base)


def _equal_models(rng, n):
    y = (rng.random(n) < 0.15).astype(int)
    shared = rng.normal(0, 1, n)
    s_c = 1.2 * y + 0.7 * shared + 0.7 * rng.normal(0, 1, n)
    s_p = 1.2 * y + 0.7 * shared + 0.7 * rng.normal(0, 1, n)
    frame = pd.DataFrame({"region": rng.choice(["north", "south"], n)})
    return y, frame, Outputs((s_c > 0.8).astype(int), s_c), Outputs((s_p > 0.8).astype(int), s_p)


def _verdicts(make, spec, runs=RUNS, seed=1):
    out = []
    for r in range(runs):
        rng = np.random.default_rng([seed, r])
        y, frame, cand, champ = make(rng)
        spec_r = spec.model_copy(update={"bootstrap": spec.bootstrap.model_copy(update={"seed": r})})
        results, _ = evaluate(spec_r, frame, y, cand, champ)
        out.append(decide(results, ALPHA)[0])
    return out


def _at_most_alpha(count, runs):
    # The observed rate must be consistent with a true rate <= alpha (one-sided exact binomial, 1%).
    return binomtest(count, runs, ALPHA, alternative="greater").pvalue > 0.01


@pytest.mark.slow
def test_equal_models_are_claimed_to_regress_at_most_alpha_of_the_time():
    verdicts = _verdicts(lambda rng: _equal_models(rng, 3000), _spec())
    fails = sum(v is Verdict.FAIL for v in verdicts)
    assert _at_most_alpha(fails, RUNS), f"{fails}/{RUNS} false regression claims"


def _shifted(rng, n, extra_fpr):
    """Champion flags 10% of negatives; the candidate flags those plus ``extra_fpr`` more (paired)."""
    y = (rng.random(n) < 0.2).astype(int)
    dp = np.where(y == 1, rng.random(n) < 0.7, rng.random(n) < 0.10).astype(int)
    extra = (y == 0) & (dp == 0) & (rng.random(n) < extra_fpr / 0.9)
    dc = np.maximum(dp, extra.astype(int))
    frame = pd.DataFrame({"region": np.full(n, "all")})
    return y, frame, Outputs(dc), Outputs(dp)


@pytest.mark.slow
def test_a_candidate_worse_by_exactly_the_margin_passes_at_most_alpha_of_the_time():
    spec = _spec(metrics=[{"name": "false_positive_rate", "margin": 0.02}], slices=[], mcnemar=False)
    verdicts = _verdicts(lambda rng: _shifted(rng, 3000, 0.02), spec)
    passes = sum(v is Verdict.PASS for v in verdicts)
    assert _at_most_alpha(passes, RUNS), f"{passes}/{RUNS} passes of a candidate at the margin"


def test_a_candidate_worse_by_three_margins_fails_most_of_the_time():
    spec = _spec(metrics=[{"name": "false_positive_rate", "margin": 0.01}], slices=[], mcnemar=False)
    verdicts = _verdicts(lambda rng: _shifted(rng, 4000, 0.03), spec, runs=100)
    assert sum(v is Verdict.FAIL for v in verdicts) >= 80
