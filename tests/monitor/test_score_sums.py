"""The LLM watch's epoch sums, added up by the database, match the same sums of the rows read back, on SQLite and
PostgreSQL; and rates and decay tests from sums equal those from the rows (one computation, two paths)."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tether.graders.interaction import Interaction, Score
from tether.graders.registry import Graders
from tether.graders.scores import Graded, read, write
from tether.graders.spec import GraderSpec
from tether.monitor.rates import Sums, mean_and_variance, rate_of, sums_mean_and_variance, weighted_rate
from tether.monitor.score_sums import epoch_sums

START = datetime(2026, 3, 2, tzinfo=UTC)


def _rows(grader_id: str, rng: np.random.Generator) -> list[dict]:
    rows = []
    for i in range(600):
        version = "v1" if i % 3 else "v2"
        inclusion = float(rng.choice([1.0, 0.25, 0.05]))
        at = START + timedelta(seconds=int(rng.integers(0, 7200)))
        it = Interaction(f"t-{i}", (), "", model="helpdesk", version_id=version)
        scores = [
            Score(grader_id, "schema_valid", float(rng.random() < 0.9)),
            Score(grader_id, "relevance", float(rng.random())),
        ]
        if i % 17 == 0:  # a grader error: no value, never in an estimate, counted apart
            scores.append(Score(grader_id, "relevance_b", None, error="timeout"))
        else:
            scores.append(Score(grader_id, "relevance_b", float(rng.beta(2, 5))))
        rows.extend(Graded(it, scores, at, "live", "s", inclusion).rows())
    return rows


def test_database_sums_equal_the_rows_sums_and_give_the_same_rates(any_registry):
    grader = Graders(any_registry.store).register(GraderSpec.parse({"name": "tether-checks", "kind": "checks"}))[0]
    db = any_registry.store.db
    write(db, _rows(grader.id, np.random.default_rng(7)))
    since, until = START + timedelta(minutes=20), START + timedelta(minutes=100)
    for version in ("v1", "v2"):
        summed = epoch_sums(db, "helpdesk", version, since, until)
        rows = read(db, "helpdesk", version_id=version, since=since, until=until)
        assert {(r["metric"], r["grader_id"]) for r in rows} == set(summed)
        for (metric, gid), s in summed.items():
            mine = [r for r in rows if r["metric"] == metric and r["grader_id"] == gid]
            ok = [r for r in mine if r["value"] is not None]
            values, pis = [r["value"] for r in ok], [r["inclusion"] for r in ok]
            errors = sum(1 for r in mine if r["value"] is None and r["error"])
            expected = Sums.of(values, pis, errors=errors)
            assert (s.n, s.non_binary, s.weighted, s.errors) == (
                expected.n,
                expected.non_binary,
                expected.weighted,
                expected.errors,
            )
            for field in ("w", "wy", "w2", "a", "ay", "ay2", "y", "y2"):
                assert getattr(s, field) == pytest.approx(getattr(expected, field), rel=1e-9), field
            assert rate_of(s).to_json() == pytest.approx(weighted_rate(values, pis, errors=errors).to_json())
            assert sums_mean_and_variance(s) == pytest.approx(mean_and_variance(values, pis))
        assert summed[("relevance_b", grader.id)].errors > 0
        assert summed[("schema_valid", grader.id)].binary and not summed[("relevance", grader.id)].binary


def test_sums_of_constant_and_census_scores_keep_the_exact_answers():
    # Constant values: no spread, whatever the rounding of the expanded sums.
    assert Sums.of([0.7] * 1000).sample_variance() == 0.0
    r = rate_of(Sums.of([0.7] * 1000))
    assert r.low == pytest.approx(0.7) and r.high == pytest.approx(0.7)
    # A census (every inclusion 1) uses the sample variance; a sample its Poisson-sampling variance.
    assert Sums.of([0.2, 0.4, 0.9], [1.0, 1.0, 1.0]).weighted == 0
    assert Sums.of([0.2, 0.4, 0.9], [1.0, 0.5, 1.0]).weighted == 1
    assert rate_of(Sums()).method == "no data"
