import shutil

import pandas as pd
import pytest
from sqlalchemy import func, select

from tests.conftest import git, store_files
from tether.core import ConflictError, InvalidInputError, NotFoundError
from tether.store.tables import code_refs, data_snapshots, model_versions, weights_artifacts


def test_same_triad_gives_the_same_version(any_registry, project):
    v1 = project.register(any_registry)
    v2 = project.register(any_registry)
    assert v1.id == v2.id and v1.number == v2.number == 1
    assert len(any_registry.versions("fraud")) == 1


def test_a_new_weights_file_is_a_new_version_with_the_next_number(any_registry, project):
    v1 = project.register(any_registry)
    project.train("--learning-rate", "0.3")
    v2 = project.register(any_registry)
    assert v2.id != v1.id and v2.number == 2
    assert v2.code.digest == v1.code.digest and v2.data.digest == v1.data.digest
    assert v2.weights.digest != v1.weights.digest


def test_version_records_the_whole_triad(registry, project):
    v = project.register(registry, params={"max_iter": 20})
    assert v.code.commit_sha == git(project.root, "rev-parse", "HEAD")
    assert not v.code.dirty and v.code.diff_blob is None
    assert any(p.startswith("scikit-learn==") for p in v.code.environment["packages"])
    assert v.data.row_count == 3000 and v.data.format == "parquet"
    assert [c["name"] for c in v.data.schema][-1] == "is_fraud"
    inputs = [f["name"] for f in v.input_schema["fields"]]
    assert "is_fraud" not in inputs and "gender" not in inputs and "amount" in inputs
    assert [f["name"] for f in v.output_schema["fields"]] == ["prediction", "probability"]
    assert v.params == {"max_iter": 20} and "auc" in v.metrics
    for digest in (v.code.archive_blob, v.code.tree_digest, v.data.digest, v.weights.digest):
        assert registry.store.blobs.exists(digest)


def test_data_digest_covers_every_row(registry, project):
    v1 = project.register(registry)
    frame = pd.read_parquet(project.data)
    frame.loc[len(frame) - 1, "amount"] += 0.01  # one value in the last row
    frame.to_parquet(project.data, index=False)
    v2 = project.register(registry)
    assert v2.data.digest != v1.data.digest


def test_dirty_tree_is_refused_unless_allowed(registry, project):
    (project.root / "train.py").write_text((project.root / "train.py").read_text() + "\n# tweak\n")
    (project.root / "notes.txt").write_text("untracked\n")
    with pytest.raises(ConflictError, match=r"uncommitted changes \(2 files: notes.txt, train.py\)"):
        project.register(registry)
    assert registry.store.db.engine.connect().execute(select(func.count()).select_from(model_versions)).scalar() == 0
    v = project.register(registry, allow_dirty=True)
    assert v.code.dirty and v.code.diff_blob
    diff = registry.store.blobs.get_bytes(v.code.diff_blob)
    assert b"# tweak" in diff and b"notes.txt" in diff
    # the user's index was not touched
    assert git(project.root, "diff", "--cached", "--name-only") == ""


def test_code_from_a_subfolder_keeps_the_subfolder(registry, project):
    sub = project.root / "pkg"
    sub.mkdir()
    (sub / "x.py").write_text("X = 1\n")
    git(project.root, "add", "-A")
    git(project.root, "commit", "-qm", "sub")
    v = project.register(registry, code=sub)
    assert v.code.subdir == "pkg"


def test_pandas_dataframe_snapshot(registry, project):
    frame = pd.read_parquet(project.data)
    v = project.register(registry, data=frame)
    assert v.data.row_count == len(frame) and v.data.file_count == 1
    assert project.register(registry, data=frame).id == v.id


def test_csv_folder_snapshot(registry, project, tmp_path):
    frame = pd.read_parquet(project.data)
    folder = tmp_path / "csv"
    folder.mkdir()
    frame.iloc[:1500].to_csv(folder / "part-0.csv", index=False)
    frame.iloc[1500:].to_csv(folder / "part-1.csv", index=False)
    v = project.register(registry, data=folder)
    assert (v.data.format, v.data.row_count, v.data.file_count) == ("csv", 3000, 2)


