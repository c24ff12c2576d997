"""Shared fixtures: settings on SQLite (always) and PostgreSQL (when it answers), and a git training project."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.core import Settings
from tether.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "fraud"
PG_URL = os.environ.get("TETHER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TETHER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_reachable() -> bool:
    try:
        from tether.store.redis import connect

        return bool(connect(REDIS_URL).ping())
    except Exception:
        return False


#: Skip a test that needs Redis only where it truly cannot run (.ci/run expects one on 127.0.0.1:6379).
needs_redis = pytest.mark.skipif(
    not _redis_reachable(), reason="no Redis at TETHER_TEST_REDIS_URL (.ci/run expects one)"
)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of the test's own in the test Redis, its keys deleted afterwards."""
    from tether.store.redis import connect

    p = f"tether-test:{uuid.uuid4().hex[:8]}:"
    yield p
    r = connect(REDIS_URL)
    for k in r.scan_iter(p + "*"):
        r.delete(k)


@pytest.fixture
def redis_namespace() -> Iterator[str]:
    """A ``TETHER_REDIS_NAMESPACE`` of the test's own (processes it starts write under it), deleted afterwards."""
    from tether.store.redis import connect

    ns = f"tt-{uuid.uuid4().hex[:10]}"
    yield ns
    r = connect(REDIS_URL)
    for k in r.scan_iter(ns + ":*"):
        r.delete(k)


GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@tether.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@tether.invalid",
}


def _pg_reason() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'tether[postgres]')"
    try:
        with psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql"), connect_timeout=3):
            return None
    except Exception as e:
        return f"PostgreSQL at {PG_URL} does not answer ({str(e).splitlines()[0]}); set TETHER_TEST_POSTGRES_URL"


PG_SKIP = _pg_reason()


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A database URL whose search_path is a fresh schema, dropped afterwards."""
    if PG_SKIP:
        pytest.skip(PG_SKIP)
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    plain = PG_URL.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings on each metadata backend (blobs stay in a local folder)."""
    if request.param == "sqlite":
        return Settings(home=tmp_path / "home", database_url="", blob_url="")
    url = request.getfixturevalue("pg_schema_url")
    return Settings(home=tmp_path / "home", database_url=url, blob_url="")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings on the embedded default (SQLite and local blobs)."""
    return Settings(home=tmp_path / "home", database_url="", blob_url="")


@pytest.fixture
def registry(settings: Settings) -> Iterator[Registry]:
    with Registry.open(settings) as reg:
        yield reg


@pytest.fixture
def any_registry(backend_settings: Settings) -> Iterator[Registry]:
    with Registry.open(backend_settings) as reg:
        yield reg


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def _load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"fraud_{name}", EXAMPLE / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class Project:
    """A committed git project with the fraud example, a small dataset and a trained model."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data" / "transactions.parquet"
        self.weights = root / "model" / "model.pkl"
        self.metrics = root / "metrics.json"

    def train(self, *extra: str, weights: Path | None = None, metrics: Path | None = None) -> None:
        subprocess.run(
            [
                sys.executable,
                "train.py",
                "--data",
                str(self.data),
                "--weights",
                str(weights or self.weights),
                "--metrics",
                str(metrics or self.metrics),
                "--max-iter",
                "20",
                *extra,
            ],
            cwd=self.root,
            check=True,
            capture_output=True,
        )

    def register(self, reg: Registry, name: str = "fraud", **kw):
        import json

        args = {
            "code": self.root,
            "data": self.data,
            "weights": self.weights,
            "flavor": "sklearn",
            "target": "is_fraud",
            "exclude": ["gender"],
            "metrics": json.loads(self.metrics.read_text()),
            "train_command": "{python} train.py --data {data} --weights {weights} --metrics {metrics} --max-iter 20",
        }
        args.update(kw)
        return reg.register(name, **args)


def make_project(root: Path, rows: int = 3000) -> Project:
    root.mkdir(parents=True)
    for name in ("generate.py", "train.py", ".gitignore"):
        (root / name).write_bytes((EXAMPLE / name).read_bytes())
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "fraud example")
    gen = _load_example("generate")
    frame = gen.generate(rows, seed=3)
    (root / "data").mkdir()
    frame.to_parquet(root / "data" / "transactions.parquet", index=False)
    p = Project(root)
    p.train()
    return p


@pytest.fixture(scope="session")
def _project_template(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return make_project(tmp_path_factory.mktemp("template") / "fraud")


@pytest.fixture
def project(_project_template: Project, tmp_path: Path) -> Project:
    """A private copy of the committed fraud project (safe to modify)."""
    import shutil

    dest = tmp_path / "fraud"
    shutil.copytree(_project_template.root, dest, symlinks=True)
    return Project(dest)


def store_files(settings: Settings) -> list[Path]:
    """Every blob file and temporary file in a local store."""
    root = settings.home / "blobs"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


#: Every process a test starts inherits this mark in its environment, so the session can tell at its end
#: whether any outlived it (a worker found running hours after a failed run, its parent gone).
RUN_MARK = "TETHER_TEST_RUN"
os.environ.setdefault(RUN_MARK, uuid.uuid4().hex)


def marked_processes() -> list[tuple[int, str]]:
    """Live processes carrying this run's mark, but this one and pytest-xdist's own workers: (pid, command)."""
    mark = f"{RUN_MARK}={os.environ[RUN_MARK]}".encode()
    out = []
    for proc in Path("/proc").glob("[0-9]*"):
        pid = int(proc.name)
        if pid == os.getpid():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")  # a zombie's is empty: already gone
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if mark in env and "sys.stdin.readline" not in cmd and "execnet" not in cmd:
            out.append((pid, cmd))
    return out


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any process a test started is still running once every test and fixture is done (after
    a bounded wait for the ones still stopping), and stop them, so a failed run never leaves work behind."""
    import signal
    import time

    if hasattr(session.config, "workerinput"):
        return  # the controlling process checks for every worker at once
    deadline = time.monotonic() + 30
    left = marked_processes()
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = marked_processes()
    if not left:
        return
    report = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"  pid {pid}: {cmd[:200]}" for pid, cmd in left]
    message = f"{len(left)} process(es) started by the tests outlived them (now killed):\n" + "\n".join(lines)
    if report is not None:
        report.write_line(message, red=True)
    else:
        print(message, file=sys.stderr)
    for pid, _ in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def instance_pids(home: Path) -> list[int]:
    """Model instance and pooled worker processes still running for the store at ``home`` (read from /proc)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes()
            env = (proc / "environ").read_bytes()
        except OSError:
            continue
        worker = any(m in cmd for m in (b"tether.serving.worker", b"tether.serving.pool_worker", b"tether.llm.worker"))
        if worker and f"TETHER_HOME={Path(home).absolute()}".encode() in env:
            found.append(int(proc.name))
    return found
