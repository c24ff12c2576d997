"""Helpers of the dashboard's browser tests: the demo's store, a real ``tether serve``, keys, bounded traffic."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

TETHER = [sys.executable, "-m", "tether.cli"]
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
]


def chromium() -> str | None:
    """Debian's chromium (never a browser a tool downloads): TETHER_CHROMIUM, else the one on PATH."""
    return os.environ.get("TETHER_CHROMIUM") or shutil.which("chromium")


def wait_for(check: Callable[[], Any], *, timeout: float, every: float = 0.25, what: str = "a condition") -> Any:
    """Bounded polling: the first truthy ``check()``, or AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def demo_store(root: Path) -> Path:
    """Run the tour (small data) as a user would; returns the store's home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    subprocess.run(
        [*TETHER, "demo", "--home", str(root), "--rows", "5000"],
        check=True,
        env=env,
        timeout=900,
        stdout=subprocess.DEVNULL,
    )
    return root / ".tether"


def create_keys(home: Path) -> dict[str, str]:
    from tether.core.settings import Settings
    from tether.registry import Registry
    from tether.serving.auth import create_key

    with Registry.open(Settings(home=home, database_url="", blob_url="")) as reg:
        return {
            # The dashboard's readers are operators: every tenant's data (scoping: tests/api/test_tenant_reads.py).
            role: create_key(
                reg.store.db, f"{role}-key", role, reg.clock.now(), all_tenants=role in ("viewer", "deployer")
            )[1]
            for role in ("client", "viewer", "deployer", "admin")
        }


@contextmanager
def serving(home: Path, *extra: str) -> Iterator[str]:
    """A real ``tether serve`` process on a free port; yields its URL; stopped with SIGTERM."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["TETHER_HOME"] = str(home)
    proc = subprocess.Popen(
        [*TETHER, "serve", "--port", "0", "--tick", "0.5", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]

    def url() -> str | None:
        for line in lines:
            if "serving on " in line:
                return line.split("serving on ", 1)[1].split()[0]
        if proc.poll() is not None:
            raise AssertionError("tether serve exited: " + "".join(lines)[-2000:])
        return None

    try:
        yield wait_for(url, timeout=90, what="tether serve to listen")
    except BaseException:
        sys.stderr.write("tether serve's last output:\n" + "".join(lines)[-8000:])  # the server's side of a failure
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def api(url: str, key: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        url,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except (urllib.error.URLError, OSError) as e:  # refused, reset: no HTTP status at all
        return 0, str(e)


class Traffic:
    """Bounded prediction traffic in a thread: at most ``seconds`` and ``max_requests``, until stopped."""

    def __init__(self, url: str, key: str, data: Path, *, seconds: float = 600, max_requests: int = 100_000) -> None:
        frame = pd.read_parquet(data).drop(columns=["is_fraud", "gender"]).head(300)
        self.records = json.loads(frame.to_json(orient="records"))
        self.url, self.key = url, key
        self.deadline = time.monotonic() + seconds
        self.max_requests = max_requests
        self.sent = self.ok = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(3)]

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def _run(self, seed: int) -> None:
        i = seed
        while not self.stop.is_set() and time.monotonic() < self.deadline and self.sent < self.max_requests:
            rec = self.records[i % len(self.records)]
            i += 7
            body = {"records": [rec], "entity_key": f"c{i}"}
            code, _ = api(f"{self.url}/v1/models/fraud/predict", self.key, "POST", body)
            self.sent += 1
            if code == 200:
                self.ok += 1
            else:
                time.sleep(0.05)  # an instance still starting: do not spin
