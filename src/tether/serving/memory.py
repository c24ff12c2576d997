"""What a process holds in memory, and giving freed memory back to the system.

A pooled worker accounts each model it loads by what loading it cost: the growth of the C heap (glibc's
``mallinfo2``: bytes in use in the arenas plus mmapped blocks, which is where NumPy arrays and most native model
state live) or of the resident set (which also sees CPython's own arenas), whichever grew more. Freed memory
stays with the process unless it is handed back: after evicting models the worker calls ``malloc_trim(0)``, which
returns the free pages at the top of every arena to the kernel (the resident set shrinks; ``bench/fleet.py``
measures it).

glibc only. Elsewhere (musl, macOS) the heap figure is unavailable, the resident set alone is used, and trimming is
a no-op; the accounting stays conservative because a model is never charged less than its size on disk.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from functools import lru_cache

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def heap_bytes() -> int | None:
    """Bytes the C allocator has handed out and not had back (None where glibc's ``mallinfo2`` is missing)."""
    libc = _libc()
    fn = getattr(libc, "mallinfo2", None) if libc is not None else None
    if fn is None:
        return None
    fn.restype = _Mallinfo2
    info = fn()
    return int(info.uordblks + info.hblkhd)


def rss_bytes(pid: int | None = None) -> int:
    """The resident set of a process (this one by default), in bytes; 0 if it cannot be read."""
    try:
        with open(f"/proc/{pid or 'self'}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        if pid is None:
            import resource

            return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
        return 0


def trim() -> bool:
    """Give free heap pages back to the kernel (glibc's ``malloc_trim``); whether anything was released."""
    libc = _libc()
    fn = getattr(libc, "malloc_trim", None) if libc is not None else None
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_size_t]
    return bool(fn(0))


class Growth:
    """The memory a piece of work added: ``with Growth() as g: load()`` then ``g.bytes``."""

    def __init__(self, floor: int = 0) -> None:
        self.floor = floor
        self.bytes = floor

    def __enter__(self) -> Growth:
        self._heap = heap_bytes()
        self._rss = rss_bytes()
        return self

    def __exit__(self, *exc: object) -> None:
        grown = rss_bytes() - self._rss
        heap = heap_bytes()
        if heap is not None and self._heap is not None:
            grown = max(grown, heap - self._heap)
        self.bytes = max(self.floor, grown)
