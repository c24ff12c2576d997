"""The pure evaluation on synthetic outputs: every task, metric kind, slice kind and fairness measure."""

import numpy as np
import pandas as pd
import pytest

from tether.gate import Outputs, Verdict, decide, evaluate, load_spec
from tether.gate.edge_cases import run_edge_cases
from tether.gate.spec import EdgeCases


def _spec(**over):
    base = {"model": "m", "label": "y", "gold": ["g"], "bootstrap": {"resamples": 500, "seed": 0}, "min_rows": 50}
    return load_spec({**base, **over})


def _run(spec, frame, y, cand, champ):
    results, notes = evaluate(spec, frame, y, cand, champ)
    verdict, _ = decide(results, spec.alpha)
    return verdict, {(r.scope, r.name, r.kind): r for r in results}, notes


def test_multiclass_accuracy_and_macro_f1():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 3000)
    good = np.where(rng.random(3000) < 0.8, y, rng.integers(0, 3, 3000))
    bad = np.where(rng.random(3000) < 0.5, y, rng.integers(0, 3, 3000))
    spec = _spec(
        task="multiclass",
        metrics=[{"name": "accuracy", "margin": 0.02, "floor": 0.6}, {"name": "macro_f1", "margin": 0.02}],
    )
    verdict, tests, _ = _run(spec, pd.DataFrame(index=range(3000)), y, Outputs(bad), Outputs(good))
    assert verdict is Verdict.FAIL
    assert tests[("overall", "accuracy", "metric")].status == "fail"
    assert tests[("overall", "accuracy", "metric")].candidate == pytest.approx(np.mean(bad == y))
    verdict, _, _ = _run(spec, pd.DataFrame(index=range(3000)), y, Outputs(good), Outputs(good.copy()))
    assert verdict is Verdict.PASS


def test_regression_mae_and_rmse():
    rng = np.random.default_rng(1)
    y = rng.normal(0, 1, 2000)
    a = y + rng.normal(0, 0.3, 2000)
    b = y + rng.normal(0, 0.6, 2000)
    spec = _spec(
        task="regression", metrics=[{"name": "mae", "margin": 0.05, "ceiling": 1.0}, {"name": "rmse", "margin": 0.05}]
    )
    verdict, tests, _ = _run(spec, pd.DataFrame(index=range(2000)), y, Outputs(b), Outputs(a))
    assert verdict is Verdict.FAIL
    assert tests[("overall", "rmse", "metric")].candidate == pytest.approx(np.sqrt(np.mean((y - b) ** 2)))
    verdict, _, _ = _run(spec, pd.DataFrame(index=range(2000)), y, Outputs(a), Outputs(b))
    assert verdict is Verdict.PASS


def _binary(n=6000, seed=2):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(int)
    s = y * 1.5 + rng.normal(0, 1, n)
    p = 1 / (1 + np.exp(-(s - 1.5)))
    frame = pd.DataFrame({"amount": rng.lognormal(3, 1, n), "group": rng.choice(["a", "b"], n)})
    return y, p, frame


def test_fpr_at_recall_uses_each_models_own_threshold():
    y, p, frame = _binary()
    shifted = np.clip(p * 0.5, 0, 1)  # same ranking, different scale: same FPR at any recall
    spec = _spec(
        task="binary",
        threshold=0.5,
        mcnemar=False,
        metrics=[{"name": "fpr_at_recall", "params": {"recall": 0.6}, "margin": 0.01}],
    )
    verdict, tests, _ = _run(
        spec, frame, y, Outputs((shifted >= 0.5).astype(int), shifted), Outputs((p >= 0.5).astype(int), p)
    )
    t = tests[("overall", "fpr_at_recall", "metric")]
    assert t.difference == pytest.approx(0.0) and verdict is Verdict.PASS


def test_expression_slices_and_equalized_odds():
    y, p, frame = _binary()
    # The candidate flags everything in group b with a large amount: equalized odds and the slice break.
    cand = ((p >= 0.5) | ((frame.group == "b") & (frame.amount > 20))).to_numpy().astype(int)
    champ = (p >= 0.5).astype(int)
    spec = _spec(
        task="binary",
        threshold=0.5,
        mcnemar=False,
        metrics=[{"name": "recall", "margin": 0.2}],
        slices=[
            {
                "name": "big",
                "expr": "amount > 20",
                "min_rows": 100,
                "metrics": [{"name": "false_positive_rate", "margin": 0.02}],
            }
        ],
        fairness=[{"attribute": "group", "metric": "equalized_odds_difference", "max": 0.05, "margin": 0.02}],
    )
    verdict, tests, _ = _run(spec, frame, y, Outputs(cand, p), Outputs(champ, p))
    assert verdict is Verdict.FAIL
    assert tests[("big", "false_positive_rate", "slice")].status == "fail"
    eo = [t for k, t in tests.items() if k[1] == "equalized_odds_difference"]
    assert eo and all(t.status == "fail" for t in eo)


def test_small_slices_can_be_skipped_with_a_note():
    y, p, frame = _binary(n=600)
    spec = _spec(
        task="binary",
        threshold=0.5,
        mcnemar=False,
        metrics=[{"name": "recall", "margin": 0.5}],
        slices=[{"column": "group", "min_rows": 1000, "skip_small": True, "metrics": [{"name": "recall"}]}],
    )
    d = (p >= 0.5).astype(int)
    verdict, _, notes = _run(spec, frame, y, Outputs(d, p), Outputs(d.copy(), p))
    assert verdict is Verdict.PASS and any("skipped" in n for n in notes)


def test_too_few_gold_rows_is_inconclusive():
    y, p, frame = _binary(n=40)
    spec = _spec(task="binary", threshold=0.5, metrics=[{"name": "auc"}])
    verdict, _, _ = _run(spec, frame, y, Outputs((p > 0.5).astype(int), p), None)
    assert verdict is Verdict.INCONCLUSIVE


def test_invariance_and_directional_cases_catch_violations():
    frame = pd.DataFrame({"amount": np.linspace(1, 100, 50), "group": ["a", "b"] * 25})

    def predict(f):
        return pd.DataFrame({"score": 1 / f["amount"] + (f["group"] == "b") * 0.1})

    suite = EdgeCases.model_validate(
        {
            "invariance": [{"name": "group", "field": "group", "values": ["a", "b"], "output": "score"}],
            "directional": [{"name": "amount", "field": "amount", "change": {"add": 10}, "output": "score"}],
        }
    )
    results = run_edge_cases(suite, predict, frame, seed=0)
    assert [r.status for r in results] == ["fail", "fail"]
    assert "50 of 50 rows change score" in results[0].reason
    assert "move score the wrong way" in results[1].reason
