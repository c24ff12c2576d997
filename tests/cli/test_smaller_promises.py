"""Smaller promises seen on the way: a clean exit code and nothing half-written, whatever goes wrong."""

import numpy as np
import pandas as pd

from tests.cli.test_cli import _register, tether  # noqa: F401  (fixture)


def test_reproduce_of_a_tampered_blob_exits_1_and_leaves_no_folder(tether, project, tmp_path):  # noqa: F811
    import hashlib

    _register(tether, project)
    digest = hashlib.sha256(project.weights.read_bytes()).hexdigest()
    blob = tmp_path / "home" / "blobs" / "sha256" / digest[:2] / digest[2:]
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes()[:-1] + b"x")  # the weights file, one byte changed
    dest = tmp_path / "repro"
    out = tether("reproduce", "fraud/1", dest, expect=1)
    assert "error" in out.lower() or out
    assert not dest.exists() and not list(tmp_path.glob(".repro.partial-*"))


def test_a_csv_with_a_bad_value_past_its_first_block_is_refused_whole(tether, project, tmp_path):  # noqa: F811
    n = 200_000
    frame = pd.DataFrame({"a": np.arange(n), "b": np.random.default_rng(0).random(n)})
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    lines = path.read_text().splitlines()
    lines[150_000] = "149999,notanumber"
    path.write_text("\n".join(lines) + "\n")
    out = tether("data", "add", path, expect=2)
    assert "invalid value 'notanumber'" in out
    blobs = tmp_path / "home" / "blobs" / "sha256"
    assert not blobs.exists() or not [p for p in blobs.rglob("*") if p.is_file()]
    out = tether(
        "register", "fraud", "--code", project.root, "--data", path, "--weights", project.weights,
        "--flavor", "sklearn", "--target", "b", expect=2,
    )  # fmt: skip
    assert "notanumber" in out
    assert "no versions" in tether("versions")


def test_sign_on_an_already_registered_unsigned_triad_is_refused(tether, project):  # noqa: F811
    tether("init")
    _register(tether, project)
    try:
        _register(tether, project, "--sign")
    except AssertionError as e:  # the fixture asserts exit 0; the refusal exits 2
        err = str(e)
    else:
        raise AssertionError("--sign on unsigned weights was accepted")
    assert "already registered unsigned" in err and "exit 2" in err
