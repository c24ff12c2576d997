"""What a serving process reads of the store, and only when it changed.

Every refresh (twice a second, and at once on a PostgreSQL notification) reads the change counters, one small
query (`tether.store.changes`). Only a topic whose counter moved is read further, and for the stamped tables
(routing, monitor settings, placements) only the rows written since the last look. So a refresh costs the same
at one model and at a thousand when nothing changed, and a change costs what it touched. A full read happens at
start, every `FULL_SECONDS` as a safety net, and whenever a counter moved with no stamped row to show for it (a
row deleted by hand).

`ChangeReader.read` does the database work (a worker thread may run it) and returns a `Delta`; the server applies
it on the event loop (`tether.api.server.Server.apply_changes`), where applying is in-memory work proportional to
what changed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from tether.llm.ledger import read_limits
from tether.monitor.config import MonitorConfig
from tether.serving import table as routing_table
from tether.serving.routing import RoutingTable
from tether.store import changes
from tether.store.database import Database
from tether.store.tables import model_versions, monitor_configs, placements

#: A whole read of every topic this often, whatever the counters say.
FULL_SECONDS = 60.0


@dataclass
class Delta:
    counters: dict[str, int]
    full: bool = False
    #: Tables written since the last look (all of them after a full read), with their revisions.
    routing: dict[str, tuple[RoutingTable, int]] | None = None
    #: Models retired since the last look (after a full read: every model not in ``routing``).
    retired: set[str] = field(default_factory=set)
    endpoints: dict[str, tuple[str, str, str]] | None = None
    #: Stored monitor settings written since the last look (the whole table after a full read).
    monitor: dict[str, MonitorConfig] | None = None
    #: Version -> must run alone (True) or may be pooled (False), as flagged since the last look.
    placements: dict[str, bool] | None = None
    keys: bool = False
    budgets: Any = None
    #: Versions named by the routing read that were not named before: id -> (model, flavor, flavor config), read
    #: in one query (unchecked: only where a version runs is decided from it; every load checks the version).
    versions: dict[str, tuple[str, str, dict[str, Any]]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (
            self.full
            or self.routing
            or self.retired
            or self.endpoints is not None
            or self.monitor
            or self.placements
            or self.keys
            or self.budgets is not None
        )


class ChangeReader:
    def __init__(self, db: Database) -> None:
        self.db = db
        #: The counters as last applied (empty: nothing read yet, the next read is whole).
        self.seen: dict[str, int] = {}
        self._full_at = 0.0
        self.known: set[str] = set()

    def read(self, *, full: bool = False) -> Delta:
        """What changed since the counters in `seen` (everything, when ``full`` or a full read is due)."""
        full = full or not self.seen or time.monotonic() - self._full_at > FULL_SECONDS
        with self.db.connect() as conn:
            now = changes.counters(conn)
            delta = Delta(now, full=full)
            moved = {t for t, n in now.items() if n != self.seen.get(t)}
            if full:
                delta.routing = routing_table.read_all(conn)
            elif "routing" in moved:
                delta.routing, delta.retired, top = routing_table.read_since(conn, self.seen.get("routing", 0))
                if top < now["routing"] and not delta.routing and not delta.retired:
                    # The counter moved with no row stamped: a delete. Read the table whole.
                    delta.full, delta.routing = True, routing_table.read_all(conn)
            if delta.routing:
                named = {v for t, _ in delta.routing.values() for v in (t.champion, t.canary, t.shadow) if v}
                delta.versions = _versions(conn, sorted(named - self.known))
            if full or "endpoints" in moved:
                delta.endpoints = routing_table.read_endpoints(conn)
            if full or "monitor_configs" in moved:
                since = 0 if full else self.seen.get("monitor_configs", 0)
                rows = changes.stamped_since(conn, monitor_configs, since)
                delta.monitor = {str(r["model_name"]): MonitorConfig.model_validate(r["config"]) for r in rows}
            if full or "placements" in moved:
                since = 0 if full else self.seen.get("placements", 0)
                q = select(placements.c.version_id, placements.c.alone).where(placements.c.seq > since)
                delta.placements = {r[0]: bool(r[1]) for r in conn.execute(q)}
            delta.keys = full or "api_keys" in moved
            if full or "llm_budgets" in moved:
                delta.budgets = read_limits(self.db)
        return delta

    def applied(self, delta: Delta) -> None:
        """The server applied ``delta``: later reads start from its counters."""
        self.seen = {t: max(n, self.seen.get(t, 0)) for t, n in delta.counters.items()}
        if delta.full:
            self._full_at = time.monotonic()
        self.known.update(delta.versions)


def _versions(conn: Any, ids: list[str]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    out: dict[str, tuple[str, str, dict[str, Any]]] = {}
    c = model_versions.c
    for i in range(0, len(ids), 500):
        q = select(c.id, c.name, c.flavor, c.flavor_config).where(c.id.in_(ids[i : i + 500]))
        out.update({r[0]: (r[1], r[2], r[3]) for r in conn.execute(q)})
    return out
