"""The gate end to end: real registry, real models, real gold data; and the rule on the champion alias."""

import json

import pytest
from sqlalchemy import text

from tests.conftest import _load_example
from tether.core import ConflictError, InvalidInputError, NotFoundError
from tether.gate import Verdict, get_report, list_reports, load_spec, report_html, run_gate, set_policy

SPEC = {
    "model": "fraud",
    "task": "binary",
    "label": "is_fraud",
    "gold": ["data/gold.parquet"],
    "threshold": 0.1,
    "min_rows": 500,
    "mcnemar": False,
    "metrics": [
        {"name": "auc", "margin": 0.03, "floor": 0.6},
        {"name": "false_positive_rate", "margin": 0.02, "ceiling": 0.2},
    ],
    "slices": [{"column": "country", "min_rows": 500, "metrics": [{"name": "false_positive_rate", "margin": 0.03}]}],
    "edge_cases": {
        "directional": [{"name": "amount", "field": "amount", "change": {"multiply": 3}, "output": "probability"}]
    },
}


@pytest.fixture(scope="module")
def gold_frame():
    return _load_example("generate").generate(30000, seed=99)


@pytest.fixture
def gated(registry, project, gold_frame):
    gold_frame.to_parquet(project.root / "data" / "gold.parquet", index=False)
    spec = load_spec(SPEC)
    spec._base = project.root
    set_policy(registry, spec, reason="the team's spec", role="admin")
    return registry, project, spec


def _train_register(registry, project, name, *extra):
    weights = project.root / "model" / f"{name}.pkl"
    metrics = project.root / "model" / f"{name}.json"
    project.train(*extra, weights=weights, metrics=metrics)
    return project.register(registry, weights=weights, metrics=json.loads(metrics.read_text()))


def test_first_champion_passes_on_floors_then_a_slice_regression_fails(gated):
    registry, project, spec = gated
    v1 = project.register(registry)
    first = run_gate(registry, spec, v1.ref)
    assert first.verdict is Verdict.PASS, first.reasons
    assert first.body["champion"] is None and all(t["kind"] in ("bound", "edge") for t in first.tests)
    registry.set_alias("fraud", "champion", v1.ref, reason="first")

    good = _train_register(registry, project, "good", "--learning-rate", "0.12")
    assert run_gate(registry, spec, good.ref).verdict is Verdict.PASS

    bad = _train_register(registry, project, "bad", "--label-noise", "BR:0.3")
    report = run_gate(registry, spec, bad.ref)
    assert report.verdict is Verdict.FAIL
    failed = {(t["scope"], t["name"]) for t in report.tests if t["status"] == "fail"}
    assert ("country=BR", "false_positive_rate") in failed
    assert any("country=BR" in r for r in report.reasons)
    with pytest.raises(ConflictError, match="FAILed .* a PASS elsewhere does not outweigh it"):
        registry.set_alias("fraud", "champion", bad.ref, reason="no")
    ev = registry.set_alias("fraud", "champion", good.ref, reason="passed")
    assert ev.gate_report_id and not ev.forced


def test_the_report_is_bound_stored_and_immutable(gated):
    registry, project, spec = gated
    v1 = project.register(registry)
    report = run_gate(registry, spec, v1.ref)
    body = get_report(registry, report.id[:10]).body
    assert body["candidate"]["id"] == v1.id and body["spec_digest"] == spec.digest
    assert body["gold"][0]["digest"] == registry.add_data(project.root / "data" / "gold.parquet").digest
    html = report_html(registry, report)
    assert "<svg" in html and "PASS" in html and "<script" not in html
    assert [r["verdict"] for r in list_reports(registry, "fraud")] == ["PASS"]
    with pytest.raises(Exception, match="rows are immutable"), registry.store.db.begin() as conn:
        conn.execute(text("UPDATE gate_reports SET verdict = 'FAIL'"))


def test_a_pass_against_an_old_champion_does_not_count(gated):
    registry, project, spec = gated
    v1 = project.register(registry)
    registry.set_alias("fraud", "champion", v1.ref, reason="seed", force=True)
    v2 = _train_register(registry, project, "v2", "--learning-rate", "0.12")
    assert run_gate(registry, spec, v2.ref).verdict is Verdict.PASS
    v3 = _train_register(registry, project, "v3", "--learning-rate", "0.15")
    registry.set_alias("fraud", "champion", v3.ref, reason="emergency", force=True)
    with pytest.raises(ConflictError, match="has no PASS gate report against the champion"):
        registry.set_alias("fraud", "champion", v2.ref, reason="old report")


