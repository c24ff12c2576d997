"""`tether serve` as a process: a stop signal stops its instances; if it is killed, they stop by themselves."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import instance_pids
from tether.registry import Registry
from tether.rollout.controller import Controller
from tether.serving.window import MetricStore

pytestmark = pytest.mark.slow


def _wait(predicate, seconds=60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_instances_do_not_outlive_the_server(settings, project, sig):
    with Registry.open(settings) as reg:
        v1 = project.register(reg)
        Controller(reg, MetricStore()).deploy("fraud", v1.ref, reason="first", force=True)
    env = {**os.environ, "TETHER_HOME": str(settings.home), "TETHER_DATABASE_URL": "", "TETHER_BLOB_URL": ""}
    server = subprocess.Popen(
        [sys.executable, "-m", "tether.cli", "serve", "--no-auth", "--port", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert _wait(lambda: instance_pids(settings.home)), "the instance never started"
        server.send_signal(sig)
        server.wait(timeout=30)
        # SIGTERM: stopped by the server on its way out. SIGKILL: the instance notices it is orphaned (1 s poll).
        assert _wait(lambda: not instance_pids(settings.home), seconds=15), instance_pids(settings.home)
    finally:
        if server.poll() is None:
            server.kill()
        for pid in instance_pids(settings.home):
            os.kill(pid, signal.SIGKILL)
