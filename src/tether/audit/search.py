"""Structured search over the sealed audit records: by model, version, trace id, kind and time range, a page at a
time, newest first. Every filter is a bound parameter of one DuckDB statement over the verified segments: no
caller's text is ever SQL (``tether audit query`` is the SQL face, for operators on the machine).

Also the last verify: ``tether audit verify`` and ``POST /v1/audit/verify`` keep their result beside the log, so
the dashboard shows when the whole trail was last checked and what was found.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import orjson

from tether.audit.log import KINDS, AuditLog
from tether.audit.record import TENANT_KINDS
from tether.core.errors import IntegrityError, InvalidInputError
from tether.core.hashing import canonical_json
from tether.core.signing import verify_signature

COLUMNS = (
    "seq",
    "kind",
    "trace_id",
    "at",
    "model",
    "version_id",
    "tenant",
    "input_digest",
    "output_digest",
    "payload",
)
QUOTED = ", ".join(f'"{c}"' for c in COLUMNS)  # "at" is a DuckDB keyword
LAST_VERIFY = "last-verify.json"


@dataclass(frozen=True)
class Filters:
    model: str | None = None
    version: str | None = None
    trace: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    #: Records of this tenant only.
    tenant: str | None = None
    #: The reader's tenant (None: it reads every tenant's): its own tenant's records and the platform's.
    scope: str | None = None

    def check(self) -> Filters:
        if self.kind is not None and self.kind not in KINDS:
            raise InvalidInputError(f"unknown record kind {self.kind!r}", hint=f"one of {', '.join(KINDS)}")
        for name, t in (("since", self.since), ("until", self.until)):
            if t is not None and t.tzinfo is None:
                raise InvalidInputError(f"{name} needs a time zone (e.g. 2026-12-03T10:00:00Z)")
        if self.since and self.until and self.since > self.until:
            raise InvalidInputError(f"since ({self.since.isoformat()}) is after until ({self.until.isoformat()})")
        return self


def search(log: AuditLog, filters: Filters, *, limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """One page of matching records (newest first) and how many match in all."""
    import duckdb

    filters.check()
    found = [x for x in log.summaries.of(log.verified_segments()) if x.may_match(filters)]
    if not found:
        return [], 0
    where: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("model", filters.model),
        ("kind", filters.kind),
        ("trace_id", filters.trace),
        ("tenant", filters.tenant),
    ):
        if value is not None:
            where.append(f'"{column}" = ?')
            params.append(value)
    if filters.scope is not None:
        where.append(f'("tenant" = ? OR "kind" NOT IN ({", ".join("?" for _ in TENANT_KINDS)}))')
        params += [filters.scope, *TENANT_KINDS]
    if filters.version is not None:  # an id or an id prefix, as everywhere else
        where.append("starts_with(version_id, ?)")
        params.append(filters.version.lower())
    if filters.since is not None:
        where.append('"at" >= ?')
        params.append(filters.since)
    if filters.until is not None:
        where.append('"at" <= ?')
        params.append(filters.until)
    cond = f" WHERE {' AND '.join(where)}" if where else ""
    exact = [x.exact(filters) for x in found]
    # Segments sealed before tenants were kept lack the column: read by name (NULL there), or, when none has
    # it, give it as NULL so the statement is the same.
    source = (
        "read_parquet(?, union_by_name=true)"
        if any(x.has_tenant for x in found)
        else "(SELECT *, NULL::VARCHAR AS tenant FROM read_parquet(?))"
    )
    con = duckdb.connect()
    try:
        if all(n is not None for n in exact):
            total = sum(n or 0 for n in exact)
        else:
            counted = con.execute(
                f"SELECT count(*) FROM {source}{cond}", [[str(x.path) for x in found], *params]
            ).fetchone()
            total = int(counted[0]) if counted else 0
        # The page is the newest matches: read the fewest newest segments that hold offset + limit of them
        # (exactly known from the summaries, or bounded by their row counts and widened when short).
        need, bound, take = offset + limit, 0, 0
        for x, n in zip(reversed(found), reversed(exact), strict=True):
            take += 1
            bound += x.rows if n is None else n
            if bound >= need:
                break
        while True:
            files = [str(x.path) for x in found[len(found) - take :]]
            seqs = [
                r[0]
                for r in con.execute(
                    f'SELECT "seq" FROM {source}{cond} ORDER BY "seq" DESC LIMIT ? OFFSET ?',
                    [files, *params, limit, offset],
                ).fetchall()
            ]
            if len(seqs) == limit or take == len(found) or all(n is not None for n in exact):
                break
            take = min(len(found), take * 2)
        # Only the page's rows are read whole (row groups pruned by seq).
        rows = (
            con.execute(
                f'SELECT {QUOTED} FROM {source} WHERE "seq" BETWEEN ? AND ? AND list_contains(?, "seq") '
                'ORDER BY "seq" DESC',
                [files, min(seqs), max(seqs), seqs],
            ).fetchall()
            if seqs
            else []
        )
    finally:
        con.close()
    out = []
    for r in rows:
        rec = dict(zip(COLUMNS, r, strict=True))
        rec["at"] = rec["at"].isoformat()
        rec["tenant"] = rec["tenant"] or ""
        rec["payload"] = orjson.loads(rec["payload"]) if rec["payload"] else None
        out.append(rec)
    return out, total


def record_verify(log: AuditLog, report: Any, *, at: datetime, actor: str) -> dict[str, Any]:
    """Keep a verify's result beside the log, signed with the store's key (written whole: a crash leaves the
    previous one), so an edited file shows as unsigned rather than as a clean bill of health."""
    doc: dict[str, Any] = {**asdict(report), "ok": report.ok, "at": at.isoformat(), "actor": actor}
    doc["signature"] = log.key.sign(canonical_json(doc))
    tmp = log.root / (LAST_VERIFY + ".tmp")
    tmp.write_bytes(orjson.dumps(doc))
    os.replace(tmp, log.root / LAST_VERIFY)
    return {**doc, "signature_ok": True}


def last_verify(log: AuditLog) -> dict[str, Any] | None:
    """The last verify's result with ``signature_ok``: whether the store's key signed exactly this."""
    path = log.root / LAST_VERIFY
    if not path.exists():
        return None
    try:
        doc = orjson.loads(path.read_bytes())
        sig = doc.pop("signature", "")
        verify_signature(log.key.public_key_hex, canonical_json(doc), sig, what="the last verify")
        ok = True
    except (orjson.JSONDecodeError, IntegrityError, TypeError, AttributeError):
        ok = False
    return {**(doc if isinstance(doc, dict) else {}), "signature_ok": ok}