def test_no_champion_and_no_floors_is_inconclusive(gated):
    registry, project, _spec = gated
    v1 = project.register(registry)
    bare = load_spec({**SPEC, "metrics": [{"name": "auc", "margin": 0.01}], "slices": [], "edge_cases": {}})
    bare._base = project.root
    report = run_gate(registry, bare, v1.ref)
    assert report.verdict is Verdict.INCONCLUSIVE
    assert "no champion yet" in " ".join(report.reasons)


def test_a_slice_with_too_few_rows_is_inconclusive_not_a_pass(gated):
    registry, project, _spec = gated
    v1 = project.register(registry)
    tight = load_spec(
        {**SPEC, "slices": [{"column": "country", "min_rows": 5000, "metrics": [{"name": "false_positive_rate"}]}]}
    )
    tight._base = project.root
    report = run_gate(registry, tight, v1.ref)
    assert report.verdict is Verdict.INCONCLUSIVE
    assert any("fewer than min_rows=5000" in r for r in report.reasons)


def test_bad_gold_data_is_a_clear_error(gated, tmp_path):
    registry, project, _spec = gated
    v1 = project.register(registry)
    gold = project.root / "data" / "gold.parquet"
    import pandas as pd

    frame = pd.read_parquet(gold)
    frame.drop(columns=["amount"]).to_parquet(tmp_path / "no_amount.parquet", index=False)
    frame.assign(is_fraud=frame.is_fraud.map({0: "no", 1: "yes"})).to_parquet(tmp_path / "text.parquet", index=False)
    for name, match in (("no_amount.parquet", r"lacks column\(s\) \['amount'\]"), ("text.parquet", "must hold 0/1")):
        bad = load_spec({**SPEC, "gold": [str(tmp_path / name)]})
        with pytest.raises(InvalidInputError, match=match):
            run_gate(registry, bad, v1.ref)
    missing = load_spec({**SPEC, "gold": ["nowhere.parquet"]})
    with pytest.raises(InvalidInputError, match="neither a data snapshot digest nor an existing path"):
        run_gate(registry, missing, v1.ref)
    unknown = load_spec({**SPEC, "gold": ["abcdef0123456789"]})
    with pytest.raises(NotFoundError, match="not a registered data snapshot"):
        run_gate(registry, unknown, v1.ref)
    assert list_reports(registry, "fraud") == []


def test_spec_errors_name_the_field():
    with pytest.raises(InvalidInputError, match="unknown metric 'fpr'"):
        load_spec({**SPEC, "metrics": [{"name": "fpr"}]})
    with pytest.raises(InvalidInputError, match="give it a 'ceiling', not a 'floor'"):
        load_spec({**SPEC, "metrics": [{"name": "false_positive_rate", "floor": 0.1}]})
    with pytest.raises(InvalidInputError, match="exactly one of 'column' or 'expr'"):
        load_spec({**SPEC, "slices": [{"metrics": [{"name": "auc"}]}]})
    with pytest.raises(InvalidInputError, match="slices.0.min_rows"):
        load_spec({**SPEC, "slices": [{"column": "x", "min_rows": 0, "metrics": [{"name": "auc"}]}]})
    with pytest.raises(InvalidInputError, match="Extra inputs"):
        load_spec({**SPEC, "tresh": 1})


def test_a_failed_edge_case_fails_the_gate(gated):
    registry, project, _spec = gated
    v1 = project.register(registry)
    strict = load_spec(
        {
            **SPEC,
            "edge_cases": {
                "exact": [
                    {
                        "name": "impossible",
                        "expect": {"probability": {"min": 2}},
                        "input": {
                            "amount": 10.0,
                            "merchant_category": "grocery",
                            "country": "DE",
                            "hour": 12,
                            "device_age_days": 100,
                            "customer_age": 40,
                        },
                    }
                ]
            },
        }
    )
    strict._base = project.root
    report = run_gate(registry, strict, v1.ref)
    assert report.verdict is Verdict.FAIL
    assert "outside [2, inf]" in " ".join(report.reasons)


def test_the_example_spec_loads():
    from tests.conftest import EXAMPLE

    spec = load_spec(EXAMPLE / "gate.yaml")
    assert spec.model == "fraud" and spec.base == EXAMPLE
