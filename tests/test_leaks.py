"""The session's leak check sees what a test starts: a child process inherits the run's mark, so one left
running fails the run (tests/conftest.py::pytest_sessionfinish) instead of running on for hours."""

import subprocess
import sys

from tests.conftest import marked_processes


def test_a_process_a_test_starts_is_seen_until_it_stops():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert child.pid in {pid for pid, _ in marked_processes()}
    finally:
        child.kill()
        child.wait(timeout=10)
    assert child.pid not in {pid for pid, _ in marked_processes()}
