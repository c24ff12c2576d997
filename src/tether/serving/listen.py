"""Learn of routing changes at once: PostgreSQL LISTEN on ``tether_changes`` (a trigger NOTIFYs on commit).

Migration 0009 puts a statement trigger on ``routing``, ``endpoints`` and ``api_keys`` that notifies the
channel with the table's name, however the change was made. `ChangeListener` holds one autocommit psycopg
connection in a daemon thread, waits on notifications and calls ``on_change(table)`` for each (from that
thread: the callback must be thread-safe, e.g. ``loop.call_soon_threadsafe``). When the connection drops it
reconnects with backoff and calls ``on_change(None)`` once it is back (changes made meanwhile were missed);
meanwhile the server's own poll keeps running, so a lost listener costs latency, never correctness.

Only PostgreSQL has LISTEN; on SQLite there is nothing to listen to and the poll alone serves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.engine import make_url

log = logging.getLogger("tether.listen")

CHANNEL = "tether_changes"


def _conninfo(url: str) -> str:
    u = make_url(url)
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


class ChangeListener:
    def __init__(self, url: str, on_change: Callable[[str | None], None]) -> None:
        self.url = url
        self.on_change = on_change
        self.connected = False
        self.notifications = 0
        self.reconnects = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tether-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import psycopg

        backoff = 0.2
        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(_conninfo(self.url), autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connected, backoff = True, 0.2
                    if not first:
                        self.reconnects += 1
                        self.on_change(None)  # whatever changed while we were away
                    first = False
                    while not self._stop.is_set():
                        for n in conn.notifies(timeout=1.0):
                            self.notifications += 1
                            self.on_change(n.payload or None)
            except Exception as e:  # the database went away: retry; the poll covers the gap
                self.connected = False
                self.last_error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}"
                log.warning("change listener lost its connection (%s); retrying in %.1f s", self.last_error, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                time.sleep(0)
        self.connected = False
