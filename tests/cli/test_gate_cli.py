import json

from tests.cli.test_cli import _register, tether  # noqa: F401  (fixture)
from tests.conftest import EXAMPLE, _load_example


def test_gate_run_show_list_and_exit_codes(tether, project, tmp_path):  # noqa: F811
    _load_example("generate").generate(20000, seed=99).to_parquet(project.root / "data" / "gold.parquet", index=False)
    spec = tmp_path / "gate.yaml"
    gold = project.root / "data" / "gold.parquet"
    spec.write_text((EXAMPLE / "gate.yaml").read_text().replace("data/gold.parquet", str(gold)))
    _register(tether, project)
    digest = tether("data", "add", project.root / "data" / "gold.parquet").split()[0]
    assert len(digest) == 64

    # An ad-hoc spec before any policy: a verdict that moves nothing.
    assert "ad hoc" in tether("gate", "run", "fraud", "--candidate", "fraud/1", "--spec", spec, expect=0)
    assert "no gate policy" in tether("gate", "run", "fraud", "--candidate", "fraud/1", expect=2)
    assert "gate policy" in tether("gate", "policy", "set", "fraud", "--spec", spec, "--reason", "team spec")
    assert "min_rows" in tether("gate", "policy", "show", "fraud")
    assert "team spec" in tether("gate", "policy", "history", "fraud")
    out = tether("gate", "run", "fraud", "--candidate", "fraud/1", "--html", tmp_path / "r.html", expect=0)
    assert "PASS" in out and "against champion none" in out and "in force" in out
    assert "<svg" in (tmp_path / "r.html").read_text()
    report_id = out.split("report ")[1].split()[0]
    shown = json.loads(tether("gate", "show", report_id[:8], "--json"))
    assert shown["verdict"] == "PASS" and shown["gold"][0]["digest"] == digest and shown["policy"]["in_force"]
    assert "PASS" in tether("gate", "list", "fraud")
    assert "gate report" in tether("alias", "set", "fraud", "champion", "fraud/1", "--reason", "passed")

    # The same version again: it is the champion now, which is a clear error.
    assert "already the champion" in tether("gate", "run", "fraud", "--candidate", "fraud/1", "--spec", spec, expect=2)
    # A spec whose gold is far too small for its min_rows: INCONCLUSIVE, exit 3.
    small = tmp_path / "small.yaml"
    small.write_text(spec.read_text().replace("min_rows: 1000\n", "min_rows: 1000000\n", 1))
    project.train("--learning-rate", "0.2")
    _register(tether, project)
    assert "INCONCLUSIVE" in tether("gate", "run", "fraud", "--candidate", "fraud/2", "--spec", small, expect=3)


def test_gate_errors(tether, tmp_path):  # noqa: F811
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: fraud\ntask: binary\nlabel: y\ngold: [x]\nmetrics: [{name: aucc}]\n")
    out = tether("gate", "run", "fraud", "--candidate", "fraud/1", "--spec", bad, expect=2)
    assert "unknown metric 'aucc'" in out
    assert "no gate report" in tether("gate", "show", "abcdef", expect=2)
