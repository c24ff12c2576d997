"""A rollout as stored, its events, and reading them back (the state machine is `tether.rollout.controller`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from tether.core.errors import ConflictError, NotFoundError
from tether.rollout.plan import FULL as FULL  # re-exported: a whole model's traffic in basis points
from tether.rollout.plan import Plan
from tether.store.database import Database
from tether.store.tables import rollout_events, rollouts

ACTIVE = ("running", "paused", "watching")


@dataclass(frozen=True)
class Rollout:
    id: int
    model: str
    candidate_id: str
    champion_id: str
    state: str
    step_index: int
    plan: Plan
    step_started_at: datetime
    gate_report_id: str | None
    forced: bool
    #: The stored revision this view was read at; a decision on it is written only if it is still current.
    revision: int = 0
    #: After a rollback: when the candidate's diagnostic shadow ends (None: it has ended, or there was none).
    shadow_until: datetime | None = None

    @property
    def weight_bp(self) -> int:
        if self.state in ("watching", "completed"):
            return FULL
        if self.state in ("rolled_back", "aborted", "reverted"):
            return 0
        return self.plan.bp(self.step_index)


@dataclass(frozen=True)
class Event:
    rollout_id: int
    at: datetime
    kind: str
    from_bp: int
    to_bp: int
    reason: str
    evidence: dict[str, Any]
    actor: str


class StaleRolloutError(ConflictError):
    """The rollout changed between reading it and deciding on it: the decision is dropped, not written."""


class RolloutReader:
    """Rollouts and their events read from the database: the base of `Controller`, usable alone."""

    db: Database

    def get(self, rollout_id: int) -> Rollout:
        with self.db.connect() as conn:
            return self._get(conn, rollout_id)

    def latest(self, model: str) -> Rollout | None:
        with self.db.connect() as conn:
            row = (
                conn.execute(
                    select(rollouts).where(rollouts.c.model_name == model).order_by(rollouts.c.id.desc()).limit(1)
                )
                .mappings()
                .first()
            )
            return self._row(row) if row else None

    def history(self, model: str) -> list[Rollout]:
        """Every rollout of ``model``, newest first."""
        with self.db.connect() as conn:
            q = select(rollouts).where(rollouts.c.model_name == model).order_by(rollouts.c.id.desc())
            return [self._row(r) for r in conn.execute(q).mappings()]

    def events(self, rollout_id: int) -> list[Event]:
        with self.db.connect() as conn:
            rows = conn.execute(
                select(rollout_events).where(rollout_events.c.rollout_id == rollout_id).order_by(rollout_events.c.id)
            ).mappings()
            return [
                Event(
                    r["rollout_id"],
                    r["at"],
                    r["kind"],
                    r["from_bp"],
                    r["to_bp"],
                    r["reason"],
                    r["evidence"],
                    r["actor"],
                )
                for r in rows
            ]

    def _require(self, model: str, states: tuple[str, ...]) -> Rollout:
        with self.db.connect() as conn:
            ro = self._active(conn, model)
        if ro is None or ro.state not in states:
            raise ConflictError(
                f"{model} has no rollout in state {' or '.join(states)}" + (f" (latest is {ro.state})" if ro else ""),
                hint=f"tether rollout status {model}",
            )
        return ro

    def _active(self, conn: Connection, model: str) -> Rollout | None:
        row = (
            conn.execute(
                select(rollouts)
                .where(rollouts.c.model_name == model, rollouts.c.state.in_(ACTIVE))
                .order_by(rollouts.c.id.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        return self._row(row) if row else None

    def _get(self, conn: Connection, rollout_id: int) -> Rollout:
        row = conn.execute(select(rollouts).where(rollouts.c.id == rollout_id)).mappings().first()
        if row is None:
            raise NotFoundError(f"no rollout {rollout_id}")
        return self._row(row)

    @staticmethod
    def _row(r: Any) -> Rollout:
        return Rollout(
            r["id"],
            r["model_name"],
            r["candidate_id"],
            r["champion_id"],
            r["state"],
            r["step_index"],
            Plan.model_validate(r["plan"]),
            r["step_started_at"],
            r["gate_report_id"],
            bool(r["forced"]),
            int(r["revision"]),
            r["shadow_until"],
        )
