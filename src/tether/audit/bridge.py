"""Decisions onto the trail: registered versions, gate policies, alias moves, gate verdicts, rollout decisions,
deployment events (deploy, retire, isolate), drift anomalies and grader scores.

Those are written first to their own insert-only tables by the registry, the gate, the controller and the
drift watch (layers below the audit log, which must not depend on it). `sync` copies every row not yet on the
trail into it, in each table's order, as a record whose trace id names its source row (``alias_events:17``),
so copying again never duplicates: what is on the trail is read back from the sealed segments, and what was
appended since the last seal is remembered. `tether serve` syncs before every seal; `tether audit seal` too.

Each table is read from a cursor, not whole at every seal (at 10,000 versions a whole read was a second of work
every two seconds): tables with integer ids from the last id seen, with the gaps described below; the two keyed by
digest (versions, gate reports) from their newest ``created_at`` less `REREAD`, the rows already copied skipped.

Grader scores (``grader_scores``, one row per metric) become one ``score`` record per interaction, grader
version and origin (the rows of one grading pass are written in one transaction), with trace id
``score:<interaction trace>:<grader>:<origin>``; they are read from a cursor (ids past the last one seen), not
re-read whole at every seal. An id the cursor passed without seeing its row (PostgreSQL hands sequence numbers
out before commit, so a slow transaction commits behind a faster one) is a gap, looked for again at every sync
until its row appears or `GAP_SECONDS` pass (a rolled-back insert's id never fills).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, select

from tether.audit.log import AuditLog, AuditRecord, digest_of
from tether.registry import Registry
from tether.store.tables import (
    alias_events,
    anomalies,
    deployment_events,
    gate_policies,
    gate_reports,
    grader_scores,
    model_versions,
    rollout_events,
    rollouts,
)

SOURCES: list[tuple[str, Table, str, Any]] = [
    ("version", model_versions, "created_at", model_versions.c.created_at),
    ("policy", gate_policies, "at", gate_policies.c.id),
    ("alias", alias_events, "at", alias_events.c.id),
    ("gate", gate_reports, "created_at", gate_reports.c.created_at),
    ("rollout", rollout_events, "at", rollout_events.c.id),
    ("deployment", deployment_events, "at", deployment_events.c.id),
    ("anomaly", anomalies, "detected_at", anomalies.c.id),
]
#: Rows keyed by digest are read again this far behind the newest one copied: registering processes stamp
#: ``created_at`` with their own clocks and commit in their own time.
REREAD = timedelta(minutes=10)


class Cursor:
    """Integer ids read in order, remembering ids passed over without their row (a gap: PostgreSQL hands sequence
    numbers out before commit, so a slow transaction commits behind a faster one) until the row appears or
    `GAP_SECONDS` pass (a rolled-back insert's id never fills)."""

    def __init__(self) -> None:
        self.top = 0
        self.gaps: dict[int, float] = {}

    @property
    def low(self) -> int:
        """The smallest id a read must include."""
        return min(self.gaps, default=self.top + 1)

    def saw(self, seen: set[int]) -> None:
        now = time.monotonic()
        top = max(seen, default=self.top)
        skipped = top - self.top - sum(1 for i in seen if i > self.top)
        if 0 < skipped <= MAX_GAPS:
            for i in range(self.top + 1, top):
                if i not in seen:
                    self.gaps[i] = now
        for i, since in list(self.gaps.items()):
            if i in seen or now - since > GAP_SECONDS:
                del self.gaps[i]
        self.top = max(self.top, top)


class Bridge:
    def __init__(self, registry: Registry, log: AuditLog) -> None:
        self.registry, self.log = registry, log
        _, rows = log.query(
            "SELECT trace_id FROM records WHERE kind IN (" + ", ".join(f"'{k}'" for k, *_ in SOURCES) + ")"
        )
        self.done: set[str] = {r[0] for r in rows}
        _, rows = log.query("SELECT trace_id FROM records WHERE kind = 'score'")
        self.done.update(r[0] for r in rows)
        self._cursors: dict[str, Cursor] = {kind: Cursor() for kind, *_ in SOURCES}
        self._scores_cursor = Cursor()
        self._since: dict[str, datetime] = {}  # digest-keyed tables: the newest created_at copied
        self._triads: dict[str, tuple[str, str, str]] = {}

    @property
    def _gaps(self) -> dict[int, float]:
        """The score rows' gaps (ids passed over without their row yet)."""
        return self._scores_cursor.gaps

    def sync(self) -> int:
        """Append every decision row not yet on the trail; returns how many."""
        new = list(self._pending())
        if new:
            self.log.append_many(new)
            self.done.update(r.trace_id for r in new)
        return len(new)

    def _triad(self, version_id: str | None) -> tuple[str, str, str]:
        if not version_id:
            return ("", "", "")
        t = self._triads.get(version_id)
        if t is None:
            mv = self.registry.get(version_id)
            t = self._triads[version_id] = (mv.code.digest, mv.data.digest, mv.weights.digest)
        return t

    def _pending(self) -> Iterator[AuditRecord]:
        with self.registry.store.db.connect() as conn:
            models: dict[int, tuple[str, str]] = {}
            for kind, table, at_col, order in SOURCES:
                cursor = self._cursors[kind]
                if "id" in table.c and kind != "version" and kind != "gate":
                    q = select(table).where(table.c.id >= cursor.low).order_by(order)
                else:
                    since = self._since.get(kind)
                    q = select(table).order_by(order)
                    if since is not None:
                        q = q.where(table.c[at_col] >= since - REREAD)
                seen: set[int] = set()
                for row in conn.execute(q).mappings():
                    if kind not in ("version", "gate"):
                        seen.add(int(row["id"]))
                    else:
                        self._since[kind] = max(self._since.get(kind, row[at_col]), row[at_col])
                    trace = f"{table.name}:{row['id']}"
                    if trace in self.done:
                        continue
                    payload = {str(k): _plain(v) for k, v in row.items()}  # keys may be str subclasses
                    if kind == "rollout":
                        if not models or row["rollout_id"] not in models:
                            models.update(
                                {r.id: (r.model_name, r.candidate_id) for r in conn.execute(select(rollouts))}
                            )
                        model, version = models.get(row["rollout_id"], ("", ""))
                    elif kind == "gate":
                        model, version = row["model_name"], row["candidate_id"]
                    elif kind == "version":
                        model, version = row["name"], row["id"]
                    else:
                        model, version = row["model_name"], row.get("version_id") or ""
                    code, data, weights = self._triad(version)
                    yield AuditRecord(
                        kind=kind,
                        trace_id=trace,
                        at=row[at_col],
                        model=model,
                        version_id=version,
                        code_digest=code,
                        data_digest=data,
                        weights_digest=weights,
                        input_digest=digest_of(payload),
                        payload=payload,
                    )
                if kind not in ("version", "gate"):
                    cursor.saw(seen)
            yield from self._scores(conn)

    def _scores(self, conn: Any) -> Iterator[AuditRecord]:
        c = grader_scores.c
        groups: dict[str, list[dict[str, Any]]] = {}
        seen: set[int] = set()
        for row in conn.execute(select(grader_scores).where(c.id >= self._scores_cursor.low).order_by(c.id)).mappings():
            seen.add(row["id"])
            key = f"score:{row['trace_id']}:{row['grader_id'][:16]}:{row['origin']}"
            if key not in self.done:
                groups.setdefault(key, []).append(dict(row))
        self._scores_cursor.saw(seen)
        for key, rows in groups.items():
            first = rows[0]
            payload = {
                "interaction": first["trace_id"],
                "grader_id": first["grader_id"],
                "origin": first["origin"],
                "arm": first["arm"],
                "tenant": first["tenant"],
                "cache": first["cache"],
                "stratum": first["stratum"],
                "inclusion": first["inclusion"],
                "rows": [r["id"] for r in rows],
                "scores": {
                    r["metric"]: {"value": r["value"], "error": r["error"], "detail": r["detail"]} for r in rows
                },
            }
            code, data, weights = self._triad(first["version_id"])
            yield AuditRecord(
                kind="score",
                trace_id=key,
                at=first["at"],
                model=first["model_name"],
                version_id=first["version_id"],
                code_digest=code,
                data_digest=data,
                weights_digest=weights,
                input_digest=digest_of(payload),
                payload=payload,
                tenant=first["tenant"],
            )


#: How long a skipped row id is looked for again (a transaction committing out of id order is seconds
#: behind at most; a rolled-back insert's id never fills). Rows are never copied twice: the done set.
GAP_SECONDS = 300.0
#: More ids skipped at once than this is a sequence that jumped (a restore, a reset), not commits in flight.
MAX_GAPS = 100_000


def _plain(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v
