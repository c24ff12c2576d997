"""Rich rendering shared by the commands: progress bars, tables, one-line errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from tether.core.hashing import Progress as Tick

console = Console()
err_console = Console(stderr=True)

#: Below this many bytes a progress bar would only flicker.
PROGRESS_MIN_BYTES = 32 << 20


class RichProgress:
    """A `tether.core.ProgressReporter` drawing Rich progress bars on stderr for large transfers."""

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Tick]:
        if total < PROGRESS_MIN_BYTES or not err_console.is_terminal:
            yield lambda _n: None
            return
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
        ) as progress:
            task = progress.add_task(description, total=total)
            yield lambda n: progress.advance(task, n)
