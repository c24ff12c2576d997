"""The environment lock: which Python and which installed distributions the code ran with."""

from __future__ import annotations

import copy
import os
import platform
import sys
import threading
from importlib import metadata
from typing import Any

_cached: tuple[tuple[tuple[str, int], ...], dict[str, Any]] | None = None
_lock = threading.Lock()


def environment_lock() -> dict[str, Any]:
    """Python version, platform and every installed distribution as ``name==version``, sorted.

    Read once per process and again only when a folder on ``sys.path`` changes (installing, upgrading or
    removing a distribution adds or removes its ``.dist-info`` folder, which moves the folder's mtime): reading
    every distribution's metadata was 83% of a registration's time with 388 packages installed."""
    global _cached
    key = _path_state()
    with _lock:
        if _cached is not None and _cached[0] == key:
            return copy.deepcopy(_cached[1])
        lock = _read_lock()
        _cached = (key, lock)
        return copy.deepcopy(lock)


def _path_state() -> tuple[tuple[str, int], ...]:
    out = []
    for entry in sys.path:
        try:
            out.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            out.append((entry, -1))
    return tuple(out)


def _read_lock() -> dict[str, Any]:
    packages: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.name  # None for a broken installation
        if name:
            packages[_canonical(name)] = dist.version
    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": f"{platform.system().lower()}-{platform.machine()}",
        "packages": [f"{n}=={v}" for n, v in sorted(packages.items())],
    }


def _canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return "-".join(name.replace("_", "-").replace(".", "-").lower().split("-"))


def environment_diff(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between two environment locks, one line per difference."""
    out: list[str] = []
    for key in ("python", "implementation", "platform"):
        if recorded.get(key) != current.get(key):
            out.append(f"{key}: recorded {recorded.get(key)}, now {current.get(key)}")
    old = dict(p.split("==", 1) for p in recorded.get("packages", []))
    new = dict(p.split("==", 1) for p in current.get("packages", []))
    for n in sorted(old.keys() | new.keys()):
        if old.get(n) != new.get(n):
            out.append(f"{n}: recorded {old.get(n, 'absent')}, now {new.get(n, 'absent')}")
    return out


def requirements_text(lock: dict[str, Any]) -> str:
    """The lock as a pip requirements file."""
    head = f"# python {lock.get('python')} on {lock.get('platform')}\n"
    return head + "".join(p + "\n" for p in lock.get("packages", []))
