"""The gate's verdicts mean what they say at any family size and any class size (seeded simulations).

* Power does not collapse as checks are added: bootstrap p-values are not floored at 1/(B+1) (which Holm over
  ~50 checks at 1,000 resamples can never reach), so a regression far beyond its margin FAILs at every size.
* The false-FAIL rate stays at or under alpha with a large family.
* Tiny classes cannot PASS: rates with few or no events get exact (Clopper-Pearson) bounds, AUC needs enough
  rows of each class, and a harm-only test with no evidence says so.
"""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from tether.gate import Outputs, Verdict, decide, evaluate, load_spec

ALPHA = 0.05


def _spec(slices: int, **over):
    base = {
        "model": "m",
        "task": "binary",
        "label": "y",
        "gold": ["x"],
        "alpha": ALPHA,
        "bootstrap": {"resamples": 1000, "seed": 0},
        "min_rows": 100,
        "mcnemar": False,
        "metrics": [{"name": "false_positive_rate", "margin": 0.01}, {"name": "recall", "margin": 0.05}],
        "slices": [{"column": "region", "min_rows": 100, "metrics": [{"name": "false_positive_rate", "margin": 0.05}]}]
        if slices
        else [],
    }
    base.update(over)
    return load_spec(base)


def _models(rng, n, regions, fpr_extra):
    y = (rng.random(n) < 0.2).astype(int)
    shared = rng.random(n)
    champ = np.where(y == 1, shared < 0.8, shared < 0.05).astype(int)
    flip = (y == 0) & (champ == 0) & (rng.random(n) < fpr_extra)
    cand = np.where(flip, 1, champ)
    frame = pd.DataFrame({"region": rng.integers(0, max(regions, 1), n).astype(str)})
    return y, frame, Outputs(cand), Outputs(champ)


def _run(regions, fpr_extra, runs, seed):
    out = []
    for r in range(runs):
        rng = np.random.default_rng([seed, regions, r])
        y, frame, cand, champ = _models(rng, 30_000, regions, fpr_extra)
        spec = _spec(regions, bootstrap={"resamples": 1000, "seed": r})
        results, _ = evaluate(spec, frame, y, cand, champ)
        verdict, _ = decide(results, ALPHA)
        out.append((verdict, len([x for x in results if x.p_harm is not None])))
    return out


@pytest.mark.parametrize("regions", [0, 20, 60])
def test_a_clear_regression_fails_however_many_checks_there_are(regions):
    # Candidate FPR +0.04 overall against a 0.01 margin: the interval lies far beyond it.
    out = _run(regions, 0.05, runs=20, seed=7)
    family = out[0][1]
    assert family == 2 + regions
    fails = sum(v is Verdict.FAIL for v, _ in out)
    assert fails >= 19, f"{fails}/20 FAIL with {family} harm tests"


@pytest.mark.slow
def test_equal_models_rarely_fail_in_a_large_family():
    out = _run(40, 0.0, runs=150, seed=11)
    fails = sum(v is Verdict.FAIL for v, _ in out)
    assert binomtest(fails, 150, ALPHA, alternative="greater").pvalue > 0.01, f"{fails}/150 false FAILs"


def _tiny(rng=None):
    y = np.zeros(30, dtype=int)
    y[0] = 1
    score = np.linspace(0.0, 0.5, 30)
    score[0] = 0.9
    decision = (score >= 0.8).astype(int)
    return pd.DataFrame({"region": ["a"] * 30}), y, Outputs(decision, score)


def test_a_single_positive_cannot_pass_auc_or_an_fpr_ceiling():
    frame, y, out = _tiny()
    spec = load_spec(
        {
            "model": "m",
            "task": "binary",
            "label": "y",
            "gold": ["x"],
            "min_rows": 10,
            "metrics": [{"name": "auc", "floor": 0.5}, {"name": "false_positive_rate", "ceiling": 0.05}],
        }
    )
    results, _ = evaluate(spec, frame, y, out, None)
    verdict, reasons = decide(results, ALPHA)
    assert verdict is Verdict.INCONCLUSIVE
    auc = next(r for r in results if r.name == "auc")
    assert "no evidence" in auc.reason and "1 positives" in auc.reason
    fpr = next(r for r in results if r.name == "false_positive_rate")
    assert fpr.extra == {"events": 0, "trials": 29}
    assert fpr.interval[0] == 0.0 and fpr.interval[1] > 0.09  # Clopper-Pearson: 0 of 29 is not "0%"
    assert fpr.status == "inconclusive"


def test_zero_events_on_both_sides_is_not_within_a_small_margin():
    rng = np.random.default_rng(3)
    n = 400
    y = (rng.random(n) < 0.5).astype(int)
    decision = y.copy()  # no false positives for either model
    spec = load_spec(
        {
            "model": "m",
            "task": "binary",
            "label": "y",
            "gold": ["x"],
            "min_rows": 10,
            "mcnemar": False,
            "metrics": [{"name": "false_positive_rate", "margin": 0.002}],
        }
    )
    results, _ = evaluate(spec, pd.DataFrame(index=range(n)), y, Outputs(decision), Outputs(decision.copy()))
    verdict, _ = decide(results, ALPHA)
    assert verdict is Verdict.INCONCLUSIVE, [r.reason for r in results]


def test_mcnemar_on_thirty_rows_says_no_evidence_not_pass():
    rng = np.random.default_rng(5)
    y = (rng.random(30) < 0.5).astype(int)
    cand = y.copy()
    champ = y.copy()
    cand[:2] = 1 - cand[:2]
    spec = load_spec(
        {
            "model": "m",
            "task": "binary",
            "label": "y",
            "gold": ["x"],
            "min_rows": 10,
            "metrics": [{"name": "accuracy", "margin": 0.5}],
        }
    )
    results, _ = evaluate(spec, pd.DataFrame(index=range(30)), y, Outputs(cand), Outputs(champ))
    decide(results, ALPHA)
    mc = next(r for r in results if r.kind == "mcnemar")
    assert mc.status == "no evidence" and "no evidence" in mc.reason
