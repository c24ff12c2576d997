"""Aliases (``champion``, ``challenger``, custom names) and their full history.

There is no mutable pointer: ``alias_events`` (insert-only in the database) is the only record, and an
alias's current version is its newest event. Every read checks the history it derives from: each event must
start where the one before it ended, and every move of a gated alias must carry a PASS gate report bound to
that pair of versions under a gate policy of the model, or a recorded force. An UPDATE on a table therefore
cannot move ``champion`` (there is nothing to update), and a row inserted behind tether's back is refused on
the next read unless it follows the rule, in which case it is an ordinary, audited move.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from tether.core.errors import IntegrityError, InvalidInputError
from tether.core.types import VersionId, short
from tether.registry.version import check_name
from tether.store.tables import alias_events, gate_policies, gate_reports

#: Computed refs that can never be set as aliases.
RESERVED = frozenset({"latest"})
#: Aliases that take traffic: moving one needs a PASS gate report under the model's policy (or a recorded force).
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
    """The version ``model_name@alias`` names now: its newest event, after checking the whole history."""
    events = history(conn, model_name, alias)
    return events[-1].version_id if events else None


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
    """Point ``alias`` at ``version_id`` (or remove it when None) by appending an event, in ``conn``'s transaction."""
    check_reason(reason)
    previous = current(conn, model_name, alias)
    if version_id is None and previous is None:
        raise InvalidInputError(f"model {model_name!r} has no alias {alias!r} to remove")
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


def history(conn: Connection, model_name: str, alias: str | None = None) -> list[AliasEvent]:
    """Every move, oldest first (in the order they were written), each checked against the one before it."""
    q = select(alias_events).where(alias_events.c.model_name == model_name)
    if alias is not None:
        q = q.where(alias_events.c.alias == alias)
    events = [_event(r) for r in conn.execute(q.order_by(alias_events.c.id)).mappings()]
    _check(conn, events)
    return events


def current_of(conn: Connection, models: list[str]) -> dict[str, dict[str, VersionId]]:
    """model -> alias -> the version it names now, for many models in three queries, every history checked."""
    out: dict[str, dict[str, VersionId]] = {}
    for i in range(0, len(models), 500):
        chunk = models[i : i + 500]
        q = select(alias_events).where(alias_events.c.model_name.in_(chunk)).order_by(alias_events.c.id)
        by_model: dict[str, list[AliasEvent]] = {}
        for r in conn.execute(q).mappings():
            e = _event(r)
            by_model.setdefault(e.model_name, []).append(e)
        evidence = _evidence(conn, [e for events in by_model.values() for e in events])
        for name, events in by_model.items():
            _check(conn, events, evidence)
            now: dict[str, VersionId | None] = {}
            for e in events:
                now[e.alias] = e.version_id
            out[name] = {a: v for a, v in sorted(now.items()) if v is not None}
    return out


#: The gate evidence alias moves are checked against: report rows by id; per model, its first policy's time and
#: every policy digest it has had.
Evidence = tuple[dict[str, Any], dict[str, tuple[datetime | None, set[str]]]]


def _evidence(conn: Connection, events: list[AliasEvent]) -> Evidence:
    gated = [e for e in events if e.alias in GATED and e.version_id is not None and not e.forced]
    ids = sorted({e.gate_report_id for e in gated if e.gate_report_id})
    reports: dict[str, Any] = {}
    for i in range(0, len(ids), 500):
        q = select(gate_reports).where(gate_reports.c.id.in_(ids[i : i + 500]))
        reports.update({r["id"]: r for r in conn.execute(q).mappings()})
    models = sorted({e.model_name for e in gated})
    policies: dict[str, tuple[datetime | None, set[str]]] = {m: (None, set()) for m in models}
    for i in range(0, len(models), 500):
        q2 = select(gate_policies.c.model_name, gate_policies.c.at, gate_policies.c.digest).where(
            gate_policies.c.model_name.in_(models[i : i + 500])
        )
        for name, at, digest in conn.execute(q2):
            first, digests = policies[name]
            policies[name] = (at if first is None or at < first else first, digests | {digest})
    return reports, policies


def _check(conn: Connection, events: list[AliasEvent], evidence: Evidence | None = None) -> None:
    evidence = evidence if evidence is not None else _evidence(conn, events)
    last: dict[str, VersionId | None] = {}
    for e in events:
        before = last.get(e.alias)
        if e.previous_version_id != before:
            raise IntegrityError(
                f"alias history of {e.model_name}@{e.alias} is broken at event {e.id}: it moves from "
                f"{_s(e.previous_version_id)} but the alias named {_s(before)}",
                expected=str(before),
                actual=str(e.previous_version_id),
                hint="an alias event was written or removed behind tether's back; restore the database from a backup",
            )
        if e.alias in GATED and e.version_id is not None and not e.forced:
            _check_gated(e, evidence)
        last[e.alias] = e.version_id


def _check_gated(e: AliasEvent, evidence: Evidence) -> None:
    reports, policies = evidence
    row = reports.get(e.gate_report_id) if e.gate_report_id is not None else None
    first_policy, digests = policies.get(e.model_name, (None, set()))
    ok = (
        row is not None
        and row["verdict"] == "PASS"
        and row["candidate_id"] == e.version_id
        and row["champion_id"] == e.previous_version_id
        and (
            # A move made before the model had any gate policy (a store from before policies existed) was
            # judged by the rule of its time: a PASS for the pair. From the first policy on, it must be one.
            (row["policy_digest"] is None and (first_policy is None or e.at < first_policy))
            or row["policy_digest"] in digests
        )
    )
    if not ok:
        raise IntegrityError(
            f"{e.model_name}@{e.alias} was moved to {_s(e.version_id)} by event {e.id} without a PASS gate report "
            "for that pair under the model's gate policy, and the move is not recorded as forced",
            expected="a PASS report under the gate policy",
            actual=str(e.gate_report_id),
            hint="an alias event was written behind tether's back; restore the database from a backup",
        )


def at_time(conn: Connection, model_name: str, alias: str, at: datetime) -> VersionId | None:
    """The version ``alias`` pointed at, at time ``at`` (None when it pointed nowhere)."""
    out: VersionId | None = None
    for e in history(conn, model_name, alias):
        if e.at <= at:
            out = e.version_id
    return out


def of_versions(conn: Connection, model_name: str | None = None) -> dict[str, list[str]]:
    """version id -> the aliases that name it now."""
    names = (
        [model_name]
        if model_name is not None
        else [r[0] for r in conn.execute(select(alias_events.c.model_name).distinct())]
    )
    out: dict[str, list[str]] = {}
    for aliases in current_of(conn, names).values():
        for alias, vid in aliases.items():
            out.setdefault(vid, []).append(alias)
    return out


def _s(vid: str | None) -> str:
    return f"{short(vid)}…" if vid else "nothing"


def _event(r: object) -> AliasEvent:
    m = dict(r)  # type: ignore[call-overload]
    return AliasEvent(**{f.name: m[f.name] for f in dataclasses.fields(AliasEvent)})
