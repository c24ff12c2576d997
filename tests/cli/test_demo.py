import pytest

from tether.cli.demo import run_demo


@pytest.mark.slow
def test_demo_runs_start_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    run_demo(home=tmp_path, rows=4000)
    out = capsys.readouterr().out
    assert "(same id)" in out
    assert "matches the registered one" in out
    assert "refused:" in out and "refused by the database" in out
    assert "bug" not in out
