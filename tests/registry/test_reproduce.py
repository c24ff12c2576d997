import json

import pytest

from tether.core import InvalidInputError, hash_tree


def test_reproduce_materialises_and_verifies_every_leg(any_registry, project, tmp_path):
    v = project.register(any_registry)
    dest = tmp_path / "out"
    report = any_registry.reproduce("fraud/1", dest)
    assert report.verified and [c.artifact for c in report.checks] == ["code tree", "data", "weights"]
    assert (dest / "code" / "train.py").read_bytes() == (project.root / "train.py").read_bytes()
    assert hash_tree(dest / "weights").root_digest == v.weights.digest
    assert hash_tree(dest / "data").root_digest == v.data.digest
    record = json.loads((dest / "tether-version.json").read_text())
    assert record["id"] == v.id and record["code"]["environment"]["packages"]
    assert "scikit-learn==" in (dest / "requirements.lock").read_text()
    assert report.environment_differences == []


def test_retrain_reproduces_the_exact_weights_digest(registry, project, tmp_path):
    v = project.register(registry)
    report = registry.reproduce("fraud/1", tmp_path / "out", retrain=True)
    assert report.retrain is not None and report.retrain.returncode == 0, report.retrain.output_tail
    assert report.retrain.weights_digest == v.weights.digest and report.retrain.weights_match
    assert report.retrain.metric_diffs == {}


def test_retrain_reports_how_metrics_differ_when_weights_do(registry, project, tmp_path):
    project.register(
        registry,
        train_command="{python} train.py --data {data} --weights {weights} --metrics {metrics} --max-iter 5",
    )
    report = registry.reproduce("fraud/1", tmp_path / "out", retrain=True)
    assert report.retrain is not None and not report.retrain.weights_match
    assert "auc" in report.retrain.metric_diffs


def test_dirty_registration_rebuilds_the_dirty_tree(registry, project, tmp_path):
    (project.root / "train.py").write_text((project.root / "train.py").read_text() + "\n# local tweak\n")
    (project.root / "extra.py").write_text("VALUE = 42\n")
    (project.root / "generate.py").unlink()
    project.register(registry, allow_dirty=True)
    dest = tmp_path / "out"
    report = registry.reproduce("fraud/1", dest)
    assert report.verified
    assert (dest / "code" / "train.py").read_text().endswith("# local tweak\n")
    assert (dest / "code" / "extra.py").read_text() == "VALUE = 42\n"
    assert not (dest / "code" / "generate.py").exists()


def test_reproduce_refuses_a_non_empty_folder(registry, project, tmp_path):
    project.register(registry)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="not an empty folder"):
        registry.reproduce("fraud/1", tmp_path / "busy")


def test_retrain_needs_a_recorded_command(registry, project, tmp_path):
    project.register(registry, train_command=None)
    with pytest.raises(InvalidInputError, match="no recorded training command"):
        registry.reproduce("fraud/1", tmp_path / "out", retrain=True)
