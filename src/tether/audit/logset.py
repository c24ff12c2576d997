"""Every log of a scaled-out deployment, verified and queried as one trail.

Scaled out (``tether serve --role``, or several processes on PostgreSQL), each replica writes its own log of
what it served under ``audit/replicas/<replica>/``, and the leader copies the decisions (versions, gate
verdicts, alias moves, rollout steps, anomalies, scores) onto the main log, ``audit/``. Each log is a complete
log in its own right: its own sequence numbers, Merkle tree and signed checkpoints.

`AuditSet.verify` verifies each log and checks the set is whole: every replica the database has seen serving
(the ``replicas`` table, written by each replica's heartbeat) must have a log here, and a log whose replica
reported more sealed records than it holds has lost its newest segments. `query` runs SQL over a view
``records`` of every log's sealed records with a ``log`` column naming the log (``main`` or the replica);
`trace` finds a trace id in whichever log holds it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tether.audit.log import SCHEMA, AuditLog
from tether.core import InvalidInputError, NotFoundError, Settings
from tether.store.database import Database
from tether.store.tables import replicas

MAIN = "main"


@dataclass
class SetReport:
    logs: dict[str, Any] = field(default_factory=dict)  # name -> that log's verify report
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(r.ok for r in self.logs.values())


class AuditSet(contextlib.AbstractContextManager["AuditSet"]):
    def __init__(self, settings: Settings, *, main: AuditLog | None = None, shipped_only: bool = False) -> None:
        self.settings = settings
        self.root = settings.home / "audit"
        self.logs: dict[str, AuditLog] = {}
        #: Where each log was read from: "local" or "blob store".
        self.sources: dict[str, str] = {}
        if not shipped_only:
            self.logs[MAIN] = main or AuditLog(settings)
            self.sources[MAIN] = "local"
            for d in sorted((self.root / "replicas").glob("*")) if (self.root / "replicas").is_dir() else []:
                if d.is_dir():
                    # Opening a dead replica's log makes this process its writer for a moment: what the replica
                    # acknowledged but had not sealed is sealed now, never lost.
                    self.logs[d.name] = AuditLog(settings, root=d)
                    self.sources[d.name] = "local"
        self._fetch_shipped(shipped_only)

    def _fetch_shipped(self, required: bool) -> None:
        """Logs on a shared (non-local) blob store that are not on this disk: fetched and opened read-only."""
        from tether.audit.ship import fetch, shipped_logs
        from tether.store.blobs import BlobStore

        blobs = BlobStore(self.settings.resolved_blob_url, options=self.settings.blob_options)
        if blobs.local and not required:
            return  # the blob folder is on this disk beside the logs themselves
        for name in shipped_logs(blobs):
            if name in self.logs:
                continue
            dest = fetch(blobs, name, self.settings.home / "audit-shipped" / name)
            self.logs[name] = AuditLog(self.settings, root=dest)
            self.sources[name] = "blob store"

    @property
    def secret(self) -> bytes:
        """The payload digest secret (one per store: every log of the set shares it)."""
        from tether.audit.payload import load_secret

        return load_secret(self.settings)

    def __exit__(self, *exc: object) -> None:
        for log in self.logs.values():
            log.close()

    def seal(self) -> None:
        for log in self.logs.values():
            log.seal()

    def verify(self, held: list[str] | None = None) -> SetReport:
        out = SetReport()
        for name, log in self.logs.items():
            out.logs[name] = log.verify(held=held if name == MAIN else None)
        for name, role, info in self._seen():
            if role not in ("gateway", "all"):
                continue
            found = self.logs.get(name)
            if found is None:
                out.problems.append(
                    f"replica {name} ({role}) served traffic but its audit log is missing "
                    f"(expected {self.root / 'replicas' / name})"
                )
            elif isinstance(info, dict) and int(info.get("audit_size") or 0) > found.tree.size:
                out.problems.append(
                    f"replica {name} reported {info['audit_size']} sealed records but its log holds "
                    f"{found.tree.size}: its newest segments are gone"
                )
        return out

    def _seen(self) -> list[tuple[str, str, Any]]:
        try:
            db = Database(self.settings.resolved_database_url)
            with db.connect() as conn:
                rows = conn.execute(select(replicas.c.name, replicas.c.role, replicas.c.info)).all()
            db.dispose()
        except Exception:  # no database reachable: the logs on disk are all that can be checked
            return []
        return [(r.name, r.role, r.info) for r in rows]

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """SQL over the view ``records``: every log's sealed records, with a ``log`` column."""
        import duckdb

        con = duckdb.connect()
        try:
            parts = []
            for name, log in self.logs.items():
                files = [str(p) for p in log.verified_segments()]
                if files:
                    parts.append(f"SELECT *, {_quote(name)} AS log FROM read_parquet({files!r}, union_by_name=true)")
            if parts:
                con.execute("CREATE VIEW records AS " + " UNION ALL BY NAME ".join(parts))
            else:
                con.register("empty", SCHEMA.empty_table())
                con.execute(f"CREATE VIEW records AS SELECT *, {_quote(MAIN)} AS log FROM empty")
            try:
                rel = con.execute(sql)
            except duckdb.Error as e:
                raise InvalidInputError(
                    f"the audit query failed: {e}", hint="query the view 'records'; see docs/audit.md"
                ) from None
            return [d[0] for d in rel.description or []], rel.fetchall()
        finally:
            con.close()

    def trace(self, trace_id: str) -> dict[str, Any]:
        for name, log in self.logs.items():
            with contextlib.suppress(NotFoundError):
                return {**log.trace(trace_id), "log": name}
        raise NotFoundError(
            f"no sealed audit record with trace id {trace_id} in any of {len(self.logs)} logs",
            hint="records are sealed every few seconds; 'tether audit seal' seals now",
        )


def _quote(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


def replica_root(settings: Settings, name: str) -> Path:
    return settings.home / "audit" / "replicas" / name
