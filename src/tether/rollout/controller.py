"""The rollout controller: a state machine in the database, driven by evidence and a clock.

    running --(every guardrail safe, bake done, enough samples)--> next step ... --> 100%: promote --> watching
    running --(any guardrail shows harm, or the canary instance crashed)--> rolled_back (canary on shadow)
    running --(undecided longer than max_step_seconds)--> paused (for a human)
    watching --(breach against the old champion, still warm on shadow traffic)--> reverted
    watching --(watch window over)--> completed
    manual: promote (next step now), pause, resume, abort

Every transition is a row in ``rollout_events`` (immutable) with the metric values, sample sizes, statistics,
the policy and the actor. The state lives in the database, so a controller that is killed and started again
resumes where it was. Error rates: each guardrail's always-valid test runs at alpha / (guardrails x steps), so
the chance of any false rollback over the whole rollout is at most the plan's alpha (union bound).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update

from tether.core.clock import Clock, SystemClock
from tether.core.errors import ConflictError, InvalidInputError, NotFoundError
from tether.core.types import short
from tether.monitor.sequential import Comparison, Decision
from tether.registry import Registry
from tether.registry import policy as policy_ops
from tether.rollout import evidence
from tether.rollout.deployment import Deployments, record
from tether.rollout.evidence import describe
from tether.rollout.leader import DeposedError
from tether.rollout.plan import Plan, canary_table
from tether.rollout.record import FULL, Event, Rollout, RolloutReader, StaleRolloutError
from tether.serving import table as routing_table
from tether.serving.routing import RoutingTable
from tether.serving.window import MetricStore, Tally
from tether.store.tables import rollout_events, rollouts

log = logging.getLogger("tether.rollout")


class Controller(RolloutReader):
    def __init__(
        self,
        registry: Registry,
        metrics: MetricStore,
        *,
        clock: Clock | None = None,
        fence: Callable[[Connection], None] | None = None,
    ) -> None:
        self.registry = registry
        self.metrics = metrics
        #: Called inside the transaction of every automatic decision (the leader lease's fence, when scaled out).
        self.fence = fence
        self._ticking = threading.local()
        self.clock = clock or registry.clock or SystemClock()
        self.db = registry.store.db
        #: (rollout, step, step start) -> when this controller first saw the step's traffic (see `_observed`).
        self._watched: dict[tuple[int, int, datetime], float] = {}
        self.deployments = Deployments(registry, self.clock)

    def __enter__(self) -> Controller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.registry.close()

    # -- deployment and starting -------------------------------------------------------------------------
    def deploy(self, model: str, ref: str, *, reason: str, force: bool = False, actor: str | None = None) -> str:
        """Make ``ref`` the champion and route all of the model's traffic to it (`tether.rollout.deployment`)."""
        return self.deployments.deploy(model, ref, reason=reason, force=force, actor=actor)

    def start(
        self,
        model: str,
        candidate: str,
        plan: Plan | None = None,
        *,
        force: bool = False,
        reason: str | None = None,
        actor: str | None = None,
    ) -> Rollout:
        """Start a progressive rollout of ``candidate``; it needs a PASS gate report against the champion."""
        plan = plan or Plan()
        mv = self.registry.get(candidate)
        if mv.name != model:
            raise InvalidInputError(f"{mv.ref} belongs to model {mv.name!r}, not {model!r}")
        actor = actor or self.registry.settings.actor
        now = self.clock.now()
        with self.db.begin() as conn:
            current = routing_table.read(conn, model)
            if current is None:
                raise NotFoundError(
                    f"{model} is not deployed", hint=f"deploy a champion first: tether deploy {model} VERSION"
                )
            table, _ = current
            if table.champion == mv.id:
                raise InvalidInputError(f"{mv.ref} is already the champion of {model}")
            if (active := self._active(conn, model)) is not None:
                raise ConflictError(
                    f"{model} already has rollout {active.id} in state {active.state}",
                    hint=f"tether rollout abort {model} first",
                )
            report: str | None = None
            try:
                report = policy_ops.promotion_report(conn, self.registry.store.blobs, model, mv.id, table.champion)
            except ConflictError as e:
                if not force:
                    raise ConflictError(f"a rollout of {mv.ref} cannot start: {e.message}", hint=e.hint) from None
            if report is None and not (reason and reason.strip()):
                raise InvalidInputError("--force needs a --reason (it is recorded)")
            rid = conn.execute(
                insert(rollouts).values(
                    model_name=model,
                    candidate_id=mv.id,
                    champion_id=table.champion,
                    state="running",
                    step_index=0,
                    plan=plan.model_dump(mode="json"),
                    step_started_at=now,
                    gate_report_id=report,
                    forced=report is None,
                    created_at=now,
                    updated_at=now,
                    created_by=actor,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            ro = self._get(conn, int(rid))
            why = f"gate report {short(report)}" if report else f"FORCED: {reason}"
            self._event(
                conn,
                ro,
                "start",
                0,
                plan.bp(0),
                f"start at {plan.steps[0]}% ({why})",
                {"plan": plan.model_dump()},
                actor,
            )
            routing_table.write(conn, canary_table(model, table.champion, mv.id, plan, 0, int(rid)), now)
        if plan.steps[0] == 100:
            self._promote_full(self.get(ro.id), actor, "the plan starts at 100%")
        return self.get(ro.id)

    # -- the loop ----------------------------------------------------------------------------------------
    def tick(self) -> list[Event]:
        """Evaluate every active rollout once, and end the diagnostic shadows that are over; returns the
        transitions made. One query reads them all (and the metric windows are in memory), so a tick that decides
        nothing costs the same at one rollout and at a hundred; each decision is then its own transaction."""
        with self.db.connect() as conn:
            q = select(rollouts).where(
                or_(rollouts.c.state.in_(("running", "watching")), rollouts.c.shadow_until.is_not(None))
            )
            found = [self._row(r) for r in conn.execute(q).mappings()]
        events: list[Event] = []
        self._ticking.on = True
        try:
            for ro in found:
                try:
                    if ro.state == "running":
                        events += self._running(ro)
                    elif ro.state == "watching":
                        events += self._watching(ro)
                    else:
                        events += self._diagnosing(ro)
                except StaleRolloutError as e:  # a person (or another controller) decided first: re-read next tick
                    log.info("rollout %d: %s", ro.id, e.message)
                except DeposedError as e:  # another process leads now: it decides; this one stops at once
                    log.warning("controller tick stopped: %s", e.message)
                    break
        finally:
            self._ticking.on = False
        return events

    def evaluate(self, ro: Rollout, until: datetime | None = None) -> tuple[dict[str, Comparison], Tally, Tally]:
        """The guardrail comparisons of the rollout's current window (see `tether.rollout.evidence.evaluate`)."""
        return evidence.evaluate(self.metrics, ro, until)

    def _evidence(self, ro: Rollout, comps: dict[str, Comparison], new: Tally, old: Tally) -> dict[str, Any]:
        return evidence.snapshot(ro, comps, new, old, self.clock.now())

    def observed(self, ro: Rollout) -> float:
        """Seconds of the current step this controller has watched so far (read only: what `_observed` has
        recorded; 0 before the first tick that saw canary traffic)."""
        first = self._watched.get((ro.id, ro.step_index, ro.step_started_at))
        return 0.0 if first is None else self.clock.monotonic() - first

    def _observed(self, ro: Rollout) -> float:
        """Seconds this controller has watched the current step with canary traffic arriving: bake time is time
        observed, not time elapsed (downtime, a restart of the server, a canary still starting do not count).
        It is measured on the monotonic clock: a wall clock stepped forwards (NTP, an operator) bakes nothing."""
        key = (ro.id, ro.step_index, ro.step_started_at)
        first = self._watched.get(key)
        if first is None:
            arm = "champion" if ro.state == "watching" else "canary"
            since = self.clock.now() - timedelta(seconds=30)
            if not self.metrics.tally(ro.model, ro.candidate_id, arm, since).requests:
                return 0.0
            first = self._watched[key] = self.clock.monotonic()
        return self.clock.monotonic() - first

    def _running(self, ro: Rollout) -> list[Event]:
        comps, new, old = self.evaluate(ro)
        evidence = self._evidence(ro, comps, new, old)
        elapsed = (self.clock.now() - ro.step_started_at).total_seconds()
        observed = self._observed(ro)
        evidence["observed_seconds"] = observed
        if new.errors.get("crash", 0):
            return [self._rollback(ro, "rollback", "the canary instance crashed", evidence, "controller")]
        streak = self.metrics.streak(ro.model, ro.candidate_id, "canary")
        if ro.plan.failure_limit is not None and streak >= ro.plan.failure_limit:
            why = f"{streak} canary requests failed in a row (failure_limit {ro.plan.failure_limit})"
            return [self._rollback(ro, "rollback", why, evidence, "controller")]
        champion_floor = comps.pop("champion_success_rate", None)
        harmed = [k for k, c in comps.items() if c.decision is Decision.HARM]
        if harmed:
            detail = "; ".join(describe(k, comps[k]) for k in harmed)
            return [self._rollback(ro, "rollback", f"harm shown: {detail}", evidence, "controller")]
        safe = all(c.decision is Decision.SAFE for c in comps.values())
        champion_ok = champion_floor is None or champion_floor.decision is Decision.SAFE
        if safe and champion_ok and observed >= ro.plan.bake_seconds and new.requests >= ro.plan.min_samples:
            why = (
                f"every guardrail shown safe on {new.requests} canary requests, the champion's success rate "
                f"shown above its floor, and {observed:.0f} s of the step observed"
            )
            return [self._advance(ro, why, evidence, "controller")]
        if elapsed > ro.plan.max_step_seconds:
            open_ = [k for k, c in comps.items() if c.decision is not Decision.SAFE]
            wanting = [f"not yet shown safe: {', '.join(open_)}"] if open_ else []
            if not champion_ok:
                wanting.append("the champion's own success rate is not shown above the floor (degraded evidence)")
            if observed < ro.plan.bake_seconds:
                wanting.append(f"{observed:.0f} of {ro.plan.bake_seconds:.0f} s of bake time observed")
            if new.requests < ro.plan.min_samples:
                wanting.append(f"{new.requests} of {ro.plan.min_samples} canary requests")
            return [
                self._set_state(
                    ro,
                    "paused",
                    "pause",
                    f"undecided after {elapsed:.0f} s ({'; '.join(wanting)}); "
                    "a human decides: tether rollout promote|abort",
                    evidence,
                    "controller",
                )
            ]
        return []

    def _watching(self, ro: Rollout) -> list[Event]:
        comps, new, old = self.evaluate(ro)
        comps.pop("champion_success_rate", None)  # the old champion on shadow copies: nothing to protect
        evidence = self._evidence(ro, comps, new, old)
        harmed = [k for k, c in comps.items() if c.decision is Decision.HARM]
        streak = self.metrics.streak(ro.model, ro.candidate_id, "champion")
        broken = ro.plan.failure_limit is not None and streak >= ro.plan.failure_limit
        if harmed or new.errors.get("crash", 0) or broken:
            detail = "; ".join(describe(k, comps[k]) for k in harmed) or (
                f"{streak} requests failed in a row" if broken else "the new champion's instance crashed"
            )
            return [self._revert(ro, f"breach during the watch window: {detail}", evidence, "controller")]
        if self._observed(ro) >= ro.plan.watch_seconds:
            with self.db.begin() as conn:
                table, _ = routing_table.read(conn, ro.model) or (None, 0)
                if table is not None:
                    routing_table.write(conn, RoutingTable(ro.model, champion=table.champion), self.clock.now())
                return [
                    self._transition(
                        conn,
                        ro,
                        "completed",
                        "complete",
                        FULL,
                        FULL,
                        "watch window over with no breach; the old champion may stop",
                        evidence,
                        "controller",
                    )
                ]
        return []

    # -- transitions -------------------------------------------------------------------------------------
    def _advance(self, ro: Rollout, reason: str, evidence: dict[str, Any], actor: str) -> Event:
        nxt = ro.step_index + 1
        if nxt >= len(ro.plan.steps) or ro.plan.steps[nxt] == 100:
            return self._promote_full(ro, actor, reason, evidence)
        now = self.clock.now()
        with self.db.begin() as conn:
            routing_table.write(
                conn,
                canary_table(ro.model, ro.champion_id, ro.candidate_id, ro.plan, nxt, ro.id),
                now,
            )
            conn.execute(
                update(rollouts)
                .where(rollouts.c.id == ro.id)
                .values(step_index=nxt, step_started_at=now, updated_at=now)
            )
            return self._event(
                conn,
                ro,
                "advance",
                ro.weight_bp,
                ro.plan.bp(nxt),
                f"{ro.plan.steps[ro.step_index]}% -> {ro.plan.steps[nxt]}%: {reason}",
                evidence,
                actor,
            )

    def _promote_full(self, ro: Rollout, actor: str, reason: str, evidence: dict[str, Any] | None = None) -> Event:
        with self.db.begin() as conn:  # the alias move below is its own transaction: check before it, too
            self._claim(conn, ro, bump=False)
        try:
            self.registry.set_alias(
                ro.model,
                "champion",
                ro.candidate_id,
                actor=actor,
                force=ro.forced,
                reason=f"rollout {ro.id} reached 100%: {reason}",
            )
        except ConflictError as e:  # e.g. the gate policy changed since the start: a human decides
            return self._set_state(
                ro, "paused", "pause", f"cannot promote to 100%: {e.message}", evidence or {}, "controller"
            )
        now = self.clock.now()
        with self.db.begin() as conn:
            # The old champion stays warm on shadow copies of all traffic, so the watch window can compare.
            routing_table.write(
                conn, RoutingTable(ro.model, champion=ro.candidate_id, shadow=ro.champion_id, shadow_bp=FULL), now
            )
            conn.execute(
                update(rollouts)
                .where(rollouts.c.id == ro.id)
                .values(state="watching", step_index=len(ro.plan.steps) - 1, step_started_at=now, updated_at=now)
            )
            return self._event(
                conn,
                ro,
                "promote",
                ro.weight_bp,
                FULL,
                f"100%: {ro.candidate_id[:12]} is champion; watching {ro.plan.watch_seconds:.0f} s",
                evidence or {},
                actor,
            )

    @staticmethod
    def _back_to_champion(conn: Connection, ro: Rollout, now: datetime) -> None:
        """All traffic to the (old) champion; the candidate stays on diagnosis shadow traffic for
        ``diagnosis_seconds`` (or ``diagnosis_copies``), after which the shadow ends and its instance stops."""
        bp = round(ro.plan.diagnosis_shadow * 100)
        table = RoutingTable(ro.model, champion=ro.champion_id, shadow=ro.candidate_id if bp else None, shadow_bp=bp)
        routing_table.write(conn, table, now)
        until = now + timedelta(seconds=ro.plan.diagnosis_seconds) if bp else None
        conn.execute(update(rollouts).where(rollouts.c.id == ro.id).values(shadow_until=until))

    def _diagnosing(self, ro: Rollout) -> list[Event]:
        """End a rolled-back candidate's diagnostic shadow once its time (or its number of copies) is up."""
        now = self.clock.now()
        until, limit = ro.shadow_until, ro.plan.diagnosis_copies
        copies = None
        if limit is not None and until is not None:
            since = until - timedelta(seconds=ro.plan.diagnosis_seconds)
            copies = self.metrics.tally(ro.model, ro.candidate_id, "shadow", since).requests
        enough = copies is not None and limit is not None and copies >= limit
        if until is not None and now < until and not enough:
            return []
        with self.db.begin() as conn:  # `_event` below claims the rollout's revision in this transaction
            current = routing_table.read(conn, ro.model)
            if current is not None and current[0].shadow == ro.candidate_id:
                routing_table.set_shadow(conn, ro.model, None, 0, now)
            conn.execute(update(rollouts).where(rollouts.c.id == ro.id).values(shadow_until=None))
            why = (
                f"the diagnostic shadow served {copies} copies"
                if enough
                else f"the diagnostic shadow's {ro.plan.diagnosis_seconds:.0f} s are over"
            )
            record(
                conn,
                ro.model,
                "diagnosis_end",
                ro.candidate_id,
                actor="controller",
                reason=why,
                at=now,
                detail={"rollout": ro.id, "copies": copies},
            )
            return [self._event(conn, ro, "diagnosis_end", 0, 0, why, {"copies": copies}, "controller")]

    def _rollback(self, ro: Rollout, kind: str, reason: str, evidence: dict[str, Any], actor: str) -> Event:
        now = self.clock.now()
        with self.db.begin() as conn:
            self._back_to_champion(conn, ro, now)
            state = "aborted" if kind == "abort" else "rolled_back"
            return self._transition(conn, ro, state, kind, ro.weight_bp, 0, reason, evidence, actor)

    def _revert(self, ro: Rollout, reason: str, evidence: dict[str, Any], actor: str) -> Event:
        with self.db.begin() as conn:
            self._claim(conn, ro, bump=False)
        self.registry.set_alias(
            ro.model,
            "champion",
            ro.champion_id,
            actor=actor,
            force=True,
            reason=f"automatic revert of rollout {ro.id}: {reason}",
        )
        now = self.clock.now()
        with self.db.begin() as conn:
            self._back_to_champion(conn, ro, now)
            return self._transition(conn, ro, "reverted", "revert", FULL, 0, reason, evidence, actor)

    def _set_state(
        self, ro: Rollout, state: str, kind: str, reason: str, evidence: dict[str, Any], actor: str
    ) -> Event:
        with self.db.begin() as conn:
            return self._transition(conn, ro, state, kind, ro.weight_bp, ro.weight_bp, reason, evidence, actor)

    def _transition(
        self,
        conn: Connection,
        ro: Rollout,
        state: str,
        kind: str,
        from_bp: int,
        to_bp: int,
        reason: str,
        evidence: dict[str, Any],
        actor: str,
    ) -> Event:
        now = self.clock.now()
        conn.execute(update(rollouts).where(rollouts.c.id == ro.id).values(state=state, updated_at=now))
        return self._event(conn, ro, kind, from_bp, to_bp, reason, evidence, actor)

    def _event(
        self,
        conn: Connection,
        ro: Rollout,
        kind: str,
        from_bp: int,
        to_bp: int,
        reason: str,
        evidence: dict[str, Any],
        actor: str,
    ) -> Event:
        self._claim(conn, ro)
        at = self.clock.now()
        conn.execute(
            insert(rollout_events).values(
                rollout_id=ro.id,
                at=at,
                kind=kind,
                from_bp=from_bp,
                to_bp=to_bp,
                reason=reason,
                evidence=evidence,
                actor=actor,
            )
        )
        return Event(ro.id, at, kind, from_bp, to_bp, reason, evidence, actor)

    def _claim(self, conn: Connection, ro: Rollout, *, bump: bool = True) -> None:
        """Fail unless ``ro`` is still the stored revision (and, for automatic decisions, this process leads);
        with ``bump``, move the revision on in the decision's transaction, so no second decision on it lands."""
        if self.fence is not None and getattr(self._ticking, "on", False):
            self.fence(conn)
        stmt = update(rollouts).where(rollouts.c.id == ro.id, rollouts.c.revision == ro.revision)
        done = conn.execute(stmt.values(revision=rollouts.c.revision + (1 if bump else 0)))
        if done.rowcount != 1:
            raise StaleRolloutError(
                f"rollout {ro.id} changed while this decision was being made; it was not written",
                hint=f"tether rollout status {ro.model}",
            )

    # -- manual actions ----------------------------------------------------------------------------------
    def promote(self, model: str, *, reason: str, actor: str | None = None) -> Event:
        ro = self._require(model, ("running", "paused"))
        comps, new, old = self.evaluate(ro)
        return self._advance(
            ro, f"manual promote: {reason}", self._evidence(ro, comps, new, old), actor or self.registry.settings.actor
        )

    def pause(self, model: str, *, reason: str, actor: str | None = None) -> Event:
        ro = self._require(model, ("running",))
        return self._set_state(
            ro, "paused", "pause", f"manual pause: {reason}", {}, actor or self.registry.settings.actor
        )

    def resume(self, model: str, *, reason: str, actor: str | None = None) -> Event:
        ro = self._require(model, ("paused",))
        now = self.clock.now()
        with self.db.begin() as conn:
            # The step's window restarts: evidence gathered before the pause is not reused.
            conn.execute(update(rollouts).where(rollouts.c.id == ro.id).values(step_started_at=now))
            return self._transition(
                conn,
                ro,
                "running",
                "resume",
                ro.weight_bp,
                ro.weight_bp,
                f"manual resume: {reason}",
                {},
                actor or self.registry.settings.actor,
            )

    def abort(self, model: str, *, reason: str, actor: str | None = None) -> Event:
        ro = self._require(model, ("running", "paused"))
        comps, new, old = self.evaluate(ro)
        return self._rollback(
            ro,
            "abort",
            f"manual abort: {reason}",
            self._evidence(ro, comps, new, old),
            actor or self.registry.settings.actor,
        )

    def shadow(self, model: str, ref: str | None, percent: float) -> RoutingTable:
        """Copy ``percent`` of a model's traffic to a diagnostic version (responses never change)."""
        if not 0 <= percent <= 100:
            raise InvalidInputError(f"shadow share must be within 0..100 percent, got {percent}")
        shadow_id = self.registry.get(ref).id if ref else None
        with self.db.begin() as conn:
            return routing_table.set_shadow(conn, model, shadow_id, round(percent * 100), self.clock.now())
