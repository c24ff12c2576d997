"""Aliases (``champion``, ``challenger``, custom names) and their full history.

The current pointer lives in ``aliases``; every move is appended to ``alias_events`` (immutable in the
database) with actor, time and reason, so "which version was champion at time T" always has an answer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, delete, insert, select, update

from tether.core.errors import InvalidInputError
from tether.core.types import VersionId
from tether.registry.version import check_name
from tether.store.tables import alias_events, aliases, gate_reports

#: Computed refs that can never be set as aliases.
RESERVED = frozenset({"latest"})
#: Aliases that take traffic: moving one needs a PASS gate report (or a recorded force).
GATED = frozenset({"champion"})


@dataclass(frozen=True)
class AliasEvent:
    id: int
    model_name: str
    alias: str
    version_id: VersionId | None
    previous_version_id: VersionId | None
    actor: str
    reason: str
    at: datetime
    gate_report_id: str | None = None
    forced: bool = False


def check_alias(alias: str) -> str:
    check_name(alias, "alias")
    if alias in RESERVED:
        raise InvalidInputError(f"{alias!r} is computed by tether and cannot be set", hint="choose another alias")
    return alias


def check_reason(reason: str) -> str:
    if not reason or not reason.strip():
        raise InvalidInputError("an alias move needs a reason", hint="pass --reason 'why this move'")
    return reason


def current(conn: Connection, model_name: str, alias: str) -> VersionId | None:
    row = conn.execute(
        select(aliases.c.version_id).where(and_(aliases.c.model_name == model_name, aliases.c.alias == alias))
    ).first()
    return VersionId(row[0]) if row else None


def move(
    conn: Connection,
    *,
    model_name: str,
    alias: str,
    version_id: VersionId | None,
    actor: str,
    reason: str,
    at: datetime,
    gate_report_id: str | None = None,
    forced: bool = False,
) -> AliasEvent:
    """Point ``alias`` at ``version_id`` (or remove it when None) and append the event, in ``conn``'s transaction."""
    check_reason(reason)
    previous = current(conn, model_name, alias)
    where = and_(aliases.c.model_name == model_name, aliases.c.alias == alias)
    if version_id is None:
        if previous is None:
            raise InvalidInputError(f"model {model_name!r} has no alias {alias!r} to remove")
        conn.execute(delete(aliases).where(where))
    elif previous is None:
        conn.execute(insert(aliases).values(model_name=model_name, alias=alias, version_id=version_id, updated_at=at))
    else:
        conn.execute(update(aliases).where(where).values(version_id=version_id, updated_at=at))
    result = conn.execute(
        insert(alias_events).values(
            model_name=model_name,
            alias=alias,
            version_id=version_id,
            previous_version_id=previous,
            actor=actor,
            reason=reason.strip(),
            at=at,
            gate_report_id=gate_report_id,
            forced=forced,
        )
    )
    event_id = result.inserted_primary_key[0] if result.inserted_primary_key else 0
    return AliasEvent(
        int(event_id), model_name, alias, version_id, previous, actor, reason.strip(), at, gate_report_id, forced
    )


def passing_report(conn: Connection, candidate_id: str, champion_id: str | None) -> str | None:
    """The newest PASS gate report for ``candidate_id`` against ``champion_id`` (None: no champion)."""
    champion = (
        gate_reports.c.champion_id.is_(None) if champion_id is None else gate_reports.c.champion_id == champion_id
    )
    row = conn.execute(
        select(gate_reports.c.id)
        .where(gate_reports.c.candidate_id == candidate_id, champion, gate_reports.c.verdict == "PASS")
        .order_by(gate_reports.c.created_at.desc())
        .limit(1)
    ).first()
    return str(row[0]) if row else None


def history(conn: Connection, model_name: str, alias: str | None = None) -> list[AliasEvent]:
    q = select(alias_events).where(alias_events.c.model_name == model_name)
    if alias is not None:
        q = q.where(alias_events.c.alias == alias)
    rows = conn.execute(q.order_by(alias_events.c.at, alias_events.c.id)).mappings()
    return [_event(r) for r in rows]


def at_time(conn: Connection, model_name: str, alias: str, at: datetime) -> VersionId | None:
    """The version ``alias`` pointed at, at time ``at`` (None when it pointed nowhere)."""
    row = conn.execute(
        select(alias_events.c.version_id)
        .where(
            and_(
                alias_events.c.model_name == model_name,
                alias_events.c.alias == alias,
                alias_events.c.at <= at,
            )
        )
        .order_by(alias_events.c.at.desc(), alias_events.c.id.desc())
        .limit(1)
    ).first()
    return VersionId(row[0]) if row and row[0] else None


def of_versions(conn: Connection, model_name: str | None = None) -> dict[str, list[str]]:
    q = select(aliases.c.version_id, aliases.c.alias)
    if model_name is not None:
        q = q.where(aliases.c.model_name == model_name)
    out: dict[str, list[str]] = {}
    for vid, alias in conn.execute(q.order_by(aliases.c.alias)):
        out.setdefault(vid, []).append(alias)
    return out


def _event(r: object) -> AliasEvent:
    m = dict(r)  # type: ignore[call-overload]
    return AliasEvent(**{f.name: m[f.name] for f in dataclasses.fields(AliasEvent)})