def assert_nothing_written(registry, settings):
    with registry.store.db.connect() as conn:
        for t in (model_versions, code_refs, data_snapshots, weights_artifacts):
            assert conn.execute(select(func.count()).select_from(t)).scalar() == 0, t.name
    assert [p for p in store_files(settings) if "sha256" in p.parts] == []
    assert registry.store.blobs.leftover_temp_files() == []
    assert list((settings.home / "tmp").iterdir()) == []


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda p, t: {"code": t / "not-a-repo"}, InvalidInputError, "code path not found"),
        (lambda p, t: {"data": t / "missing.parquet"}, InvalidInputError, "dataset not found"),
        (lambda p, t: {"weights": t / "missing.pkl"}, InvalidInputError, "weights not found"),
        (lambda p, t: {"flavor": "tensorflow"}, InvalidInputError, "unknown flavor 'tensorflow'"),
        (lambda p, t: {"flavor": "onnx"}, InvalidInputError, "not a onnx model file"),
        (lambda p, t: {"target": "label"}, InvalidInputError, r"column\(s\) \['label'\] not in the data"),
        (lambda p, t: {"params": {"x": float("nan")}}, InvalidInputError, "finite numbers"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(registry, settings, project, tmp_path, change, error, match):
    with pytest.raises(error, match=match):
        project.register(registry, **change(project, tmp_path))
    assert_nothing_written(registry, settings)


def test_folder_outside_git_is_refused(registry, settings, project, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(InvalidInputError, match="not inside a git work tree"):
        project.register(registry, code=plain)
    assert_nothing_written(registry, settings)


def test_repository_without_commits_is_refused(registry, settings, project, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(InvalidInputError, match="no commits yet"):
        project.register(registry, code=empty)
    assert_nothing_written(registry, settings)


def test_unreadable_dataset_is_refused(registry, settings, project, tmp_path):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(project.data.read_bytes()[:-100])
    with pytest.raises(InvalidInputError, match="cannot read dataset"):
        project.register(registry, data=broken)
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "notes.txt").write_text("hi")
    with pytest.raises(InvalidInputError, match="unsupported file in dataset"):
        project.register(registry, data=odd)
    assert_nothing_written(registry, settings)


def test_weights_that_do_not_fit_the_data_are_refused(registry, settings, project, tmp_path):
    frame = pd.read_parquet(project.data).drop(columns=["country"])
    other = tmp_path / "other.parquet"
    frame.to_parquet(other, index=False)
    with pytest.raises(InvalidInputError, match="could not predict"):
        project.register(registry, data=other)
    assert_nothing_written(registry, settings)


def test_unknown_versions_say_how_to_refer_to_one(registry, project):
    project.register(registry)
    with pytest.raises(NotFoundError, match="unknown version 'nope'.*NAME@ALIAS"):
        registry.get("nope")
    with pytest.raises(NotFoundError, match="no version fraud/9"):
        registry.get("fraud/9")
    with pytest.raises(NotFoundError, match="no alias 'champion'"):
        registry.get("fraud@champion")
    with pytest.raises(NotFoundError, match="no model named 'other'"):
        registry.get("other@latest")


def test_refs_resolve_by_number_prefix_and_latest(registry, project):
    v = project.register(registry)
    assert registry.get("fraud/1").id == v.id
    assert registry.get(v.id[:8]).id == v.id
    assert registry.get("fraud@latest").id == v.id


def test_invalid_model_name(registry, project):
    with pytest.raises(InvalidInputError, match="invalid model name"):
        project.register(registry, name="bad name!")


def test_registration_from_a_copied_repository_is_the_same_version(registry, project, tmp_path):
    v1 = project.register(registry)
    clone = tmp_path / "clone"
    shutil.copytree(project.root, clone)
    v2 = project.register(
        registry, code=clone, data=clone / "data/transactions.parquet", weights=clone / "model/model.pkl"
    )
    assert v2.id == v1.id


def test_concurrent_registrations_of_the_same_triad_give_one_version(any_registry, project):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda _: project.register(any_registry).id, range(4)))
    assert len(set(ids)) == 1
    assert [v.number for v in any_registry.versions("fraud")] == [1]
