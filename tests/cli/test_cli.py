"""The CLI as a user drives it: real commands, exit codes, one-line errors."""

import json
import sys

import pytest

from tether.cli import main


@pytest.fixture
def tether(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TETHER_DATABASE_URL", raising=False)
    monkeypatch.delenv("TETHER_BLOB_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: str, expect: int = 0) -> str:
        monkeypatch.setattr(sys, "argv", ["tether", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as e:
            code = e.code or 0
        out, err = capsys.readouterr()
        assert code == expect, f"exit {code}, expected {expect}\nstdout: {out}\nstderr: {err}"
        return out + err

    return run


def _register(tether, project, *extra):
    return tether(
        "register",
        "fraud",
        "--code",
        project.root,
        "--data",
        project.data,
        "--weights",
        project.weights,
        "--flavor",
        "sklearn",
        "--target",
        "is_fraud",
        "--exclude",
        "gender",
        "--metrics",
        project.metrics,
        "--param",
        "max_iter=20",
        "--train-command",
        "{python} train.py --data {data} --weights {weights} --metrics {metrics} --max-iter 20",
        *extra,
    )


def test_init_creates_store_and_key(tether, tmp_path):
    out = tether("init")
    assert "created" in out and (tmp_path / "home" / "keys" / "signing.ed25519").exists()
    assert "kept" in tether("init")


def test_register_show_versions_alias_reproduce(tether, project, tmp_path):
    tether("init")
    out = _register(tether, project, "--sign")
    assert "registered fraud/1" in out
    assert "already registered as fraud/1" in _register(tether, project, "--sign")
    shown = json.loads(tether("show", "fraud/1", "--json"))
    assert shown["params"] == {"max_iter": 20} and shown["weights"]["signed"]
    assert "fraud/1" in tether("versions")
    assert "commit" in tether("show", "fraud@latest")
    assert "fraud has no gate policy" in tether(
        "alias", "set", "fraud", "champion", "fraud/1", "--reason", "x", expect=2
    )
    out = tether("alias", "set", "fraud", "champion", "fraud/1", "--reason", "first", "--force")
    assert "fraud@champion -> fraud/1" in out and "FORCED" in out
    assert "first" in tether("alias", "history", "fraud")
    assert "fraud/1" in tether("alias", "history", "fraud", "champion", "--at", "2999-01-01T00:00:00+00:00")
    assert "pointed at no version" in tether("alias", "history", "fraud", "champion", "--at", "2000-01-01T00:00:00Z")
    out = tether("reproduce", "fraud@champion", tmp_path / "repro", "--retrain")
    assert "weights: verified" in out and "matches the registered one" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "nope"], "error: unknown version 'nope'"),
        (["show", "fraud/7"], "error: no version fraud/7"),
        (["versions", "ghost"], "error: no model named 'ghost'"),
        (
            ["alias", "set", "fraud", "champion", "fraud/1", "--reason", ""],
            "error: an alias move needs a reason",
        ),
    ],
)
def test_errors_are_one_line_and_exit_2(tether, project, args, message):
    _register(tether, project)
    out = tether(*args, expect=2)
    assert message in out
    assert len(out.strip().splitlines()) == 1, out


def test_register_bad_input_exit_2(tether, project, tmp_path):
    out = tether(
        "register",
        "fraud",
        "--code",
        project.root,
        "--data",
        tmp_path / "none.parquet",
        "--weights",
        project.weights,
        "--flavor",
        "sklearn",
        expect=2,
    )
    assert "error: dataset not found" in out
    out = tether(
        "register",
        "fraud",
        "--code",
        tmp_path,
        "--data",
        project.data,
        "--weights",
        project.weights,
        "--flavor",
        "sklearn",
        expect=2,
    )
    assert "not inside a git work tree" in out
    out = tether(
        "register",
        "fraud",
        "--code",
        project.root,
        "--data",
        project.data,
        "--weights",
        project.weights,
        "--flavor",
        "sklearn",
        "--param",
        "novalue",
        expect=2,
    )
    assert "is not KEY=VALUE" in out
    assert "no versions registered yet" in tether("versions")


def test_usage_errors_exit_2(tether):
    assert "Missing option" in tether("register", "fraud", expect=2)


def test_every_command_has_help_with_an_example(tether):
    from tether.cli.app import app

    for c in app.registered_commands:
        assert "Example:" in tether(c.name or c.callback.__name__, "--help"), c.name
    for group in app.registered_groups:
        for c in group.typer_instance.registered_commands:
            assert "Example:" in tether(group.name, c.name, "--help"), f"{group.name} {c.name}"
        for sub in group.typer_instance.registered_groups:  # nested groups (tether llm graders ...)
            for c in sub.typer_instance.registered_commands:
                assert "Example:" in tether(group.name, sub.name, c.name, "--help"), f"{group.name} {sub.name} {c.name}"
