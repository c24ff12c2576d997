"""Time-sortable trace ids.

A trace id is 128 bits in the UUIDv7 layout (RFC 9562 §5.7): 48 bits of Unix milliseconds, the version
nibble, 12 bits of a per-millisecond counter, the variant bits and 62 random bits. Written as 32 lower-case
hex characters it sorts by time as a string and is a valid W3C trace-context trace-id.
"""

from __future__ import annotations

import os
import threading

from tether.core.clock import Clock, SystemClock
from tether.core.types import TraceId


class TraceIdGenerator:
    """Issues strictly increasing trace ids from one process, even within one millisecond."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._last_ms = -1
        self._counter = 0

    def new(self) -> TraceId:
        ms = int(self._clock.now().timestamp() * 1000)
        with self._lock:
            if ms <= self._last_ms:
                # Same (or an earlier, after a clock step) millisecond: keep ordering by counting up.
                ms = self._last_ms
                self._counter += 1
                if self._counter >= 1 << 12:
                    ms += 1
                    self._counter = 0
            else:
                self._counter = 0
            self._last_ms = ms
            counter = self._counter
        rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
        value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand
        return TraceId(f"{value:032x}")


def trace_id_time_ms(trace_id: str) -> int:
    """The Unix time in milliseconds encoded in a trace id."""
    if len(trace_id) != 32:
        raise ValueError(f"a trace id has 32 hex characters, got {len(trace_id)}: {trace_id!r}")
    return int(trace_id[:12], 16)
