import sys

import pytest

from tether.cli.demo import run_demo


@pytest.mark.slow
def test_demo_runs_start_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    run_demo(home=tmp_path)
    out = capsys.readouterr().out
    sys.stderr.write(out)  # shown by pytest when an assertion fails
    out = " ".join(out.split())  # the console wraps long lines wherever the numbers put them
    assert "(same id)" in out
    assert "gate fraud/1 vs no champion (floors only): PASS" in out
    assert "gate fraud/2 vs fraud/1: PASS" in out
    assert "gate fraud/3 vs fraud/1: FAIL" in out and "country=BR" in out
    assert "matches the registered one" in out
    assert "-> completed; champion is now fraud/5" in out
    assert "-> rolled_back" in out and "latency_p99" in out
    assert "refused:" in out and "refused by the database" in out
    assert ": bug" not in out
    assert "flagged after" in out and "shadow fraud/2 at 100%" in out
    assert "(exact cache; 0 tokens, saved" in out and "(semantic cache (similarity" in out
    assert "trimmed from" in out and "refused with 429" in out and "tokens per day budget" in out
    assert "cache=exact" in out and "cache=semantic" in out  # the ledger
    assert "--candidate support/2" in out and "-> FAIL" in out and "schema_valid" in out  # the LLM gate
    assert "the rollout is rolled_back" in out and "schema_violation_rate" in out
    assert "prompt drift drifted" in out and "new topic" in out
    assert "tether audit verify -> verifies" in out and "verifies: True" in out and "matches" in out
