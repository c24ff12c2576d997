"""What a model's serving does outside a rollout: deployed, retired, a version run alone or pooled.

Each is a row of ``deployment_events`` (insert-only, copied onto the audit trail by `tether.audit.bridge`) with its
actor and reason, written in the same transaction as the change it records:

- ``deploy``: a version becomes the champion with all of the model's traffic (the alias move needs a PASS gate
  report under the model's policy, or a recorded ``force``);
- ``retire``: the model stops being served; its routing row stays as a tombstone (`tether.serving.table.retire`)
  and its versions, aliases and history stay in the registry. A retired model is deployed again like a new one;
- ``alone`` / ``pooled`` / ``placement``: a version is flagged to run in an instance of its own whatever its role,
  to be pooled like any champion, or back to the default (canaries and shadows alone, champions pooled).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from tether.core.clock import Clock
from tether.core.errors import ConflictError, InvalidInputError, NotFoundError
from tether.registry import Registry
from tether.registry import aliases as alias_ops
from tether.rollout.record import ACTIVE
from tether.serving import table as routing_table
from tether.serving.routing import RoutingTable
from tether.store.tables import deployment_events, placements, rollouts

KINDS = ("deploy", "retire", "alone", "pooled", "placement", "diagnosis_end")


@dataclass(frozen=True)
class DeploymentEvent:
    id: int
    model: str
    kind: str
    version_id: str | None
    actor: str
    reason: str
    at: datetime
    detail: dict[str, Any]


def record(
    conn: Connection,
    model: str,
    kind: str,
    version_id: str | None,
    *,
    actor: str,
    reason: str,
    at: datetime,
    detail: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        insert(deployment_events).values(
            model_name=model,
            kind=kind,
            version_id=version_id,
            actor=actor,
            reason=reason,
            at=at,
            detail=detail or {},
        )
    )


def _reason(reason: str) -> str:
    if not reason or not reason.strip():
        raise InvalidInputError("a reason is required (it is recorded)", hint="pass --reason 'why'")
    return reason.strip()


class Deployments:
    def __init__(self, registry: Registry, clock: Clock) -> None:
        self.registry = registry
        self.clock = clock
        self.db = registry.store.db

    def _active(self, conn: Connection, model: str) -> int | None:
        q = select(rollouts.c.id).where(rollouts.c.model_name == model, rollouts.c.state.in_(ACTIVE)).limit(1)
        row = conn.execute(q).first()
        return None if row is None else int(row[0])

    def deploy(self, model: str, ref: str, *, reason: str, force: bool = False, actor: str | None = None) -> str:
        """Make ``ref`` the champion and route all of the model's traffic to it. Gateways switch once it is
        ready to answer (the old champion serves until then: `tether.serving.gateway.Gateway.apply`)."""
        mv = self.registry.get(ref)
        if mv.name != model:
            raise InvalidInputError(f"{mv.ref} belongs to model {mv.name!r}, not {model!r}")
        actor = actor or self.registry.settings.actor
        with self.db.connect() as conn:
            if (rid := self._active(conn, model)) is not None:
                raise ConflictError(
                    f"{model} has rollout {rid} in progress",
                    hint=f"finish or abort it first: tether rollout abort {model}",
                )
            current = alias_ops.current(conn, model, "champion")
        if current != mv.id:
            self.registry.set_alias(model, "champion", mv.ref, reason=reason, force=force, actor=actor)
        now = self.clock.now()
        with self.db.begin() as conn:
            routing_table.write(conn, RoutingTable(model, champion=mv.id), now)
            record(conn, model, "deploy", mv.id, actor=actor, reason=reason or "deployed", at=now)
        return mv.id

    def retire(self, model: str, *, reason: str, actor: str | None = None) -> RoutingTable:
        """Stop serving ``model`` (refused while a rollout is in progress); returns the routing it had."""
        why = _reason(reason)
        actor = actor or self.registry.settings.actor
        now = self.clock.now()
        with self.db.begin() as conn:
            if (rid := self._active(conn, model)) is not None:
                raise ConflictError(
                    f"{model} has rollout {rid} in progress; it cannot be retired now",
                    hint=f"abort the rollout first: tether rollout abort {model} --reason ...",
                )
            table = routing_table.retire(conn, model, now)
            conn.execute(update(rollouts).where(rollouts.c.model_name == model).values(shadow_until=None))
            detail = {"champion": table.champion, "shadow": table.shadow}
            record(conn, model, "retire", table.champion, actor=actor, reason=why, at=now, detail=detail)
        return table

    def isolate(self, ref: str, alone: bool | None, *, reason: str, actor: str | None = None) -> str:
        """Flag a version to run alone (True), to be pooled (False), or back to the default (None)."""
        why = _reason(reason)
        mv = self.registry.get(ref)
        actor = actor or self.registry.settings.actor
        now = self.clock.now()
        with self.db.begin() as conn:
            conn.execute(delete(placements).where(placements.c.version_id == mv.id))
            if alone is not None:
                conn.execute(
                    insert(placements).values(
                        version_id=mv.id, alone=alone, reason=why, updated_at=now, updated_by=actor
                    )
                )
            kind = "placement" if alone is None else ("alone" if alone else "pooled")
            record(conn, mv.name, kind, mv.id, actor=actor, reason=why, at=now)
        return mv.id

    def placement(self, version_id: str) -> bool | None:
        with self.db.connect() as conn:
            row = conn.execute(select(placements.c.alone).where(placements.c.version_id == version_id)).first()
        return None if row is None else bool(row[0])

    def events(self, model: str, *, limit: int = 200) -> list[DeploymentEvent]:
        """A model's deployment events, newest first."""
        c = deployment_events.c
        q = select(deployment_events).where(c.model_name == model).order_by(c.id.desc()).limit(limit)
        with self.db.connect() as conn:
            rows = conn.execute(q).mappings().all()
        if not rows and not self.registry.versions(model):
            raise NotFoundError(f"no model named {model!r}")
        return [
            DeploymentEvent(
                r["id"], r["model_name"], r["kind"], r["version_id"], r["actor"], r["reason"], r["at"], r["detail"]
            )
            for r in rows
        ]
