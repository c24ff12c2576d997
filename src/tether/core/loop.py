"""The event loop tether's servers run on: uvloop where it is installed, asyncio's own otherwise.

A gateway hop is mostly socket work (read a request, write it upstream, read the answer, write it back), and
asyncio's selector loop does that work in Python: in a profile of the LLM gateway's hop, a sixth of the
serving thread's time was in ``_SelectorSocketTransport.write``. uvloop (libuv under Cython, what uvicorn and
Sanic run on) does it in C; `bench/llm_gateway.py` and `bench/gateway.py` show the difference side by side.
It is a dependency on Linux and macOS; ``TETHER_EVENT_LOOP=asyncio`` picks the standard loop (a debugger, a
comparison, a platform without uvloop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

LOOPS = ("uvloop", "asyncio")


def run(main: Coroutine[Any, Any, T], loop: str = "uvloop") -> T:
    """`asyncio.run` on the named loop; "uvloop" falls back to asyncio's loop where uvloop is not installed."""
    if loop not in LOOPS:
        raise ValueError(f"unknown event loop {loop!r}: one of {', '.join(LOOPS)}")
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:  # Windows, or an install without it: the standard loop serves the same, slower
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def name() -> str:
    """The running loop's kind, for `/healthz` and the benchmarks: "uvloop" or "asyncio"."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
