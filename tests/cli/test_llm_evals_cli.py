import json

from tests.cli.test_cli import tether  # noqa: F401  (fixture)


def test_grader_and_anchor_commands(tether, tmp_path):  # noqa: F811
    tether("init")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: j\nkind: judge\nconfig: {model: m}\n")
    out = tether("llm", "graders", "register", str(bad), expect=2)
    assert "config.endpoint" in out
    good = tmp_path / "checks.yaml"
    good.write_text("name: strict-checks\nkind: checks\nconfig: {enabled: [schema_valid, refused]}\n")
    assert "registered strict-checks/1" in tether("llm", "graders", "register", str(good))
    assert "already registered: strict-checks/1" in tether("llm", "graders", "register", str(good))
    listed = json.loads(tether("llm", "graders", "list", "--json"))
    assert [g["name"] for g in listed] == ["strict-checks"]
    assert json.loads(tether("llm", "graders", "show", "strict-checks"))["config"]["enabled"] == [
        "schema_valid",
        "refused",
    ]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert "no rows" in tether("llm", "anchors", "add", "support", str(empty), expect=2)
    rows = tmp_path / "anchors.jsonl"
    rows.write_text('{"prompt": "Where is my parcel?", "answer": "It ships today."}\n')
    assert "anchor set support: 1 rows" in tether("llm", "anchors", "add", "support", str(rows))
    head = tmp_path / "head.yaml"
    head.write_text("name: h\nkind: head\n")
    assert "labelled row 1: it has no 'label'" in tether("llm", "graders", "fit", str(head), str(rows), expect=2)
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text('{"prompt": "Where is my parcel?", "answer": "It ships today.", "label": 1}\n')
    assert "at least 20" in tether("llm", "graders", "fit", str(head), str(labelled), expect=2)
