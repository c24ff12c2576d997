"""Documentation is executed: the README tour runs as written, and every command is documented."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import GIT_ENV

ROOT = Path(__file__).resolve().parents[1]


def test_every_cli_command_is_documented():
    from tether.cli.app import app

    text = (ROOT / "docs" / "cli.md").read_text()
    for c in app.registered_commands:
        assert f"## `tether {c.name or c.callback.__name__}" in text
    for group in app.registered_groups:
        for c in group.typer_instance.registered_commands:
            assert f"## `tether {group.name} {c.name}" in text, f"tether {group.name} {c.name}"


def test_readme_opens_with_the_two_commands():
    head = (ROOT / "README.md").read_text().split("\n\n", 3)[:2]
    assert "make demo" in head[1] and "make test" in head[1]


@pytest.mark.slow
def test_readme_tour_runs_as_written(tmp_path):
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- tour:start -->\n```bash\n(.*?)```\n<!-- tour:end -->", readme, re.S).group(1)
    # The tour uses /tmp/fraud and /tmp/fraud-repro; keep this run private to the test.
    script = block.replace("/tmp/fraud", str(tmp_path / "fraud"))
    env = {
        **os.environ,
        **GIT_ENV,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "COLUMNS": "200",
    }
    env.pop("TETHER_DATABASE_URL", None)
    work = tmp_path / "checkout"
    (work / "examples").mkdir(parents=True)
    os.symlink(ROOT / "examples" / "fraud", work / "examples" / "fraud")
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "the gate refused fraud/2 (exit 1)" in out.stdout
    assert "country=BR" in out.stdout
    assert "weights: verified" in out.stdout
    assert "matches the registered one" in out.stdout


def test_every_test_named_in_operations_md_exists():
    """docs/operations.md states each promise beside the test that holds it: a renamed or deleted test would
    leave a promise that nothing holds."""
    text = (ROOT / "docs" / "operations.md").read_text()
    named, last = [], ""
    for path, func in re.findall(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", text):
        if path or func:  # "`::name`" names a test of the file named just before it
            last = path or last
            named.append((last, func))
    assert len(named) > 50
    missing = []
    for path, func in named:
        f = ROOT / path
        if not f.exists():
            missing.append(path)
        elif func and not re.search(rf"^(async )?def {func}\(|^class {func}\b", f.read_text(), re.M):
            missing.append(f"{path}::{func}")
    assert not missing, f"named in docs/operations.md but not found: {missing}"
