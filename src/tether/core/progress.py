"""Progress reporting as a dependency: domain code reports bytes done, faces decide how to show them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

from tether.core.hashing import Progress


class ProgressReporter(Protocol):
    """Opens a progress task; the yielded callable takes the number of units just done."""

    def task(self, description: str, total: int) -> contextlib.AbstractContextManager[Progress]: ...


class NoProgress:
    """Reports nothing (the default for library use)."""

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Progress]:
        yield _ignore


def _ignore(_n: int) -> None:
    return None
